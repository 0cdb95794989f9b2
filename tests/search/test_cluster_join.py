"""Joining a token-authenticated local cluster (cluster/local.sh) without environment variables, one-line
refusals, and GPU packing with fake GPUs. Each cluster here is the only one up while its tests run
(`--address auto` picks whichever cluster is running)."""
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

from cluster_helpers import ROOT, free_port, local_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head_only():
    with local_cluster(0) as env:
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
    address = "127.0.0.1:" + (str(free_port()) if case == "nothing listening" else head_only["RAY_PORT"])
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


def test_half_gpu_trials_pack_two_per_gpu_never_three(tmp_path):
    """One node with 4 CPUs and 1 (fake) GPU, trials asking for half a GPU and one CPU, 4 allowed at once
    by the searcher: the GPU is what limits them, so exactly two run at a time; each records its GPU."""
    with local_cluster(0, MTL_NODE_CPUS="4", MTL_NODE_GPUS="1", MTL_ALLOW_FAKE_GPUS="1") as env:
        proc = _launch(["--address", f"127.0.0.1:{env['RAY_PORT']}", "--storage", str(tmp_path), "--name", "gpus", "--num-samples", "4",
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

