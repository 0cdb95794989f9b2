"""`model.width`: the modalities meet at a narrower width through a learned map of the text states."""
import numpy as np
import pytest
import torch

from mtl_core import TASKS
from mtl_core.config import ConfigError, build_config
from mtl_core.data.synth import write_synthetic
from mtl_core.model.fusion import ARCHITECTURES
from mtl_core.model.hiccap import ModelInputs
from mtl_core.model.text_encoder import load_text_encoder
from mtl_core.prepare import prepare
from mtl_core.train import build_model, train

from conftest import tiny_raw
from test_architectures import batch, encoder  # noqa: F401  (the shared fixtures)


def _model(arch, encoder, width):
    torch.manual_seed(0)
    return ARCHITECTURES[arch](TASKS, width, text_encoder=encoder.model, text_width=encoder.hidden_size,
                               rnn_units=16, attention_heads=4, head_dims=(16, 8, 4)).eval()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_a_narrower_model_meets_at_its_width_and_ignores_absent_text(arch, encoder, batch):
    """z is [B, 3 x width]; clips 0-2 have no text: junk in their text changes only clips 3-5."""
    width = 8
    assert width != encoder.hidden_size
    model = _model(arch, encoder, width)
    present = torch.ones(6, 3, dtype=torch.bool)
    present[:3, 0] = False
    x = ModelInputs(**{**batch.__dict__, "present": present})
    with torch.no_grad():
        hidden = model._text_hidden(x)
        ref = model.encode(ModelInputs(**{**x.__dict__, "text_hidden": hidden}))
        out = model.encode(ModelInputs(**{**x.__dict__, "text_hidden": torch.randn_like(hidden) * 50}))
    assert ref.shape == (6, 3 * width)
    torch.testing.assert_close(out[:3], ref[:3], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out[3:], ref[3:], atol=1e-3)


def test_the_encoders_width_adds_no_layer_and_initialises_as_before(encoder):
    """width null (or equal to the encoder's): no text map, the same parameters from the same seed."""
    torch.manual_seed(0)
    plain = ARCHITECTURES["hiccap"](TASKS, encoder.hidden_size, rnn_units=16, attention_heads=4)
    torch.manual_seed(0)
    same = ARCHITECTURES["hiccap"](TASKS, encoder.hidden_size, text_width=encoder.hidden_size, rnn_units=16,
                                   attention_heads=4)
    assert plain.text_proj is None and same.text_proj is None
    a, b = plain.state_dict(), same.state_dict()
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_narrower_model_trains_and_its_text_map_learns(tiny_data, tmp_path):
    cfg = build_config(tiny_raw(tiny_data, model={"width": 8}, train={"epochs": 1}))
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    model = build_model(cfg, data.encoder)
    assert model.width == 8 and model.text_proj[0].in_features == data.encoder.hidden_size
    m = train(cfg, None, tmp_path, prepared=data)[-1]
    assert all(np.isfinite(m[f"val/{t}/loss"]) for t in TASKS)


@pytest.mark.parametrize("width, match", [
    (0, r"^model.width: must be >= 1"),
    (100_000, r"^model.width: at most 8192"),
])
def test_a_bad_width_is_a_one_line_error(width, match):
    with pytest.raises(ConfigError, match=match):
        build_config({"model": {"width": width}})


def test_heads_must_divide_the_width(tiny_data):
    cfg = build_config(tiny_raw(tiny_data, model={"width": 10, "attention_heads": 4}))
    with pytest.raises(ConfigError, match=r"^model.attention_heads: 4 does not divide model.width 10$"):
        build_model(cfg, load_text_encoder("tiny"))
