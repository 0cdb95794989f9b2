"""`train.precision: auto` and bf16 against fp32: auto picks bf16 exactly where the device multiplies in bf16
natively, a run records what it resolved to, and one bf16 training step moves the weights as an fp32 step does
within bf16's rounding."""
import pytest
import torch

import mtl_core.precision as prec
import mtl_core.train as train_mod
from mtl_core.config import ConfigError, build_config
from mtl_core.train import build_group, train, train_step
from mtl_core.precision import resolve_precision

from conftest import tiny_raw

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, expected", [(frozenset({"amx_bf16"}), "bf16"), (frozenset({"avx512_bf16"}), "bf16"),
                                             (frozenset(), "fp32")])
def test_auto_is_bf16_on_cpus_with_native_bf16_and_fp32_elsewhere(monkeypatch, flags, expected):
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda: flags)
    assert resolve_precision("auto", CPU) == expected
    for given in ("fp32", "bf16", "fp16"):  # an explicit precision is never changed
        assert resolve_precision(given, CPU) == given


def test_auto_on_a_gpu_follows_torch_cuda_bf16_support(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda: frozenset({"amx_bf16"}))  # the host's CPU is not asked
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
        assert resolve_precision("auto", torch.device("cuda")) == expected


def test_the_cpu_probe_reads_the_bf16_flags_of_cpuinfo(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_bf16 amx_int8\n\nprocessor\t: 1\n")
    zen = tmp_path / "zen"
    zen.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert prec.cpu_bf16_flags(str(amx)) == {"amx_bf16"}
    assert prec.cpu_bf16_flags(str(zen)) == {"avx512_bf16"}
    assert prec.cpu_bf16_flags(str(old)) == frozenset()
    assert prec.cpu_bf16_flags(str(tmp_path / "absent")) == frozenset()  # not Linux: auto is fp32


def test_auto_is_a_valid_precision_and_others_are_refused():
    assert build_config({"train": {"precision": "auto"}}).train.precision == "auto"
    with pytest.raises(ConfigError, match="train.precision: .*valid choices: fp32, bf16, fp16, auto"):
        build_config({"train": {"precision": "bf8"}})


def test_a_run_at_auto_records_the_precision_it_resolved_to(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda: frozenset({"avx512_bf16"}))
    expected = "bf16"
    seen = []
    real = train_mod.autocast
    monkeypatch.setattr(train_mod, "autocast", lambda precision, device: seen.append(precision) or real(precision, device))
    history = train(build_config(tiny_raw(tiny_data, train={"precision": "auto", "epochs": 1, "device": "cpu"})),
                    None, tmp_path)
    assert [m["precision"] for m in history] == [expected]
    assert seen and set(seen) == {expected}  # resolved once: every step and evaluation got the resolved name


def test_a_bf16_step_moves_the_weights_as_an_fp32_step_within_bf16_rounding(tiny_data):
    """One AdamW step from the same weights on the same batch. Tolerances: the losses within 2% (bf16 keeps 8
    bits of mantissa: ~0.4% per rounding, a few roundings deep), and the update each parameter receives has a
    cosine above 0.9 with fp32's, over the parameters that moved (AdamW's first step is about lr * sign(grad),
    so a gradient entry near zero may flip; the direction as a whole must not)."""
    from mtl_core.prepare import prepare

    cfg = build_config(tiny_raw(tiny_data, train={"lr": 0.001, "device": "cpu"}))
    data = prepare(cfg, CPU, splits=("train", "val"))
    inputs, labels = data.splits["train"].batch(torch.arange(8).numpy())
    moved, losses = {}, {}
    for precision in ("fp32", "bf16"):
        c = build_config(tiny_raw(tiny_data, train={"lr": 0.001, "device": "cpu", "precision": precision}))
        torch.manual_seed(0)
        run = build_group(c, c.tasks, data, CPU)  # the same initial weights
        start = {k: v.clone() for k, v in run.model.state_dict().items()}
        run.model.train()
        torch.manual_seed(1)  # the same dropout masks
        losses[precision], _, _ = train_step(run, c, inputs, labels, 0, CPU)
        moved[precision] = torch.cat([(p.detach() - start[k]).flatten() for k, p in run.model.named_parameters()
                                      if p.requires_grad])
    assert torch.allclose(losses["bf16"], losses["fp32"], rtol=0.02, atol=1e-3)
    a, b = moved["fp32"], moved["bf16"]
    assert a.abs().sum() > 0
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9
