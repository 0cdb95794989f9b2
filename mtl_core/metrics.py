"""Per-task classification metrics: pure functions from labels and predictions to numbers (sklearn)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from mtl_core import keys


def binary_task_metrics(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and F1 of the positive class over the labelled clips (labels >= 0)."""
    keep = labels >= 0
    y, p = labels[keep], preds[keep]
    if len(y) == 0:
        return {"acc": float("nan"), "f1": float("nan"), "f1_pos": float("nan")}
    return {
        "acc": float(accuracy_score(y, p)),
        "f1": float(f1_score(y, p, average="macro", labels=[0, 1], zero_division=0)),
        "f1_pos": float(f1_score(y, p, pos_label=1, average="binary", zero_division=0)),
    }


def headline_tasks(tasks, derive_binary: bool) -> tuple[str, ...]:
    """The tasks an average over tasks counts: all of them, except `binary` when it is derived as the OR of
    the others (data.derive_binary), where it would count their information twice."""
    tasks = tuple(tasks)
    if derive_binary and "binary" in tasks and len(tasks) > 1:
        return tuple(t for t in tasks if t != "binary")
    return tasks


def mean_over_tasks(metrics: dict[str, float], tasks, key: str, prefix: str = "val") -> float:
    values = [metrics[keys.task(prefix, t, key)] for t in tasks if np.isfinite(metrics[keys.task(prefix, t, key)])]
    return float(np.mean(values)) if values else float("nan")
