"""OptunaSearch that records trials ASHA (or MO-ASHA) stopped early as PRUNED (not COMPLETE) in the Optuna study.

Ray's OptunaSearch tells Optuna every stopped trial is COMPLETE with its partial value, so the Optuna
dashboard would show no pruning. The study also names its objectives (`val/avg_f1`, or each objective of a
multi-objective search) and each trial carries what MLflow calls it (user attributes `label`, `partition`,
`role`, `phase`, `tune_trial_id`), so Optuna Dashboard reads like the runs table. Importable module: Tune
pickles the searcher into the experiment.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.space.trial import DIVERGED, meta_of

logger = logging.getLogger(__name__)


def trial_attrs(entry: dict[str, Any], phase: str) -> dict[str, str]:
    """A searched trial's user attributes in the study: its configuration's label, its partition (tasks by full
    name, `binary+gory|mature+slapstick+sarcasm`; one group when all tasks share a model), its role and phase."""
    meta = meta_of(entry)
    return {"label": meta.label, "partition": meta.partition, "role": meta.role, "phase": phase}


class PrunedAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, max_t: int, time_attr: str = "training_iteration", metric_names: list[str] | None = None,
                 phase: str = "search", **kwargs):
        # before the parent's __init__, which sets the study up (`_setup_study`)
        self._metric_names, self._phase = list(metric_names or []), phase
        super().__init__(*args, **kwargs)
        self._max_t, self._time_attr = max_t, time_attr

    def _setup_study(self, mode):
        super()._setup_study(mode)
        names = self._metric_names
        if names and len(names) == len(self._ot_study.directions):
            with warnings.catch_warnings():  # experimental since Optuna 3.2, and what its dashboard reads
                warnings.simplefilter("ignore", ExperimentalWarning)
                self._ot_study.set_metric_names(names)

    def suggest(self, trial_id):
        config = super().suggest(trial_id)
        ot_trial, entry = self._ot_trials.get(trial_id), (config or {}).get("trial")
        if ot_trial is not None and isinstance(entry, dict):
            attrs = trial_attrs(entry, self._phase)
            for key, value in {**attrs, "tune_trial_id": trial_id}.items():
                ot_trial.set_user_attr(key, value)
        return config

    def _finished_in_study(self, trial_id) -> bool:
        # After a killed launcher the journal can be ahead of the pickled searcher state: a trial the
        # restored experiment still runs may already be finished in the study.
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is not None and ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished()

    def on_trial_result(self, trial_id, result):
        if DIVERGED in result:  # a diverged trial's last word: it fails next, and Optuna records FAIL
            return
        if not self._finished_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        ot_trial = self._ot_trials.get(trial_id)
        if error and ot_trial is not None and trial_id not in self._completed_trials:
            self._tell(trial_id, ot_trial, TrialState.FAIL)  # not COMPLETE with a partial value
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        stopped_early = (ot_trial is not None and result and not error
                         and trial_id not in self._completed_trials
                         and all(m in result for m in metrics)
                         and result.get(self._time_attr, self._max_t) < self._max_t)
        if not stopped_early:
            return super().on_trial_complete(trial_id, result=result, error=error)
        step = int(result[self._time_attr])
        # the step ASHA decided on (a multi-objective study takes no intermediate values: PRUNED alone)
        reported = ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values
        if isinstance(self.metric, str) and step not in reported:
            ot_trial.report(float(result[self.metric]), step)
        self._tell(trial_id, ot_trial, TrialState.PRUNED)

    def _tell(self, trial_id, ot_trial, state) -> None:
        # After a killed launcher the journal may already hold this trial's end (written before the
        # searcher state was last saved): the study keeps what it has, the searcher moves on.
        try:
            self._ot_study.tell(ot_trial, state=state)
        except ValueError as exc:
            logger.info("optuna trial %s already finished: %s", trial_id, exc)
        self._completed_trials.add(trial_id)
