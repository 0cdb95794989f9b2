"""The numbers behind "which strategy is best, and by how much": pure functions, tested by hand.

Δm% against single-task baselines (Maninis et al. 2019) and paired intervals over seeds; Pareto fronts are
`search.analysis.pareto`'s.
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


def final_table(runs: pd.DataFrame, tasks: Sequence[str], headline: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per retrained configuration or baseline (in the order they were trained): test macro-F1
    mean and std over seeds (the average and each task), the number of seeds, and Δm% against the
    single-task baseline when it ran."""
    if runs.empty or keys.average("test") not in runs:
        return pd.DataFrame()
    ok = runs[runs["error"].fillna("") == ""] if "error" in runs else runs
    ok = ok[ok["role"] != "axis"]  # the axis study has its own table (search.run.axis_study)
    cols = [keys.average("test")] + [keys.task("test", t) for t in tasks if keys.task("test", t) in ok]
    table = ok.groupby(["name", "role"], sort=False)[cols].agg(["mean", "std"])
    table.columns = [keys.final(k, agg) for k, agg in table.columns]
    table[keys.final("seeds")] = ok.groupby(["name", "role"], sort=False)["seed"].nunique()
    if "folds" in ok and ok["folds"].notna().any():  # repeated k-fold: a seed is one repeat
        table[keys.final("folds")] = int(ok["folds"].max())
    table = table.reset_index()
    table["trial_id"] = table["name"].map(ok.drop_duplicates("name").set_index("name")["trial_id"])
    single = table[table["name"] == "single_task"]
    if len(single):
        over = list(headline or tasks)  # Δm% without a derived binary
        base = {t: single[keys.final(keys.task("test", t), "mean")].iloc[0] for t in over}
        table[keys.final("delta_m")] = [
            delta_m({t: r[keys.final(keys.task("test", t), "mean")] for t in over}, base, over) for _, r in table.iterrows()]
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


PLAN_POWER = 0.8  # what "would decide it" promises: a decision in 80% of such experiments


@dataclass(frozen=True)
class SeedClipEstimate:
    """A statistic of two configurations paired by seed, with a standard error that holds both the seed
    noise (the spread of the per-seed values over n seeds) and the test-set sampling (the spread of the
    statistic over bootstrap resamples of the test clips, shared by both sides).

    The bootstrap variance of the seed-averaged value (`clip_var`, C) holds two terms: how the two
    configurations differ on these particular clips (the clip term, which no number of seeds averages away)
    and the seed x clip interaction (how one seed's predictions happen to fall on these clips), which shrinks
    as 1/n. The per-seed bootstrap variance (`seed_clip_var`, V: its mean over the seeds) holds the clip
    term and the whole interaction, so C = K + I/n and V = K + I give the clip term K = C - (V - C)/(n - 1).
    The interaction is also part of the spread over seeds, so the variance of the mean is K + seed_sd^2/n:
    counting C instead would count the interaction twice, and would plan as if it never shrank."""

    value: float
    seed_sd: float  # sd of the per-seed values
    clip_var: float  # C: variance of the seed-averaged value over clip resamples
    n: int
    seed_clip_var: float = math.nan  # V: mean over the seeds of each seed's variance over clip resamples
    clips: int = 0  # test clips the statistic was computed on (0: unknown)
    folds: int = 0  # > 0: the n values are fold runs of repeated k-fold CV (`cv_estimate`), not seeds

    def count(self) -> str:
        """What the n values are: `3 seeds`, or `10 fold runs (2 repeats of 5-fold CV)`."""
        if self.folds:
            return f"{self.n} fold runs ({self.n / self.folds:g} repeats of {self.folds}-fold CV)"
        return f"{self.n} seed{'s' * (self.n != 1)}"

    @property
    def interaction_var(self) -> float:
        """The seed x clip interaction in one seed's value, I = (V - C) n / (n - 1) (0 when V is unknown)."""
        if self.n < 2 or not np.isfinite(self.seed_clip_var):
            return 0.0
        return min(max(0.0, (self.seed_clip_var - self.clip_var) * self.n / (self.n - 1)), self.clip_var * self.n)

    @property
    def clip_term(self) -> float:
        """K: the test-set sampling variance that stays however many seeds run (NaN stays NaN: max() would
        turn it into 0 and drop the test set's noise)."""
        if not math.isfinite(self.clip_var):
            return math.nan
        return max(0.0, self.clip_var - self.interaction_var / self.n) if self.n >= 1 else self.clip_var

    def variance(self, n: int | None = None, clip_factor: float = 1.0) -> float:
        """The variance of the mean difference with n seeds per side (default: the seeds there are) on
        `clip_factor` times as many test clips: the clip term and the interaction shrink with the clips,
        the seeds' own spread (without the interaction) only with the seeds."""
        n = self.n if n is None else n
        seed_var = self.seed_sd ** 2 if self.n >= 2 else math.nan
        interaction = min(self.interaction_var, seed_var)
        return self.clip_term / clip_factor + (seed_var - interaction + interaction / clip_factor) / n

    @property
    def se(self) -> float:
        return math.sqrt(self.variance()) if self.n >= 2 else math.nan

    def _df(self, n: int, clip_factor: float = 1.0) -> float:
        """Welch-Satterthwaite degrees of freedom: n - 1 for the seed term (its spread was estimated from
        `self.n` seeds), many for the clip term (from a thousand resamples); n - 1 for cross-validation,
        whose two terms come from the same spread."""
        if self.folds:
            return float(max(n, 2) - 1)
        seed_term = self.variance(n, clip_factor) - self.clip_term / clip_factor
        if not seed_term > 0:
            return math.inf
        return (seed_term + self.clip_term / clip_factor) ** 2 / (seed_term ** 2 / (max(n, 2) - 1))

    @property
    def df(self) -> float:
        return self._df(self.n) if self.n >= 2 else math.inf

    def p_value(self) -> float:
        """Two-sided, t with `df` degrees of freedom."""
        if self.n < 2 or not self.se > 0:
            return math.nan
        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))

    def p_greater(self) -> float:
        """One-sided: the p-value of "the difference is at most 0"; small means it is positive."""
        if self.n < 2 or not self.se > 0:
            return math.nan
        return float(stats.t.sf(self.value / self.se, self.df))

    def equivalence_p(self, margin: float) -> float:
        """Two one-sided tests (Schuirmann): the p-value of "the difference lies outside ±margin"; small
        means equivalent within the margin."""
        if self.n < 2 or not self.se > 0 or not margin > 0:
            return math.nan
        lower = stats.t.sf((self.value + margin) / self.se, self.df)  # H0: diff <= -margin
        upper = stats.t.cdf((self.value - margin) / self.se, self.df)  # H0: diff >= +margin
        return float(max(lower, upper))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        if self.n < 2 or not np.isfinite(self.se):
            return math.nan, math.nan
        half = float(stats.t.ppf((1 + confidence) / 2, self.df)) * self.se
        return self.value - half, self.value + half

    def power(self, alpha: float, n: int | None = None, clip_factor: float = 1.0, effect: float | None = None) -> float:
        """The chance that a two-sided test at `alpha` decides a true difference of `effect` (default the
        observed one) with n seeds per side on `clip_factor` times the clips (noncentral t)."""
        n = self.n if n is None else n
        effect = self.value if effect is None else effect
        var = self.variance(n, clip_factor)
        if self.n < 2 or not var > 0 or not np.isfinite(effect):
            return math.nan
        df, nc = self._df(n, clip_factor), abs(effect) / math.sqrt(var)
        crit = stats.t.ppf(1 - alpha / 2, df)
        normal = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
        if not np.isfinite(df) or df > 1e4:
            return normal
        exact = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
        return exact if np.isfinite(exact) else normal  # scipy's noncentral t gives NaN at some (df, nc)

    def detectable(self, alpha: float, power: float = 0.8) -> float:
        """The smallest true difference this comparison, as it stands, decides with the given power."""
        if self.n < 2 or not self.se > 0:
            return math.nan
        df = self.df
        return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * self.se)

    def seeds_cannot_decide(self, alpha: float) -> bool:
        """Whether no number of seeds would decide this comparison: the clip term alone is larger than even
        the largest difference the seeds so far allow (the one-sided 95% bound of the seeds' limit, which is
        what infinitely many seeds on these clips would measure). A claim from the point estimate alone is
        wrong most of the time at 3 seeds."""
        if self.n < 2 or not np.isfinite(self.value) or not np.isfinite(self.seed_sd):
            return False
        upper = abs(self.value) + stats.t.ppf(0.95, self.n - 1) * self.seed_sd / math.sqrt(self.n)
        return stats.norm.ppf(1 - alpha / 2) * math.sqrt(self.clip_term) >= upper

    def seeds_needed(self, alpha: float, limit: int = 10_000, power: float = PLAN_POWER) -> int | None:
        """The seeds per side (at least 3: fewer are never a decision) with which a fixed-size comparison at
        level `alpha` decides a true difference as large as this one with the given power, from the observed
        spreads, the clip term held and the interaction shrinking as seeds are added; None when no number up
        to `limit` gets there (the clip term is too large for it: more test clips would) or there is no
        difference."""
        if self.n < 2 or not np.isfinite(self.value) or self.value == 0 or not self.power(alpha, n=limit) >= power:
            return None
        low, high = 2, limit  # power grows with n: bisect for the first n that reaches it
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if self.power(alpha, n=mid) >= power else (mid, high)
        return max(high, 3)

    def clips_needed(self, alpha: float, n: int | None = None, limit: float = 1000.0,
                     power: float = PLAN_POWER) -> int | None:
        """The test clips (at n seeds per side, default the seeds there are) with which a difference this large
        is decided with the given power; None when the clip count is unknown or even `limit` times the clips
        would not do."""
        n = self.n if n is None else n
        if self.n < 2 or not self.clips or self.folds or not np.isfinite(self.value) or self.value == 0:
            return None  # cross-validation tests every clip there is already
        reaches = lambda f: self.power(alpha, n=n, clip_factor=f) >= power  # noqa: E731
        if not reaches(limit):
            return None
        low, high = 1.0 / self.clips, limit
        if reaches(low):
            return 1
        for _ in range(60):
            mid = math.sqrt(low * high)
            low, high = (low, mid) if reaches(mid) else (mid, high)
        return math.ceil(high * self.clips)


def cv_estimate(per_unit: np.ndarray, folds: int, clips: int = 0, value: float | None = None) -> SeedClipEstimate:
    """A paired difference over the fold runs of repeated k-fold cross-validation (`per_unit`: one value per
    (repeat, fold), seeds averaged), with Nadeau and Bengio's correction for the overlap of the training sets
    (the corrected resampled t test; Bouckaert and Frank 2004 for repeats): variance (1/J + n_test/n_train)
    s^2 over J values with J - 1 degrees of freedom. The n_test/n_train term is what more repeats cannot
    remove, so it plays the clip term's part."""
    per_unit = np.asarray(per_unit, float)
    n = len(per_unit)
    sd = float(per_unit.std(ddof=1)) if n >= 2 else math.nan
    ratio = 1.0 / (folds - 1)  # n_test / n_train: one fold against the other folds - 1
    clip_var = ratio * sd ** 2 if n >= 2 else 0.0
    return SeedClipEstimate(float(per_unit.mean()) if value is None else float(value), sd, clip_var, n,
                            math.nan, clips, folds)


def seed_clip_estimate(per_seed: np.ndarray, resampled: np.ndarray, value: float | None = None,
                       per_seed_resampled: np.ndarray | None = None, clips: int = 0) -> SeedClipEstimate:
    """`per_seed` [S]: the statistic on each shared seed; `resampled` [B]: the seed-averaged statistic on
    each clip resample; `per_seed_resampled` [B, S]: each seed's statistic on the same resamples (to separate
    the clip term from the seed x clip interaction); `value`: the point estimate (default the mean of
    `per_seed`); `clips`: how many test clips there were."""
    per_seed = np.asarray(per_seed, float)
    n = len(per_seed)
    sd = float(per_seed.std(ddof=1)) if n >= 2 else math.nan
    clip_var = float(np.var(resampled, ddof=1)) if len(resampled) >= 2 else 0.0
    seed_clip_var = math.nan
    if per_seed_resampled is not None and len(per_seed_resampled) >= 2:
        seed_clip_var = float(np.var(np.asarray(per_seed_resampled, float), axis=0, ddof=1).mean())
    return SeedClipEstimate(float(per_seed.mean()) if value is None else float(value), sd, clip_var, n,
                            seed_clip_var, clips)
