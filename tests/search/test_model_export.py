"""The best configuration's model: saved and logged as an MLflow pyfunc model, loaded back with MLflow alone, and
the same test predictions as the run that trained it."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from mtl_core.config import build_config
from mtl_core.prepare import prepare
from mtl_core.predictions import PREDICTIONS_FILE, load_predictions
from mtl_core.train import train
from search.tracking.store import default_tracking_uri, start_store
from search.tracking.model_export import clip_inputs, log_model, save_winner
from search.tracking.tracker import Tracker

from conftest import tiny_raw

GROUPS = [["binary", "gory"], ["mature", "slapstick", "sarcasm"]]


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """One epoch of a two-model partition, evaluated on the test split in batches of 8 (three of them)."""
    cfg = build_config(tiny_raw(tiny_data, groups=GROUPS, train={"epochs": 1, "eval_batch_size": 8}))
    run = tmp_path_factory.mktemp("run")
    train(cfg, None, run, eval_test=True)
    return cfg, run / "checkpoint"


def _store(tmp_path):
    start_store(tmp_path)  # a copy of an empty store: no schema migrations
    uri = default_tracking_uri(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name="exp-sweep").info.run_id
    return uri, client, parent


@pytest.mark.slow
def test_the_logged_model_loads_with_mlflow_alone_and_predicts_as_the_run(trained, tmp_path, monkeypatch):
    import mlflow.pyfunc

    cfg, checkpoint = trained
    kwargs = save_winner(cfg, checkpoint, tmp_path / "winner_model")
    uri, client, parent = _store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where a user's MLflow finds the models: URIs
    tracker = Tracker(uri, "exp", parent)
    model_uri = tracker.direct("not logged", lambda: log_model(parent, kwargs, {"label": "best"}, "winner"))
    assert model_uri is not None and model_uri.startswith("models:/")
    expected = load_predictions(checkpoint / PREDICTIONS_FILE)
    test = prepare(cfg, torch.device("cpu"), splits=("test",)).splits["test"]
    clips = clip_inputs(test)
    for where in (model_uri, "models:/winner/1", str(tmp_path / "winner_model")):  # logged, registered, the folder's
        model = mlflow.pyfunc.load_model(where)
        got = model.predict(clips)
        assert len(got) == len(test) == len(expected["ids"])
        for t in cfg.tasks:
            assert got[f"pred/{t}"].tolist() == expected[f"pred/{t}"].tolist(), (where, t)
            prob = got[f"prob/{t}"].to_numpy()
            assert ((prob >= 0) & (prob <= 1)).all() and ((prob > 0.5) == (got[f"pred/{t}"] == 1)).all()
    info = mlflow.models.get_model_info(model_uri)
    assert {s.name for s in info.signature.inputs.inputs} == {"text_ids", "text_mask", "video", "video_mask", "audio",
                                                              "audio_mask"}
    assert {c.name for c in info.signature.outputs.inputs} == {f"{k}/{t}" for t in cfg.tasks for k in ("pred", "prob")}
    assert info.saved_input_example_info is not None
    logged = client.get_run(parent).outputs.model_outputs
    assert [m.model_id for m in logged] == [model_uri.split("/")[-1]]  # a model of the parent run
    found = mlflow.search_logged_models(experiment_ids=[client.get_run(parent).info.experiment_id], output_format="list")
    assert [m.model_id for m in found] == [model_uri.split("/")[-1]]  # in the run's experiment, not Default
    # what was stored: plain tensors and the run config, without where the data lay
    stored = tmp_path / "winner_model" / "artifacts"
    config = json.loads((stored / "config.json").read_text())
    assert config["groups"] == GROUPS and set(config["data"]) == {"text_max_len", "video_len", "audio_len"}
    assert not list((tmp_path / "winner_model").rglob("*.pkl"))


@pytest.mark.slow
def test_a_clip_subset_gets_its_own_predictions(trained, tmp_path):
    """Rows in, rows out: a batch of some clips is padded to its own longest clip, whatever the input's padding."""
    import mlflow.pyfunc

    cfg, checkpoint = trained
    save_winner(cfg, checkpoint, tmp_path / "m")
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    test = prepare(cfg, torch.device("cpu"), splits=("test",)).splits["test"]
    two = model.predict(clip_inputs(test, np.array([3, 5])))
    assert len(two) == 2 and set(two.columns) == {f"{k}/{t}" for t in cfg.tasks for k in ("pred", "prob")}
    assert two["pred/gory"].isin([0, 1]).all()


def test_a_server_that_is_down_costs_one_warning_line_and_no_wait(capsys):
    tracker = Tracker("http://127.0.0.1:9", "exp", "run0")
    tracker.link.down, tracker.link.retry_at = True, float("inf")
    called = []
    assert tracker.direct("the model was not logged; it is saved in X", lambda: called.append(1)) is None
    assert called == []
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("warning: the model was not logged; it is saved in X")


def test_a_refused_write_is_one_warning_line_and_the_server_stays_up(tmp_path, capsys):
    uri, _, parent = _store(tmp_path)
    tracker = Tracker(uri, "exp", parent)

    def refused():
        raise ValueError("bad model")
    assert tracker.direct("not logged", refused) is None
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("warning: not logged (ValueError: bad model)")
    assert not tracker.link.down


@pytest.mark.parametrize("swap", [True, False], ids=["exchange", "two-renames"])
def test_replacing_the_model_folder_never_leaves_part_of_a_model_at_its_name(tmp_path, monkeypatch, swap):
    """The folder's model is replaced whole: whenever anything is removed, the name holds a whole model (the old
    or the new), and a save that fails leaves the old one and no temporary folder."""
    import shutil

    import mlflow.pyfunc

    import search.tracking.model_export as export

    def save_model(path, version):
        Path(path).mkdir()
        for name in ("MLmodel", "weights"):
            Path(path, name).write_text(version)
    monkeypatch.setattr(mlflow.pyfunc, "save_model", save_model)
    if not swap:
        monkeypatch.setattr(export, "_exchange", lambda a, b: False)
    dest = tmp_path / "winner_model"
    export.save_local({"version": "1"}, dest)
    seen, rmtree = [], shutil.rmtree

    def watched(path, *args, **kwargs):
        rmtree(path, *args, **kwargs)
        seen.append({p.name: p.read_text() for p in dest.iterdir()} if dest.is_dir() else None)
    monkeypatch.setattr(export.shutil, "rmtree", watched)
    export.save_local({"version": "2"}, dest)
    assert seen and all(s in ({"MLmodel": "1", "weights": "1"}, {"MLmodel": "2", "weights": "2"}) for s in seen)
    assert {p.name: p.read_text() for p in dest.iterdir()} == {"MLmodel": "2", "weights": "2"}

    def fails(path, version):
        Path(path).mkdir()
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(mlflow.pyfunc, "save_model", fails)
    with pytest.raises(OSError):
        export.save_local({"version": "3"}, dest)
    assert [p.name for p in tmp_path.iterdir()] == ["winner_model"] and (dest / "MLmodel").read_text() == "2"


@pytest.mark.parametrize("fold", [0, None], ids=["cross-validation", "test-split"])
def test_the_model_says_how_its_run_was_evaluated(tmp_path, monkeypatch, capsys, fold):
    """Under cross-validation the model is one fold's run, which trained on most of the test split: the logged
    model's tags and the folder's MLmodel metadata say so, and so does one console line."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    import search.tracking.model_export as export
    from search.space.trial import TrialMeta, trial_entry

    saved, logged = {}, {}

    def save_winner(cfg, checkpoint, dest, metadata=None):
        saved.update(metadata or {})
        return {}

    def log_model(run_id, kwargs, tags, register):
        logged.update(tags)
        return "models:/m-1"
    monkeypatch.setattr(export, "save_winner", save_winner)
    monkeypatch.setattr(export, "log_model", log_model)
    monkeypatch.setattr(export, "trial_config", lambda base, overrides: None)
    entry = trial_entry({}, TrialMeta("final", "final", "rank 1", seed=7, fold=fold))
    result = SimpleNamespace(config={"trial": entry}, error=None, metrics={"trial_id": "t1"},
                             checkpoint=SimpleNamespace(as_directory=lambda: nullcontext(str(tmp_path))))
    tracker = SimpleNamespace(parent_run_id="parent", direct=lambda failed, write: write())
    exp = SimpleNamespace(dir=tmp_path, tracker=tracker, spec=SimpleNamespace(
        base={}, search=SimpleNamespace(final=SimpleNamespace(cv_folds=5 if fold is not None else 0), register_model=None)))
    assert export.export_winner(exp, [result], "rank 1") == "models:/m-1"
    out = capsys.readouterr().out
    if fold is None:
        assert logged["evaluation_protocol"] == "test_split" and logged["training_overlaps_test_split"] == "false"
        assert "note:" not in out
    else:
        assert logged["evaluation_protocol"] == "cross_validation" and logged["training_overlaps_test_split"] == "true"
        assert logged["cv_fold"] == "0" and logged["cv_folds"] == "5" and logged["cv_shuffle"] == "7"
        assert "training_overlaps_test_split=true" in out and "80%" in out
    assert saved == {k: v for k, v in logged.items() if k not in ("label", "seed", "tune_trial_id")}
