"""A multi-objective sweep end to end (Optuna multi-objective TPE + MO-ASHA): killed outright mid-way,
resumed, finished with every trial once; the front reaches the leaderboard, Optuna and MLflow."""
import os
import signal
import subprocess
import sys

import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from test_sweep import SMOKE, _child_runs, _finish, _stop_when

pytestmark = [pytest.mark.slow, pytest.mark.ray]
TASKS = ["binary", "mature", "gory", "slapstick", "sarcasm"]


def _space(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    del data["search"]["metric"]  # the metric stays the default (val/avg_f1); the objectives replace it
    data["search"].update(objectives="tasks", num_samples=4, final_k=0)
    data["train"]["epochs"] = 3
    path = tmp_path / "mo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _launch(space, *args):
    return subprocess.Popen([sys.executable, "-u", "-m", "search.launch", str(space), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_killed_multi_objective_sweep_resumes_with_each_trial_once(tmp_path):
    space, exp = _space(tmp_path), tmp_path / "store" / "mo"
    args = ["--storage", str(tmp_path / "store"), "--name", "mo"]
    proc = _launch(space, *args)
    _stop_when(proc, 1, lambda: os.killpg(proc.pid, signal.SIGKILL))  # no clean-up at all
    assert proc.returncode == -signal.SIGKILL
    rc, out = _finish(_launch(space, *args, "--resume"))
    assert rc == 0, out

    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique and (trials["status"] != "failed").all()
    board = pd.read_csv(exp / "leaderboard.csv")
    assert board["front"].is_monotonic_increasing and board["front"].iloc[0] == 0
    assert (board["pareto"] == (board["front"] == 0)).all()  # objectives = tasks: the same front as `pareto`
    client, children, parents = _child_runs(exp)
    kept = [r for r in children if r.data.tags.get("orphaned") != "true"]
    assert sorted(r.data.tags["tune_trial_id"] for r in kept) == sorted(trials["trial_id"])
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["sweep.kind"] == "optuna-tpe+mo-asha"  # what proposed and stopped the trials
    fronts = board.set_index("trial_id")["front"]
    assert {r.data.tags["tune_trial_id"]: int(r.data.tags["front_rank"]) for r in kept} == fronts.to_dict()
    stopped = {r.data.tags["tune_trial_id"] for r in kept if r.info.status == "KILLED"}
    assert stopped == set(trials.loc[trials["status"] == "stopped", "trial_id"])

    # the hypervolume against the epochs spent: one value per epoch reported, never decreasing
    trace = client.get_metric_history(parents[0].info.run_id, "search/hypervolume")
    values = [m.value for m in sorted(trace, key=lambda m: m.step)]
    assert values and all(b >= a for a, b in zip(values, values[1:]))
    assert max(m.step for m in trace) >= trials["epochs"].sum()  # epochs a killed run lost are counted again

    study = optuna.load_study(study_name="mo", storage=JournalStorage(JournalFileBackend(str(exp / "optuna.journal"))))
    assert len(study.directions) == len(TASKS)
    assert study.metric_names == [f"val/{t}/f1" for t in TASKS]  # Optuna Dashboard names the front's axes
    labels = {r.data.tags["tune_trial_id"]: r.data.tags["label"] for r in kept}
    for t in study.trials:  # each trial as MLflow names it (the killed launcher's are in the journal too)
        assert {"label", "partition", "role", "phase", "tune_trial_id"} <= set(t.user_attrs)
        assert labels.get(t.user_attrs["tune_trial_id"], t.user_attrs["label"]) == t.user_attrs["label"]
    finished = [t for t in study.trials if t.state.is_finished()]
    pruned = {t.number for t in finished if t.state == optuna.trial.TrialState.PRUNED}
    assert len(finished) >= 4 and len(pruned) >= len(stopped)  # Optuna heard of every trial MO-ASHA stopped
    assert all(len(t.values) == len(TASKS) for t in finished if t.state == optuna.trial.TrialState.COMPLETE)
