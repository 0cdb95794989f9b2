"""The leaderboard of a multi-objective search: ranked by front, then crowding; a `front` column."""
import math
from types import SimpleNamespace

import pandas as pd

from search.analysis.results import collect, leaderboard, with_fronts

OBJECTIVES = ("val/gory/f1", "val/sarcasm/f1")


def _trials():
    return pd.DataFrame({
        "trial_id": ["dominated", "edge_a", "failed", "middle", "edge_b", "diverged"],
        "status": ["finished", "stopped", "failed", "finished", "finished", "finished"],
        "epochs": [4, 1, 0, 4, 4, 4],
        "val/gory/f1": [0.5, 0.9, 0.99, 0.7, 0.4, math.nan],
        "val/sarcasm/f1": [0.5, 0.3, 0.99, 0.7, 0.95, 0.9],
        "val/avg_f1": [0.55, 0.6, 0.9, 0.7, 0.65, math.nan],
    })


def test_fronts_then_crowding_then_the_metric():
    board = leaderboard(with_fronts(_trials(), OBJECTIVES), "val/avg_f1", "max")
    # front 0: edge_a, middle, edge_b (the two ends first, by the metric; middle has a finite crowding);
    # then the dominated trial, the diverged one; the failed trial last whatever its values
    assert board["trial_id"].tolist() == ["edge_b", "edge_a", "middle", "dominated", "diverged", "failed"]
    assert board["front"].tolist() == [0, 0, 0, 1, 2, 2]
    assert board["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert list(board.columns[:7]) == ["rank", "trial_id", "status", "epochs", "front", "crowding", "val/avg_f1"]


def test_a_minimised_objective_is_turned_around():
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["finished"] * 2,
                           "val/gory/f1": [0.5, 0.5], "val/gory/loss": [0.2, 0.3]})
    assert with_fronts(trials, ("val/gory/f1", "val/gory/loss"))["front"].tolist() == [0, 1]


def test_a_single_metric_search_keeps_its_leaderboard():
    board = leaderboard(with_fronts(_trials(), ()), "val/avg_f1", "max")
    assert "front" not in board and board["trial_id"].tolist()[:2] == ["middle", "edge_b"]


def test_collect_reads_the_objectives_from_the_trials_settings():
    history = pd.DataFrame({"training_iteration": [1, 2], "epoch": [0, 1], "val/avg_f1": [0.4, 0.6],
                            "val/gory/f1": [0.3, 0.5], "val/sarcasm/f1": [0.5, 0.7], "time_total_s": [1.0, 2.0]})

    def result(tid, shift):
        return SimpleNamespace(metrics={"trial_id": tid}, config={"settings": {"objectives": list(OBJECTIVES)},
                                                                   "trial": {"overrides": {}}},
                               metrics_dataframe=history.assign(**{o: history[o] + shift for o in OBJECTIVES}), checkpoint=None, error=None, path=f"trial_{tid}")

    _, trials = collect([result("a", 0.0), result("b", 0.1)], "val/avg_f1", "max", max_t=2)
    assert trials.set_index("trial_id")["front"].to_dict() == {"a": 1, "b": 0}
