"""The test split's per-clip predictions of a run (`test_predictions.npz`): plain arrays, no pickle."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np



PREDICTIONS_FILE = "test_predictions.npz"


def save_predictions(path: Path, ids: np.ndarray, labels: dict[str, np.ndarray], predicted: dict[str, np.ndarray]) -> None:
    """Plain arrays only (loadable with allow_pickle=False)."""
    arrays = {"ids": ids, **{f"label/{t}": v for t, v in labels.items()},
              **{f"pred/{t}": v for t, v in predicted.items()}}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
