"""Which searched configurations a multi-objective search retrains: up to final_k spread along the front.

The final phase of a single-metric search retrains the top final_k by the metric; with several objectives
that would crowd one corner of the front. Here the best by the metric comes first (the verdict against
equal sum is about it), then each time the front member farthest from those picked (`search.analysis.pareto.spread`).
The final phase calls it in place of its top-k when `search.objectives` is set."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from mtl_core import keys
from search.analysis.pareto import spread


def front_picks(candidates: Sequence, trials: pd.DataFrame, objectives: Sequence[str], k: int, mode: str) -> list:
    """Up to k of `candidates` (objects with `trial_id` and `score`, the search metric), spread along the
    front of their best-epoch objective vectors in `trials` (one row per trial, as `search.analysis.results.collect`)."""
    rows = trials.set_index("trial_id") if not trials.empty else pd.DataFrame()
    known = [c for c in candidates if c.trial_id in rows.index and not _nan(c.score)]
    if not known or k < 1:
        return []
    signs = np.array([1.0 if keys.direction(o) == "max" else -1.0 for o in objectives])
    values = np.array([[float(rows.at[c.trial_id, o]) if o in rows else math.nan for o in objectives]
                       for c in known]) * signs
    scores = np.array([c.score for c in known]) * (1.0 if mode == "max" else -1.0)
    return [known[i] for i in spread(values, k, first=int(np.argmax(scores)))]


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
