"""One live launcher per experiment folder (search.io.lock): a second launch is refused in one line naming
the holder, a killed holder's lock blocks nothing, and two launches racing for one name never both run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.run.launch import main
from search.io.lock import ExperimentLock, Locked

from conftest import kill_session

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"
HOLD = ("import sys, time; from pathlib import Path; from search.io.lock import ExperimentLock; "
        "ExperimentLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(120)")


def _holder(exp: Path) -> subprocess.Popen:
    exp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(exp)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_lock_in_the_same_process_is_refused_and_names_the_holder(tmp_path):
    first = ExperimentLock(tmp_path).acquire()
    with pytest.raises(Locked, match=rf"in use by another launcher \(pid {os.getpid()} on "):
        ExperimentLock(tmp_path).acquire()
    first.release()
    ExperimentLock(tmp_path).acquire().release(remove=True)
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path):
    """Before O_NOFOLLOW, a launch into a folder holding only a linked launch.lock truncated the link's
    target and wrote its pid there."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "launch.lock").symlink_to(victim)
    with pytest.raises(Locked, match="launch.lock: cannot open the lock file"):
        ExperimentLock(exp).acquire()
    assert victim.read_text() == "precious"


def test_a_live_launcher_holds_its_experiment(tmp_path, capsys):
    holder = _holder(tmp_path / "x")
    try:
        assert main([str(SMOKE), "--storage", str(tmp_path), "--name", "x"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --name: {tmp_path / 'x'} is in use by another launcher (pid {holder.pid} on ")
    assert "\n" not in err
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["launch.lock"]  # the holder's, untouched


def test_a_killed_launcher_leaves_no_lock_that_blocks(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert "pid" in (tmp_path / "launch.lock").read_text()  # the file stays, the lock went with the process
    ExperimentLock(tmp_path).acquire().release()


def _launch(*args):
    return subprocess.Popen([sys.executable, "-u", "-m", "search.launch", str(SMOKE), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _stop(proc, sig=signal.SIGINT, timeout=180) -> str:
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        kill_session(proc)


@pytest.mark.slow
@pytest.mark.ray
def test_two_launches_with_one_name_never_both_run(tmp_path):
    """Started together (the race where both saw no folder): exactly one runs, the other exits 2
    naming it, within seconds and before any tracking store or Ray of its own."""
    args = ["--storage", str(tmp_path), "--name", "same", "--set", "train.epochs=2", "--num-samples", "2"]
    a, b = _launch(*args), _launch(*args)
    deadline = time.monotonic() + 120
    while a.poll() is None and b.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    loser, winner = (a, b) if a.poll() is not None else (b, a)
    out = loser.communicate(timeout=30)[0]
    rest = _stop(winner)
    assert loser.returncode == 2, out + rest
    assert out.strip().splitlines()[-1].startswith(f"error: --name: {tmp_path / 'same'} is in use by another launcher "
                                                   f"(pid {winner.pid} on "), out
    assert winner.returncode in (0, 130), rest
    assert len(list((tmp_path / "same").glob("search/experiment_state-*.json"))) <= 1  # one Tune experiment
