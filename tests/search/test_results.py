"""search.analysis.results without Ray: Tune's results (stand-ins with the same attributes) become the history and
trials tables, the trial's status and best epoch follow the experiment's metric and mode, and the tables
survive Parquet whatever types their config columns mix."""
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from search.analysis.results import collect, compute_saved, write_parquet

from search.io.console import error_line


def _result(tid, losses, f1s, *, error=None, overrides=None):
    n = len(f1s)
    df = pd.DataFrame({"training_iteration": range(1, n + 1), "epoch": range(n), "val/avg_f1": f1s,
                       "val/avg_loss": losses, "time_total_s": [10.0 * (i + 1) for i in range(n)],
                       "train/loss": [1.0] * n, "hostname": ["node"] * n, "unrelated": [0] * n})
    return SimpleNamespace(metrics={"trial_id": tid}, config={"trial": {"overrides": overrides or {}}},
                           metrics_dataframe=df if n else None, checkpoint=None, error=error, path=f"/x/trial_{tid}")


def test_status_follows_the_epochs_run_and_the_error():
    results = [_result("full", [0.6, 0.5, 0.4], [0.4, 0.6, 0.5]), _result("cut", [0.7], [0.3]),
               _result("dead", [], [], error=RuntimeError("Traceback...\n  File x\nTrainingDiverged: epoch 0 step 3"))]
    history, trials = collect(results, "val/avg_f1", "max", max_t=3)
    t = trials.set_index("trial_id")
    assert t["status"].to_dict() == {"full": "finished", "cut": "stopped", "dead": "failed"}
    assert t.loc["dead", "error"] == "TrainingDiverged: epoch 0 step 3"  # the last line, not the traceback
    assert t["epochs"].to_dict() == {"full": 3, "cut": 1, "dead": 0}
    # one history row per trial and epoch, tracked metrics only
    assert sorted(history["trial_id"].value_counts().to_dict().items()) == [("cut", 1), ("full", 3)]
    assert "unrelated" not in history and "train/loss" in history


@pytest.mark.parametrize("metric, mode, epoch", [("val/avg_f1", "max", 1), ("val/avg_loss", "min", 2)])
def test_the_best_epoch_follows_the_metric_and_mode(metric, mode, epoch):
    _, trials = collect([_result("a", [0.6, 0.5, 0.4], [0.4, 0.6, 0.5])], metric, mode, max_t=3)
    row = trials.iloc[0]
    assert row["best_epoch"] == epoch + 1  # counted from 1, as MLflow's steps
    assert row["val/avg_f1"] == [0.4, 0.6, 0.5][epoch]  # the row's scores are that epoch's, not the last
    assert row["time_total_s"] == 30.0


def test_a_trial_with_only_nan_scores_keeps_its_last_epoch():
    _, trials = collect([_result("a", [0.6, 0.5], [math.nan, math.nan])], "val/avg_f1", "max", max_t=2)
    assert trials.iloc[0]["best_epoch"] == 2  # the last of two, counted from 1


def test_a_partition_is_kept_as_its_label_and_other_lists_as_json():
    overrides = {"groups": [["binary", "mature"], ["gory"]], "tasks": ["binary", "gory"], "model.head_dims": [64, 32],
                 "train.lr": 0.01}
    _, trials = collect([_result("a", [0.5], [0.5], overrides=overrides)], "val/avg_f1", "max", max_t=1)
    assert trials.iloc[0]["config/groups"] == "binary+mature|gory"
    assert trials.iloc[0]["config/tasks"] == "binary+gory"
    assert trials.iloc[0]["config/model.head_dims"] == "[64, 32]"
    assert trials.iloc[0]["config/train.lr"] == 0.01


def test_compute_saved_counts_the_epochs_not_run():
    trials = pd.DataFrame({"epochs": [1, 1, 4]})
    assert compute_saved(trials, num_samples=3, max_t=4) == {"epochs_run": 6, "epochs_budget": 12,
                                                             "compute_saved_frac": 0.5}
    assert compute_saved(pd.DataFrame(), num_samples=0, max_t=4)["compute_saved_frac"] == 0.0


def test_error_line_is_the_last_non_empty_line():
    assert error_line("a\nb  \n\n") == "b"
    assert error_line("", default="RuntimeError") == "RuntimeError"


def test_a_column_mixing_types_is_written_as_strings(tmp_path):
    df = pd.DataFrame({"config/x": [1, "a", None], "n": [1, 2, 3]})
    write_parquet(df, tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["config/x"].tolist()[:2] == ["1", "a"] and back["config/x"].isna().iloc[2]
    assert back["n"].tolist() == [1, 2, 3]


def test_an_epoch_a_retried_trial_trained_twice_is_kept_once_as_it_was_last_reported():
    """A worker node that dies after a trial reported an epoch but before its checkpoint reached storage: the
    retry resumes from the checkpoint before and reports that epoch again. The history keeps one row per epoch,
    the later one (the weights the trial went on from)."""
    r = _result("retried", [0.6, 0.5, 0.4], [0.4, 0.6, 0.5])
    again = r.metrics_dataframe.iloc[[1]].assign(**{"val/avg_f1": 0.55})
    r.metrics_dataframe = pd.concat([r.metrics_dataframe.iloc[:2], again, r.metrics_dataframe.iloc[2:]], ignore_index=True)
    history, trials = collect([r], "val/avg_f1", "max", max_t=3)
    assert list(history["epoch"]) == [0, 1, 2] and list(history["val/avg_f1"]) == [0.4, 0.55, 0.5]
    assert trials.iloc[0]["epochs"] == 3
