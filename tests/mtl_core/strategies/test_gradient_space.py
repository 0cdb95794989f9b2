"""`space: representation`: gradient methods on the task gradients w.r.t. the shared representation z."""
import warnings

import pytest
import torch
from torch import nn

from mtl_core.config import ConfigError, StrategyChoice
from mtl_core.strategies import REGISTRIES, StrategyContext, build_strategy
from mtl_core.strategies.gradients import backward_aggregated

GRADIENT = sorted(n for n, cls in REGISTRIES["combiner"].items() if cls.uses_gradients)
TASKS = ("a", "b", "c")
CTX = StrategyContext(TASKS, 1, 0)


class IdentityEncoder(nn.Module):
    """z = W (a linear encoder of the identity matrix): the Jacobian of z in W is the identity, so the task
    gradients of the shared parameters are those of z, entry for entry."""

    tasks = TASKS

    def __init__(self, batch: int, width: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = nn.Linear(batch, width, bias=False)
        self.heads = nn.ModuleDict({t: nn.Linear(width, 2) for t in TASKS})
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.batch = batch

    def shared_parameters(self):
        return list(self.enc.parameters())

    def encode(self, x):
        return self.enc(x)

    def heads_forward(self, z, tasks=None):
        return {t: self.heads[t](z) for t in (tasks or self.tasks)}


def _step(model, combiner, x, y, active=None):
    """One aggregated backward; returns the gradients of every parameter (heads and shared)."""
    for p in model.parameters():
        p.grad = None
    z = model.encode(x)
    logits = model.heads_forward(z)
    losses = torch.stack([nn.functional.cross_entropy(logits[t], y[:, j]) for j, t in enumerate(TASKS)])
    active = torch.ones(3, dtype=torch.bool) if active is None else active
    torch.manual_seed(0)  # PCGrad's and GradVac's random task order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backward_aggregated(model, z, losses, active, combiner)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _combiner(name, space, **params):
    return build_strategy("combiner", StrategyChoice(name, {"space": space, **params}), CTX)


def _data(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (batch, 3), generator=g)


# db_mtl and excess_mtl keep their state per feature of z (the batch-summed z-gradient), which is the flattened
# z-gradient only for one clip; db_mtl's direction is its EMA, which beta 0 makes this step's gradients.
SETTINGS = {"db_mtl": (1, {"beta": 0.0}), "excess_mtl": (1, {})}


@pytest.mark.parametrize("name", GRADIENT)
def test_identity_encoder_gives_the_parameter_rule(name):
    batch, params = SETTINGS.get(name, (6, {}))
    model = IdentityEncoder(batch)
    x, y = torch.eye(batch), _data(batch)
    steps = []
    for space in ("parameters", "representation"):
        combiner = _combiner(name, space, **params)
        steps.append([_step(model, combiner, x, y), _step(model, combiner, x, _data(batch, seed=2))])
    for by_params, by_rep in zip(*steps):  # two steps: the methods with a state carry it alike
        assert by_params.keys() == by_rep.keys()
        for key in by_params:
            torch.testing.assert_close(by_rep[key], by_params[key], rtol=1e-4, atol=1e-6)


def _capture(combiner):
    """Records the rows [A, B, D] each step hands the rule and the z-gradient it returns."""
    seen = {}
    rule = combiner.aggregate_representation

    def wrapped(dz, losses, idx):
        seen["dz"], seen["out"] = dz.clone(), rule(dz, losses, idx)
        return seen["out"]

    combiner.aggregate_representation = wrapped
    return seen


def _toy_step(combiner, active=None):
    from conftest import Toy

    model = Toy().train()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 6, generator=g)
    y = torch.randint(0, 2, (16, 3), generator=g)
    y[:, 1] = 1 - y[:, 0]  # a and b conflict
    torch.manual_seed(0)
    return model, _step(model, combiner, x, y, active), x


@pytest.mark.parametrize("name", GRADIENT)
def test_encoder_step_is_the_chain_rule_of_the_aggregated_z_gradient(name):
    combiner = _combiner(name, "representation")
    seen = _capture(combiner)
    model, grads, x = _toy_step(combiner)
    assert seen["out"].shape == seen["dz"].shape[1:]
    # the same dropout mask: the forward again from the same RNG state, then autograd of <z, direction>
    model.zero_grad()
    torch.manual_seed(0)
    z = model.encode(x)
    expected = torch.autograd.grad(z, model.shared_parameters(), seen["out"])
    for (n, p), e in zip(model.shared.named_parameters(), expected):
        torch.testing.assert_close(grads[f"shared.{n}"], e, rtol=1e-4, atol=1e-7)
    # heads train on their own task's loss, in either space
    _, by_params, _ = _toy_step(_combiner(name, "parameters"))
    for t in TASKS:
        torch.testing.assert_close(grads[f"heads.{t}.weight"], by_params[f"heads.{t}.weight"])


@pytest.mark.parametrize("name", ["upgrad", "mgda"])
def test_no_task_loses_in_z_space(name):
    # UPGrad's direction lies in the dual cone of the task gradients, MGDA's is their min-norm point: both
    # have a non-negative inner product with every task's (flattened) z-gradient
    combiner = _combiner(name, "representation")
    seen = _capture(combiner)
    _toy_step(combiner)
    rows = seen["dz"].reshape(3, -1)
    assert (rows[0] @ rows[1]) < 0  # the tasks do conflict
    assert ((rows @ seen["out"].reshape(-1)) >= -1e-6 * rows.norm(dim=1) * seen["out"].norm()).all()


def test_pcgrad_removes_the_conflict_of_two_tasks_in_z_space():
    combiner = build_strategy("combiner", StrategyChoice("pcgrad", {"space": "representation"}),
                              StrategyContext(("a", "b"), 1, 0))
    seen = _capture(combiner)
    _toy_step(combiner, active=torch.tensor([True, True, False]))
    rows = seen["dz"].reshape(2, -1)
    d = seen["out"].reshape(-1)
    assert rows[0] @ rows[1] < 0
    assert (rows @ d >= -1e-6 * rows.norm(dim=1) * d.norm()).all()


def test_only_the_active_tasks_enter_the_rule():
    combiner = _combiner("upgrad", "representation")
    seen = _capture(combiner)
    _toy_step(combiner, active=torch.tensor([True, False, True]))
    assert seen["dz"].shape[0] == 2


@pytest.mark.parametrize("bad", ["reps", "Parameters", ""])
def test_an_unknown_space_is_one_config_error(bad):
    with pytest.raises(ConfigError) as err:
        build_strategy("combiner", StrategyChoice("pcgrad", {"space": bad}), CTX)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("strategy.combiner") and "space" in msg
    assert "parameters" in msg and "representation" in msg


def test_loss_methods_take_no_space():
    with pytest.raises(ConfigError, match=r"strategy\.combiner\.space: unknown parameter"):
        build_strategy("combiner", StrategyChoice("equal", {"space": "representation"}), CTX)


def test_default_space_is_parameters():
    for name in GRADIENT:
        assert _combiner(name, "parameters").params["space"] == "parameters"
        assert build_strategy("combiner", StrategyChoice(name), CTX).space == "parameters"


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from conftest import tiny_raw
    from mtl_core.config import build_config
    from mtl_core.data.synth import write_synthetic
    from mtl_core.prepare import prepare

    root = write_synthetic(tmp_path_factory.mktemp("micro"), seed=5, n_train=16, n_val=8, n_test=8)
    return root, prepare(build_config(tiny_raw(root)), torch.device("cpu"), splits=("train", "val"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["db_mtl", "excess_mtl", "upgrad"])
def test_training_in_z_space_resumes_exactly(micro, tmp_path, name):
    # db_mtl's average and excess_mtl's sums of squares are kept per feature of z and checkpointed as such
    from conftest import assert_resume_exact, tiny_raw
    from mtl_core.config import build_config

    root, data = micro
    cfg = build_config(tiny_raw(root, train={"epochs": 3}, strategy={"combiner": {"name": name, "space": "representation"}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_resume_exact(cfg, tmp_path, stop_after=1, prepared=data)


@pytest.mark.parametrize("name", ["upgrad", "nash_mtl", "db_mtl"])
def test_z_space_under_bf16_autocast(name):
    # z comes out in bf16; the rule runs in fp32, as it does on the parameters' gradients
    from conftest import Toy

    model = Toy().train()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 2, (16, 3), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model.encode(x)
        logits = model.heads_forward(z)
    assert z.dtype == torch.bfloat16
    losses = torch.stack([nn.functional.cross_entropy(logits[t].float(), y[:, j]) for j, t in enumerate(TASKS)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backward_aggregated(model, z, losses, torch.ones(3, dtype=torch.bool), _combiner(name, "representation"))
    for p in model.shared_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all()


def test_a_search_samples_the_space_of_a_gradient_method(tmp_path):
    import yaml

    from search.analysis.labels import config_label
    from search.space.parse import load_space
    from search.space.optuna import sample_configs
    from search.space.trial import trial_config

    raw = {"model": {"text_encoder": "tiny"}, "train": {"epochs": 1},
           "space": {"strategy": {"combiner": {"choice": {"pcgrad": {"space": {"choice": ["parameters", "representation"]}},
                                                          "equal": {}}}}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_space(path)
    seen = set()
    for c in sample_configs(spec, 30):
        cfg = trial_config(spec.base, c)
        if cfg.strategy.combiner.name == "pcgrad":
            space = cfg.strategy.combiner.params["space"]
            seen.add(space)
            assert config_label(c, spec.base) == ("all_tasks+pcgrad@z+all_modalities" if space == "representation" else "all_tasks+pcgrad+all_modalities")
        else:
            assert "strategy.combiner.space" not in c
    assert seen == {"parameters", "representation"}
