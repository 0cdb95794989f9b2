"""What a trial receives and reports: typed settings, overrides and meta kept apart, and the score the
search schedules on kept apart from the metrics."""
import json
import math
import tempfile
from dataclasses import asdict
from types import SimpleNamespace

import optuna

from mtl_core import keys
from search.space.optuna import DefineByRun
import pytest

from mtl_core.config import ConfigError
from search.space.trial import TrialMeta, TrialSettings, check_listed, meta_of, trial_config, trial_entry


def _run_trial(monkeypatch, tmp_path, entry, values, objectives=()):
    import search.tune.trainable as trainable

    reported, seen = [], {}
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: reported.append(metrics))
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "get_context", lambda: SimpleNamespace(
        get_trial_dir=lambda: str(tmp_path / "ray_trial"), get_experiment_name=lambda: "search", get_trial_id=lambda: "t1"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(trainable.tune.Checkpoint, "from_directory", staticmethod(lambda d: None))
    monkeypatch.setattr(trainable, "placement", lambda cfg: (cfg, ""))

    def fake_train(cfg, report, run_dir, resume, eval_test=False):
        seen["cfg"], seen["run_dir"] = cfg, run_dir
        (run_dir / "checkpoint").mkdir(parents=True)
        for epoch, value in enumerate(values):
            report(epoch, {"val/avg_f1": value, "val/gory/f1": value, "val/gory/loss": value}, tmp_path)

    monkeypatch.setattr(trainable, "train", fake_train)
    settings = TrialSettings({"model": {"text_encoder": "tiny"}, "train": {"epochs": 5}}, "val/avg_f1", "max", 2.0,
                             objectives=objectives)
    trainable.train_trial({"settings": asdict(settings), "trial": entry})
    # the run trained in the node's scratch folder, never in Ray's trial folder (which Ray copies into the
    # experiment folder), and is gone once the trial ends
    assert seen["run_dir"] == tmp_path / "tmp" / "mtl-runs" / "unnamed" / "search" / "t1"
    assert not seen["run_dir"].exists() and not (tmp_path / "ray_trial").exists()
    return reported, seen["cfg"]


def test_a_diverged_metric_stays_nan_and_the_search_sees_the_worst_score(monkeypatch, tmp_path):
    entry = trial_entry({"train.lr": 0.01}, TrialMeta("search"))
    reported, cfg = _run_trial(monkeypatch, tmp_path, entry, [float("nan"), 0.4])
    assert math.isnan(reported[0]["val/avg_f1"]) and reported[0][keys.SCORE] == -keys.WORST
    assert reported[1]["val/avg_f1"] == 0.4 and reported[1][keys.SCORE] == 0.4
    # the trial's config: the shared sections, its overrides, threads from its CPU share, no progress bar
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 5 and cfg.train.num_threads == 2 and not cfg.train.progress


def test_each_objective_gets_a_finite_score_of_its_own_direction(monkeypatch, tmp_path):
    entry = trial_entry({"train.lr": 0.01}, TrialMeta("search"))
    objectives = ("val/gory/f1", "val/gory/loss")
    reported, _ = _run_trial(monkeypatch, tmp_path, entry, [float("nan"), 0.4], objectives)
    f1, loss = keys.objective_score("val/gory/f1"), keys.objective_score("val/gory/loss")
    assert f1 == "search/score/val/gory/f1"
    assert reported[0][f1] == -keys.WORST and reported[0][loss] == keys.WORST  # diverged: worst either way
    assert reported[1][f1] == 0.4 and reported[1][loss] == 0.4
    assert math.isnan(reported[0]["val/gory/f1"])  # the metric itself stays NaN


def test_a_listed_trial_travels_as_its_overrides_and_is_built_in_the_worker(monkeypatch, tmp_path):
    entry = trial_entry({"train.lr": 0.02, "strategy.combiner.name": "rlw"}, TrialMeta("final", "baseline", "rlw", 0))
    assert set(entry) == {"overrides", "meta"}  # no config on the wire: the worker has the shared sections
    _, cfg = _run_trial(monkeypatch, tmp_path, entry, [0.5])
    assert cfg.strategy.combiner.name == "rlw" and cfg.train.lr == 0.02
    assert cfg.train.epochs == 5  # the phase's shared sections
    assert cfg.train.num_threads == 2  # threads follow the phase's CPU share


def test_a_listed_trial_with_a_bad_config_is_refused_on_the_driver():
    base = {"model": {"text_encoder": "tiny"}}
    good = trial_entry({"train.lr": 0.02}, TrialMeta("final", "final", "rank 1", 1))
    bad = trial_entry({"strategy.combiner.name": "nope"}, TrialMeta("final", "axis", "combiner=nope", 1))
    check_listed(base, [good])
    with pytest.raises(ConfigError, match="unknown combiner 'nope'"):
        check_listed(base, [good, bad])


def test_define_by_run_keeps_meta_out_of_the_sampled_overrides():
    space = {"train": {"lr": {"loguniform": [1e-4, 1e-2]}}, "strategy": {"combiner": {"choice": {"equal": {}, "rlw": {}}}}}
    trial = optuna.create_study().ask()
    entry = DefineByRun(space)(trial)["trial"]
    assert set(entry["overrides"]) == {"train.lr", "strategy.combiner.name"}
    # the Optuna trial's number is bookkeeping too: it names the trial on the console and in MLflow
    label = meta_of(entry).label  # computed once, with the entry
    assert meta_of(entry) == TrialMeta("search", number=0, label=label) and label.startswith("all_tasks+")
    assert meta_of(entry).tags() == {"phase": "search", "role": "search", "number": "0", "label": label}


def test_trial_entries_are_plain_values_that_survive_a_restore():
    """Tune writes trial configs into its experiment state: only plain values come back as they went in."""
    settings = TrialSettings({"model": {"text_encoder": "tiny"}}, "val/avg_f1", "max", 1.0, eval_test=True)
    meta = TrialMeta("final", "baseline", "equal_sum", 1)
    entry = trial_entry({"train.seed": 1}, meta)
    restored = json.loads(json.dumps({"settings": asdict(settings), "trial": entry}))
    assert TrialSettings.of(restored["settings"]) == settings and meta_of(restored["trial"]) == meta_of(entry)
    assert meta_of(entry).name == meta.name and meta_of(entry).label == "all_tasks+equal+all_modalities"
    assert trial_config(settings.base, restored["trial"]["overrides"]) == trial_config(settings.base, {"train.seed": 1})


def test_meta_tags_name_the_final_phase_roles():
    meta = TrialMeta("final", "baseline", "single_task", 2)
    assert meta.tags() == {"phase": "final", "role": "baseline", "name": "single_task", "seed": "2"}
