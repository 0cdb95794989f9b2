"""Strategy registries: YAML names map to classes here, once; after that code passes objects."""
from __future__ import annotations

import typing
from typing import Any

from mtl_core.strategies import combiners, modality, schedulers
from mtl_core.validation import ConfigError, Problems, coerce_value
from mtl_core.strategies.base import (
    LossCombiner, ModalitySchedule, StrategyContext, TaskScheduler, strategy_params,
)

REGISTRIES: dict[str, dict[str, type]] = {
    "scheduler": schedulers.REGISTRY,
    "combiner": combiners.REGISTRY,
    "modality": modality.REGISTRY,
}
AXES = tuple(REGISTRIES)  # a configuration's strategy: scheduler, combiner, modality (its label's order)
# Each axis's baseline, the plain multi-task model that every method is measured against (the `equal_sum`
# baseline, the config's defaults): every task every step, the plain sum of the losses, every modality.
BASELINE = {"scheduler": "all_tasks", "combiner": "equal", "modality": "all_modalities"}
ONE_MODEL = None  # the grouping axis's baseline: no `groups`, all tasks in one model


def _resolve(axis: str, choice, section: str = "strategy") -> tuple[type, dict[str, Any]]:
    registry = REGISTRIES[axis]
    path = f"{section}.{axis}"
    if choice.name not in registry:
        raise ConfigError(f"{path}.name: unknown {axis} {choice.name!r}; valid choices: {', '.join(registry)}")
    cls = registry[choice.name]
    allowed = strategy_params(cls)
    hints = typing.get_type_hints(cls.__init__)
    kwargs, problems = {}, Problems()
    for key, value in choice.params.items():
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            problems.add(f"{path}.{key}: unknown parameter of {axis} {choice.name!r}; valid parameters: {valid}")
            continue
        with problems.collect():
            kwargs[key] = coerce_value(hints.get(key, Any), value, f"{path}.{key}")
    problems.raise_if_any()
    return cls, kwargs


def build_strategy(axis: str, choice, ctx: StrategyContext, section: str = "strategy"):
    """Instantiate a validated choice; constructor ValueErrors become ConfigErrors naming the axis
    (`section`: the config section it was written in, `strategy` or `pretrain`)."""
    cls, kwargs = _resolve(axis, choice, section)
    try:
        return cls(ctx, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"{section}.{axis}: {exc}") from None


def validate_strategy(axis: str, choice, cfg) -> None:
    build_strategy(axis, choice, StrategyContext(tuple(cfg.tasks), cfg.train.epochs, cfg.train.seed))


__all__ = ["REGISTRIES", "AXES", "BASELINE", "ONE_MODEL", "StrategyContext", "TaskScheduler", "LossCombiner", "ModalitySchedule",
           "build_strategy", "validate_strategy", "strategy_params"]
