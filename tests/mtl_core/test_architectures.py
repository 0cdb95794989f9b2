"""`model.arch`: every fusion respects the modality masks and trains under every kind of strategy."""
import numpy as np
import pytest
import torch

from mtl_core import TASKS
from mtl_core.config import ConfigError, build_config
from mtl_core.data.arrays import read_source
from mtl_core.data.dataset import SplitData, token_rows
from mtl_core.data.synth import write_synthetic
from mtl_core.model.fusion import ARCHITECTURES
from mtl_core.model.hiccap import ModelInputs
from mtl_core.model.text_encoder import load_text_encoder
from mtl_core.prepare import prepare
from mtl_core.train import train

from conftest import tiny_raw


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("tiny")


@pytest.fixture(scope="module")
def batch(tiny_data, encoder):
    arr = read_source(tiny_data, "train")
    split = SplitData(arr, token_rows(arr, encoder.tokenizer, False, 500), TASKS)
    return split.batch(np.arange(6))[0]


def _model(arch, encoder):
    torch.manual_seed(0)
    return ARCHITECTURES[arch](TASKS, encoder.hidden_size, text_encoder=encoder.model, rnn_units=16,
                               attention_heads=4, head_dims=(16, 8, 4)).eval()


def _with(x: ModelInputs, **changes) -> ModelInputs:
    return ModelInputs(**{**x.__dict__, **changes})


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("modality, field", [(1, "video"), (2, "audio")])
def test_an_absent_modality_does_not_change_the_output(arch, encoder, batch, modality, field):
    """Clips 0-2 lack the modality, clips 3-5 have it: junk in its tensor changes only the latter."""
    model = _model(arch, encoder)
    present = torch.ones(6, 3, dtype=torch.bool)
    present[:3, modality] = False
    x = _with(batch, present=present)
    junk = _with(x, **{field: torch.randn_like(getattr(x, field)) * 50})
    with torch.no_grad():
        ref, out = model.encode(x), model.encode(junk)  # z [B, 3d], what every head reads
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out[:3], ref[:3], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out[3:], ref[3:], atol=1e-3)  # the clips that have it do use it


def test_unknown_arch_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^model.arch: unknown architecture 'mlp'; valid choices: hiccap, "
                                          r"late_fusion, early_fusion$"):
        build_config({"model": {"arch": "mlp"}})


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("micro_arch"), seed=5, n_train=16, n_val=8, n_test=8)
    return root, prepare(build_config(tiny_raw(root)), torch.device("cpu"), splits=("train", "val"))


def _train_last(root, data, tmp_path, arch, **strategy):
    groups = [["binary", "gory"], ["mature", "slapstick", "sarcasm"]]
    cfg = build_config(tiny_raw(root, model={"arch": arch}, groups=groups, strategy=strategy, train={"epochs": 1}))
    m = train(cfg, None, tmp_path, prepared=data)[-1]
    assert all(np.isfinite(m[f"val/{t}/loss"]) for t in TASKS)
    return m


@pytest.mark.parametrize("arch", ["late_fusion", pytest.param("early_fusion", marks=pytest.mark.slow)])  # ~2 s
def test_each_architecture_trains_in_groups_with_gradnorm_and_modality_dropout(arch, micro, tmp_path):
    """GradNorm reads the architecture's last shared layer: its weights move off 1 in both groups."""
    m = _train_last(*micro, tmp_path, arch, scheduler="all_tasks", combiner="gradnorm", modality="dropout")
    for group in (["binary", "gory"], ["mature", "slapstick", "sarcasm"]):
        assert any(m[f"strategy/{t}/weight"] != 1.0 for t in group)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["late_fusion", "early_fusion"])
def test_each_architecture_trains_in_groups_with_a_gradient_method(arch, micro, tmp_path):
    """PCGrad takes the Jacobian of the architecture's shared parameters (a gradient cosine per group)."""
    m = _train_last(*micro, tmp_path, arch, scheduler="dsg", combiner="pcgrad", modality="one_at_a_time")
    assert all(-1 <= m[f"strategy/group{g}/grad_cosine"] <= 1 for g in (0, 1))
