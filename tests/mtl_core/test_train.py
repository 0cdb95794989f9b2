import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from mtl_core import TASKS
from mtl_core.config import build_config
from mtl_core.data.synth import write_synthetic
from mtl_core.metrics import binary_task_metrics
from mtl_core.prepare import prepare
from mtl_core.train import TrainingDiverged, train

from conftest import assert_resume_exact, strip_time, tiny_raw




def test_reports_every_metric_each_epoch(tiny_cfg, tmp_path):
    seen = []
    history = train(tiny_cfg(), lambda e, m, d: seen.append((e, m, d)), tmp_path / "run")
    assert [e for e, _, _ in seen] == [0, 1] and len(history) == 2
    m = history[-1]
    for t in TASKS:
        for k in ("loss", "acc", "f1", "f1_pos"):
            assert np.isfinite(m[f"val/{t}/{k}"])
        assert np.isfinite(m[f"train/{t}/loss"])
    assert m["val/avg_f1"] == pytest.approx(np.mean([m[f"val/{t}/f1"] for t in TASKS]))
    assert (seen[-1][2] / "state.pt").is_file()


def test_a_derived_binary_is_left_out_of_the_averages(tiny_cfg, tmp_path):
    """binary = OR of the four labels (data.derive_binary): an average over all five would count their
    information twice, so val/avg_f1 (the search metric) and test/avg_f1 average the four."""
    cfg = tiny_cfg(data={"derive_binary": True}, train={"epochs": 1})
    four = [t for t in TASKS if t != "binary"]
    assert cfg.headline_tasks == tuple(four) and tiny_cfg().headline_tasks == TASKS
    history = train(cfg, None, tmp_path / "run", eval_test=True)
    m = history[-1]
    assert m["val/avg_f1"] == pytest.approx(np.mean([m[f"val/{t}/f1"] for t in four]))
    assert m["test/avg_f1"] == pytest.approx(np.mean([m[f"test/{t}/f1"] for t in four]))


def test_same_seed_same_metrics(tiny_cfg, tmp_path):
    a = train(tiny_cfg(), None, tmp_path / "a")
    b = train(tiny_cfg(), None, tmp_path / "b")
    c = train(tiny_cfg(train={"seed": 1}), None, tmp_path / "c")
    assert strip_time(a) == strip_time(b)
    assert strip_time(a) != strip_time(c)


def test_resume_is_exact(tiny_cfg, tmp_path):
    assert_resume_exact(tiny_cfg(train={"epochs": 3}, model={"freeze_text": False}), tmp_path, stop_after=1)


def test_subset_of_tasks(tiny_cfg, tmp_path):
    history = train(tiny_cfg(tasks=["gory", "sarcasm"]), None, tmp_path / "r")
    assert {k.split("/")[1] for k in history[0] if k.startswith("val/") and k.count("/") == 2} == {"gory", "sarcasm"}


def test_nan_loss_is_reported_clearly(tiny_cfg, tmp_path):
    cfg = tiny_cfg(data={"use_cache": False})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    data.splits["train"].arrays.audio[:] = np.nan
    with pytest.raises(TrainingDiverged, match=r"epoch 0 step 0: the loss of task '\w+' is not finite"):
        train(cfg, None, tmp_path / "r", prepared=data)


def _majority_avg_f1(train_labels, val_labels):
    scores = []
    for j in range(train_labels.shape[1]):
        majority = int(np.mean(train_labels[:, j]) > 0.5)
        scores.append(binary_task_metrics(val_labels[:, j], np.full(len(val_labels), majority))["f1"])
    return float(np.mean(scores))


@pytest.mark.slow
def test_beats_majority_baseline(tmp_path):
    root = write_synthetic(tmp_path / "data", seed=0, n_train=320, n_val=120, n_test=10)
    cfg = build_config(tiny_raw(root, model={"rnn_units": 32, "head_dims": [64, 32, 16]},
                                train={"epochs": 10, "batch_size": 16, "lr": 0.003}))
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    history = train(cfg, None, tmp_path / "run", prepared=data)
    baseline = _majority_avg_f1(data.splits["train"].labels, data.splits["val"].labels)
    best = max(m["val/avg_f1"] for m in history)
    assert best > baseline + 0.1, (best, baseline)


def test_cli_writes_metrics_resumes_and_evaluates_test(tiny_data, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw(tiny_data)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mtl_core.train", str(cfg_path), "--out", str(out)]
    proc = subprocess.run(cmd + ["--set", "train.epochs=1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "val/avg_f1" in proc.stdout  # the table header
    proc = subprocess.run(cmd + ["--resume", "--eval-test"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1]
    test = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= test["test/avg_f1"] <= 1.0 and "test/gory/f1_pos" in test


def test_cli_resume_without_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mtl_core.train", "--out", str(tmp_path / "x"), "--resume"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --resume")


def test_unknown_encoder_is_one_line(tiny_data, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw(tiny_data, model={"text_encoder": "no-such/encoder"})))
    proc = subprocess.run([sys.executable, "-m", "mtl_core.train", str(cfg_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model.text_encoder: 'no-such/encoder'")
    assert "Traceback" not in proc.stderr


def test_class_weights_balanced_mapping_and_masked_labels():
    from mtl_core.losses import class_weights

    labels = np.array([[1, 0], [0, 0], [0, -1], [0, 1], [-1, 1]])  # task a: 1 of 4 positive; b: 2 of 4
    w = class_weights("balanced", labels, ("a", "b"))
    torch.testing.assert_close(w, torch.tensor([[4 / 6, 4 / 2], [1.0, 1.0]]))
    assert (w[0] * torch.tensor([3, 1])).sum() == pytest.approx(4.0)  # averages 1 over the labelled clips
    torch.testing.assert_close(class_weights({"b": 5.0}, labels, ("a", "b")), torch.tensor([[1.0, 1.0], [1.0, 5.0]]))
    assert class_weights("none", labels, ("a", "b")) is None


def test_class_weighted_loss_weighs_each_clip_by_its_class():
    from mtl_core.losses import task_losses

    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
    labels = torch.tensor([[0], [1], [-1]])
    ce = torch.nn.functional.cross_entropy(logits["a"][:2], labels[:2, 0], reduction="none")
    plain, _ = task_losses(logits, labels, ("a",))
    weighted, _ = task_losses(logits, labels, ("a",), torch.tensor([[0.5, 3.0]]))
    assert plain.item() == pytest.approx(ce.mean().item())
    assert weighted.item() == pytest.approx((0.5 * ce[0] + 3.0 * ce[1]).item() / 2)  # missing label ignored


def test_bad_class_weight_names_the_key(tiny_data):
    from mtl_core.config import ConfigError

    with pytest.raises(ConfigError, match="train.class_weight: expected none, balanced or a mapping"):
        build_config(tiny_raw(tiny_data, train={"class_weight": "inverse"}))
    with pytest.raises(ConfigError, match="train.class_weight.gory: expected a positive number"):
        build_config(tiny_raw(tiny_data, train={"class_weight": {"gory": -1}}))


@pytest.mark.slow
def test_balanced_class_weight_lifts_gory_off_the_majority_class(tmp_path):
    """On the synthetic default gory (8% positives) never leaves the majority class with the plain loss
    (measured: val macro-F1 0.469 and positive-class F1 0 at every epoch of this configuration); with
    `balanced` class weights it predicts positives and its macro-F1 rises above 0.6."""
    cfg = build_config({"tasks": ["gory"], "model": {"text_encoder": "tiny", "rnn_units": 32, "attention_heads": 4,
                                                     "head_dims": [64, 32, 16]},
                        "train": {"epochs": 4, "batch_size": 16, "lr": 0.003, "progress": False,
                                  "class_weight": "balanced"}})
    balanced = train(cfg, None, tmp_path)
    assert max(m["val/gory/f1_pos"] for m in balanced) > 0.3
    assert max(m["val/gory/f1"] for m in balanced) > 0.6


def test_each_model_of_a_partition_keeps_its_own_best_epoch(tiny_cfg, tmp_path, monkeypatch):
    """The single-task models (Δm%'s reference) each stop at their own best epoch, not at the epoch where the
    partition's mean was best: best_model.pt holds, per model, the weights of its own best epoch. Epochs are
    scripted (each stamps its number into the model) so the peaks are known: binary peaks at epoch 0, gory
    at epoch 2, the partition's mean at epoch 1."""
    import torch

    import mtl_core.train as training

    script = {"binary": [0.9, 0.5, 0.1], "gory": [0.1, 0.6, 0.7]}  # means 0.5, 0.55, 0.4

    def scripted_epoch(run, cfg, epoch, device, progress=None):
        with torch.no_grad():
            for p in run.model.parameters():
                p.fill_(float(epoch))
        task, value = run.tasks[0], script[run.tasks[0]][epoch]
        return {**{f"val/{task}/{m}": value for m in ("f1", "loss", "acc", "f1_pos")},
                **{f"val/avg_{m}": value for m in ("f1", "loss", "acc", "f1_pos")}}

    monkeypatch.setattr(training, "train_epoch", scripted_epoch)
    cfg = tiny_cfg(tasks=["binary", "gory"], groups=[["binary"], ["gory"]], train={"epochs": 3})
    history = train(cfg, None, tmp_path)
    assert [h["val/avg_f1"] for h in history] == pytest.approx([0.5, 0.55, 0.4])
    states = torch.load(tmp_path / "checkpoint" / "best_model.pt", weights_only=True)
    stamped = [float(next(v for k, v in state.items() if k.startswith("heads.")).flatten()[0]) for state in states]
    assert stamped == [0.0, 2.0]  # binary's own best epoch and gory's, not the joint epoch 1 for both


def test_selection_follows_the_experiments_metric(tiny_cfg, tmp_path):
    """train.select_metric/select_mode pick the kept weights: with val/avg_loss (min) the kept epoch is the
    lowest validation loss, not the best F1. The search hands its metric down (TrialSettings.runtime)."""
    import torch

    from search.space.trial import TrialSettings

    cfg = tiny_cfg(train={"epochs": 4, "lr": 0.01, "select_metric": "val/avg_loss", "select_mode": "min"})
    history = train(cfg, None, tmp_path)
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    losses = [h["val/avg_loss"] for h in history]
    assert state["groups"][0]["best_epoch"] == losses.index(min(losses))
    runtime = TrialSettings({}, "val/gory/f1", "max", 1.0).runtime(tiny_cfg())
    assert (runtime.train.select_metric, runtime.train.select_mode) == ("val/gory/f1", "max")


def test_checkpoints_load_without_unpickling_code(tiny_cfg, tmp_path):
    """A checkpoint is read with weights_only: one crafted to run code when unpickled is refused in one line
    naming the file, and nothing it asked for happens."""
    import pickle

    import torch

    from mtl_core.checkpoint import CheckpointError, load_checkpoint

    cfg = tiny_cfg(train={"epochs": 1})
    train(cfg, None, tmp_path)
    ok = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)  # a real one loads this way
    assert ok["epoch"] == 0 and isinstance(ok["history_json"], str)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"groups": [], "rng": Payload()}, tmp_path / "checkpoint" / "state.pt", pickle_module=pickle)
    with pytest.raises(CheckpointError, match=r"state\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint", [])
    assert not marker.exists()
    (tmp_path / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"state\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint", [])


def test_eval_test_reports_each_models_best_weights_and_saves_predictions(tiny_cfg, tmp_path):
    from mtl_core.predictions import PREDICTIONS_FILE, load_predictions

    cfg = tiny_cfg(groups=[["binary", "gory"], ["mature", "slapstick", "sarcasm"]], train={"epochs": 2})
    history = train(cfg, None, tmp_path, eval_test=True)
    last = history[-1]
    assert "test/avg_f1" in last and all(f"test/{t}/f1" in last for t in cfg.tasks)
    arrays = load_predictions(tmp_path / "checkpoint" / PREDICTIONS_FILE)
    from search.analysis.stats import macro_f1
    for t in cfg.tasks:  # the saved predictions give back the reported test F1
        got = macro_f1(arrays[f"pred/{t}"][:, None], arrays[f"label/{t}"][:, None])[0]
        assert got == pytest.approx(last[f"test/{t}/f1"])
