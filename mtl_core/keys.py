"""The names of every reported metric, in one place: training writes them, the search and the report read them.

    train/<task>/loss, train/loss                  epoch means of the training losses
    val/<task>/{loss,acc,f1,f1_pos}, val/avg_f1    per split (val, test); avg_* are means over tasks
    strategy/<task>/<name>, strategy/<name>        what a strategy did (weights, active fractions, ...)
    affinity/<i>/<j>                               TAG's Z(i -> j)
    search/score                                   what ASHA and Optuna see (below)
    search/score/<metric>                          the same per objective of a multi-objective search
    pretrain/<any of the above>                    the pretraining phase's own (its tasks: mtl_core.pretrain)
    pretrain_curve                                 in the first epoch's metrics: every pretraining epoch's
                                                   metrics, a list of {epoch, pretrain/...: number}
    search/hypervolume                             a multi-objective search's front (parent run)
    final/<name|seeds|folds|delta_m|dominated_by>  the final phase's columns; final/<metric>/<mean|std> too
    f1/<split>/avg, f1/<split>/<task>              MLflow's copies of the F1 scores users compare first
                                                   (`headline`): one prefix, so they sort together
"""
from __future__ import annotations

import math
import re

SPLITS = ("train", "val", "test")
TASK_METRICS = ("loss", "acc", "f1", "f1_pos")
TRACKED = ("train/", "val/", "test/", "strategy/", "affinity/")  # prefixes of per-epoch metrics

# ASHA never stops a trial whose metric is NaN (and crashes on None), and Optuna cannot rank one; so the
# search schedules on `search/score`: the metric when it is finite, else the worst value. The metrics
# themselves stay NaN, so no table or plot ever shows the stand-in.
SCORE = "search/score"
WORST = 1e9

PRETRAIN_CURVE = "pretrain_curve"

# the metrics a search may optimise
SEARCHABLE = re.compile(r"^val/(avg_f1|avg_loss|[a-z]+/(loss|acc|f1|f1_pos))$")


def task(split: str, task_name: str, metric: str = "f1") -> str:
    """`val/gory/f1`."""
    return f"{split}/{task_name}/{metric}"


def average(split: str, metric: str = "f1") -> str:
    """`val/avg_f1`: the mean over the configured tasks."""
    return f"{split}/avg_{metric}"


DEFAULT_METRIC = average("val")  # what a run selects its best epoch by and a search optimises, unless told
FINAL = "final/"  # the final phase's columns in the leaderboard and the trials table
HYPERVOLUME = "search/hypervolume"  # a multi-objective search's front, on the parent run


def final(key: str, stat: str | None = None) -> str:
    """A column of the final phase: `final/name`, `final/seeds`, `final/test/avg_f1/mean`."""
    return f"{FINAL}{key}/{stat}" if stat else f"{FINAL}{key}"


HEADLINE = "f1/"


def headline(key: str) -> str | None:
    """The MLflow name under which the F1 a user compares first is also logged: `val/avg_f1` -> `f1/val/avg`,
    `test/gory/f1` -> `f1/test/gory`; None for any other key."""
    parts = key.split("/")
    if len(parts) == 2 and parts[0] in ("val", "test") and parts[1] == "avg_f1":
        return f"{HEADLINE}{parts[0]}/avg"
    if len(parts) == 3 and parts[0] in ("val", "test") and parts[2] == "f1":
        return f"{HEADLINE}{parts[0]}/{parts[1]}"
    return None


def strategy(name: str, task_name: str | None = None) -> str:
    """`strategy/gory/weight`, or `strategy/weight_sum` for a value not tied to one task."""
    return f"strategy/{task_name}/{name}" if task_name else f"strategy/{name}"


def modality(name: str) -> str:
    """`strategy/modality/video`: the share of samples a modality was used in."""
    return f"strategy/modality/{name}"


def pretrain(key: str) -> str:
    """`pretrain/val/vtm/acc`: a metric of the pretraining phase."""
    return f"pretrain/{key}"


def affinity(i: str, j: str) -> str:
    """Z(i -> j): the change in task j's loss after a step on task i."""
    return f"affinity/{i}/{j}"


def score(value: float | None, mode: str) -> float:
    """The value the search schedules on (see SCORE)."""
    if value is None or not math.isfinite(value):
        return -WORST if mode == "max" else WORST
    return float(value)


def for_group(metric: str, tasks) -> str:
    """The key that scores one model of a partition by `metric` over its own tasks: an average stays the
    group's average; a task's key stays itself in that task's group and becomes the group's average of the
    same metric elsewhere (`val/gory/f1` -> `val/avg_f1` for a group without gory)."""
    split, *rest = metric.split("/")
    if len(rest) == 2 and rest[0] not in tasks:
        return average(split, rest[1])
    return metric


def better(value: float, best: float, mode: str) -> bool:
    """`value` is finite and improves on `best` (which may be +-inf) in direction `mode`."""
    return math.isfinite(value) and (value > best if mode == "max" else value < best)


def objective_score(metric: str) -> str:
    """`search/score/val/gory/f1`: what the multi-objective scheduler and Optuna see for one objective."""
    return f"{SCORE}/{metric}"


def direction(metric: str) -> str:
    """An objective's mode, from its name: losses are minimised, everything else (F1, accuracy) maximised."""
    return "min" if metric.endswith("loss") else "max"


def task_of(key: str) -> str:
    """The task a per-task key names: `val/gory/f1` -> `gory`."""
    return key.split("/")[1]
