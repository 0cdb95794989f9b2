"""`search.axis_study: true`: one factor at a time around the best configuration, at the full budget.

The search phase's per-axis comparisons are marginal (every other axis varies too) and, under ASHA, made at
a short budget. The axis study trains, with the final phase's seeds, the best configuration with one axis
changed to each value the space allows (each scheduler, combiner, modality schedule, grouping, model
architecture and text encoder; a chosen option gets its default parameters), so each value's effect is
measured with the other axes held fixed, against the axis's baseline value (`all_tasks`, `equal`, `all_modalities`, all tasks in
one model, `hiccap`, `minilm`; an axis whose values leave the baseline out: its first value), paired by seed.
Cost: the number of values over all axes, times `final_seeds` trainings.

`pretrain.tasks` is an axis too (its baseline: no pretraining); `pretraining_effects_table` gives each
pretraining option's effect on each downstream task's test F1, paired by seed against no pretraining.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from mtl_core import keys
from mtl_core.config import ModelConfig
from mtl_core.strategies import AXES, BASELINE, ONE_MODEL
from search.analysis.labels import partition_label
from search.space.optuna import is_distribution, partition_options
from search.analysis.stats import holm, paired_difference

STRATEGY_AXES = tuple(f"strategy.{axis}" for axis in AXES)  # a choice of a method and its knobs
BASELINE_VALUE = {**{f"strategy.{axis}": BASELINE[axis] for axis in AXES},  # and `groups`: ONE_MODEL
                  "model.arch": ModelConfig.arch, "model.text_encoder": ModelConfig.text_encoder, "pretrain.tasks": "none"}
LIST_AXES = ("groups", "pretrain.tasks")  # axes whose value is a list (set whole, not as a `.name`)
SHORT = {"pretrain.tasks": "pretrain"}  # an axis's name in run names and tables (default: its last part)


def short_name(axis: str) -> str:
    return SHORT.get(axis, axis.split(".")[-1])


def axis_values(space: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, list]:
    """The values each axis takes in the space: option names of each strategy choice, the partitions of `groups`."""
    out: dict[str, list] = {}
    for axis in BASELINE_VALUE:
        section, key = axis.split(".")
        node = space.get(axis, (space.get(section) or {}).get(key))  # `model: {arch: ...}` or `model.arch: ...`
        if axis in LIST_AXES:
            if is_distribution(node) and "choice" in node:
                out[axis] = [list(o) for o in node["choice"] if isinstance(o, list)]
            continue
        if is_distribution(node) and "choice" in node:
            options = node["choice"]
            out[axis] = list(options) if isinstance(options, dict) else [o for o in options if isinstance(o, str)]
    groups = space.get("groups")
    if is_distribution(groups) and "partition" in groups:
        out["groups"] = partition_options(groups["partition"], tasks)
    return {axis: values for axis, values in out.items() if len(values) > 1}


def label_of(axis: str, value: Any, tasks: tuple[str, ...]) -> str:
    """The label of one value of `axis`: an option name, a partition as `a+b|c` (None: one model), or
    pretraining tasks as `vtm+atm` (none: no pretraining)."""
    if axis == "pretrain.tasks":
        return "+".join(value or ()) or "none"
    return partition_label(value or [list(tasks)]) if axis == "groups" else str(value)


def value_of(overrides: dict[str, Any], axis: str, tasks: tuple[str, ...]) -> str:
    """The label of `axis`'s value in a configuration; `{}` gives the axis's baseline value."""
    if axis in LIST_AXES:
        return label_of(axis, overrides.get(axis, ONE_MODEL if axis == "groups" else None), tasks)
    key = f"{axis}.name" if axis in STRATEGY_AXES else axis
    return label_of(axis, overrides.get(key, BASELINE_VALUE[axis]), tasks)


def axis_design(best: dict[str, Any], values: dict[str, list], tasks: tuple[str, ...]) -> list[tuple[str, dict]]:
    """(name `axis=value`, overrides) for every value of every axis but the best's own (its runs are the
    final phase's `rank 1`), the other axes as in `best`."""
    design = []
    for axis, options in values.items():
        for option in options:
            if axis not in STRATEGY_AXES:
                overrides = {**best, axis: option}
            else:
                overrides = {k: v for k, v in best.items() if k != axis and not k.startswith(f"{axis}.")}
                overrides[f"{axis}.name"] = option
            label = value_of(overrides, axis, tasks)
            if label != value_of(best, axis, tasks):
                design.append((f"{short_name(axis)}={label}", overrides))
    return design


def axis_effects_table(runs: pd.DataFrame, best: dict[str, Any], values: dict[str, list], tasks: tuple[str, ...],
                       metric: str = keys.average("test")) -> pd.DataFrame:
    """One row per axis value: mean over seeds and the paired difference against the axis's baseline value."""
    rows = []
    by_seed = lambda name: runs[runs["name"] == name].set_index("seed")[metric]  # noqa: E731
    best_name = runs.loc[runs["role"] == "final", "name"].iloc[0] if (runs["role"] == "final").any() else None
    for axis, options in values.items():
        short = short_name(axis)
        labels = [label_of(axis, option, tasks) for option in options]
        own, base = value_of(best, axis, tasks), value_of({}, axis, tasks)
        if axis.startswith("model.") and base not in labels:
            base = labels[0]
        name = {label: best_name if label == own else f"{short}={label}" for label in labels}
        if base not in name or name[base] is None:
            continue
        reference = by_seed(name[base])
        for label, run_name in name.items():
            values_ = by_seed(run_name) if run_name is not None else pd.Series(dtype=float)
            common = values_.index.intersection(reference.index)
            diff = paired_difference(values_[common].to_numpy(), reference[common].to_numpy())
            rows.append({"axis": short, "value": label, "baseline": base, "best": label == own, "seeds": len(values_),
                         "run": run_name, "baseline_run": name[base],
                         "mean": float(values_.mean()), "diff": diff.mean if label != base else 0.0,
                         "low": diff.low if label != base else float("nan"),
                         "high": diff.high if label != base else float("nan")})
    return pd.DataFrame(rows)


def pretraining_effects_table(runs: pd.DataFrame, best: dict[str, Any], values: dict[str, list],
                              tasks: tuple[str, ...], scores=None, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (pretraining option, downstream task): the difference of the task's test F1 against no
    pretraining over the seeds both ran (empty without a `pretrain.tasks` axis holding []). With `scores`
    (`search.analysis.decision.RunScores` over `tasks`), the interval holds the test set's sampling as well as the
    seeds', and `shown` marks the effects Holm's procedure keeps over every option and task together (many
    cells, each at 95% alone, would show some effect by chance)."""
    axis = "pretrain.tasks"
    if axis not in values:
        return pd.DataFrame()
    frames = [axis_effects_table(runs, best, {axis: values[axis]}, tasks, keys.task("test", t, "f1")).assign(task=t)
              for t in tasks if keys.task("test", t, "f1") in runs.columns]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        return table
    table = table[table["value"] != table["baseline"]].reset_index(drop=True)
    if scores is None or table.empty:
        return table.assign(p=float("nan"), shown=False)
    pvalues = {}
    for i, r in table.iterrows():
        if r["run"] is None or r["task"] not in scores.tasks:
            continue
        e = scores.difference(r["run"], r["baseline_run"], task=scores.tasks.index(r["task"]))
        low, high = e.interval()
        table.loc[i, ["diff", "low", "high", "p"]] = [e.value, low, high, e.p_value()]
        pvalues[i] = e.p_value()
    shown = holm(pvalues, alpha)
    table["shown"] = [i in shown for i in table.index]
    return table
