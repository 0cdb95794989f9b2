"""Every strategy records the keyword arguments it was constructed with (`params`, shown by `repr`), from
its constructor's signature: no strategy writes that record by hand."""
import ast
import copy
import warnings
from pathlib import Path

import pytest

from mtl_core import TASKS
from mtl_core.strategies import REGISTRIES, StrategyContext, strategy_params

CTX = StrategyContext(TASKS, epochs=6, seed=3, positives=(70, 22, 8, 17, 37))
ALL = [(axis, name) for axis, reg in REGISTRIES.items() for name in reg]

# Valid values other than the defaults (containers as a YAML file would give them: lists, dicts), so a
# strategy that records a normalised copy instead of what was passed fails.
NON_DEFAULT = {
    "scheduler": {
        "all_tasks": {},
        "sequential": {"order": list(reversed(TASKS)), "epochs_per_task": 2, "patience": 3,
                       "max_epochs_per_task": 4, "final_joint": True},
        "round_robin": {"order": list(reversed(TASKS))},
        "sampling": {"signal": "difficulty", "temperature": 0.5, "floor": 0.2, "ema": 0.5, "tasks_per_step": 2,
                     "anneal_span": 0.5},
        "dsg": {"iter_gap": 2, "threshold": 0.01, "continue_threshold": 0.02, "patience": 2, "cooldown": 0,
                "reset_epochs": [3]},
        "curriculum": {"stages": [["gory"], ["gory", "binary"]], "epochs_per_stage": 2, "assessment_epochs": 3},
    },
    "combiner": {
        "equal": {},
        "fixed": {"weights": {"gory": 2}},
        "learned": {"entropy": 0.5, "weight_lr": 0.02},
        "uncertainty": {"init": 0.1, "clamp": 2.0, "weight_lr": 0.02},
        "gradnorm": {"alpha": 1.0, "weight_lr": 0.01, "max_weight": 3.0},
        "dwa": {"temperature": 1.0},
        "transferred": {"source": "gradnorm", "pilot_epochs": 3},
        "inverse_loss": {},
        "adaptive": {"gamma": 2.0, "ema": 0.3},
        "rlw": {"distribution": "dirichlet"},
        "pcgrad": {},
        "cagrad": {"c": 0.2},
        "mgda": {"epsilon": 1e-4, "max_iters": 50},
        "imtl": {"loss_balance": False, "scale_lr": 0.02},
        "nash_mtl": {"update_weights_every": 2, "optim_niter": 10, "max_norm": 0.5},
        "aligned_mtl": {"scale_mode": "median"},
        "db_mtl": {"beta": 0.8, "beta_sigma": 0.5, "eps": 1e-6},
        "famo": {"weight_lr": 0.01, "gamma": 0.01},
        "stch": {"mu": 0.5, "warmup_epochs": 2},
        "upgrad": {"norm_eps": 1e-3, "reg_eps": 1e-3},
        "gradvac": {"beta": 0.1},
        "config": {},
        "fairgrad": {"alpha": 2.0, "max_iters": 50},
        "excess_mtl": {"robust_step_size": 0.1},
    },
    "modality": {
        "all_modalities": {},
        "one_at_a_time": {"stages": [["text"], ["audio", "video"]], "epochs_per_stage": 2},
        "dropout": {"p": 0.3, "p_video": 0.1},
    },
}


def _build(axis, name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's notices for nash_mtl
        return REGISTRIES[axis][name](CTX, **kwargs)


def test_the_table_names_every_strategy():
    assert {(a, n) for a, reg in NON_DEFAULT.items() for n in reg} == set(ALL), "add the new strategy to NON_DEFAULT"


@pytest.mark.parametrize("axis, name", ALL)
def test_recorded_parameters_are_the_constructor_arguments_as_passed(axis, name):
    defaults = {k: p.default for k, p in strategy_params(REGISTRIES[axis][name]).items()}
    assert _build(axis, name).params == defaults
    passed = NON_DEFAULT[axis][name]
    obj = _build(axis, name, **passed)
    assert obj.params == {**defaults, **passed}
    assert all(obj.params[k] is v for k, v in passed.items())  # what was passed, not a normalised copy
    assert repr(obj) == f"{type(obj).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in obj.params.items()) + ")"
    assert copy.deepcopy(obj).params == obj.params


def test_no_strategy_writes_its_parameter_record_by_hand():
    strategies = Path(__file__).resolve().parents[3] / "mtl_core" / "strategies"
    by_hand = []
    for path in strategies.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            if any(isinstance(t, ast.Attribute) and t.attr == "_params" for t in targets) and path.name != "base.py":
                by_hand.append(f"{path.relative_to(strategies)}:{node.lineno}")
    assert not by_hand, by_hand
