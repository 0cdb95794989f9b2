"""The baselines the final phase trains beside the best configurations, under the same protocol (same
seeds, same budget, the best configuration's training knobs such as its learning rate and class weights):

- `equal_sum`: all tasks in one model, every task every step, the plain sum of the losses
  (`all_tasks` + `equal` + `all_modalities`); Kurin et al. 2022 and Xin et al. 2022 found a tuned one matches most
  multi-task optimizers;
- `single_task`: one model per task (one trial trains the five side by side, as a grouping of singletons),
  the reference of Δm% (Maninis et al. 2019);
- `rlw`: random loss weighting, the litmus test of Lin et al. 2022: a method that does not beat it has
  not shown that its weights matter.
"""
from __future__ import annotations

from typing import Any

from mtl_core.strategies import BASELINE, ONE_MODEL
from search.analysis.labels import name_key

BASELINES = ("equal_sum", "single_task", "rlw")  # what search.baselines may name
STRATEGY_KEYS = ("strategy.", "groups", "tasks")  # what a baseline sets itself; everything else it shares
PLAIN = {**{name_key(axis): name for axis, name in BASELINE.items()}, "groups": ONE_MODEL}  # equal_sum


def shared_knobs(overrides: dict[str, Any]) -> dict[str, Any]:
    """What a baseline takes from a configuration: its training knobs, not its strategy or grouping."""
    return {k: v for k, v in overrides.items() if not k.startswith(STRATEGY_KEYS)}


def baseline_overrides(name: str, best: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, Any]:
    """The overrides of baseline `name`, given the best configuration's overrides."""
    shared = shared_knobs(best)
    if name == "equal_sum":
        return {**shared, **PLAIN}
    if name == "single_task":
        return {**shared, **PLAIN, "groups": [[t] for t in tasks]}
    if name == "rlw":
        return {**shared, **PLAIN, name_key("combiner"): "rlw"}
    raise ValueError(f"unknown baseline {name!r}; valid choices: {', '.join(BASELINES)}")
