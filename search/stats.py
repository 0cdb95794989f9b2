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


def final_table(runs: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per retrained configuration or baseline (in the order they were trained): test macro-F1
    mean and std over seeds (the average and each task), the number of seeds, and Δm% against the
    single-task baseline when it ran."""
    if runs.empty or "test/avg_f1" not in runs:
        return pd.DataFrame()
    ok = runs[runs["error"].fillna("") == ""] if "error" in runs else runs
    ok = ok[ok["role"] != "axis"]  # the axis study has its own table (search.axis_study)
    cols = ["test/avg_f1"] + [f"test/{t}/f1" for t in tasks if f"test/{t}/f1" in ok]
    table = ok.groupby(["name", "role"], sort=False)[cols].agg(["mean", "std"])
    table.columns = [f"final/{k}/{agg}" for k, agg in table.columns]
    table["final/seeds"] = ok.groupby(["name", "role"], sort=False)["seed"].nunique()
    table = table.reset_index()
    table["trial_id"] = table["name"].map(ok.drop_duplicates("name").set_index("name")["trial_id"])
    single = table[table["name"] == "single_task"]
    if len(single):
        base = {t: single[f"final/test/{t}/f1/mean"].iloc[0] for t in tasks}
        table["final/delta_m"] = [
            delta_m({t: r[f"final/test/{t}/f1/mean"] for t in tasks}, base, tasks) for _, r in table.iterrows()]
    return table


def best_vs(runs: pd.DataFrame, other: str, metric: str = "test/avg_f1") -> tuple[str, PairedDifference] | None:
    """The best retrained configuration (the first of role `final`) against `other`, paired by seed."""
    if runs.empty or metric not in runs:
        return None
    finals = runs[runs["role"] == "final"]
    if finals.empty or not (runs["name"] == other).any():
        return None
    best = finals["name"].iloc[0]
    a = runs[runs["name"] == best].set_index("seed")[metric]
    b = runs[runs["name"] == other].set_index("seed")[metric]
    common = a.index.intersection(b.index)
    return best, paired_difference(a[common].to_numpy(), b[common].to_numpy())


def matched_budget(history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str) -> tuple[int, pd.Series]:
    """(b, each trial's best `metric` within its first b epochs), b = the last rung every trial reached, so
    that trials ASHA stopped early are compared with the others at the same budget, not at their own."""
    ok = trials[trials["status"] != "failed"]
    if ok.empty or history.empty or metric not in history:
        return 0, pd.Series(dtype=float)
    budget = int(ok["epochs"].min())
    h = history[history["trial_id"].isin(ok["trial_id"]) & (history["training_iteration"] <= budget)]
    grouped = h.groupby("trial_id")[metric]
    return budget, (grouped.max() if mode == "max" else grouped.min())


@dataclass(frozen=True)
class Effect:
    """mean(value's trials) - mean(baseline's trials), with a Welch t interval when both have 2+ trials."""

    value: str
    n: int
    mean: float
    diff: float
    low: float
    high: float


def axis_effects(values: pd.Series, labels: pd.Series, baseline: str, confidence: float = 0.95) -> list[Effect]:
    """Each label's effect on `values` against the axis's baseline label (e.g. each combiner vs `equal`)."""
    base = values[labels == baseline].dropna()
    out = []
    for label in sorted(labels.dropna().astype(str).unique()):
        x = values[labels == label].dropna()
        diff = float(x.mean() - base.mean()) if len(x) and len(base) else math.nan
        low = high = math.nan
        if label != baseline and len(x) >= 2 and len(base) >= 2:
            res = stats.ttest_ind(x, base, equal_var=False)
            ci = res.confidence_interval(confidence)
            low, high = float(ci.low), float(ci.high)
        out.append(Effect(label, len(x), float(x.mean()) if len(x) else math.nan, diff, low, high))
    return out
