"""The hypervolume's reference point: what predicting each task's majority class scores on validation.
A trial below it on some task has learned nothing there, so only the region above it counts."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mtl_core import TASKS, keys
from mtl_core.config import Config
from mtl_core.data.arrays import load_split
from mtl_core.metrics import binary_task_metrics
from mtl_core.prepare import cache_root, data_root


def majority_scores(labels: np.ndarray, tasks: Sequence[str], split: str = "val") -> dict[str, float]:
    """`val/<task>/{acc,f1,f1_pos}` of a constant predictor of each task's majority class (labels -1 =
    missing, ignored), and `val/avg_f1` over the tasks. Its macro-F1 is p / (1 + p) for a majority share p."""
    out: dict[str, float] = {}
    for task in tasks:
        y = labels[:, TASKS.index(task)]
        seen = y[y >= 0]
        majority = int(seen.mean() > 0.5) if len(seen) else 0
        for name, value in binary_task_metrics(y, np.full_like(y, majority)).items():
            out[keys.task(split, task, name)] = value
    out[keys.average(split)] = float(np.nanmean([out[keys.task(split, t)] for t in tasks]))
    return out


def reference_point(objectives: Sequence[str], scores: dict[str, float]) -> list[float] | None:
    """The reference of each objective, higher-is-better (as `search.analysis.pareto` wants); None when an
    objective has no constant-predictor value here (a loss)."""
    if any(o not in scores for o in objectives):
        return None
    return [scores[o] if keys.direction(o) == "max" else -scores[o] for o in objectives]


def validation_reference(objectives: Sequence[str], cfg: Config) -> list[float] | None:
    """The reference point of `objectives` on the experiment's validation split."""
    return reference_point(objectives, majority_scores(validation_labels(cfg), cfg.tasks))


def validation_labels(cfg: Config) -> np.ndarray:
    """The validation split's labels [clips, TASKS] (from the columnar cache the launcher built)."""
    files = {"train": cfg.data.train_file, "val": cfg.data.val_file, "test": cfg.data.test_file}
    return load_split(data_root(cfg), "val", cache_dir=cache_root(cfg), derive_binary=cfg.data.derive_binary,
                      files=files).labels
