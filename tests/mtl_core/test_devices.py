"""Device paths that can be checked without a GPU: mixed precision on CPU, device validation, RNG
state of every device in checkpoints, and how a trial treats a GPU that Ray assigned."""
import logging

import pytest
import torch

from mtl_core.config import ConfigError, build_config
from mtl_core.train import train

from conftest import strip_time, tiny_raw


def test_bf16_autocast_trains_on_cpu_and_changes_the_numbers(tiny_data, tmp_path):
    fp32 = train(build_config(tiny_raw(tiny_data)), None, tmp_path / "fp32")
    bf16 = train(build_config(tiny_raw(tiny_data, train={"precision": "bf16"})), None, tmp_path / "bf16")
    assert all(torch.isfinite(torch.tensor(m["val/avg_loss"])) for m in bf16)
    assert strip_time(bf16) != strip_time(fp32)  # autocast really ran in bfloat16
    assert abs(bf16[-1]["train/binary/loss"] - fp32[-1]["train/binary/loss"]) < 0.1  # ... and still trains alike


def _autocast_seen(model, x, dtype):
    """Whether autocast was on inside each LSTM, and inside one attention call, during a forward pass."""
    seen = {}

    def spy(name):
        def hook(module, args):
            seen[name] = torch.is_autocast_enabled("cpu")
        return hook
    handles = [model.video_enc.lstm.register_forward_pre_hook(spy("video lstm")),
               model.audio_enc.lstm.register_forward_pre_hook(spy("audio lstm")),
               model.text_branch.attn.register_forward_pre_hook(spy("attention"))]
    with torch.autocast("cpu", dtype=dtype):
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_the_lstms_run_at_fp32_under_bf16_autocast_and_the_rest_does_not(tiny_data):
    """On CUDA autocast would run cuDNN's LSTM in fp16 (whatever the autocast dtype) with no loss scale;
    under bf16 the recurrence leaves autocast, under fp16 (which has its GradScaler) it stays."""
    from mtl_core.prepare import prepare
    from mtl_core.train import build_model

    cfg = build_config(tiny_raw(tiny_data))
    data = prepare(cfg, torch.device("cpu"), splits=("train",))
    model = build_model(cfg, data.encoder)
    x, _ = data.splits["train"].batch(torch.arange(4).numpy())
    assert _autocast_seen(model, x, torch.bfloat16) == {"video lstm": False, "audio lstm": False, "attention": True}
    assert _autocast_seen(model, x, torch.float16) == {"video lstm": True, "audio lstm": True, "attention": True}


def test_fp16_uses_a_grad_scaler_whose_state_is_checkpointed(tiny_data, tmp_path):
    cfg = build_config(tiny_raw(tiny_data, train={"precision": "fp16", "epochs": 1}))
    history = train(cfg, None, tmp_path)
    assert all(torch.isfinite(torch.tensor(m["val/avg_loss"])) for m in history)
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)
    assert state["groups"][0]["scaler"]["scale"] > 0


def test_fp16_with_a_gradient_method_is_refused_in_one_line(tiny_data):
    with pytest.raises(ConfigError, match="train.precision: fp16 needs a loss scale.*'pcgrad'.*use bf16"):
        build_config(tiny_raw(tiny_data, train={"precision": "fp16"}, strategy={"combiner": "pcgrad"}))
    with pytest.raises(ConfigError, match="train.precision: unknown precision 'fp8'"):
        build_config(tiny_raw(tiny_data, train={"precision": "fp8"}))


def test_device_names_are_checked(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        build_config(tiny_raw(tiny_data, train={"device": "gpu"}))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train.device: cuda requested, but torch sees no CUDA device"):
            train(build_config(tiny_raw(tiny_data, train={"device": "cuda"})), None, tmp_path)


def test_checkpoint_carries_every_devices_rng_state(monkeypatch):
    from mtl_core import checkpoint

    fake = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    states = checkpoint.rng_states()
    assert states["cuda"] is fake and torch.equal(states["torch"], torch.get_rng_state())
    checkpoint.set_rng_states(states)
    assert restored == [fake]


def _fake_gpu(monkeypatch, ids):
    import ray

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: ids)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_a_gpu_torch_cannot_see_is_an_error_naming_the_node(tiny_data, monkeypatch):
    from search.tune.trainable import NoCudaForGpuTrial, placement

    _fake_gpu(monkeypatch, [0])
    monkeypatch.delenv("MTL_ALLOW_FAKE_GPUS", raising=False)
    with pytest.raises(NoCudaForGpuTrial, match=r"Ray assigned GPU 0 on node \S+, but torch sees no CUDA device"):
        placement(build_config(tiny_raw(tiny_data)))


def test_fake_gpus_train_on_cpu_with_one_warning(tiny_data, monkeypatch, caplog):
    from search.tune.trainable import placement

    _fake_gpu(monkeypatch, [0])
    monkeypatch.setenv("MTL_ALLOW_FAKE_GPUS", "1")
    with caplog.at_level(logging.WARNING):
        cfg, ids = placement(build_config(tiny_raw(tiny_data)))
    assert cfg.train.device == "cpu" and ids == "0"
    assert len(caplog.records) == 1 and "training on CPU" in caplog.text
    _fake_gpu(monkeypatch, [])
    cfg, ids = placement(build_config(tiny_raw(tiny_data)))
    assert cfg.train.device == "auto" and ids == ""  # no GPU assigned: nothing changes
