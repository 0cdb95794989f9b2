"""The numbers behind "which strategy is best, and by how much": pure functions, tested by hand.

Δm% against single-task baselines (Maninis et al. 2019), a paired interval over seeds, and the Pareto
front of per-task scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def delta_m(scores: Mapping[str, float], baseline: Mapping[str, float], tasks: Sequence[str]) -> float:
    """Δm% = 100 / T · Σ_t (M_t - B_t) / B_t over the tasks, for metrics where higher is better (F1)."""
    terms = [(scores[t] - baseline[t]) / baseline[t] for t in tasks]
    return 100.0 * float(np.mean(terms))


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over paired seeds, with a two-sided t interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (needs 2+ pairs)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def sentence(self, a: str, b: str, metric: str) -> str:
        if self.n < 2:
            return f"{a} vs {b}: one seed only, no interval; {metric} differs by {self.mean:+.4f}."
        span = f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}], {self.confidence:.0%} t interval, {self.n} seeds"
        if self.significant:
            verdict = "beats" if self.mean > 0 else "is worse than"
            return f"{a} {verdict} {b} beyond seed noise on {metric}: {span}."
        return f"{a} does not beat {b} beyond seed noise on {metric}: {span}."


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, confidence)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDifference(mean, mean - half, mean + half, n, confidence)


def pareto_front(table: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """True for rows no other row dominates (at least as good on every column, better on one); higher
    is better. Rows with a missing value are never on the front."""
    values = table[list(columns)].to_numpy(float)
    ok = ~np.isnan(values).any(axis=1)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = values[ok]
        dominated = ((others >= values[i]).all(axis=1) & (others > values[i]).any(axis=1)).any()
        front[i] = not dominated
    return pd.Series(front, index=table.index)
