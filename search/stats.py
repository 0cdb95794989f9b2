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

from mtl_core import keys


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
    cols = ["test/avg_f1"] + [keys.task("test", t) for t in tasks if keys.task("test", t) in ok]
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


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """ASHA's milestones in epochs (grace, grace * rf, ...) below max_t, then max_t itself."""
    out, b = [], max(1, grace_period)
    while b < max_t:
        out.append(b)
        b *= max(2, reduction_factor)
    return out + [max_t]


def scores_at(history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str, budget: int
              ) -> tuple[pd.Series, int]:
    """(each trial's best `metric` within its first `budget` epochs, for the trials that reached that budget,
    and the failed trials counted at the worst score there; how many failed trials that is). A failed trial
    is a result too: leaving it out would flatter the method that fails."""
    reached = trials[(trials["status"] != "failed") & (trials["epochs"] >= budget)]
    failed = trials[trials["status"] == "failed"]
    if history.empty or metric not in history or reached.empty:
        return pd.Series(dtype=float), len(failed)
    h = history[history["trial_id"].isin(reached["trial_id"]) & (history["training_iteration"] <= budget)]
    grouped = h.groupby("trial_id")[metric]
    best = grouped.max() if mode == "max" else grouped.min()
    worst = best.min() if mode == "max" else best.max()
    return pd.concat([best, pd.Series(worst, index=failed["trial_id"].to_numpy())]), len(failed)


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


# ---------------------------------------------------------------------------------------------
# test-set sampling: macro-F1 from per-clip predictions, under resampled clips


def macro_f1(pred: np.ndarray, label: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Macro-F1 over classes 0 and 1 (sklearn's `f1_score(average="macro", labels=[0, 1], zero_division=0)`)
    of predictions `pred` [..., n, T] against `label` [n, T] (-1 = no label), per task: [..., T]. With
    `weights` [B, n] (how often each clip is drawn in each of B resamples) the result is [B, ..., T]."""
    y = label.astype(np.int64)
    ok = (y >= 0)
    p1, y1 = (pred == 1) & ok, (y == 1) & ok
    p0, y0 = (pred == 0) & ok, (y == 0) & ok
    counts = [p1 & y1, p1 & y0, p0 & y1, p0 & y0]  # tp, fp, fn, tn
    if weights is None:
        tp, fp, fn, tn = (c.sum(axis=-2).astype(float) for c in counts)
    else:
        tp, fp, fn, tn = (np.einsum("bn,...nt->b...t", weights, c.astype(float)) for c in counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        neg = np.where(2 * tn + fp + fn > 0, 2 * tn / (2 * tn + fp + fn), 0.0)
    return (pos + neg) / 2


def clip_weights(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, n]: how often each of n test clips is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def holm(pvalues: Mapping[str, float], alpha: float) -> set[str]:
    """Holm's step-down procedure: the hypotheses rejected at family-wise level `alpha` (any dependence)."""
    order = sorted((p, k) for k, p in pvalues.items() if np.isfinite(p))
    rejected: set[str] = set()
    m = len(order)
    for i, (p, k) in enumerate(order):
        if p > alpha / (m - i):
            break
        rejected.add(k)
    return rejected


def spent_alpha(fraction: float, alpha: float) -> float:
    """A power-family alpha-spending function (Lan & DeMets; Kim & DeMets, rho = 2): the error rate spent by
    the time `fraction` of the largest number of seeds has run. Each look tests at the increment since the
    previous look; by the union bound the looks together keep the family-wise rate at `alpha`, however
    the looks are correlated."""
    return alpha * min(1.0, max(0.0, fraction)) ** 2


@dataclass(frozen=True)
class SeedClipEstimate:
    """A statistic of two configurations paired by seed, with a standard error that holds both the seed
    noise (the spread of the per-seed values over n seeds) and the test-set sampling (the spread of the
    seed-averaged value over bootstrap resamples of the test clips, shared by both sides)."""

    value: float
    seed_sd: float  # sd of the per-seed values
    clip_var: float  # variance of the seed-averaged value over clip resamples
    n: int

    @property
    def se(self) -> float:
        return math.sqrt(self.seed_sd ** 2 / self.n + self.clip_var) if self.n >= 2 else math.nan

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom: n - 1 for the seed term (estimated from n seeds), many for
        the test-set term (from a thousand resamples); small seed counts are never treated as normal."""
        seed_term = self.seed_sd ** 2 / self.n if self.n >= 2 else math.nan
        if not seed_term > 0:
            return math.inf
        return (seed_term + self.clip_var) ** 2 / (seed_term ** 2 / (self.n - 1))

    def p_value(self) -> float:
        """Two-sided, t with `df` degrees of freedom."""
        if self.n < 2 or not self.se > 0:
            return math.nan
        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        if self.n < 2 or not np.isfinite(self.se):
            return math.nan, math.nan
        half = float(stats.t.ppf((1 + confidence) / 2, self.df)) * self.se
        return self.value - half, self.value + half

    def seeds_needed(self, alpha: float, limit: int = 10_000) -> int | None:
        """The seeds a fixed-size comparison at level `alpha` would need to decide a difference this large,
        from the observed spreads; None when no number would do (no difference, or the test set's own
        sampling noise is larger than the difference: that needs a bigger test split, not more seeds)."""
        if not np.isfinite(self.value) or self.value == 0 or self.clip_var >= (self.value / stats.norm.ppf(1 - alpha / 2)) ** 2:
            return None
        for n in range(3, limit + 1):
            planned = SeedClipEstimate(self.value, self.seed_sd, self.clip_var, n)
            if abs(self.value) >= stats.t.ppf(1 - alpha / 2, planned.df) * planned.se:
                return n
        return None


def seed_clip_estimate(per_seed: np.ndarray, resampled: np.ndarray, value: float | None = None) -> SeedClipEstimate:
    """`per_seed` [S]: the statistic on each shared seed; `resampled` [B]: the seed-averaged statistic on
    each clip resample; `value`: the point estimate (default the mean of `per_seed`)."""
    per_seed = np.asarray(per_seed, float)
    n = len(per_seed)
    sd = float(per_seed.std(ddof=1)) if n >= 2 else math.nan
    clip_var = float(np.var(resampled, ddof=1)) if len(resampled) >= 2 else 0.0
    return SeedClipEstimate(float(per_seed.mean()) if value is None else float(value), sd, clip_var, n)


def pareto_shares(scores: Mapping[str, np.ndarray], resamples: int, seed: int = 0) -> dict[str, float]:
    """How often each configuration is on the Pareto front of the per-task means when its seeds are
    resampled. `scores[name]`: [B, S, T] per-task F1 on B clip resamples (shared across configurations)
    and its S seeds. A configuration that is on the front in 95% of resamples is on it beyond noise; one
    at 40% may or may not be."""
    rng = np.random.default_rng(seed)
    names = list(scores)
    counts = dict.fromkeys(names, 0)
    b_total = min(s.shape[0] for s in scores.values())
    for r in range(resamples):
        b = r % b_total
        means = []
        for name in names:
            s = scores[name][b]
            means.append(s[rng.integers(0, len(s), len(s))].mean(axis=0))
        front = pareto_front(pd.DataFrame(np.array(means), index=names), list(range(len(means[0]))))
        for name in names:
            counts[name] += bool(front[name])
    return {name: counts[name] / resamples for name in names}
