"""Contracts every strategy of every axis keeps: valid config errors, repr, exact state round trip."""
import copy
import warnings

import pytest
import torch

from mtl_core import TASKS
from mtl_core.config import ConfigError, StrategyChoice, build_config
from mtl_core.strategies import REGISTRIES, StrategyContext, build_strategy, strategy_params

CTX = StrategyContext(TASKS, epochs=6, seed=3, positives=(70, 22, 8, 17, 37))
ALL = [(axis, name) for axis, reg in REGISTRIES.items() for name in reg]


def _metrics(gen):
    out = {f"val/{t}/f1": float(torch.rand(1, generator=gen)) for t in TASKS}
    out.update({f"train/{t}/loss": float(torch.rand(1, generator=gen)) + 0.1 for t in TASKS})
    return out


def _drive(obj, axis, epochs, gen, start=0):
    """Exercise a strategy like the trainer does; return everything it produced."""
    trace = []
    for epoch in range(start, start + epochs):
        obj.start_epoch(epoch)
        for step in range(epoch * 5, epoch * 5 + 5):
            losses = torch.rand(5, generator=gen) + 0.1
            if axis == "scheduler":
                mask = obj.step_mask(step)
                obj.observe(losses, mask)
                trace.append(mask.clone())
            elif axis == "modality":
                trace.append(obj.mask(torch.ones(4, 3, dtype=torch.bool)).clone())
            elif obj.uses_gradients:
                jac = torch.randn(5, 7, generator=gen)
                trace.append(obj.aggregate(jac, losses, torch.arange(5)).detach().clone())
            else:
                norms = torch.rand(5, generator=gen) if obj.needs_grad_norms else None
                trace.append(obj.combine(losses, torch.ones(5, dtype=torch.bool), norms).detach().clone())
        obj.end_epoch(epoch, _metrics(gen))
        trace.append(obj.log())
    return trace


@pytest.mark.parametrize("axis, name", ALL)
def test_state_round_trip_is_exact(axis, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = build_strategy(axis, StrategyChoice(name), CTX)
        _drive(a, axis, 2, torch.Generator().manual_seed(0))
        state = copy.deepcopy(a.state_dict())
        rng = torch.get_rng_state()  # PCGrad draws its projection order from torch's RNG
        cont = _drive(a, axis, 2, torch.Generator().manual_seed(1), start=2)
        b = build_strategy(axis, StrategyChoice(name), CTX)
        b.load_state_dict(state)
        torch.set_rng_state(rng)
        again = _drive(b, axis, 2, torch.Generator().manual_seed(1), start=2)
    for x, y in zip(cont, again):
        if isinstance(x, dict):
            assert x == y
        else:
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize("axis, name", ALL)
def test_repr_lists_parameters(axis, name):
    obj = build_strategy(axis, StrategyChoice(name), CTX)
    text = repr(obj)
    assert text.startswith(type(obj).__name__ + "(")
    for param in strategy_params(type(obj)):
        assert f"{param}=" in text, (name, param)


@pytest.mark.parametrize("axis, name", ALL)
def test_unknown_parameter_lists_valid_ones(axis, name):
    raw = {"strategy": {axis: {"name": name, "no_such_knob": 1}}}
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    message = str(err.value)
    assert message.startswith(f"strategy.{axis}.no_such_knob: unknown parameter of {axis} {name!r}")
    for param in strategy_params(REGISTRIES[axis][name]):
        assert param in message


@pytest.mark.parametrize("raw, message", [
    ({"scheduler": {"name": "dsg", "iter_gap": 0}}, "strategy.scheduler: iter_gap must be >= 1"),
    ({"scheduler": {"name": "sampling", "signal": "vibes"}}, "strategy.scheduler: signal must be one of"),
    ({"scheduler": {"name": "round_robin", "order": ["gory"]}}, "each configured task once"),
    ({"combiner": {"name": "fixed", "weights": {"gory": "high"}}}, "strategy.combiner.weights.gory: expected a number"),
    ({"combiner": {"name": "cagrad", "c": 1.5}}, "c must be in [0, 1)"),
    ({"modality": {"name": "dropout", "p": 1.0}}, "drop probabilities must be in [0, 1)"),
    ({"modality": {"name": "one_at_a_time", "stages": [["smell"]]}}, "non-empty list of text, video, audio"),
])
def test_bad_strategy_parameters_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError) as err:
        build_config({"strategy": raw})
    assert message in str(err.value) and "\n" not in str(err.value)
