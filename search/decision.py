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
from search.stats import SeedClipEstimate, clip_weights, delta_m, holm, macro_f1, seed_clip_estimate, spent_alpha

ALPHA = 0.05
MIN_SEEDS = 3  # below this a t interval over seeds says little: never a decision
RESAMPLES = 1000


def pred_col(task: str) -> str:
    return f"pred/{task}"


def label_col(task: str) -> str:
    return f"label/{task}"


class RunScores:
    """Per-task test macro-F1 of every retrained run, on the full test set and on shared clip resamples."""

    def __init__(self, runs: pd.DataFrame, tasks: Sequence[str], resamples: int = RESAMPLES, seed: int = 0):
        self.tasks = list(tasks)
        ok = runs[(runs["error"].fillna("") == "") & runs[keys.average("test")].notna()] if len(runs) else runs
        have = [pred_col(t) for t in self.tasks if pred_col(t) in ok]
        self.with_predictions = len(have) == len(self.tasks) and len(ok) > 0
        self._full: dict[tuple[str, int], np.ndarray] = {}  # (name, seed) -> [T]
        self._boot: dict[tuple[str, int], np.ndarray] = {}  # (name, seed) -> [B, T]
        if not self.with_predictions:
            for _, r in ok.iterrows():
                self._full[(r["name"], int(r["seed"]))] = np.array([r[keys.task("test", t)] for t in self.tasks], float)
            return
        first = ok.iloc[0]
        labels = np.stack([np.asarray(first[label_col(t)]) for t in self.tasks], axis=1)
        self.weights = clip_weights(len(labels), resamples, seed)
        for _, r in ok.iterrows():
            pred = np.stack([np.asarray(r[pred_col(t)]) for t in self.tasks], axis=1)
            key = (r["name"], int(r["seed"]))
            self._full[key] = macro_f1(pred, labels)
            self._boot[key] = macro_f1(pred, labels, self.weights)

    def seeds(self, name: str) -> list[int]:
        return sorted(s for n, s in self._full if n == name)

    def full(self, name: str, seeds: Sequence[int]) -> np.ndarray:
        return np.stack([self._full[(name, s)] for s in seeds])  # [S, T]

    def boot(self, name: str, seeds: Sequence[int]) -> np.ndarray:
        """[B, S, T]; zeros (no test-set term) when the runs came without predictions."""
        if not self.with_predictions:
            return np.zeros((1, len(seeds), len(self.tasks)))
        return np.stack([self._boot[(name, s)] for s in seeds], axis=1)

    def difference(self, a: str, b: str, seeds: Sequence[int] | None = None) -> SeedClipEstimate:
        """a - b in test macro-F1 averaged over tasks, over the seeds both have (a failed seed drops out of
        both sides)."""
        shared = self.shared(a, b, seeds)
        if not shared:
            return SeedClipEstimate(math.nan, math.nan, 0.0, 0)
        per_seed = (self.full(a, shared) - self.full(b, shared)).mean(axis=1)
        resampled = (self.boot(a, shared) - self.boot(b, shared)).mean(axis=(1, 2))
        return seed_clip_estimate(per_seed, resampled)

    def delta_m(self, a: str, reference: str, seeds: Sequence[int] | None = None) -> SeedClipEstimate:
        """Δm% of a against `reference` (the single-task models) over their shared seeds."""
        shared = self.shared(a, reference, seeds)
        if not shared:
            return SeedClipEstimate(math.nan, math.nan, 0.0, 0)
        fa, fb = self.full(a, shared), self.full(reference, shared)
        idx = range(len(self.tasks))
        per_seed = [delta_m(dict(zip(idx, x)), dict(zip(idx, y)), idx) for x, y in zip(fa, fb)]
        ba, bb = self.boot(a, shared).mean(axis=1), self.boot(reference, shared).mean(axis=1)
        resampled = [delta_m(dict(zip(idx, x)), dict(zip(idx, y)), idx) for x, y in zip(ba, bb)]
        value = delta_m(dict(zip(idx, fa.mean(0))), dict(zip(idx, fb.mean(0))), idx)
        return seed_clip_estimate(np.array(per_seed), np.array(resampled) if self.with_predictions else np.zeros(1), value)

    def shared(self, a: str, b: str, seeds: Sequence[int] | None = None) -> list[int]:
        common = set(self.seeds(a)) & set(self.seeds(b))
        return sorted(common if seeds is None else common & set(seeds))


@dataclass(frozen=True)
class Comparison:
    """The best configuration against one other entry, after the race."""

    best: str
    other: str
    estimate: SeedClipEstimate
    status: str  # beats | worse | undecided | inconclusive
    look: int  # the look it was decided at (1-based), or the last look it was open at
    alpha: float  # the level of the last test it took part in (spent alpha, before Holm)

    @property
    def decided(self) -> bool:
        return self.status in ("beats", "worse")

    @property
    def open(self) -> bool:
        """More seeds could decide it: undecided, or short of seeds (a run failed); not a difference that
        does not vary over seeds (the same configuration twice)."""
        return self.status == "undecided" or (self.status == "inconclusive" and self.estimate.n < MIN_SEEDS)

    def seeds_needed(self, comparisons: int) -> int | None:
        return self.estimate.seeds_needed(ALPHA / max(1, comparisons))

    def sentence(self, comparisons: int = 1) -> str:
        e = self.estimate
        low, high = e.interval()
        span = (f"{e.value:+.4f} [{low:+.4f}, {high:+.4f}] in test macro-F1 (95% interval over seeds and test "
                f"clips, {e.n} seeds)") if e.n >= 2 else f"{e.value:+.4f} ({e.n} seed)"
        if self.status == "beats":
            return f"{self.best} beats {self.other}: {span}; decided at look {self.look}."
        if self.status == "worse":
            return f"{self.best} is worse than {self.other}: {span}; decided at look {self.look}."
        if self.status == "inconclusive":
            why = "fewer than 3 shared seeds" if e.n < MIN_SEEDS else "the difference does not vary over seeds"
            return f"{self.best} vs {self.other}: inconclusive ({why}): {span}."
        need = self.seeds_needed(comparisons)
        cost = (f"deciding it would take about {need} seeds per side (from the observed paired spread, "
                f"95% with Holm over {comparisons} comparison(s))" if need is not None else
                "no number of seeds would decide it: the difference is within the test set's own sampling "
                "noise (a larger test split would)")
        return f"{self.best} vs {self.other}: undecided after {e.n} seeds: {span}; {cost}."


def looks(seeds_min: int, seeds_max: int, step: int) -> list[int]:
    """The seed counts at which the race looks: seeds_min, seeds_min + step, ..., seeds_max."""
    out = list(range(seeds_min, seeds_max, max(1, step))) + [seeds_max]
    return sorted(set(n for n in out if n >= seeds_min))


def race(scores: RunScores, best: str, others: Sequence[str], seeds: Sequence[int], at: Sequence[int],
         done: int | None = None, alpha: float = ALPHA) -> list[Comparison]:
    """Replay the race on the runs there are, over the first `done` of the looks `at` (seed counts; all by
    default): at look l every comparison still open is tested on the first at[l] final seeds that both
    sides have, at the alpha spent since the previous look, with Holm across the comparisons open at that
    look. Deterministic, so a resumed phase replays the same decisions."""
    last: dict[str, Comparison] = {}
    open_, previous = list(others), 0.0
    for look, n in enumerate(at[: len(at) if done is None else done], start=1):
        level = spent_alpha(n / at[-1], alpha) - previous
        previous += level
        estimates = {o: scores.difference(best, o, seeds[:n]) for o in open_}
        testable = {o: e.p_value() for o, e in estimates.items() if e.n >= MIN_SEEDS and e.seed_sd > 0}
        rejected = holm(testable, level)
        for o, e in estimates.items():
            status = ("beats" if e.value > 0 else "worse") if o in rejected else (
                "undecided" if o in testable else "inconclusive")
            last[o] = Comparison(best, o, e, status, look, level)
        open_ = [o for o in open_ if last[o].open]
    return [last[o] for o in others if o in last]


def still_open(comparisons: Sequence[Comparison]) -> list[str]:
    """The entries whose comparison more seeds could still decide."""
    return [c.other for c in comparisons if c.open]


def decision_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One row per comparison (decision.csv, the report, the console's last lines)."""
    rows = []
    for c in comparisons:
        low, high = c.estimate.interval()
        need = c.seeds_needed(len(comparisons)) if c.status == "undecided" else None
        rows.append({"best": c.best, "other": c.other, "status": c.status, "seeds": c.estimate.n,
                     "diff": c.estimate.value, "low": low, "high": high, "p": c.estimate.p_value(),
                     "look": c.look, "alpha": c.alpha, "seeds_needed": need, "sentence": c.sentence(len(comparisons))})
    return pd.DataFrame(rows)
