"""End-to-end sweeps on a local Ray started and stopped by the launcher (in a subprocess)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from launcher_output import act_when, finish as _finish

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _launch(*args, cwd=None):
    return subprocess.Popen([sys.executable, "-u", "-m", "search.launch", str(SMOKE), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _child_runs(exp_dir: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{exp_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(exp_dir.name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return client, [r for r in runs if r.data.tags.get("phase") == "search"], \
        [r for r in runs if "phase" not in r.data.tags]


def test_smoke_sweep_end_to_end(tmp_path):
    workdir = tmp_path / "cwd"  # launched from an empty folder, results stored elsewhere
    workdir.mkdir()
    rc, out = _finish(_launch("--storage", str(tmp_path / "store"), "--name", "smoke",
                              "--set", "search.final_k=1", "--set", "search.final_seeds=3", "--set", "train.epochs=3",
                              "--set", "search.final_max_seeds=3", "--set", "search.baselines=[equal_sum, single_task]",
                              "--set", "search.register_model=smoke-best", cwd=workdir))
    assert rc == 0, out
    assert list(workdir.iterdir()) == []  # nothing written where the launcher ran
    exp = tmp_path / "store" / "smoke"
    # the trials' local runs are gone: not copied into the trial folders (Ray copied the first trial's on each
    # worker, 34 files, before they moved out of its trial folder), nor left in the scratch folder
    from search.space.trial import scratch_dir, scratch_key
    assert list(exp.glob("*/trial_*/run")) == [] and not scratch_dir(scratch_key(exp)).exists()
    client, children, parents = _child_runs(exp)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment.artifact_location == (exp / "mlartifacts").as_uri()  # artifacts live with the experiment
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {"leaderboard.csv", "space.yaml"}
    assert (exp / "mlartifacts" / parents[0].info.run_id / "artifacts" / "leaderboard.csv").is_file()
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 8
    statuses = {r.info.status for r in children}
    assert "KILLED" in statuses  # ASHA stopped at least one trial early
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.params["strategy.combiner.name"] in {"equal", "uncertainty", "gradnorm", "pcgrad"}
        history = client.get_metric_history(run.info.run_id, "val/avg_f1")
        epochs = int(run.data.tags["epochs_run"])
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))  # step = epochs trained
        assert ("strategy.combiner.alpha" in run.data.params) == (run.data.params["strategy.combiner.name"] == "gradnorm")
    full_board = pd.read_csv(exp / "leaderboard.csv")
    board = full_board[full_board["role"] != "baseline"]
    assert len(board) == 8 and board["rank"].tolist() == list(range(1, 9))
    assert (board["val/avg_f1"].diff().dropna() <= 1e-12).all()  # sorted best first
    assert board["pareto"].any() and board.loc[0, "pareto"]  # the best trial is on the front by definition
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    assert set(history["trial_id"]) == set(trials["trial_id"])
    for folder in [*(exp / "search").glob("trial_*"), *(exp / "final").glob("trial_*")]:  # one per trial, not per epoch
        assert len(list(folder.glob("checkpoint_*"))) == 1, folder
    assert history.groupby("trial_id")["epoch"].count().max() == 3  # the history still has every epoch
    assert (trials["status"] == "stopped").any()
    for png in ("by_scheduler", "by_combiner", "learning_curves", "task_f1_heatmap", "param_importances", "pareto"):
        assert (exp / "report" / f"{png}.png").stat().st_size > 1000
    summary = (exp / "report" / "summary.md").read_text()
    assert "Sweep report" in summary
    # per-axis comparisons rung by rung (smoke: grace 1, reduction factor 2, 3 epochs -> rungs 1, 2, 3)
    assert "## Strategy axes, rung by rung" in summary
    assert "### scheduler" in summary and "### combiner" in summary
    assert "At epoch 1:" in summary and "At epoch 2:" in summary
    # the bag-of-words floor beside the neural results: file, summary, parent-run metric
    floor = json.loads((exp / "bow_floor.json").read_text())
    assert 0 <= floor["test/avg_f1"] <= 1 and "## Bag-of-words floor" in summary and "the floor" in summary
    assert "floor/bow/test/avg_f1" in client.get_run(parents[0].info.run_id).data.metrics
    assert "ASHA" in out and "rank" in out  # compute saved and the leaderboard were printed
    assert "?workflowType=machine_learning" in out  # the UI link opens on the runs
    for noise in ("Configuration for experiment", "TensorBoard", "Token authentication", "ExperimentalWarning",
                  "Creating initial MLflow database tables"):  # other libraries' chatter: in the log file only
        assert noise not in out, noise
    log = (exp / "launch.log").read_text()  # the store was copied (search.tracking.store): MLflow made no tables
    assert "Token authentication" in log and "ExperimentalWarning" in log
    # the best configuration and two baselines were retrained with 3 seeds each (not the search's seed 0)
    top = board.iloc[0]
    assert top["role"] == "final" and top["final/name"] == top["label"]  # named by its configuration
    assert 0 <= top["final/test/avg_f1/mean"] <= 1 and top["final/test/avg_f1/std"] >= 0
    assert {"final/test/gory/f1/mean", "final/test/gory/f1/std", "final/delta_m", "final/dominated_by"} <= set(board.columns)
    baselines = full_board[full_board["role"] == "baseline"].set_index("final/name")
    assert set(baselines.index) == {"equal_sum", "single_task"}
    assert baselines.loc["single_task", "final/delta_m"] == 0  # Δm% is measured against it
    assert (baselines["final/seeds"] == 3).all()
    all_runs = client.search_runs([parents[0].info.experiment_id], max_results=1000)
    final_runs = [r for r in all_runs if r.data.tags.get("phase") == "final"]
    assert len(final_runs) == 9 and all(r.info.status == "FINISHED" for r in final_runs)
    assert all("test/avg_f1" in r.data.metrics for r in final_runs)
    assert sorted(r.data.tags["role"] for r in final_runs) == ["baseline"] * 6 + ["final"] * 3
    assert {r.data.tags["name"] for r in final_runs if r.data.tags["role"] == "baseline"} == {"equal_sum", "single_task"}
    assert sorted({int(r.data.tags["seed"]) for r in final_runs}) == [1, 2, 3]  # disjoint from the search's seed 0
    runs = pd.read_parquet(exp / "final_runs.parquet")
    from search.analysis.stats import macro_f1
    for _, r in runs.iterrows():  # every run's per-clip test predictions came back, and give its reported F1
        assert len(r["pred/gory"]) == len(r["label/gory"]) > 0
        assert macro_f1(r["pred/gory"][:, None], r["label/gory"][:, None])[0] == pytest.approx(r["test/gory/f1"])
    assert all(r.data.tags["role"] == "search" for r in children)
    assert not any(k.startswith("_") for r in all_runs for k in r.data.params)  # bookkeeping is never a parameter
    single = next(r for r in final_runs if r.data.tags["name"] == "single_task")
    assert json.loads(single.data.params["groups"]) == [[t] for t in ("binary", "mature", "gory", "slapstick", "sarcasm")]
    # the answer: the best configuration against equal sum over the same seeds, in one sentence
    assert "## Which configuration is best, and by how much" in summary
    decision = pd.read_csv(exp / "decision.csv")
    assert set(decision["other"]) == {"equal_sum", "single_task"} and (decision["seeds"] == 3).all()
    for sentence in decision["sentence"]:
        assert sentence in summary
    # the console's last lines: the best by name, what it beats and what it does not, where the rest is
    assert f"answer: the best configuration is {top['label']}: test macro-F1" in out
    for other in ("equal_sum", "single_task"):
        assert re.search(rf"\n  (beats|does not beat|is equivalent to) {other} \(", out), out
    assert "details: " in out and "summary.md" in out and "total time: " in out
    assert re.search(r"MLflow: http://\S+/runs/\w+\?workflowType=machine_learning", out), out
    parent = client.get_run(parents[0].info.run_id)
    assert "verdict/equal_sum/diff" in parent.data.metrics
    note = parent.data.tags["mlflow.note.content"]  # the run's description: the same answer, as a table
    assert f"answer: the best configuration is {top['label']}" in note and "| equal_sum | baseline |" in note
    assert decision["sentence"].iloc[0] in note
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="smoke", storage=JournalStorage(JournalFileBackend(str(exp / "optuna.journal"))))
    states = [t.state.name for t in study.trials]
    assert len(states) == 8 and "PRUNED" in states and "COMPLETE" in states
    # what Optuna Dashboard shows: the objective by its name, each trial by MLflow's label and tags
    assert study.metric_names == ["val/avg_f1"]
    labels = {r.data.tags["tune_trial_id"]: r.data.tags["label"] for r in children}
    assert {t.user_attrs["tune_trial_id"]: t.user_attrs["label"] for t in study.trials} == labels
    assert all(t.user_attrs["role"] == "search" and t.user_attrs["partition"] for t in study.trials)
    # the data folder is every run's dataset input, with one digest
    inputs = [client.get_run(r.info.run_id).inputs.dataset_inputs for r in [parent, *children, *final_runs]]
    assert all(inputs) and len({i.dataset.digest for run in inputs for i in run}) == 1
    _check_winner_model(exp, client, parent, runs, top["label"])


def _check_winner_model(exp, client, parent, runs, best):
    """The best configuration's model: logged in the parent run, registered, and loaded with MLflow alone it gives
    the test predictions of the best's lowest-seed final run."""
    import mlflow
    import torch
    import yaml

    from mtl_core.config import build_config
    from mtl_core.prepare import prepare
    from search.tracking.model_export import clip_inputs
    from search.space.settings import RUN_SECTIONS

    (model_id,) = [m.model_id for m in parent.outputs.model_outputs]
    assert (exp / "winner_model" / "MLmodel").is_file()
    raw = yaml.safe_load((exp / "space.yaml").read_text())
    test = prepare(build_config({k: raw[k] for k in RUN_SECTIONS if k in raw}), torch.device("cpu"),
                   splits=("test",)).splits["test"]
    first = runs[(runs["name"] == best) & (runs["role"] == "final")].sort_values("seed").iloc[0]
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        got = mlflow.pyfunc.load_model("models:/smoke-best/1").predict(clip_inputs(test))
        assert client.get_model_version("smoke-best", "1").source == f"models:/{model_id}"
    finally:
        mlflow.set_tracking_uri(None)
    for t in ("binary", "mature", "gory", "slapstick", "sarcasm"):
        assert got[f"pred/{t}"].tolist() == list(first[f"pred/{t}"]), t


def _ended(line: str) -> int:
    """How many trials a progress line counts as ended (finished or stopped early)."""
    m = re.search(r"(\d+) finished, (\d+) stopped early", line)
    return int(m.group(1)) + int(m.group(2)) if m else 0


def _stop_when(proc, ended: int, stop) -> str:
    """Read the launcher's output until `ended` trials have ended, then call `stop`; the whole output."""
    return act_when(proc, lambda line: _ended(line) >= ended, stop)


def _ray_pids(launcher: int) -> set[int]:
    """The raylet and GCS of the Ray that the launcher with this pid started (Ray names its session folder
    `session_<time>_<pid of the starting process>`), whatever other Rays run on the machine."""
    pattern = rf"ray/core/src/ray/(raylet|gcs).*session_[0-9_-]+_{launcher}( |/|$)"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_sigterm_stops_like_ctrl_c(tmp_path):
    """SIGTERM (Slurm, Kubernetes, `ray job stop`, `timeout`): trials stop at their checkpoints, the parent
    run is KILLED, one line says how to resume, exit 143; from there on it is the Ctrl-C case below."""
    proc = _launch("--storage", str(tmp_path), "--name", "term", "--set", "train.epochs=3", "--num-samples", "5")
    out = _stop_when(proc, 1, lambda: proc.send_signal(signal.SIGTERM))  # one trial ended, others running
    assert proc.returncode == 143, out
    assert "--resume" in out and "stopped by SIGTERM" in out
    assert "SIGTERM received" not in out and "Traceback" not in out and len(out.splitlines()) < 60, out
    _, _, parents = _child_runs(tmp_path / "term")
    assert parents[0].info.status == "KILLED"


def test_interrupted_then_killed_sweep_resumes_counting_each_trial_once(tmp_path):
    """Ctrl-C: trials stop at their checkpoints, the parent run is KILLED, one line says how to resume.
    The resumed launcher is then killed outright (SIGKILL: no clean-up at all), its Ray must not outlive
    it, and a second resume ends the sweep with every trial once, none lost, none repeated."""
    args = ["--storage", str(tmp_path), "--name", "resumable", "--set", "train.epochs=3", "--set", "search.final_k=0",
            "--num-samples", "5"]
    exp = tmp_path / "resumable"
    proc = _launch(*args)
    out = _stop_when(proc, 2, lambda: proc.send_signal(signal.SIGINT))
    assert proc.returncode == 130, out
    assert "--resume" in out
    assert "Traceback" not in out and len(out.splitlines()) < 60, out
    _, _, parents = _child_runs(exp)
    assert parents[0].info.status == "KILLED"

    proc = _launch(*args, "--resume")
    ray_of_it = set()

    def kill():  # the launcher and its session at once, with at least one trial left (Progress counts survive a resume)
        ray_of_it.update(_ray_pids(proc.pid))
        os.killpg(proc.pid, signal.SIGKILL)
    _stop_when(proc, 4, kill)
    assert proc.returncode == -signal.SIGKILL and ray_of_it  # it had a Ray of its own running
    deadline = time.monotonic() + 60  # which must not outlive it
    while _ray_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _ray_pids(proc.pid)

    rc, out = _finish(_launch(*args, "--resume"))
    assert rc == 0, out
    _, children, parents = _child_runs(exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 5 and (trials["status"] != "failed").all()
    # one child run per trial of the experiment; a trial the kill lost before Tune saved it is closed
    kept = [r for r in children if r.data.tags.get("orphaned") != "true"]
    assert sorted(r.data.tags["tune_trial_id"] for r in kept) == sorted(trials["trial_id"])
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children)


def test_failing_trials_are_marked_failed_with_their_reason(tmp_path):
    # lr 1e30 makes the first AdamW step blow the weights up: the trainer raises TrainingDiverged. A divergence
    # repeats from the same checkpoint, so it is not retried (max_failures stays at its default, 2), and the
    # console gets one line per failed trial, not a traceback per attempt.
    rc, out = _finish(_launch("--storage", str(tmp_path), "--name", "nan", "--num-samples", "2",
                              "--set", "space.train.lr=1.0e+30", "--set", "search.final_k=0"))
    assert rc == 1, out  # every trial failed: the sweep failed
    assert "Traceback" not in out and "retrying" not in out, out
    failed = re.findall(r"trial (\d+) .+? failed: (?:mtl_core\.train\.)?TrainingDiverged: epoch 0 step \d+: the loss of task", out)
    assert len(set(failed)) == 2 and len(failed) == 4, out  # once as it failed, once under the leaderboard
    for error_file in (tmp_path / "nan" / "search").glob("trial_*/error.txt"):
        assert "Failure # 2" not in error_file.read_text()  # failed once, not retried
    exp = tmp_path / "nan"
    _, children, parents = _child_runs(exp)
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FAILED"
        assert "TrainingDiverged" in run.data.tags["error"] and "is not finite" in run.data.tags["error"]
    board = pd.read_csv(exp / "leaderboard.csv")
    assert (board["status"] == "failed").all() and board["error"].str.contains("not finite").all()
    assert "failed: " in out
