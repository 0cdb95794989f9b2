"""What can only be checked on a GPU (skipped without one; `bench/gpu_check.sh` runs them): exact
resume with CUDA's generators in the checkpoint, mixed precision on the device, and per-task
gradients through the batched vector-Jacobian product."""
import pytest
import torch

from mtl_core.config import build_config
from mtl_core.train import train

from conftest import assert_resume_exact, tiny_raw

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("combiner, modality", [("equal", "dropout"), ("pcgrad", "all_modalities"), ("uncertainty", "all_modalities")])
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


@pytest.mark.parametrize("combiner", ["equal", "uncertainty", "pcgrad"])
def test_an_inactive_task_stays_untouched_on_cuda(tiny_data, combiner):
    """The freeze of an inactive task's head, BatchNorm statistics and combiner entries (indices, optimizer
    moments) on the device."""
    from mtl_core.prepare import prepare
    from mtl_core.train import build_group, train_step

    cfg = build_config(tiny_raw(tiny_data, train={"device": "cuda"}, strategy={"combiner": combiner}))
    cuda = torch.device("cuda")
    data = prepare(cfg, cuda, splits=("train", "val"))
    run = build_group(cfg, cfg.tasks, data, cuda)
    for step, (inputs, labels) in enumerate(run.train_split.batches(8, drop_last=True)):
        inputs, labels = inputs.to(cuda), labels.to(cuda)
        if step >= 2:
            labels[:, 0] = -1
        head = {k: v.clone() for k, v in run.model.heads[run.tasks[0]].state_dict().items()}
        own = [p.detach()[0].clone() for p in run.strategies["combiner"].parameters()]
        _, _, active = train_step(run, cfg, inputs, labels, 0, cuda)
        run.step += 1
        if step >= 2:
            assert not active[0]
            assert all(torch.equal(v, head[k]) for k, v in run.model.heads[run.tasks[0]].state_dict().items())
            assert all(torch.equal(p.detach()[0], o) for p, o in zip(run.strategies["combiner"].parameters(), own))
        if step == 4:
            break


def test_eval_test_predictions_on_cuda(tiny_data, tmp_path):
    from mtl_core.predictions import PREDICTIONS_FILE, load_predictions

    cfg = build_config(tiny_raw(tiny_data, train={"device": "cuda", "epochs": 2}, groups=[["binary", "gory"],
                                                                                        ["mature", "slapstick", "sarcasm"]]))
    history = train(cfg, None, tmp_path, eval_test=True)
    arrays = load_predictions(tmp_path / "checkpoint" / PREDICTIONS_FILE)
    assert "test/avg_f1" in history[-1] and len(arrays["pred/gory"]) == len(arrays["label/gory"]) > 0
