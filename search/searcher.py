"""OptunaSearch that records trials ASHA stopped early as PRUNED (not COMPLETE) in the Optuna study.

Ray's OptunaSearch tells Optuna every stopped trial is COMPLETE with its partial value, so the Optuna
dashboard would show no pruning. Importable module: Tune pickles the searcher into the experiment.
"""
from __future__ import annotations

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch


class PrunedAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, max_t: int, time_attr: str = "training_iteration", **kwargs):
        super().__init__(*args, **kwargs)
        self._max_t, self._time_attr = max_t, time_attr

    def on_trial_complete(self, trial_id, result=None, error=False):
        ot_trial = self._ot_trials.get(trial_id)
        if error and ot_trial is not None and trial_id not in self._completed_trials:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)  # not COMPLETE with a partial value
            self._completed_trials.add(trial_id)
            return
        stopped_early = (ot_trial is not None and result and not error
                         and trial_id not in self._completed_trials
                         and isinstance(self.metric, str) and self.metric in result
                         and result.get(self._time_attr, self._max_t) < self._max_t)
        if not stopped_early:
            return super().on_trial_complete(trial_id, result=result, error=error)
        step = int(result[self._time_attr])
        if step not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(float(result[self.metric]), step)  # the step ASHA decided on
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
