"""The multi-objective search as it goes, in MLflow: the parent run's `search/hypervolume` against the
epochs spent so far (its step), and each trial's child-run tag `front_rank` when the phase ends.

The hypervolume is that of every objective vector any trial reported at any epoch, against the reference
point (`search.analysis.reference`); each trial's front rank that of its best epoch by the search metric, as in the
leaderboard. A tune.Callback on the driver: its state is part of Tune's experiment state, so a --resume
goes on counting from where it was."""
from __future__ import annotations

import math
from typing import Sequence

from ray import tune

from mtl_core import keys
from search.analysis.pareto import hypervolume, non_dominated_ranks
from search.tracking.tracker import Tracker

HYPERVOLUME = keys.HYPERVOLUME


class FrontTrace(tune.Callback):
    def __init__(self, tracker: Tracker, phase: str, objectives: Sequence[str], mode: str,
                 reference: Sequence[float] | None):
        self.tracker, self.phase, self.mode = tracker, phase, mode
        self.score_keys = [keys.objective_score(o) for o in objectives]
        self.signs = [1.0 if keys.direction(o) == "max" else -1.0 for o in objectives]
        self.reference = list(reference) if reference is not None else None
        self.front: list[list[float]] = []  # the non-dominated vectors seen so far
        self.best: dict[str, tuple[float, list[float]]] = {}  # trial -> (its best search score, vector then)
        self.epochs = 0

    def get_state(self) -> dict:
        return {"front": self.front, "best": self.best, "epochs": self.epochs}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def vector(self, result: dict) -> list[float] | None:
        """Higher-is-better values; a trial whose metric was not finite (the worst score) is all NaN."""
        if any(k not in result for k in self.score_keys):
            return None
        values = [s * float(result[k]) for s, k in zip(self.signs, self.score_keys)]
        return [math.nan] * len(values) if any(abs(v) >= keys.WORST for v in values) else values

    def on_trial_result(self, iteration, trials, trial, result, **info):
        vec = self.vector(result)
        if vec is None:
            return
        self.epochs += 1
        points = self.front + [vec]
        self.front = [p for p, r in zip(points, non_dominated_ranks(points)) if r == 0 and not math.isnan(p[0])]
        score = float(result.get(keys.SCORE, math.nan))
        sign = 1.0 if self.mode == "max" else -1.0
        if trial.trial_id not in self.best or sign * score > sign * self.best[trial.trial_id][0]:
            self.best[trial.trial_id] = (score, vec)
        if self.reference is not None:
            self.tracker.call("log_metric", HYPERVOLUME, hypervolume(self.front, self.reference), step=self.epochs)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.best.pop(trial.trial_id, None)  # a failed trial has no place on the front

    def front_ranks(self) -> dict[str, int]:
        ids = list(self.best)
        return dict(zip(ids, (int(r) for r in non_dominated_ranks([self.best[i][1] for i in ids]))))

    def on_experiment_end(self, trials, **info):
        for tid, rank in self.front_ranks().items():  # a tag only: the run's status stays what it is
            self.tracker.push(["tags", self.phase, tid, {"front_rank": str(rank)}])
        self.tracker.close()
