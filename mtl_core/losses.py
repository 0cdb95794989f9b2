"""Per-task training losses: masked cross-entropy with optional class weights."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def task_losses(logits: dict[str, torch.Tensor], labels: torch.Tensor, tasks,
                class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task mean cross-entropy over labelled clips [T], and which tasks had any label [T].

    `class_weights` [T, 2] weighs each clip's loss by the weight of its true class; the sum is still
    divided by the number of labelled clips, so `balanced` weights (which average 1 over the training
    split) keep the loss on its usual scale."""
    losses, has = [], []
    for j, t in enumerate(tasks):
        y = labels[:, j]
        keep = y >= 0  # a missing label is masked out, never read as 0
        n = keep.sum()
        target = y.clamp(min=0)
        ce = F.cross_entropy(logits[t], target, reduction="none")
        weight = keep if class_weights is None else class_weights[j].to(ce)[target] * keep
        losses.append((ce * weight).sum() / n.clamp(min=1))
        has.append(n > 0)
    return torch.stack(losses), torch.stack(has)


def class_weights(setting, labels: np.ndarray, tasks: tuple[str, ...]) -> torch.Tensor | None:
    """[T, 2] (negative, positive) weights from `train.class_weight` and the training labels [N, T]
    (-1 = missing, excluded). `balanced`: n / (2·n_c), as scikit-learn's; a mapping gives each named
    task's positive class that weight (others 1); `none`: None."""
    if setting in (None, "none"):
        return None
    w = torch.ones(len(tasks), 2)
    for j, t in enumerate(tasks):
        if setting == "balanced":
            y = labels[:, j][labels[:, j] >= 0]
            counts = np.bincount(y, minlength=2)
            if counts.min() > 0:
                w[j] = torch.tensor(len(y) / (2.0 * counts), dtype=torch.float32)
        elif t in setting:
            w[j, 1] = float(setting[t])
    return w
