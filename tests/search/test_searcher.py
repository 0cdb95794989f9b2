"""What the Optuna study hears from the searcher, driven by direct calls (no Ray cluster)."""
import optuna
import pytest
from optuna.samplers import NSGAIISampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.tune.searcher import PrunedAwareOptunaSearch
from search.space.optuna import DefineByRun

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


@pytest.mark.parametrize("metrics,names", [("search/score", ["val/avg_f1"]), (METRICS, ["val/gory/f1", "val/sarcasm/f1"])],
                         ids=["one", "two"])
def test_the_study_names_its_objectives_and_each_trial_its_configuration(tmp_path, metrics, names):
    """What Optuna Dashboard shows: the objectives by the metrics' names, each trial by MLflow's label and tags."""
    space = {**SPACE, "groups": {"partition": [[["binary", "gory"], ["mature"]]]}}
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    base = {"tasks": ["binary", "gory", "mature"], "strategy": {"scheduler": "dsg"}}
    searcher = PrunedAwareOptunaSearch(space=DefineByRun(space, tuple(base["tasks"]), base=base), storage=storage,
                                       study_name="s",
                                       max_t=4, metric=metrics, mode="max" if isinstance(metrics, str) else ["max"] * 2,
                                       metric_names=names, phase="tune-equal_sum")
    config = searcher.suggest("t1")
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.metric_names == names
    attrs = study.trials[0].user_attrs
    combiner = config["trial"]["overrides"]["strategy.combiner.name"]
    assert attrs == {"label": f"dsg+{combiner}+all_modalities | bin+gor/mat", "partition": "binary+gory|mature", "role": "search",
                     "phase": "tune-equal_sum", "tune_trial_id": "t1"}
    plain = PrunedAwareOptunaSearch(space=DefineByRun(SPACE, ("binary", "gory"), base={"tasks": ["binary", "gory"]}),
                                    storage=storage, study_name="p", max_t=4, metric="search/score", mode="max")
    plain.suggest("t2")
    assert optuna.load_study(study_name="p", storage=storage).trials[0].user_attrs["partition"] == "binary+gory"
