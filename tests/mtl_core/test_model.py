import numpy as np
import pytest
import torch

from mtl_core import TASKS
from mtl_core.data.arrays import read_source
from mtl_core.data.dataset import SplitData, token_rows
from mtl_core.model.hiccap import HICCAP, ModelInputs
from mtl_core.model.text_encoder import load_text_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("tiny")


def _model(encoder, freeze=True, **kw):
    torch.manual_seed(0)
    return HICCAP(TASKS, encoder.hidden_size, text_encoder=encoder.model, freeze_text=freeze, rnn_units=16,
                  attention_heads=4, head_dims=(16, 8, 4), **kw).eval()


def _batch(tiny_data, encoder, idx=(0, 1, 2, 3)):
    arr = read_source(tiny_data, "train")
    split = SplitData(arr, token_rows(arr, encoder.tokenizer, False, 500), TASKS)
    return split.batch(np.array(idx))[0]


def _padded(x: ModelInputs, extra: int, fill: float) -> ModelInputs:
    """The same batch with `extra` more padded steps per modality, filled with junk."""
    def grow(t, m):
        pad = torch.full((t.shape[0], extra, *t.shape[2:]), fill, dtype=t.dtype)
        return torch.cat([t.masked_fill(~m.view(*m.shape, *([1] * (t.dim() - 2))), fill), pad], 1), \
            torch.cat([m, torch.zeros(m.shape[0], extra, dtype=torch.bool)], 1)
    ids, tm = grow(x.text_ids, x.text_mask)
    ids = ids.masked_fill(~tm, 1000 + int(abs(fill)))  # any valid vocabulary id in padded slots
    video, vm = grow(x.video, x.video_mask)
    audio, am = grow(x.audio, x.audio_mask)
    return ModelInputs(ids, tm, video, vm, audio, am, x.present)


@pytest.mark.parametrize("freeze", [True, False])
def test_outputs_do_not_depend_on_padding(tiny_data, encoder, freeze):
    model = _model(encoder, freeze)
    x = _batch(tiny_data, encoder)
    with torch.no_grad():
        ref = model(x)
        for extra, fill in ((3, 5.0), (7, -3.0)):
            out = model(_padded(x, extra, fill))
            for t in TASKS:
                torch.testing.assert_close(out[t], ref[t], atol=1e-5, rtol=1e-4)


def test_absent_modality_is_ignored_and_finite(tiny_data, encoder):
    model = _model(encoder)
    x = _batch(tiny_data, encoder)
    x.present = torch.tensor([[True, False, True]] * 4)  # video switched off
    with torch.no_grad():
        ref = model(x)
        x2 = ModelInputs(x.text_ids, x.text_mask, torch.randn_like(x.video) * 100, x.video_mask, x.audio,
                         x.audio_mask, x.present)
        out = model(x2)
    for t in TASKS:
        assert torch.isfinite(ref[t]).all()
        torch.testing.assert_close(out[t], ref[t])


def test_all_modalities_absent_no_nan(tiny_data, encoder):
    model = _model(encoder).train()
    x = _batch(tiny_data, encoder)
    x.present = torch.zeros(4, 3, dtype=torch.bool)
    out = model(x)
    loss = sum(o.sum() for o in out.values())
    loss.backward()
    assert all(torch.isfinite(o).all() for o in out.values())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_cached_text_features_equal_live_encoder(tiny_data, encoder):
    from mtl_core.data.text_cache import compute_hidden

    model = _model(encoder)
    x = _batch(tiny_data, encoder)
    rows = [x.text_ids[i, :int(x.text_mask[i].sum())].numpy() for i in range(4)]
    hidden = compute_hidden(encoder.model, rows, torch.device("cpu"))
    h = torch.zeros(4, x.text_ids.shape[1], encoder.hidden_size)
    for i in range(4):
        h[i, :len(rows[i])] = torch.from_numpy(hidden.row(i))
    cached = ModelInputs(x.text_ids, x.text_mask, x.video, x.video_mask, x.audio, x.audio_mask, x.present, h)
    with torch.no_grad():
        a, b = model(x), model(cached)
    for t in TASKS:
        torch.testing.assert_close(a[t], b[t], atol=1e-5, rtol=1e-4)


def test_frozen_encoder_gets_no_gradient(tiny_data, encoder):
    model = _model(encoder, freeze=True).train()
    x = _batch(tiny_data, encoder)
    sum(o.sum() for o in model(x).values()).backward()
    assert all(p.grad is None for p in encoder.model.parameters())
    assert all(not any(p is q for q in encoder.model.parameters()) for p in model.shared_parameters())
    assert model.heads["gory"][0].weight.grad is not None


def test_head_shape_is_reference(encoder):
    model = HICCAP(TASKS, encoder.hidden_size, rnn_units=8, attention_heads=4)
    dims = [m.out_features for m in model.heads["binary"] if isinstance(m, torch.nn.Linear)]
    assert dims == [200, 40, 20, 2]
    assert model.heads["binary"][0].in_features == 3 * encoder.hidden_size
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.heads["binary"]) == 2


def test_a_cached_frozen_encoder_loads_neither_weights_nor_tokenizer(tiny_data, tmp_path):
    """Every trial after the first reads the frozen encoder's outputs from the disk cache: loading the
    weights or the tokenizer (seconds of imports per worker) would be work done for nothing."""
    from mtl_core.config import build_config
    from mtl_core.prepare import prepare
    from conftest import tiny_raw

    cfg = build_config(tiny_raw(tiny_data, data={"root": str(tiny_data), "cache_dir": str(tmp_path)}))
    first = load_text_encoder("tiny")
    prepare(cfg, torch.device("cpu"), encoder=first)  # computes and stores the outputs
    assert "model" in first.__dict__
    again = load_text_encoder("tiny")
    prepared = prepare(cfg, torch.device("cpu"), encoder=again)
    assert "model" not in again.__dict__ and "tokenizer" not in again.__dict__  # functools.cached_property slots
    assert again.hidden_size == first.model.config.hidden_size and again.vocab_size == first.model.config.vocab_size
    assert prepared.splits["train"].text_features is not None


def test_an_encoder_folder_without_weights_fails_in_one_line_naming_the_field(tmp_path):
    """The config is there (so loading is deferred), the weights are not: the first use says so."""
    import shutil

    from mtl_core.model.text_encoder import EncoderNotFound, tokenizer_dir

    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(tokenizer_dir() / f, tmp_path / f)
    encoder = load_text_encoder(str(tmp_path))
    assert encoder.hidden_size == 384
    with pytest.raises(EncoderNotFound, match=r"^model.text_encoder: the weights of '.*' could not be loaded: "):
        encoder.model
