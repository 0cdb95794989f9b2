"""What can only be checked on a GPU (skipped without one; `bench/gpu_check.sh` runs them): exact
resume with CUDA's generators in the checkpoint, mixed precision on the device, and per-task
gradients through the batched vector-Jacobian product."""
import pytest
import torch

from mtl_core.config import build_config
from mtl_core.train import train

from conftest import assert_resume_exact, tiny_raw

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("combiner, modality", [("equal", "dropout"), ("pcgrad", "all"), ("uncertainty", "all")])
def test_resume_is_exact_on_cuda(tiny_data, tmp_path, combiner, modality):
    """With train.deterministic (CUDA's default kernels differ run to run from the first epoch)."""
    cfg = build_config(tiny_raw(tiny_data, train={"device": "cuda", "epochs": 3, "deterministic": True},
                                strategy={"combiner": combiner, "modality": modality}))
    assert_resume_exact(cfg, tmp_path, stop_after=1)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(tiny_data, tmp_path, precision):
    history = train(build_config(tiny_raw(tiny_data, train={"device": "cuda", "precision": precision})), None, tmp_path)
    assert all(torch.isfinite(torch.tensor(m["val/avg_loss"])) for m in history)


def test_batched_per_task_gradients_match_one_backward_per_task_on_cuda(tiny_data):
    from mtl_core.losses import task_losses
    from mtl_core.prepare import prepare
    from mtl_core.strategies import gradients
    from mtl_core.train import build_model

    cfg = build_config(tiny_raw(tiny_data, train={"device": "cuda"}))
    data = prepare(cfg, torch.device("cuda"), splits=("train",))
    model = build_model(cfg, data.encoder).cuda().train()
    inputs, labels = next(data.splits["train"].batches(8))
    inputs, labels = inputs.to("cuda"), labels.to("cuda")
    z = model.encode(inputs)
    losses, _ = task_losses(model.heads_forward(z), labels, cfg.tasks)
    idx = torch.arange(len(cfg.tasks), device="cuda")
    gradients._BATCHED_OK.clear()
    batched, _ = gradients.shared_jacobian(model, z, losses, idx)
    used_batched = gradients._BATCHED_OK.get(type(model), False)
    gradients._BATCHED_OK[type(model)] = False  # force the loop
    looped, _ = gradients.shared_jacobian(model, z, losses, idx)
    gradients._BATCHED_OK.clear()
    torch.testing.assert_close(batched, looped, rtol=1e-2, atol=1e-5)  # same maths, other reduction orders
    print(f"batched VJP on CUDA: {'used' if used_batched else 'unavailable, one backward per task'}")


def test_the_lstms_stay_fp32_under_bf16_on_cuda(tiny_data):
    """autocast's cuDNN RNN wrapper would run them in fp16, with no loss scale, under bf16."""
    from mtl_core.prepare import prepare
    from mtl_core.train import build_model

    cfg = build_config(tiny_raw(tiny_data, train={"device": "cuda"}))
    data = prepare(cfg, torch.device("cuda"), splits=("train",))
    model = build_model(cfg, data.encoder).cuda().train()
    dtypes = []
    model.video_enc.lstm.register_forward_hook(lambda module, args, out: dtypes.append(out[0].data.dtype))
    x, _ = next(data.splits["train"].batches(8))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        z = model.encode(x.to("cuda"))
    assert dtypes == [torch.float32]
    z.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.video_enc.lstm.parameters())
