"""What the Optuna study hears from the searcher, driven by direct calls (no Ray cluster)."""
import optuna
import pytest
from optuna.samplers import NSGAIISampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.searcher import PrunedAwareOptunaSearch
from search.space import DefineByRun

SPACE = {"train": {"lr": {"loguniform": [1e-4, 1e-2]}}, "strategy": {"combiner": {"choice": {"equal": {}, "rlw": {}}}}}
METRICS = ["search/score/val/gory/f1", "search/score/val/sarcasm/f1"]


@pytest.mark.parametrize("sampler", [TPESampler(seed=0, multivariate=True, group=True), NSGAIISampler(seed=0)],
                         ids=["tpe", "nsga2"])
def test_a_multi_objective_study_hears_complete_pruned_and_failed_trials(tmp_path, sampler):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    searcher = PrunedAwareOptunaSearch(space=DefineByRun(SPACE), sampler=sampler, storage=storage, study_name="mo",
                                       max_t=4, metric=METRICS, mode=["max", "max"])
    for tid in "abcd":
        assert "trial" in searcher.suggest(tid)
    searcher.on_trial_result("a", {"training_iteration": 1, METRICS[0]: 0.5, METRICS[1]: 0.4})  # no intermediates
    searcher.on_trial_complete("a", {"training_iteration": 4, METRICS[0]: 0.6, METRICS[1]: 0.5})
    searcher.on_trial_complete("b", {"training_iteration": 1, METRICS[0]: 0.3, METRICS[1]: 0.2})  # MO-ASHA stopped it
    searcher.on_trial_complete("c", None, error=True)
    searcher.on_trial_complete("d", {"training_iteration": 4, METRICS[0]: -1e9, METRICS[1]: -1e9})  # diverged
    study = optuna.load_study(study_name="mo", storage=storage)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2
    states = [(t.state, t.values) for t in study.trials]
    assert states == [(TrialState.COMPLETE, [0.6, 0.5]), (TrialState.PRUNED, None), (TrialState.FAIL, None),
                      (TrialState.COMPLETE, [-1e9, -1e9])]
    assert "trial" in searcher.suggest("e")  # the sampler still proposes after pruned and failed trials
