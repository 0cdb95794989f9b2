"""Real Ray clusters on this host (cluster/local.sh), one at a time: a worker node dies mid-sweep and every
trial still completes from its checkpoint on the surviving node; a token cluster joined with
`--address auto` and no environment variable packs half-GPU trials two per GPU."""
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
from mlflow import MlflowClient

from cluster_helpers import ROOT, local_cluster
from launcher_output import act_when

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture
def two_nodes():
    with local_cluster(1) as env:
        yield env


def _worker_raylet(state: str) -> int:
    out = subprocess.run(["pgrep", "-f", "raylet.*node_worker1"], capture_output=True, text=True).stdout.split()
    return int(out[0])


def test_sweep_survives_a_worker_node_dying(two_nodes, tmp_path):
    # Until Ray declares the node dead, a retry can land on it again (or on a cached actor there) and
    # fail at once: a handful of retries covers that window.
    env = two_nodes
    address = f"127.0.0.1:{env['RAY_PORT']}"
    cmd = [sys.executable, "-u", "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), "--address", address,
           "--storage", str(tmp_path), "--name", "nodes", "--num-samples", "4", "--set", "search.final_k=0",
           "--set", "search.max_failures=6", "--set", "train.epochs=3", "--set", "search.grace_period=3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    killed = []

    def kill_worker_node():  # trials are running and checkpointing
        os.kill(_worker_raylet(env["MTL_LOCAL_CLUSTER"]), signal.SIGKILL)
        killed.append(True)

    out = act_when(proc, lambda line: "best val/avg_f1" in line, kill_worker_node, timeout=600)
    assert killed, out
    assert proc.returncode == 0, out[-4000:]
    exp = tmp_path / "nodes"
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] != "failed").all()
    history = pd.read_parquet(exp / "history.parquet")
    assert history.groupby("trial_id")["epoch"].apply(lambda e: sorted(e) == list(range(len(e)))).all()
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nodes").experiment_id])
    children = [r for r in runs if r.data.tags.get("phase") == "search"]
    assert len(children) == 4 and len({r.data.tags["tune_trial_id"] for r in children}) == 4
    for run in children:  # every epoch of every trial reached MLflow, the retried one's included
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "val/avg_f1")}
        assert steps == {1, 2, 3}, run.data.tags["tune_trial_id"]


def _launch(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_joined_with_auto_half_gpu_trials_pack_two_per_gpu_never_three(tmp_path):
    """A token-authenticated cluster joined with `--address auto` and no RAY_AUTH_MODE in the launcher's
    environment. Its one node has 4 CPUs and 1 (fake) GPU; trials ask for half a GPU and one CPU, 4
    allowed at once by the searcher: the GPU limits them, so exactly two run at a time; each records its GPU."""
    with local_cluster(0, MTL_NODE_CPUS="4", MTL_NODE_GPUS="1", MTL_ALLOW_FAKE_GPUS="1") as env:
        env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        proc = _launch(["--address", "auto", "--storage", str(tmp_path), "--name", "gpus", "--num-samples", "4",
                        "--max-concurrent", "4", "--set", "search.resources_per_trial.gpu=0.5",
                        "--set", "search.final_k=0", "--set", "train.epochs=1", "--set", "search.grace_period=1"],
                       env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    running = [int(m) for m in re.findall(r", (\d+) running", proc.stdout)]  # the progress lines
    assert max(running) == 2, running
    assert "joined the Ray cluster at " in proc.stdout and "1 node(s), 4 CPUs, 1 GPUs" in proc.stdout  # which one
    trials = pd.read_parquet(tmp_path / "gpus" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    assert set(trials["gpu_ids"]) == {"0"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'gpus' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gpus").experiment_id])
    assert {r.data.tags.get("gpu_ids") for r in runs if r.data.tags.get("phase") == "search"} == {"0"}

