"""cluster/slurm.sbatch without Slurm or Ray: the script runs as the batch shell would, with stand-ins for `ray`
and the launcher on the PATH that record what they were given and wait for SIGTERM like the real ones."""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import kill_session

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SCRIPT = CLUSTER / "slurm.sbatch"

FAKE_RAY = r"""#!/usr/bin/env bash
echo "ray $*" >> "$FAKE_LOG"
[ "$1" = start ] && echo "ray-env single-machine=${RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER:-}" >> "$FAKE_LOG"
case "$1" in
  start) trap 'exit 0' TERM; while :; do sleep 0.1; done ;;
  status) echo Active:; for i in $(seq 1 "${FAKE_NODES:-1}"); do echo " 1 node_$i"; done; echo Pending: ;;
  get-auth-token) mkdir -p "$HOME/.ray"; echo fake-token > "$HOME/.ray/auth_token" ;;
esac
"""

# the launcher: records its arguments and whether it got the token, writes the experiment's state file as a
# started launch does, then finishes (FAKE_LAUNCH_EXIT) or waits for SIGTERM and exits 143 as the real one does
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "python $*" >> "$FAKE_LOG"
echo "auth=$RAY_AUTH_MODE token=$RAY_AUTH_TOKEN address=${RAY_ADDRESS:-}" >> "$FAKE_LOG"
echo "launcher-env single-machine=${RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER:-}" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do
  case "$1" in --storage) storage=$2 ;; --name) name=$2 ;; esac
  shift
done
mkdir -p "$storage/$name" && echo '{}' > "$storage/$name/launch_state.json"
[ -n "${FAKE_LAUNCH_EXIT:-}" ] && exit "$FAKE_LAUNCH_EXIT"
on_term() {  # the launcher's stop needs the head's Ray: is it still up?
  pgrep -f "^bash .*/ray start --head" > /dev/null && echo head-up >> "$FAKE_LOG"
  echo launcher-got-TERM >> "$FAKE_LOG"
  exit 143
}
trap on_term TERM
echo launcher-started >> "$FAKE_LOG"
while :; do sleep 0.1; done
"""


# srun runs its command here, as the one other node would; scontrol names the allocation's nodes
FAKE_SRUN = r"""#!/usr/bin/env bash
echo "srun $*" >> "$FAKE_LOG"
while [ "$1" != bash ]; do shift; done
exec "$@"
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
echo node1; echo node2
"""


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ray", FAKE_RAY), ("python", FAKE_PYTHON), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "FAKE_LOG": str(log),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "1", "SLURM_CPUS_ON_NODE": "3",
           "CUDA_VISIBLE_DEVICES": "0,1", "MTL_RAY_TMP": str(tmp_path / "raytmp"),
           "RAY_ADDRESS": "http://somewhere:8265", "MTL_RAY_STOP_GRACE_S": "1"}
    return env, log, tmp_path


def _start(env, cwd, **extra):
    return subprocess.Popen(["bash", str(SCRIPT), "spaces/smoke.yaml", "--set", "train.epochs=1"],
                            env={**env, **extra}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for(log: Path, text: str, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _left(tmp: Path) -> str:
    """Processes still running that name the job's Ray temp dir (the stand-in Ray nodes)."""
    return subprocess.run(["pgrep", "-af", str(tmp / "raytmp")], capture_output=True, text=True).stdout


def _finish(proc, timeout=40) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        kill_session(proc)


def test_both_scripts_parse():
    for name in ("slurm.sbatch", "slurm-one-node.sh"):
        subprocess.run(["bash", "-n", str(CLUSTER / name)], check=True)
    text = SCRIPT.read_text()
    assert re.search(r"^#SBATCH --signal=B:TERM@\d+", text, re.M)  # the time limit warns the batch shell
    assert "0.0.0.0" not in text.replace('0.0.0.0|', "")  # only in the check that refuses it


@pytest.mark.parametrize("whole_group", [False, True], ids=["batch-shell", "every-process"])
def test_sigterm_reaches_the_launcher_ray_stops_and_the_resume_line_is_printed(fake, whole_group):
    """`scancel --batch --signal=TERM` signals the batch shell alone, which forwards it; a plain `scancel`
    signals every process of the job at once. Either way: exit 143, the launcher stopped by SIGTERM, no Ray
    process left, and the command that resumes."""
    env, log, tmp = fake
    proc = _start(env, tmp)
    try:
        _wait_for(log, "launcher-started")
        (os.killpg if whole_group else os.kill)(proc.pid, signal.SIGTERM)
        out = _finish(proc)
    finally:
        kill_session(proc)
    calls = log.read_text()
    assert proc.returncode == 143, out + calls
    assert "launcher-got-TERM" in calls and "head-up" in calls  # the head's Ray outlived the launcher's stop
    assert _left(tmp) == ""
    head = next(line for line in calls.splitlines() if line.startswith("ray start --head"))
    assert "--dashboard-host=127.0.0.1" in head and "--node-ip-address=127.0.0.1" in head  # one node: loopback
    # ... which Ray honours only in its single-machine mode (else its servers listen on every address)
    assert "ray-env single-machine=0" in calls and "launcher-env single-machine=0" in calls
    assert "--include-dashboard=true" in head and "--block" in head
    assert "--num-cpus=3" in head and "--num-gpus=2" in head  # from SLURM_CPUS_ON_NODE, CUDA_VISIBLE_DEVICES
    # the token reaches the launcher in its environment, never on a command line; RAY_ADDRESS is not inherited
    assert "auth=token token=fake-token address=\n" in calls
    assert "fake-token" not in "".join(line for line in calls.splitlines() if line.startswith(("ray ", "python ")))
    launch = next(line for line in calls.splitlines() if line.startswith("python "))
    assert "-m search.launch spaces/smoke.yaml --address 127.0.0.1:" in launch
    assert f"--storage {tmp / 'experiments'} --name slurm-4242" in launch and "--resume" not in launch
    resume = [line for line in out.splitlines() if "sbatch" in line and "MTL_NAME=slurm-4242" in line]
    assert resume and "spaces/smoke.yaml --set train.epochs=1" in resume[0], out


def test_an_existing_experiment_is_resumed_and_a_finished_launch_exits_0(fake):
    env, log, tmp = fake
    (tmp / "experiments" / "again").mkdir(parents=True)
    (tmp / "experiments" / "again" / "launch_state.json").write_text("{}")
    proc = _start(env, tmp, MTL_NAME="again", FAKE_LAUNCH_EXIT="0")
    out = _finish(proc)
    assert proc.returncode == 0, out + log.read_text()
    launch = next(line for line in log.read_text().splitlines() if line.startswith("python "))
    assert "--name again" in launch and "--resume" in launch
    assert "resume it" not in out and "Ray stopped" in out
    assert _left(tmp) == ""


def test_a_failed_launch_keeps_its_exit_code_and_says_how_to_resume(fake):
    env, log, tmp = fake
    proc = _start(env, tmp, FAKE_LAUNCH_EXIT="1")
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "MTL_NAME=slurm-4242" in out and _left(tmp) == ""


def test_the_head_address_must_be_a_private_one(fake):
    env, log, tmp = fake
    proc = _start(env, tmp, SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="vm", MTL_RAY_HEAD_IP="0.0.0.0")
    out = _finish(proc)
    assert proc.returncode == 2 and out.startswith("error: MTL_RAY_HEAD_IP") and "Traceback" not in out
    assert "ray start" not in log.read_text()


def test_two_nodes_a_worker_through_srun_on_the_heads_private_address(fake):
    env, log, tmp = fake
    proc = _start(env, tmp, SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="node[1-2]", SLURM_CPUS_PER_TASK="3",
                  MTL_RAY_HEAD_IP="10.1.2.3", MTL_RAY_PORT="20100", FAKE_NODES="2")
    try:
        _wait_for(log, "launcher-started")
        os.kill(proc.pid, signal.SIGTERM)
        out = _finish(proc)
    finally:
        kill_session(proc)
    calls = log.read_text()
    assert proc.returncode == 143 and _left(tmp) == "", out + calls
    lines = calls.splitlines()
    head = next(line for line in lines if line.startswith("ray start --head"))
    assert "--dashboard-host=10.1.2.3" in head and "--node-ip-address=10.1.2.3" in head
    srun = next(line for line in lines if line.startswith("srun "))
    for arg in ("--overlap", "--nodes=1", "--ntasks=1", "--exclude=node1", "--cpus-per-task=3"):
        assert arg in srun.split(), srun
    worker = next(line for line in lines if line.startswith("ray start --address=10.1.2.3:20100"))
    assert "--num-cpus=3" in worker and "--block" in worker
    assert "ray-env single-machine=\n" in calls and "single-machine=0" not in calls  # a real cluster
    assert "--address 10.1.2.3:20100" in next(line for line in lines if line.startswith("python "))
