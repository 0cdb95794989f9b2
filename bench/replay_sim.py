"""Stopping rules replayed on recorded learning curves (bench/bench_replay.py): simulated asynchronous workers,
the schedulers driven as Tune drives them, and what each replay spends and finds.

A replay is deterministic given its curves, order and scheduler: `workers` workers take the trials in `order`;
a trial's epoch e ends `seconds[e]` after the previous one (its recorded time); at each epoch's end the scheduler
gets that epoch's values in a Tune result and says CONTINUE or STOP; a trial ends at max_t, at a STOP, or at its
last recorded epoch (a diverged one). Events at the same time are taken in the order they were queued.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from mtl_core import keys

STOP, CONTINUE = "STOP", "CONTINUE"
TIME_ATTR = "training_iteration"


@dataclass
class Curve:
    """One configuration's recorded run: the search metric and each task's val F1 per epoch (index 0 = epoch 1),
    each epoch's seconds, and the test split's score of the whole run (NaN when not recorded)."""

    label: str
    val: np.ndarray
    tasks: np.ndarray  # [epochs, tasks]
    seconds: np.ndarray
    test: float = math.nan

    @classmethod
    def of(cls, row: dict, max_t: int | None = None) -> "Curve":
        def num(v):
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

        val = np.array([num(v) for v in row["val"]], dtype=float)[:max_t]
        tasks = np.array([[num(v) for v in row["tasks"][t]] for t in row["tasks"]], dtype=float).T[: len(val)]
        sec = np.array([num(v) for v in row.get("seconds") or [math.nan] * len(val)], dtype=float)[: len(val)]
        sec = np.where(np.isfinite(sec) & (sec > 0), sec, np.nanmedian(sec) if np.isfinite(sec).any() else 1.0)
        return cls(row.get("label", ""), val, tasks.reshape(len(val), -1), sec, num(row.get("test")))

    @property
    def best(self) -> float:
        """The best search metric over the whole recorded curve (NaN-proof: a diverged run's NaNs are skipped)."""
        return float(np.nanmax(self.val)) if np.isfinite(self.val).any() else -math.inf


@dataclass
class Replay:
    """What one replay observed: (trial position in `order`, epoch from 1) in the order the results came."""

    order: list[int]
    results: list[tuple[int, int]] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)  # trials a scheduler stopped before their last epoch

    def epochs(self) -> int:
        return len(self.results)

    def last_epoch(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for trial, epoch in self.results:
            out[trial] = max(out.get(trial, 0), epoch)
        return out


# -- schedulers, each answering on_trial_result / on_trial_complete for a stand-in trial -------------------


class RayASHA:
    """Ray's own AsyncHyperBandScheduler on one value per epoch: `values(curve, e)` (e from 0)."""

    def __init__(self, max_t: int, grace: int, eta: int, value=lambda c, e: c.val[e]):
        from ray.tune.schedulers import AsyncHyperBandScheduler

        self.sched = AsyncHyperBandScheduler(time_attr=TIME_ATTR, metric="score", mode="max", max_t=max_t,
                                             grace_period=grace, reduction_factor=eta)
        self.value = value

    def result(self, curve: Curve, e: int) -> dict:
        return {TIME_ATTR: e + 1, "score": keys.score(float(self.value(curve, e)), "max")}

    def add(self, trial) -> None:
        self.sched.on_trial_add(None, trial)

    def on_result(self, trial, curve: Curve, e: int) -> str:
        return self.sched.on_trial_result(None, trial, self.result(curve, e))

    def on_complete(self, trial, curve: Curve, e: int) -> None:
        self.sched.on_trial_complete(None, trial, self.result(curve, e))


def mean_f1(curve: Curve, e: int) -> float:
    return float(np.mean(curve.tasks[e]))


class ProjectMOASHA:
    """search.tune.mo_asha.MultiObjectiveASHA over each task's val F1, as the launcher builds it (no state file)."""

    def __init__(self, max_t: int, grace: int, eta: int, tasks: int, tie_break: str):
        from search.tune.mo_asha import MultiObjectiveASHA

        self.names = [f"objective{i}" for i in range(tasks)]
        self.sched = MultiObjectiveASHA(self.names, ["max"] * tasks, max_t, grace, eta, tie_break=tie_break)

    def result(self, curve: Curve, e: int) -> dict:
        return {TIME_ATTR: e + 1, **{n: float(v) for n, v in zip(self.names, curve.tasks[e])}}

    def add(self, trial) -> None:
        pass

    def on_result(self, trial, curve: Curve, e: int) -> str:
        return self.sched.on_trial_result(None, trial, self.result(curve, e))

    def on_complete(self, trial, curve: Curve, e: int) -> None:
        self.sched.on_trial_complete(None, trial, self.result(curve, e))


def syne_order(points: np.ndarray) -> np.ndarray:
    """Each row's place in Syne Tune's MOASHA order (all objectives higher-is-better here): non-dominated
    fronts first to last; inside a front an ε-net, seeded by the row best on the first objective, each next
    row the one farthest (Euclidean, unscaled) from the rows already placed. Rows with a NaN come last."""
    from search.analysis.pareto import non_dominated_ranks

    p = np.asarray(points, dtype=float)
    bad = np.isnan(p).any(axis=1)
    p = np.where(bad[:, None], -keys.WORST, p)
    ranks = non_dominated_ranks(p)
    order: list[int] = []
    for r in range(ranks.max() + 1):
        members = list(np.flatnonzero(ranks == r))
        picked = [max(members, key=lambda i: (p[i, 0], -i))]
        members.remove(picked[0])
        while members:
            dist = [min(np.linalg.norm(p[i] - p[j]) for j in picked) for i in members]
            picked.append(members.pop(int(np.argmax(dist))))
        order += picked
    places = np.empty(len(p), dtype=int)
    places[order] = np.arange(len(p))
    return places


class SyneMOASHA:
    """Syne Tune's MOASHA rule (one bracket): rungs at grace * eta**k below max_t; at a rung the first vector
    continues; a later one continues while its place among the m + 1 vectors recorded there with it is at most
    (m + 1) / eta (stop when place / (m + 1) > 1 / eta), then it is recorded."""

    def __init__(self, max_t: int, grace: int, eta: int):
        from search.space.rungs import rungs

        self.max_t, self.eta = max_t, eta
        self.rungs: dict[int, dict[str, np.ndarray]] = {t: {} for t in rungs(grace, eta, max_t)[:-1]}

    def add(self, trial) -> None:
        pass

    def on_result(self, trial, curve: Curve, e: int) -> str:
        t = e + 1
        if t >= self.max_t:
            return STOP
        for level in sorted(self.rungs, reverse=True):
            recorded = self.rungs[level]
            if t < level or trial.trial_id in recorded:
                continue
            action = CONTINUE
            if recorded:
                points = np.vstack([*recorded.values(), curve.tasks[e]])
                if syne_order(points)[-1] / len(points) > 1 / self.eta:
                    action = STOP
            recorded[trial.trial_id] = curve.tasks[e]
            return action
        return CONTINUE

    def on_complete(self, trial, curve: Curve, e: int) -> None:
        pass


class NoStop:
    def add(self, trial) -> None:
        pass

    def on_result(self, trial, curve: Curve, e: int) -> str:
        return CONTINUE

    def on_complete(self, trial, curve: Curve, e: int) -> None:
        pass


# -- the simulation ------------------------------------------------------------------------------------------


def simulate(curves: Sequence[Curve], order: Sequence[int], scheduler, max_t: int, workers: int = 2) -> Replay:
    """Replay `scheduler` on the trials `order` (indices into `curves`) with `workers` asynchronous workers."""
    replay = Replay(list(order))
    queue: list[tuple[float, int, int, int]] = []  # (end time, sequence, trial position, epoch index)
    seq = 0
    trials = [SimpleNamespace(trial_id=f"t{pos:05d}") for pos in range(len(order))]
    next_pos = 0

    def start(now: float) -> None:
        nonlocal next_pos, seq
        pos = next_pos
        next_pos += 1
        scheduler.add(trials[pos])
        heapq.heappush(queue, (now + curves[order[pos]].seconds[0], seq, pos, 0))
        seq += 1

    for _ in range(min(workers, len(order))):
        start(0.0)
    while queue:
        now, _, pos, e = heapq.heappop(queue)
        curve = curves[order[pos]]
        replay.results.append((pos, e + 1))
        action = scheduler.on_result(trials[pos], curve, e)
        last = min(max_t, len(curve.val)) - 1
        if e < last and action != STOP:
            heapq.heappush(queue, (now + curve.seconds[e + 1], seq, pos, e + 1))
            seq += 1
            continue
        if e < last:
            replay.stopped.add(pos)
        scheduler.on_complete(trials[pos], curve, e)
        if next_pos < len(order):
            start(now)
    return replay


# -- what a replay spent and found -----------------------------------------------------------------------------


def share_of_epochs(replay: Replay, max_t: int) -> float:
    """Epochs run against every trial to max_t."""
    return replay.epochs() / (len(replay.order) * max_t)


def pick(curves: Sequence[Curve], replay: Replay) -> int:
    """The configuration (index into `curves`) whose trial had the best search metric at any epoch it ran."""
    best, chosen = -math.inf, replay.order[0]
    for pos, epoch in replay.results:
        v = curves[replay.order[pos]].val[epoch - 1]
        if np.isfinite(v) and v > best:
            best, chosen = float(v), replay.order[pos]
    return chosen


def regret(curves: Sequence[Curve], replay: Replay) -> tuple[float, float]:
    """(val, test) regret of the pick: the best of the drawn configurations minus the pick's, on the
    full-curve best search metric and on the recorded test score."""
    drawn = [curves[i] for i in replay.order]
    chosen = curves[pick(curves, replay)]
    tests = [c.test for c in drawn if np.isfinite(c.test)]
    test = max(tests) - chosen.test if tests and np.isfinite(chosen.test) else math.nan
    return max(c.best for c in drawn) - chosen.best, test


def observed_vectors(curves: Sequence[Curve], replay: Replay, epochs: int | None = None) -> np.ndarray:
    """The per-task val vectors of the first `epochs` results (all of them by default), in arrival order."""
    res = replay.results[: epochs if epochs is not None else len(replay.results)]
    return np.array([curves[replay.order[pos]].tasks[e - 1] for pos, e in res]).reshape(len(res), -1)


def last_vectors(curves: Sequence[Curve], replay: Replay) -> np.ndarray:
    """Each trial's per-task val vector at the last epoch it ran."""
    return np.array([curves[replay.order[pos]].tasks[e - 1] for pos, e in sorted(replay.last_epoch().items())])


def front_volume(points: np.ndarray, reference: Sequence[float]) -> float:
    from search.analysis.pareto import hypervolume

    p = np.asarray(points, dtype=float)
    p = p[~np.isnan(p).any(axis=1)] if len(p) else p
    return hypervolume(p, reference) if len(p) else 0.0
