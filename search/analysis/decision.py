"""From retrained runs to a decision: "does the best configuration beat each baseline?", settled by racing.

The final phase trains every candidate and baseline with `final_seeds` seeds, then in rounds adds seeds
only to the comparisons still undecided (the best against each other entry, paired by seed) until each is
decided or `final_max_seeds` is reached. Every look tests at the alpha that an alpha-spending function
allots it (`stats.spent_alpha`), with Holm across the comparisons open at that look, so the family-wise
error rate stays at 5% over all looks and comparisons together (the union bound; tested by simulation).

A comparison's uncertainty holds both the seed noise and the test-set sampling (`stats.SeedClipEstimate`):
per-clip test predictions come back from every run (`mtl_core.train`'s `test_predictions.npz`), and the
clips are resampled, shared by both sides. Fewer than 3 shared seeds, or a difference that does not vary
over seeds, is `inconclusive`, never a win.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from mtl_core import keys
from search.analysis.stats import (SeedClipEstimate, clip_weights, cv_estimate, delta_m, holm, macro_f1, seed_clip_estimate,
                          spent_alpha)

ALPHA = 0.05
MIN_SEEDS = 3  # below this a t interval over seeds says little: never a decision
RESAMPLES = 1000
EQUIVALENCE_MARGIN = 0.02  # in test macro-F1: a smaller true difference is "equivalent" (search.equivalence_margin)


def pred_col(task: str) -> str:
    return f"pred/{task}"


def label_col(task: str) -> str:
    return f"label/{task}"


class RunScores:
    """Per-task test macro-F1 of every retrained run, on the full test set and on shared clip resamples; or,
    when the runs are the folds of repeated k-fold cross-validation (a `fold` column), on each fold's test
    clips, a seed standing for one repeat."""

    def __init__(self, runs: pd.DataFrame, tasks: Sequence[str], resamples: int = RESAMPLES, seed: int = 0):
        self.tasks = list(tasks)
        ok = runs[(runs["error"].fillna("") == "") & runs[keys.average("test")].notna()] if len(runs) else runs
        have = [pred_col(t) for t in self.tasks if pred_col(t) in ok]
        self.folds = int(ok["folds"].max()) if "folds" in ok and len(ok) and ok["folds"].notna().any() else 0
        self.with_predictions = len(have) == len(self.tasks) and len(ok) > 0 and not self.folds
        self._full: dict[tuple[str, int], np.ndarray] = {}  # (name, seed) -> [T]
        self._boot: dict[tuple[str, int], np.ndarray] = {}  # (name, seed) -> [B, T]
        self._fold: dict[tuple[str, int, int], np.ndarray] = {}  # (name, seed, fold) -> [T], cross-validation
        self.clips = 0
        if self.folds:
            for _, r in ok.iterrows():
                self._fold[(r["name"], int(r["seed"]), int(r["fold"]))] = self._row_f1(r)
            for name, sd in {(n, sd) for n, sd, _ in self._fold}:
                self._full[(name, sd)] = np.mean([v for (n, s2, _), v in self._fold.items() if (n, s2) == (name, sd)], axis=0)
            self.clips = int(ok.drop_duplicates(["seed", "fold"])[f"label/{self.tasks[0]}"].map(len).sum()
                             / max(1, ok["seed"].nunique())) if label_col(self.tasks[0]) in ok else 0
            return
        if not self.with_predictions:
            for _, r in ok.iterrows():
                self._full[(r["name"], int(r["seed"]))] = self._row_f1(r)
            return
        first = ok.iloc[0]
        labels = np.stack([np.asarray(first[label_col(t)]) for t in self.tasks], axis=1)
        self.clips, self._labels = len(labels), labels
        self.weights = clip_weights(len(labels), resamples, seed)
        for _, r in ok.iterrows():
            pred = np.stack([np.asarray(r[pred_col(t)]) for t in self.tasks], axis=1)
            key = (r["name"], int(r["seed"]))
            self._full[key] = macro_f1(pred, labels)
            self._boot[key] = macro_f1(pred, labels, self.weights)

    def _row_f1(self, r) -> np.ndarray:
        return np.array([r[keys.task("test", t)] for t in self.tasks], float)

    def units(self, a: str, b: str, seeds: Sequence[int]) -> list[tuple[int, int]]:
        """Cross-validation: the (seed, fold) runs both sides have, of the given seeds."""
        wanted = set(seeds)
        return sorted(k[1:] for k in self._fold if k[0] == a and k[1] in wanted and (b, *k[1:]) in self._fold)

    def seeds(self, name: str) -> list[int]:
        return sorted(s for n, s in self._full if n == name)

    def full(self, name: str, seeds: Sequence[int]) -> np.ndarray:
        return np.stack([self._full[(name, s)] for s in seeds])  # [S, T]

    def boot(self, name: str, seeds: Sequence[int]) -> np.ndarray:
        """[B, S, T]; zeros (no test-set term) when the runs came without predictions."""
        if not self.with_predictions:
            return np.zeros((1, len(seeds), len(self.tasks)))
        return np.stack([self._boot[(name, s)] for s in seeds], axis=1)

    def difference(self, a: str, b: str, seeds: Sequence[int] | None = None, task: int | None = None
                   ) -> SeedClipEstimate:
        """a - b in test macro-F1 averaged over tasks (or on task number `task` alone), over the seeds both
        have (a failed seed drops out of both sides)."""
        shared = self.shared(a, b, seeds)
        if not shared:
            return SeedClipEstimate(math.nan, math.nan, 0.0, 0)
        cols = slice(None) if task is None else [task]
        if self.folds:
            units = self.units(a, b, shared)
            per_unit = [(self._fold[(a, *u)] - self._fold[(b, *u)])[cols].mean() for u in units]
            return cv_estimate(np.array(per_unit), self.folds, self.clips)
        per_seed = (self.full(a, shared) - self.full(b, shared))[:, cols].mean(axis=1)
        each = (self.boot(a, shared) - self.boot(b, shared))[:, :, cols].mean(axis=2)  # [B, S]
        return seed_clip_estimate(per_seed, each.mean(axis=1), per_seed_resampled=self._each(each), clips=self.clips)

    def delta_m(self, a: str, reference: str, seeds: Sequence[int] | None = None) -> SeedClipEstimate:
        """Δm% of a against `reference` (the single-task models) over their shared seeds."""
        shared = self.shared(a, reference, seeds)
        if not shared:
            return SeedClipEstimate(math.nan, math.nan, 0.0, 0)
        fa, fb = self.full(a, shared), self.full(reference, shared)
        value = delta_m(dict(enumerate(fa.mean(0))), dict(enumerate(fb.mean(0))), range(len(self.tasks)))
        if self.folds:
            units = self.units(a, reference, shared)
            per_unit = [100.0 * ((self._fold[(a, *u)] - self._fold[(reference, *u)]) / self._fold[(reference, *u)]).mean()
                        for u in units]
            return cv_estimate(np.array(per_unit), self.folds, self.clips, value)
        per_seed = 100.0 * ((fa - fb) / fb).mean(axis=1)
        ba, bb = self.boot(a, shared), self.boot(reference, shared)  # [B, S, T]
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled = 100.0 * ((ba.mean(axis=1) - bb.mean(axis=1)) / bb.mean(axis=1)).mean(axis=1)
            each = 100.0 * ((ba - bb) / bb).mean(axis=2)
        if not self.with_predictions:
            return seed_clip_estimate(per_seed, np.zeros(1), value)
        return seed_clip_estimate(per_seed, resampled, value, per_seed_resampled=self._each(each), clips=self.clips)

    def against_fixed(self, name: str, predictions: dict[str, np.ndarray]) -> SeedClipEstimate | None:
        """`name` minus a deterministic model (the bag-of-words floor) that predicted the same test clips:
        over `name`'s seeds and the same clip resamples. None without per-clip predictions (or under
        cross-validation, where the floor's one test split is not the folds)."""
        if not self.with_predictions or any(t not in predictions for t in self.tasks) or not self.seeds(name):
            return None
        pred = np.stack([np.asarray(predictions[t]) for t in self.tasks], axis=1)
        if len(pred) != self.clips:
            return None
        fixed_full, fixed_boot = macro_f1(pred, self._labels), macro_f1(pred, self._labels, self.weights)  # [T], [B, T]
        seeds = self.seeds(name)
        per_seed = (self.full(name, seeds) - fixed_full).mean(axis=1)
        each = (self.boot(name, seeds) - fixed_boot[:, None, :]).mean(axis=2)  # [B, S]
        return seed_clip_estimate(per_seed, each.mean(axis=1), per_seed_resampled=each, clips=self.clips)

    def _each(self, per_seed_resampled: np.ndarray) -> np.ndarray | None:
        """Each seed's statistic on the clip resamples, when there are per-clip predictions to resample."""
        return per_seed_resampled if self.with_predictions else None

    def shared(self, a: str, b: str, seeds: Sequence[int] | None = None) -> list[int]:
        common = set(self.seeds(a)) & set(self.seeds(b))
        return sorted(common if seeds is None else common & set(seeds))


@dataclass(frozen=True)
class Comparison:
    """The best configuration against one other entry, after the race."""

    best: str
    other: str
    estimate: SeedClipEstimate
    status: str  # beats | worse | equivalent | undecided | inconclusive
    look: int  # the look it was decided at (1-based), or the last look it was open at
    alpha: float  # the level of the last look it took part in (the alpha spent since the previous look)
    margin: float = 0.0  # equivalence margin in test macro-F1 (0: no equivalence test)
    tests: int = 1  # the hypotheses Holm shared that level among at that look

    @property
    def decided(self) -> bool:
        return self.status in ("beats", "worse", "equivalent")

    @property
    def open(self) -> bool:
        """More seeds could decide it: undecided, or short of seeds (a run failed); not a difference that
        does not vary over seeds (the same configuration twice)."""
        return self.status == "undecided" or (self.status == "inconclusive" and self.estimate.n < MIN_SEEDS)

    def plan_alpha(self, comparisons: int) -> float:
        """The level a fixed-size plan tests at: 5% shared by Holm's first step over the family's hypotheses
        (two per comparison when equivalence is tested)."""
        return ALPHA / (max(1, comparisons) * (2 if self.margin > 0 else 1))

    def seeds_needed(self, comparisons: int) -> int | None:
        return self.estimate.seeds_needed(self.plan_alpha(comparisons))

    def seeds_could_decide(self, comparisons: int) -> bool:
        """False only when the clip term alone is larger than even the largest difference the seeds so far
        allow (one-sided 95%): then more seeds would not decide it, more test clips might."""
        return not self.estimate.seeds_cannot_decide(self.plan_alpha(comparisons))

    def cost(self, comparisons: int) -> dict:
        """What the undecided comparison would need, as a fixed-size comparison at its share of the
        family-wise 5%: power at the observed difference, the difference decided with 80% power, and the
        seeds per side or test clips that would decide the observed difference."""
        e, alpha = self.estimate, self.plan_alpha(comparisons)
        return {"power": e.power(alpha), "detectable": e.detectable(alpha), "seeds_needed": e.seeds_needed(alpha),
                "clips_needed": e.clips_needed(alpha), "seeds_could_decide": self.seeds_could_decide(comparisons)}

    def sentence(self, comparisons: int = 1) -> str:
        e = self.estimate
        low, high = e.interval()
        over = ("folds, corrected for their overlapping training sets" if e.folds else "seeds and test clips")
        span = (f"{e.value:+.4f} [{low:+.4f}, {high:+.4f}] in test macro-F1 (95% interval over {over}, "
                f"{e.count()})") if e.n >= 2 else f"{e.value:+.4f} ({e.count()})"
        if self.status == "beats":
            return f"{self.best} beats {self.other}: {span}; decided at look {self.look}."
        if self.status == "worse":
            return f"{self.best} is worse than {self.other}: {span}; decided at look {self.look}."
        if self.status == "equivalent":
            return (f"{self.best} is equivalent to {self.other} within ±{self.margin:g}: {span}; decided at look "
                    f"{self.look} (two one-sided tests).")
        if self.status == "inconclusive":
            why = "fewer than 3 shared seeds" if e.n < MIN_SEEDS else "the difference does not vary over seeds"
            return f"{self.best} vs {self.other}: inconclusive ({why}): {span}."
        return f"{self.best} vs {self.other}: undecided after {e.count()}: {span}; {cost_text(self, comparisons)}."


def cost_text(c: Comparison, comparisons: int) -> str:
    """An undecided comparison's power and what deciding it would cost, in words."""
    cost, e = c.cost(comparisons), c.estimate
    more = f"repeats of {e.folds}-fold CV" if e.folds else "seeds"
    need = cost["seeds_needed"] and (math.ceil(cost["seeds_needed"] / e.folds) if e.folds else cost["seeds_needed"])
    clips = (f"about {cost['clips_needed']} test clips at {e.n} seeds would (80% power)"
             if cost["clips_needed"] else "a larger dataset would" if e.folds else "a larger test set would")
    if not cost["seeds_could_decide"]:
        what = f"no number of {more} would decide it (the test set's own sampling noise is larger than the difference); {clips}"
    elif need and cost["seeds_needed"] <= e.n:
        what = (f"a single look at these {more} would decide it; the race's earlier looks spent part of its 5% "
                f"(a larger search.final_max_seeds leaves more for the last)")
    elif need:
        what = f"about {need} {more} per side would decide it with 80% power, or {clips.replace(' would', '')}"
    else:
        what = f"more {more} alone are unlikely to decide it (the test set's sampling noise is close to the difference); {clips}"
    power = f"power {cost['power']:.0%} at the observed difference" if math.isfinite(cost["power"]) else ""
    detect = f"80% power needs a difference of {cost['detectable']:.4f}" if math.isfinite(cost["detectable"]) else ""
    family = f"95% with Holm over {comparisons} comparison(s)" + (" and their equivalence tests" if c.margin > 0 else "")
    return "; ".join(x for x in (what, power, detect) if x) + f" ({family})"


def looks(seeds_min: int, seeds_max: int, step: int) -> list[int]:
    """The seed counts at which the race looks: seeds_min, seeds_min + step, ..., seeds_max."""
    out = list(range(seeds_min, seeds_max, max(1, step))) + [seeds_max]
    return sorted(set(n for n in out if n >= seeds_min))


def race(scores: RunScores, best: str, others: Sequence[str], seeds: Sequence[int], at: Sequence[int],
         done: int | None = None, alpha: float = ALPHA, margin: float = EQUIVALENCE_MARGIN) -> list[Comparison]:
    """Replay the race on the runs there are, over the first `done` of the looks `at` (seed counts; all by
    default): at look l every comparison still open is tested on the first at[l] final seeds that both
    sides have, at the alpha spent since the previous look. Each open comparison brings two hypotheses:
    "no difference" (a t test; rejected: beats or worse) and, with a `margin`, "a difference of at least
    ±margin" (two one-sided tests; rejected: equivalent). Holm runs over all of them together, so the
    family-wise error stays at the spent alpha whichever of each pair is true. Deterministic, so a resumed
    phase replays the same decisions."""
    last: dict[str, Comparison] = {}
    open_, previous = list(others), 0.0
    for look, n in enumerate(at[: len(at) if done is None else done], start=1):
        level = spent_alpha(n / at[-1], alpha) - previous
        previous += level
        estimates = {o: scores.difference(best, o, seeds[:n]) for o in open_}
        testable = [o for o, e in estimates.items() if e.n >= MIN_SEEDS and e.seed_sd > 0]
        pvalues = {(o, "difference"): estimates[o].p_value() for o in testable}
        if margin > 0:
            pvalues.update({(o, "equivalence"): estimates[o].equivalence_p(margin) for o in testable})
        rejected = holm(pvalues, level)
        for o, e in estimates.items():
            if (o, "difference") in rejected:
                status = "beats" if e.value > 0 else "worse"
            elif (o, "equivalence") in rejected:
                status = "equivalent"
            else:
                status = "undecided" if o in testable else "inconclusive"
            last[o] = Comparison(best, o, e, status, look, level, margin, max(1, len(pvalues)))
        open_ = [o for o in open_ if last[o].open]
    return [last[o] for o in others if o in last]


def dominated_by(scores: RunScores, names: Sequence[str], alpha: float = ALPHA) -> dict[str, list[str]]:
    """For each configuration, the others shown better on every task (with the same seeds and clip
    resamples as the race): y dominates x when each task's one-sided test of y - x > 0 rejects, an
    intersection-union test whose p-value is the largest of the tasks'; Holm runs over every ordered pair,
    so at most 5% of such families claim a dominance that is not there. Equally good configurations are
    dominated by none; one that is worse on every task by more than the noise is dominated."""
    have = [n for n in names if scores.seeds(n)]
    pvalues = {}
    for x in have:
        for y in have:
            if x == y:
                continue
            each = [scores.difference(y, x, task=j) for j in range(len(scores.tasks))]
            p = [e.p_greater() if e.n >= MIN_SEEDS else math.nan for e in each]  # as the race: 3 shared seeds
            if p and all(np.isfinite(p)):
                pvalues[(x, y)] = max(p)
    shown = holm(pvalues, alpha)
    return {x: [y for y in have if (x, y) in shown] for x in have}


def still_open(comparisons: Sequence[Comparison]) -> list[str]:
    """The entries whose comparison more seeds could still decide."""
    return [c.other for c in comparisons if c.open]


def decision_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One row per comparison (decision.csv, the report, the console's last lines)."""
    rows = []
    for c in comparisons:
        low, high = c.estimate.interval()
        cost = c.cost(len(comparisons)) if c.status == "undecided" else {}
        rows.append({"best": c.best, "other": c.other, "status": c.status, "seeds": c.estimate.n,
                     "diff": c.estimate.value, "low": low, "high": high, "p": c.estimate.p_value(),
                     "p_equivalence": c.estimate.equivalence_p(c.margin), "margin": c.margin,
                     "look": c.look, "alpha": c.alpha, "tests": c.tests,
                     "clip_sd": math.sqrt(c.estimate.clip_term), "seed_sd": c.estimate.seed_sd,
                     "power": cost.get("power"), "detectable": cost.get("detectable"),
                     "seeds_needed": cost.get("seeds_needed"), "clips_needed": cost.get("clips_needed"),
                     "seeds_could_decide": cost.get("seeds_could_decide"),
                     "sentence": c.sentence(len(comparisons))})
    return pd.DataFrame(rows)


def dominators(scores: RunScores, names: list[str]) -> dict[str, list[str]]:
    """Each retrained configuration's dominators beyond noise (`search.analysis.decision.dominated_by`): [] for one
    no other is shown better than on every task, the Pareto front as the data can tell it."""
    have = [n for n in names if scores.seeds(n)]
    if len(have) < 2 or len(scores.tasks) < 2:
        return {}
    return dominated_by(scores, have)
