"""Housekeeping of a phase's Tune storage."""
from types import SimpleNamespace

import pyarrow.fs as pafs

from search.tune.tuner import keep_latest_checkpoints


def _trial(root, name, n):
    folder = root / name
    for i in range(n):
        (folder / f"checkpoint_{i:06d}").mkdir(parents=True)
        (folder / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"x")
    (folder / "run").mkdir(parents=True)  # the trial's own working folder: never touched
    return folder


def test_only_the_checkpoint_a_result_points_to_survives(tmp_path):
    three, one, none = _trial(tmp_path, "trial_a", 3), _trial(tmp_path, "trial_b", 1), _trial(tmp_path, "trial_c", 0)
    fs = pafs.LocalFileSystem()
    results = [SimpleNamespace(checkpoint=SimpleNamespace(filesystem=fs, path=str(three / "checkpoint_000002"))),
               SimpleNamespace(checkpoint=SimpleNamespace(filesystem=fs, path=str(one / "checkpoint_000000"))),
               SimpleNamespace(checkpoint=None)]  # a trial that failed before its first epoch
    assert keep_latest_checkpoints(results) == 2
    assert sorted(p.name for p in three.iterdir()) == ["checkpoint_000002", "run"]
    assert (three / "checkpoint_000002" / "state.pt").is_file()
    assert sorted(p.name for p in one.iterdir()) == ["checkpoint_000000", "run"]
    assert sorted(p.name for p in none.iterdir()) == ["run"]


def test_only_this_experiments_scratch_runs_are_deleted(tmp_path, monkeypatch):
    import tempfile

    from search.space.trial import scratch_dir, scratch_key
    from search.tune.tuner import drop_local_runs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    ours, theirs = tmp_path / "a" / "exp", tmp_path / "b" / "exp"  # a copy elsewhere: another key
    assert scratch_key(ours) != scratch_key(theirs) and scratch_key(ours) == scratch_key(tmp_path / "a" / ".." / "a" / "exp")
    for exp in (ours, theirs):
        run = scratch_dir(scratch_key(exp)) / "search" / "trial_1" / "checkpoint"
        run.mkdir(parents=True)
        (run / "state.pt").write_bytes(b"x")
    assert scratch_dir(scratch_key(ours)).is_relative_to(tmp_path / "tmp")
    drop_local_runs(SimpleNamespace(dir=ours))
    assert not scratch_dir(scratch_key(ours)).exists()
    assert (scratch_dir(scratch_key(theirs)) / "search" / "trial_1" / "checkpoint" / "state.pt").is_file()
    drop_local_runs(SimpleNamespace(dir=ours))  # nothing left: nothing to do


def test_a_multi_objective_search_hands_its_objectives_to_the_study_and_the_scheduler(tmp_path):
    from types import SimpleNamespace

    from optuna.samplers import NSGAIISampler

    from search.space.settings import MultiObjective, SearchSettings
    from search.tune.tuner import _mo_scheduler, _searcher, objectives

    settings = SearchSettings(multi=MultiObjective(("val/gory/f1", "val/gory/loss"), "nsga2", "crowding"),
                              grace_period=2, reduction_factor=2)
    exp = SimpleNamespace(spec=SimpleNamespace(search=settings, space={}, config=SimpleNamespace(tasks=("gory",)), base={}),
                          dir=tmp_path, name="mo", max_t=8)
    assert objectives(exp) == (["search/score/val/gory/f1", "search/score/val/gory/loss"], ["max", "min"])
    searcher = _searcher(exp)
    assert searcher.metric == ["search/score/val/gory/f1", "search/score/val/gory/loss"]
    assert searcher._mode == ["max", "min"] and isinstance(searcher._sampler, NSGAIISampler)
    assert searcher._sampler._population_size == 4  # num_samples 8: the smallest generation
    import optuna

    assert optuna.load_study(study_name="mo", storage=searcher._storage).metric_names == ["val/gory/f1", "val/gory/loss"]
    scheduler = _mo_scheduler(exp)
    assert scheduler.metrics == searcher.metric and scheduler.signs == [1.0, -1.0]
    assert sorted(scheduler.rungs) == [2, 4] and scheduler.tie_break == "crowding"
    assert scheduler.state_file == str(tmp_path / "mo_asha_rungs.json")
    single = SimpleNamespace(spec=SimpleNamespace(search=SearchSettings(), space={}, config=SimpleNamespace(tasks=()), base={}),
                             dir=tmp_path, name="one", max_t=8)
    assert objectives(single) == (["search/score"], ["max"]) and _searcher(single).metric == "search/score"
    # the parent run's sweep.kind tag says what proposed and stopped the trials
    assert (settings.kind, SearchSettings().kind) == ("optuna-nsga2+mo-asha", "optuna-tpe+asha")
    assert SearchSettings(grouping_mode="exhaustive").kind == "groupings-exhaustive"


def test_tpe_leaves_its_random_start_up_within_a_small_budget(tmp_path):
    """Optuna's default 10 random start-up trials would make the flagship's 12-trial search random."""
    from types import SimpleNamespace

    from search.space.settings import SearchSettings
    from search.tune.tuner import _searcher, startup_trials

    assert [startup_trials(n) for n in (4, 12, 30, 200)] == [4, 4, 10, 10]
    exp = SimpleNamespace(spec=SimpleNamespace(search=SearchSettings(num_samples=12), space={},
                                               config=SimpleNamespace(tasks=("gory",)), base={}),
                          dir=tmp_path, name="tpe", max_t=4)
    assert _searcher(exp)._sampler._n_startup_trials == 4
