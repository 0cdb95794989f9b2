"""The epoch bench's arithmetic (bench/bench_epoch.py): FLOPs of a known Linear, the split of a HICCAP step
into parts, and the rate it prints."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_core import TASKS
from mtl_core.model.hiccap import HICCAP, ModelInputs

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_epoch", ROOT / "bench" / "bench_epoch.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("input_grad", [True, False])
def test_a_linear_layer_costs_two_flops_per_multiply_add_in_forward_and_each_gradient(input_grad):
    rows, fan_in, fan_out = 24, 16, 8
    layer = nn.Linear(fan_in, fan_out)
    x = torch.randn(rows, fan_in, requires_grad=input_grad)
    total, by_module = bench.count_flops(layer, lambda: layer(x).sum())
    expected = bench.linear_flops(rows, fan_in, fan_out, input_grad)
    assert expected == 2 * rows * fan_in * fan_out * (3 if input_grad else 2)
    assert total == expected and sum(by_module["Linear"].values()) == expected


def _inputs(batch=4, length=10, width=32):
    return ModelInputs(text_ids=torch.zeros(batch, length, dtype=torch.long), text_mask=torch.ones(batch, length, dtype=torch.bool),
                       video=torch.randn(batch, 1, 1024), video_mask=torch.zeros(batch, 1, dtype=torch.bool),
                       audio=torch.randn(batch, 1, 128), audio_mask=torch.zeros(batch, 1, dtype=torch.bool),
                       present=torch.tensor([[True, False, False]] * batch), text_hidden=torch.randn(batch, length, width))


def test_the_parts_of_a_hiccap_step_add_up_and_the_projections_are_counted_exactly():
    """Text only, as on the real release: video and audio are one missing token each (a parameter: their
    projections have an input gradient). The frozen text needs none, so a projection reading it directly
    costs a forward and a weight gradient: the text branch's first queries, and the keys and values of the
    text in the audio branch (second hop) and the video branch (first hop). The text branch's output
    projections and second queries read what depends on the parameters: forward and both gradients."""
    batch, length, width = 4, 10, 32
    torch.manual_seed(0)
    model = HICCAP(TASKS, width, rnn_units=8, attention_heads=4, head_dims=(16, 8))
    x = _inputs(batch, length, width)
    total, by_module = bench.count_flops(model, bench.training_step(model, x, torch.zeros(batch, 5, dtype=torch.long)))
    parts = bench.flops_by_part(total, by_module, bench.model_parts(model))
    assert set(parts) == {"HCA projections", "HCA attention", "LSTM encoders", "pools", "heads", "other"}
    assert sum(parts.values()) == total and all(v >= 0 for v in parts.values())
    assert parts["LSTM encoders"] > 0 and parts["pools"] > 0 and parts["heads"] > 0 and parts["HCA attention"] > 0
    text = bench.linear_flops(batch * length, width, width, False) * 5 + bench.linear_flops(batch * length, width, width, True) * 3
    # one-step queries, keys, values and outputs, all with input gradients: text branch 4 (keys and values of
    # video and audio), audio and video branches 6 each (2 queries, 2 outputs, keys and values of one modality)
    tokens = bench.linear_flops(batch, width, width, True) * (4 + 6 + 6)
    assert parts["HCA projections"] == text + tokens
    # the pools' scoring layer u on each branch's output, all with input gradients
    pools = bench.linear_flops(batch * length, width, width, True) + 2 * bench.linear_flops(batch, width, width, True)
    assert under_ops(by_module, "HICCAP.pools", {"mm", "addmm"}) == pools


def under_ops(by_module, path, ops):
    return sum(v for k, v in bench.under(by_module, path).items() if k in ops)


def test_the_rate_is_flops_over_seconds_in_gflops():
    assert bench.rate(3e9, 1.5) == pytest.approx(2.0)
    assert bench.op_name("aten.addmm.default") == "addmm"
