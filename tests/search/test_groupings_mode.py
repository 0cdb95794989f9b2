import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mtl_core import TASKS
from mtl_core.grouping import subsets
from search.analysis.groupings import group_trials, score_table, summarise


def test_group_trials_cover_every_group_once_per_configuration():
    configs = [{"train.lr": 0.01, "groups": [["binary"]]}, {"train.lr": 0.01}, {"train.lr": 0.02}]
    trials = group_trials(configs, TASKS)
    assert len(trials) == 2 * 31  # the repeated configuration is trained once
    keys = {(i, tuple(t["tasks"])) for i, t in trials}
    assert len(keys) == 62
    assert all(t["groups"] is None and not any(k.startswith("_") for k in t) for _, t in trials)


def test_scores_and_selection_from_group_results():
    rows = []
    for g in subsets(TASKS):
        row = {"config": 0, "group": "+".join(g)}
        for t in g:  # single-task models score 0.5; sarcasm does best alone (0.9)
            row[f"val/{t}/f1"] = 0.5 if len(g) == 1 else 0.6
        if g == ("sarcasm",):
            row["val/sarcasm/f1"] = 0.9
        rows.append(row)
    parts, picks = summarise(score_table(pd.DataFrame(rows), TASKS), TASKS)
    assert parts.iloc[0]["partition"] == "binary+mature+gory+slapstick|sarcasm"
    assert parts.iloc[0]["val/avg_f1"] == pytest.approx((4 * 0.6 + 0.9) / 5)
    assert picks.set_index("budget").loc[1, "groups"] == "+".join(TASKS)
    assert picks.set_index("budget").loc[2, "val/avg_f1"] == pytest.approx((4 * 0.6 + 0.9) / 5)


@pytest.mark.slow
@pytest.mark.ray
def test_exhaustive_and_affinity_experiment(tmp_path, tiny_data):
    """grouping_mode both on three tasks: exactly 7 group models, the 5 partitions scored, then TAG's
    proposals trained (the five-task counts are checked without training above)."""
    tasks = ("binary", "mature", "gory")
    space = {
        "tasks": list(tasks),
        "data": {"root": str(tiny_data)},
        "model": {"text_encoder": "tiny", "rnn_units": 8, "attention_heads": 4, "head_dims": [8, 8, 4]},
        "train": {"epochs": 1, "batch_size": 16},
        "search": {"grouping_mode": "both", "num_samples": 1, "max_concurrent": 2, "final_k": 1, "final_seeds": 1,
                   "baselines": [], "axis_study": True},
        "space": {"strategy": {"combiner": {"choice": {"equal": {}, "rlw": {}}}}},
    }
    path = tmp_path / "ex.yaml"
    path.write_text(yaml.safe_dump(space))
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(path), "--storage", str(tmp_path),
                           "--name", "ex"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "ex"
    trials = pd.read_parquet(exp / "trials.parquet")
    groups = sorted(tuple(v.split("+")) for v in trials["config/tasks"])  # each group trial's tasks, by label
    assert groups == sorted(subsets(tasks))
    parts = pd.read_csv(exp / "groupings.csv")
    picks = pd.read_csv(exp / "selection.csv")
    assert len(parts) == 5 and list(picks["budget"]) == [1, 2, 3]
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ex").experiment_id], max_results=100)
    assert sum(r.data.tags.get("phase") == "group" for r in runs) == 7
    assert "best selection per budget" in proc.stdout
    # TAG: one all-task run measured the affinities, then one partition per number of groups was trained
    assert sum(r.data.tags.get("phase") == "affinity" for r in runs) == 1
    measured = next(r for r in runs if r.data.tags.get("phase") == "affinity")
    assert "affinity/mature/gory" in measured.data.metrics
    tag = pd.read_csv(exp / "affinity_groupings.csv")
    assert list(tag["groups"]) == [1, 2, 3] and (tag["error"].fillna("") == "").all()
    assert tag["exhaustive"].notna().all()  # beside the exhaustive score of the same partition
    assert sum(r.data.tags.get("phase") == "tag" for r in runs) == 3
    # the common finish step: the best proposal retrained on test, leaderboard, report, parent run closed
    final = [r for r in runs if r.data.tags.get("phase") == "final" and r.data.tags["role"] == "final"]
    assert len(final) == 1 and "test/avg_f1" in final[0].data.metrics
    # the axis study: the best with its combiner switched to the space's other option, effect against `equal`
    study = [r for r in runs if r.data.tags.get("role") == "axis"]
    other = {"equal": "rlw", "rlw": "equal"}[final[0].data.params["strategy.combiner.name"]]
    assert [r.data.tags["name"] for r in study] == [f"combiner={other}"]
    effects = pd.read_csv(exp / "axis_study.csv")
    assert sorted(effects["value"]) == ["equal", "rlw"] and (effects["axis"] == "combiner").all()
    assert "## Axis study" in (exp / "report" / "summary.md").read_text()
    board = pd.read_csv(exp / "leaderboard.csv")
    retrained = board.dropna(subset=["final/name"])
    assert len(retrained) == 1 and retrained["final/name"].iloc[0] == final[0].data.tags["label"]  # named by its label
    assert json.loads(final[0].data.params["groups"])  # a partition from the score or tag phase
    assert (exp / "report" / "summary.md").is_file()
    parent = [r for r in runs if "phase" not in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"


def test_every_grouping_mode_ends_in_the_final_phase():
    from search.run.phases import PHASES, final
    from search.space.settings import SearchSettings

    assert set(PHASES) == {"search", "exhaustive", "affinity", "both"}
    assert all(phases[-1] is final for phases in PHASES.values())
    assert SearchSettings().grouping_mode in PHASES
