"""A real Ray cluster on this host (cluster/local.sh): joining it with token authentication and no
environment variable, one-line refusals, and a worker node dying mid-sweep while every trial still
completes from its checkpoint on the surviving node."""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _local_cluster(workers: int, **extra_env):
    # a short folder: Ray's unix socket paths live below it and must stay under 108 characters
    state = tempfile.mkdtemp(prefix="mtlc-", dir="/tmp")
    env = {**os.environ, "MTL_LOCAL_CLUSTER": state, "RAY_PORT": str(_free_port()), "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **extra_env}
    script = str(ROOT / "cluster" / "local.sh")
    try:
        up = subprocess.run([script, "up", str(workers)], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:  # stop exactly what the fixture started, even when the test failed
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def two_nodes():
    with _local_cluster(1) as env:
        yield env


@pytest.fixture(scope="module")
def head_only():
    with _local_cluster(0) as env:
        yield env


def _launch(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_joins_a_token_cluster_with_auto_and_no_environment_variable(head_only, tmp_path):
    env = {k: v for k, v in head_only.items() if k != "RAY_AUTH_MODE"}
    proc = _launch(["--address", "auto", "--storage", str(tmp_path / "exp"), "--name", "joined",
                    "--num-samples", "1", "--set", "search.final_k=0", "--set", "train.epochs=1",
                    "--set", "search.grace_period=1"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "exp" / "joined" / "leaderboard.csv").is_file()


@pytest.mark.parametrize("case", ["wrong token", "no token", "nothing listening"])
def test_a_cluster_that_cannot_be_joined_is_one_line_and_exit_2(head_only, tmp_path, case):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    if case == "wrong token":
        (home / ".ray" / "auth_token").write_text("0" * 64 + "\n")
    env = {**{k: v for k, v in head_only.items() if k != "RAY_AUTH_MODE"}, "HOME": str(home)}
    address = "127.0.0.1:" + (str(_free_port()) if case == "nothing listening" else head_only["RAY_PORT"])
    start = time.monotonic()
    proc = _launch(["--address", address, "--storage", str(tmp_path / "exp")], env, tmp_path, timeout=60)
    took = time.monotonic() - start
    expected = {"wrong token": "the cluster refused the token", "no token": "this machine has no token",
                "nothing listening": "nothing is listening there"}[case]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and expected in proc.stderr
    assert proc.stderr.startswith(f"error: --address {address}: ") and "Traceback" not in proc.stdout
    assert took < 15, took
    assert not (tmp_path / "exp").exists()  # nothing started, nothing written
    probes = subprocess.run(["pgrep", "-f", "ray.init\\(address=sys.argv"], capture_output=True, text=True)
    assert probes.stdout.strip() == ""  # the probe child is gone


def _worker_raylet(state: str) -> int:
    out = subprocess.run(["pgrep", "-f", "raylet.*node_worker1"], capture_output=True, text=True).stdout.split()
    return int(out[0])


def test_sweep_survives_a_worker_node_dying(two_nodes, tmp_path):
    env = two_nodes
    address = f"127.0.0.1:{env['RAY_PORT']}"
    cmd = [sys.executable, "-u", "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), "--address", address,
           "--storage", str(tmp_path), "--name", "nodes", "--num-samples", "6", "--set", "search.final_k=0",
           "--set", "search.max_failures=3", "--set", "train.epochs=3", "--set", "search.grace_period=3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines, killed = [], False
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if not killed and "best val/avg_f1" in line:  # trials are running and checkpointing
                os.kill(_worker_raylet(env["MTL_LOCAL_CLUSTER"]), signal.SIGKILL)
                killed = True
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(lines)
    assert killed, out
    assert proc.returncode == 0, out[-4000:]
    exp = tmp_path / "nodes"
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 6 and (trials["status"] != "failed").all()
    history = pd.read_parquet(exp / "history.parquet")
    assert history.groupby("trial_id")["epoch"].apply(lambda e: sorted(e) == list(range(len(e)))).all()
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nodes").experiment_id])
    children = [r for r in runs if r.data.tags.get("phase") == "search"]
    assert len(children) == 6 and len({r.data.tags["tune_trial_id"] for r in children}) == 6
    for run in children:  # every epoch of every trial reached MLflow, the retried one's included
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "val/avg_f1")}
        assert steps == {0, 1, 2}, run.data.tags["tune_trial_id"]


def test_half_gpu_trials_pack_two_per_gpu_never_three(tmp_path):
    """One node with 4 CPUs and 1 (fake) GPU, trials asking for half a GPU and one CPU, 4 allowed at once
    by the searcher: the GPU is what limits them, so exactly two run at a time; each records its GPU."""
    with _local_cluster(0, MTL_NODE_CPUS="4", MTL_NODE_GPUS="1", MTL_ALLOW_FAKE_GPUS="1") as env:
        proc = _launch(["--address", "auto", "--storage", str(tmp_path), "--name", "gpus", "--num-samples", "4",
                        "--max-concurrent", "4", "--set", "search.resources_per_trial.gpu=0.5",
                        "--set", "search.final_k=0", "--set", "train.epochs=2", "--set", "search.grace_period=2"],
                       env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    running = [int(m) for m in re.findall(r"\] (\d+) running", proc.stdout)]
    assert max(running) == 2, running
    trials = pd.read_parquet(tmp_path / "gpus" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    assert set(trials["gpu_ids"]) == {"0"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'gpus' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gpus").experiment_id])
    assert {r.data.tags.get("gpu_ids") for r in runs if r.data.tags.get("phase") == "search"} == {"0"}
