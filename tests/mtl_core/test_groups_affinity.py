import copy
import math

import pytest
import torch

from mtl_core import TASKS
from mtl_core.affinity import lookahead_affinity
from mtl_core.config import ConfigError, build_config
from mtl_core.losses import task_losses
from mtl_core.prepare import prepare
from mtl_core.train import build_group, build_model, evaluate, train, train_epoch

from conftest import Toy, assert_resume_exact, tiny_raw

GROUPS = [["binary", "gory"], ["mature", "slapstick", "sarcasm"]]


def test_groups_must_partition_the_tasks(tiny_data):
    with pytest.raises(ConfigError, match="groups: not a partition of the tasks: leaves out sarcasm"):
        build_config(tiny_raw(tiny_data, groups=[["binary", "gory"], ["mature", "slapstick"]]))


def test_grouping_trial_trains_one_model_per_group_and_reports_from_the_right_one(tiny_data, tmp_path):
    cfg = build_config(tiny_raw(tiny_data, groups=GROUPS, train={"epochs": 2},
                                strategy={"combiner": {"name": "pcgrad"}}))
    history = train(cfg, None, tmp_path)
    for m in history:
        assert m["val/avg_f1"] == pytest.approx(sum(m[f"val/{t}/f1"] for t in TASKS) / 5)
    assert "strategy/group0/grad_cosine" in history[0] and "strategy/group1/grad_cosine" in history[0]
    states = torch.load(tmp_path / "checkpoint" / "best_model.pt", weights_only=True)
    assert len(states) == 2
    data = prepare(cfg, torch.device("cpu"), splits=("val",))
    for group, state in zip(cfg.partition(), states):
        assert {k.split(".")[1] for k in state if k.startswith("heads.")} == set(group)
        model = build_model(build_config(tiny_raw(tiny_data, tasks=list(group))), data.encoder)
        model.load_state_dict(state)
        metrics = evaluate(model, data.splits["val"].for_tasks(group), 64, torch.device("cpu"), "val")
        # each model's own best epoch (its tasks' mean F1), and the trial reported its tasks from that model
        own = max(history, key=lambda m: sum(m[f"val/{t}/f1"] for t in group))
        for t in group:
            assert metrics[f"val/{t}/f1"] == pytest.approx(own[f"val/{t}/f1"])


def test_fine_tuned_group_models_each_train_their_own_text_encoder(tiny_data):
    """With the encoder fine-tuned, each model of a partition (the single-task baseline's five among them)
    owns its encoder: one group's step leaves the other's encoder, and the pretrained weights, as they were."""
    cfg = build_config(tiny_raw(tiny_data, groups=GROUPS, model={"freeze_text": False}))
    cpu = torch.device("cpu")
    data = prepare(cfg, cpu, splits=("train", "val"))
    runs = [build_group(cfg, g, data, cpu) for g in cfg.partition()]
    ids = [{id(p) for p in r.model.parameters()} for r in runs]
    assert not ids[0] & ids[1]
    pretrained = copy.deepcopy(data.encoder.model.state_dict())
    before = copy.deepcopy(runs[1].model.text_encoder.state_dict())
    train_epoch(runs[0], cfg, 0, cpu)
    moved = runs[0].model.text_encoder.state_dict()
    assert any(not torch.equal(moved[k], pretrained[k]) for k in pretrained)  # group 0 fine-tuned its own
    assert all(torch.equal(runs[1].model.text_encoder.state_dict()[k], before[k]) for k in before)
    assert all(torch.equal(data.encoder.model.state_dict()[k], pretrained[k]) for k in pretrained)


def test_grouped_resume_is_exact(tiny_data, tmp_path):
    cfg = build_config(tiny_raw(tiny_data, groups=GROUPS, train={"epochs": 3}, strategy={"scheduler": "sampling"}))
    assert_resume_exact(cfg, tmp_path, stop_after=0)


# --- TAG lookahead -------------------------------------------------------------------------------

def _toy_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    # a and b share their latent factor; c is in conflict with both
    return x, torch.stack([y, y, 1 - y], dim=1)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _reference_affinity(model, x, labels, i, j, lr, seed):
    """Z(i -> j) computed the slow, obvious way on a copy: one SGD step of the shared parameters on
    task i, task j's loss before and after, the same dropout masks (same seed) both times."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    losses = task_losses(m.heads_forward(m.encode(x)), labels, m.tasks)[0]
    grads = torch.autograd.grad(losses[i], m.shared_parameters())
    with torch.no_grad():
        for p, g in zip(m.shared_parameters(), grads):
            p -= lr * g
        torch.manual_seed(seed)
        after = task_losses(m.heads_forward(m.encode(x)), labels, m.tasks)[0]
    return float(1 - after[j] / losses[j].detach())


@pytest.mark.parametrize("device", DEVICES)
def test_affinity_is_the_lookahead_in_its_direction(device):
    """An asymmetric pair: Z(a -> b) and Z(b -> a) differ, and each matches the direct computation,
    so a transposed matrix (or a replay of other dropout masks, as on CUDA without its generator)
    fails."""
    model = Toy().to(device).train()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 6, generator=g)
    a = (x[:, 0] > 0).long()
    b = (x[:, 0] + 3 * x[:, 1] > 0).long()  # b needs a's factor and more; a needs only its own
    labels = torch.stack([a, b, 1 - a], dim=1)
    x, labels = x.to(device), labels.to(device)
    torch.manual_seed(7)
    z = lookahead_affinity(model, x, labels, Toy.tasks, lr=0.5)
    ab, ba = _reference_affinity(model, x, labels, 0, 1, 0.5, 7), _reference_affinity(model, x, labels, 1, 0, 0.5, 7)
    assert abs(ab - ba) > 0.1 * max(abs(ab), abs(ba))  # far beyond the tolerance below
    assert float(z[0, 1]) == pytest.approx(ab, rel=1e-4, abs=1e-6)
    assert float(z[1, 0]) == pytest.approx(ba, rel=1e-4, abs=1e-6)


def test_affinity_sign_shared_factor_positive_conflict_negative():
    model = Toy().train()
    x, labels = _toy_batch()
    z = lookahead_affinity(model, x, labels, Toy.tasks, lr=0.5)
    a, b, c = 0, 1, 2
    assert z[a, b] > 0 and z[b, a] > 0
    assert z[c, a] < 0 and z[a, c] < 0 and z[c, b] < 0
    assert z[a, a] > 0  # a step on a task lowers its own loss


@pytest.mark.parametrize("device", DEVICES)
def test_lookahead_leaves_the_model_exactly_as_it_was(device):
    model = Toy().to(device).train()
    x, labels = (t.to(device) for t in _toy_batch())
    model.shared[0].weight.grad = torch.ones_like(model.shared[0].weight)
    params = {k: v.clone() for k, v in model.state_dict().items()}  # includes BatchNorm statistics
    rng = torch.get_rng_state()
    dev_rng = torch.cuda.get_rng_state() if device == "cuda" else None
    lookahead_affinity(model, x, labels, Toy.tasks, lr=0.5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    assert torch.equal(model.shared[0].weight.grad, torch.ones_like(model.shared[0].weight))
    assert model.shared[0].bias.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    if dev_rng is not None:
        assert torch.equal(torch.cuda.get_rng_state(), dev_rng)


@pytest.mark.parametrize("device", DEVICES)
def test_measuring_affinity_does_not_change_training(tiny_data, tmp_path, device):
    exact = {"device": device, "deterministic": True}  # CUDA's default kernels differ run to run
    plain = train(build_config(tiny_raw(tiny_data, train=exact)), None, tmp_path / "a")
    measured = train(build_config(tiny_raw(tiny_data, train={"affinity_every": 2, **exact})), None, tmp_path / "b")
    keys = [k for k in plain[-1] if not k.startswith("time/")]
    assert [{k: m[k] for k in keys} for m in measured] == [{k: m[k] for k in keys} for m in plain]
    last = measured[-1]
    values = [last[f"affinity/{i}/{j}"] for i in TASKS for j in TASKS if i != j]
    assert len(values) == 20 and all(math.isfinite(v) for v in values)
