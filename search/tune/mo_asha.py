"""Multi-objective asynchronous successive halving (MO-ASHA, Schmucker et al. 2021) as a Ray Tune scheduler.

Rungs sit at grace_period * eta**k epochs below max_t, as in Ray's ASHA. When a trial reaches a rung its
objective vector is recorded there, and it continues only if it is in the top 1/eta of the vectors the rung
holds so far: ranked by non-dominated front, ties inside a front broken by hypervolume contribution or
crowding distance (`search.analysis.pareto`). Asynchronous like ASHA: no waiting for a full rung. The cut is Ray's
ASHA's in ranks, and stricter: Ray continues a trial whose score reaches the (1 - 1/eta) quantile of the
scores recorded before it, interpolated between two scores; here a trial continues with at most (m - 1) / eta
of those m ahead of it, so a score inside Ray's interpolation gap stops. On random scores (10 trials x 16
epochs, eta 3, 300 seeds) that is 26.6% of the epochs here against Ray's 29.9% (docs/results.md): part of
any saving measured against Ray's ASHA is this cut, not the objectives. The first trial at a rung always
continues, the second only if the first is not ahead of it. (Waving every trial through until a rung held
eta vectors, as this scheduler first did, ran 28 epochs where ASHA ran 24 in the benchmark: early trials
weigh heavily in a small search.) A diverged trial's vector (a NaN, or the worst score the
trainable reports for one, `mtl_core.keys.WORST`) is all NaN: dominated by everything, and kept out of the
scaling of the others.

Ties inside a front are broken by hypervolume contribution by default: with five objectives nearly every
member of a small front is an end of it on some objective, where crowding distance is infinite, so crowding
leaves most ties standing and stops little more than the dominated trials (a simulation of 16 trials x 6
epochs, eta 2, five noisy correlated F1s: 73% of the epochs run with crowding, 57% with the contribution,
58% for ASHA on their mean). `tie_break="crowding"` gives NSGA-II's rule, `tie_break="epsilon_net"` the ε-net
that Schmucker et al. found best (`search.analysis.pareto.epsilon_net_places`: a strict order spread along the front).

Tune pickles the scheduler into `tuner.pkl` when the experiment is built and restores it from there, not
from its latest state; so the rungs are also written to `state_file` on every record, and a restored
scheduler reads them back before its first decision (a --resume then ranks against every vector recorded
before the interrupt). The same file keeps the trials told to stop: one whose stop a kill cut off before Tune
applied it is restored from its checkpoint by --resume and stops at its next result. Importable module:
Tune pickles it.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from mtl_core import keys
from search.io.folder_read import read_mo_asha_state
from search.io.folder_write import write_text
from search.space.rungs import rungs
from search.analysis.pareto import ahead_of

log = logging.getLogger(__name__)


class MultiObjectiveASHA(FIFOScheduler):
    def __init__(self, metrics: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int = 1,
                 reduction_factor: int = 3, time_attr: str = "training_iteration", state_file: str | None = None,
                 tie_break: str = "hypervolume"):
        super().__init__()
        if len(metrics) != len(modes) or not metrics:
            raise ValueError("one mode (min or max) per metric, and at least one metric")
        self.metrics, self.signs = list(metrics), [1.0 if m == "max" else -1.0 for m in modes]
        self.max_t, self.eta, self.time_attr = max_t, reduction_factor, time_attr
        self.state_file, self.tie_break = state_file, tie_break
        # rung level -> trial id -> its vector, every objective turned into "higher is better"
        self.rungs: dict[int, dict[str, list[float]]] = {
            t: {} for t in rungs(grace_period, reduction_factor, max_t)[:-1]}  # at max_t a trial ends anyway
        self.stopped: set[str] = set()  # the trials told to stop: a trial restored after a kill stays stopped
        self.num_stopped = 0
        self._loaded = False

    def set_search_properties(self, metric, mode, **spec) -> bool:
        # the objectives are this scheduler's own: a single Tune metric beside them is a mistake
        return metric is None and mode is None

    # -- decisions -------------------------------------------------------------------------------

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._load()
        if trial.trial_id in self.stopped:  # stopped before a kill that came before Tune applied it
            return TrialScheduler.STOP
        vector = self._vector(result)
        if vector is None:
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t:
            action = TrialScheduler.STOP
        else:
            action = self.decide(trial.trial_id, result[self.time_attr], vector)
        self.num_stopped += action == TrialScheduler.STOP
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        vector = self._vector(result or {})
        if vector is not None:  # a trial that ended at a rung still counts there
            self.decide(trial.trial_id, result[self.time_attr], vector)

    def decide(self, trial_id: str, t: float, vector: list[float]) -> str:
        """Record the vector at the highest rung `t` has reached and this trial has not been recorded at;
        continue or stop by its place there. A trial recorded at every rung it reached continues."""
        self._load()
        for level in sorted(self.rungs, reverse=True):
            recorded = self.rungs[level]
            if t < level or trial_id in recorded:
                continue
            recorded[trial_id] = vector
            keep = self.in_top(trial_id, level)
            if not keep:
                self.stopped.add(trial_id)
            self._save()  # the vector and the decision together: a resume replays neither differently
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def in_top(self, trial_id: str, level: int) -> bool:
        """In the top 1/eta of the rung as Ray's ASHA cuts it: of the m other vectors recorded there, at most
        (m - 1) / eta rank strictly ahead of it (equal vectors tie, so they continue or stop together); the
        first vector at a rung always continues."""
        recorded = self.rungs[level]
        others = len(recorded) - 1
        if others == 0:
            return True
        ids = list(recorded)
        ahead = ahead_of([recorded[i] for i in ids], ids.index(trial_id), self.tie_break)
        return bool(ahead <= (others - 1) / self.eta)

    def _vector(self, result: dict) -> list[float] | None:
        if self.time_attr not in result or any(m not in result for m in self.metrics):
            return None  # as ASHA: no decision without the values (e.g. a result from a restore)
        values = [float(result[m]) for m in self.metrics]
        if not all(math.isfinite(v) and abs(v) < keys.WORST for v in values):
            return [math.nan] * len(values)  # diverged: dominated by everything
        return [s * v for s, v in zip(self.signs, values)]

    # -- state ------------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        # NaN is written as NaN (Python's json reads it back); whole and renamed: a kill never leaves half a file
        state = {str(level): rec for level, rec in self.rungs.items()}
        write_text(Path(self.state_file), json.dumps({**state, "stopped": sorted(self.stopped)}))

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.state_file is None:
            return
        saved, stopped = read_mo_asha_state(Path(self.state_file), len(self.metrics))  # --resume checked it
        self.stopped |= stopped
        for level, recorded in saved.items():
            self.rungs.setdefault(level, {}).update(
                {tid: rec for tid, rec in recorded.items() if tid not in self.rungs.get(level, {})})
        log.debug("MO-ASHA: restored %d recorded vectors", sum(len(r) for r in saved.values()))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump({**self.__dict__, "stopped": sorted(self.stopped)}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        state["rungs"] = {int(k): v for k, v in state["rungs"].items()}
        state["stopped"] = set(state.get("stopped", []))
        self.__dict__.update(state)

    def debug_string(self) -> str:
        counts = ", ".join(f"epoch {level}: {len(rec)}" for level, rec in sorted(self.rungs.items()))
        return f"Using MO-ASHA over {len(self.metrics)} objectives: num_stopped={self.num_stopped}; recorded {counts}"
