"""Faults of the machine around a launch: a tracking server that dies mid-search, a full disk under the
experiment folder, a trial's error pickle left empty. Whole launches in a subprocess (slow, Ray)."""
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from launcher_output import finish as _finish

from conftest import kill_session

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"
SMALL = ["--set", "search.num_samples=2", "--set", "search.final_k=0", "--set", "train.epochs=2"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _launch(*args, cwd: Path):
    """The launcher on the smoke space, run from `cwd` (an empty folder: nothing may be written there)."""
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-u", "-m", "search.launch", str(SMOKE), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _mlflow_server(db: Path, port: int):
    """A real `mlflow server` on 127.0.0.1 (its own session, so that killing it kills its workers too)."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{db}",
                             "--default-artifact-root", str(db.parent / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MLflow server did not start")
                time.sleep(0.5)
        yield proc
    finally:
        kill_session(proc)


def test_a_tracking_server_that_dies_mid_search_costs_no_waiting(tmp_path):
    """The server is killed once the first epoch is reported. MLflow's own HTTP retries waited about 4
    minutes at the next call, and again in the finish step (a phase's tracker is a fork of the launch's):
    a 30-second sweep took 9 minutes. Now the outage is met in seconds, once, and the rest goes to the spool,
    which search.tracking.replay sends when the server is back."""
    port, db = _free_port(), tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()
    uri = f"http://127.0.0.1:{port}"
    exp = tmp_path / "store" / "dies"
    with _mlflow_server(db, port) as server:
        proc = _launch("--storage", str(tmp_path / "store"), "--name", "dies", "--mlflow-uri", uri, *SMALL,
                       cwd=tmp_path / "cwd")
        lines, killed_at = [], None
        try:
            for line in proc.stdout:
                lines.append(line)
                if killed_at is None and re.search(r"^search: .*; [1-9]\d*/\d+ epochs", line):
                    kill_session(server)
                    killed_at = time.monotonic()
                    break
            assert killed_at is not None, "".join(lines)
            rc, rest = _finish(proc, timeout=150)  # MLflow's backoff alone took ~240 s, twice
        finally:
            kill_session(proc)
        after_kill = time.monotonic() - killed_at
    out = "".join(lines) + rest
    assert rc == 0, out
    assert after_kill < 120, f"{after_kill:.0f} s after the server died\n{out}"
    assert out.count("is not answering") == 1 and "Traceback" not in out, out
    spooled = [json.loads(line) for line in (exp / "mlflow_pending.jsonl").read_text().splitlines()]
    assert ["call", "set_terminated", spooled[-1][2], {"status": "FINISHED"}] == spooled[-1]  # the finish step's last
    assert (exp / "leaderboard.csv").is_file()

    with _mlflow_server(db, port):  # back: the spool is sent
        replay = subprocess.run([sys.executable, "-m", "search.replay", str(exp)], cwd=tmp_path / "cwd",
                                capture_output=True, text=True, timeout=300)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert f"replayed {len(spooled)} tracking operations" in replay.stdout
        client = MlflowClient(tracking_uri=uri)
        state = json.loads((exp / "launch_state.json").read_text())
        assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
        runs = client.search_runs([client.get_experiment_by_name("dies").experiment_id], "tags.phase = 'search'")
        assert len(runs) == 2 and all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    assert not (exp / "mlflow_pending.jsonl").exists() and (exp / "mlflow_pending.replayed.jsonl").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []


@contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_in_one_line_and_resume_continues_once_there_is_space(tmp_path):
    """6 MB fill up in the first epochs. Before: a '--- Logging error ---' traceback per log record, trials
    retried and failed, an OSError traceback, an empty spool, the parent run left RUNNING."""
    with _tmpfs(tmp_path / "disk", "6m") as disk:
        exp = disk / "full"
        rc, out = _finish(_launch("--storage", str(disk), "--name", "full", *SMALL, cwd=tmp_path / "cwd"), timeout=300)
        assert rc == 1, out
        assert "Traceback" not in out and "Logging error" not in out, out
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "no space left on device writing" in errors[0] and str(exp) in errors[0], out
        assert errors[0].endswith("--resume")
        assert "retrying" not in out and " failed:" not in out, out  # no trial used up its retries on it
        kept = {p.name for p in exp.iterdir()}
        assert {"launch_state.json", "space.yaml", "optuna.journal", "search"} <= kept
        spool = exp / "mlflow_pending.jsonl"
        assert not spool.exists() or all(json.loads(line) for line in spool.read_text().splitlines())

        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        rc, out = _finish(_launch("--storage", str(disk), "--name", "full", "--resume", *SMALL, cwd=tmp_path / "cwd"),
                          timeout=300)
        assert rc == 0, out
        assert "Traceback" not in out, out
        trials = pd.read_parquet(exp / "trials.parquet")
        assert len(trials) == 2 and (trials["status"] != "failed").all()
        client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
        state = json.loads((exp / "launch_state.json").read_text())
        assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
    assert list((tmp_path / "cwd").iterdir()) == []


def test_resume_survives_an_empty_error_pickle(tmp_path):
    """A failed trial's error.pkl cut to 0 bytes (a full disk while Tune wrote it): Tune unpickles it when it
    builds the phase's results, and --resume failed with an EOFError traceback."""
    args = ["--storage", str(tmp_path / "store"), "--name", "nan", "--num-samples", "1",
            "--set", "space.train.lr=1.0e+30", "--set", "search.final_k=0", "--set", "train.epochs=2"]
    rc, out = _finish(_launch(*args, cwd=tmp_path / "cwd"), timeout=300)
    assert rc == 1 and "TrainingDiverged" in out, out  # its one trial diverged: failed, with an error.pkl
    (pickled,) = (tmp_path / "store" / "nan" / "search").glob("trial_*/error.pkl")
    pickled.write_bytes(b"")
    rc, out = _finish(_launch(*args, "--resume", cwd=tmp_path / "cwd"), timeout=300)
    assert rc == 1 and "Traceback" not in out and "EOFError" not in out, out  # still the one failed trial
    assert re.search(rf"^warning: {re.escape(str(pickled))}: removed", out, re.M), out
    assert (pickled.parent / "error.txt").is_file() and (tmp_path / "store" / "nan" / "leaderboard.csv").is_file()
