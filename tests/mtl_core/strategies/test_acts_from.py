"""Each strategy's declared first acting epoch against what it does: driven through epochs beside its axis's
plain value, the first epoch it trains differently is the one `earliest_act` names (the search's first rung
is placed after it: search.space.rungs)."""
import pytest
import torch

from mtl_core import keys
from mtl_core.strategies import REGISTRIES
from mtl_core.strategies.base import StrategyContext

TASKS = ("binary", "mature", "gory", "slapstick", "sarcasm")
EPOCHS, STEPS = 8, 6
CTX = StrategyContext(TASKS, epochs=EPOCHS, seed=0, positives=(70, 22, 8, 17, 37))


def _losses(epoch: int, step: int) -> torch.Tensor:
    """Losses that differ by task and fall at task-specific rates, so loss-driven weights move."""
    rates = torch.tensor([0.9, 0.8, 0.95, 0.7, 0.85])
    return (torch.arange(1, 6, dtype=torch.float) * rates ** (epoch + step / STEPS)).float()


def _metrics(epoch: int) -> dict[str, float]:
    """A flat validation curve (DSG stops as early as its rule allows) with train losses per task."""
    out = {keys.task("val", t): 0.5 + 0.05 * j for j, t in enumerate(TASKS)}
    out.update({keys.task("train", t, "loss"): float(_losses(epoch, 0)[j]) for j, t in enumerate(TASKS)})
    return out


def first_acting_epoch(axis: str, name: str, params: dict) -> int | None:
    """The first epoch in which the strategy trains differently from its axis's plain value, or None."""
    s = REGISTRIES[axis][name](CTX, **params)
    for epoch in range(EPOCHS):
        s.start_epoch(epoch)
        differs = False
        for step in range(STEPS):
            losses = _losses(epoch, step)
            if axis == "scheduler":
                mask = s.step_mask(epoch * STEPS + step)
                differs |= not bool(mask.all())
                s.observe(losses, mask)
            elif axis == "combiner":
                active = torch.ones(len(TASKS), dtype=torch.bool)
                combined = s.combine(losses, active)
                differs |= not torch.allclose(combined, losses.sum())  # equal sum's loss
            else:
                present = torch.ones(4, 3, dtype=torch.bool)
                differs |= not torch.equal(s.mask(present), present)
        if differs:
            return epoch
        s.end_epoch(epoch, _metrics(epoch))
    return None


LATE = [
    ("combiner", "dwa", {}),
    ("combiner", "adaptive", {}),
    ("scheduler", "curriculum", {"mode": "assessed", "assessment_epochs": 1}),
    ("scheduler", "curriculum", {"mode": "assessed", "assessment_epochs": 3}),
    ("scheduler", "curriculum", {"mode": "anti", "assessment_epochs": 2}),
    ("scheduler", "dsg", {"patience": 0}),
    ("scheduler", "dsg", {"patience": 1}),
    ("scheduler", "dsg", {"patience": 2}),
    ("scheduler", "dsg", {"patience": 0, "reset_epochs": (1,)}),
    ("scheduler", "dsg", {"patience": 1, "reset_epochs": (2, 4)}),
    ("scheduler", "dsg", {"patience": 0, "reset_epochs": (6,)}),
]


@pytest.mark.parametrize("axis, name, params", LATE, ids=lambda v: str(v))
def test_a_late_strategy_first_acts_in_the_epoch_it_declares(axis, name, params):
    assert first_acting_epoch(axis, name, params) == REGISTRIES[axis][name].earliest_act(params)


LOSS_METHODS = [n for n, c in REGISTRIES["combiner"].items() if not c.uses_gradients and n != "equal"]


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_no_loss_method_acts_before_it_declares(name):
    """A method that declares an earlier epoch than it acts in is harmless; a later one is not: the search's
    first rung would cut it before it acted."""
    seen = first_acting_epoch("combiner", name, {})
    assert seen is None or seen >= REGISTRIES["combiner"][name].earliest_act({}), seen
    if name in ("dwa", "adaptive"):
        assert seen == REGISTRIES["combiner"][name].earliest_act({})
