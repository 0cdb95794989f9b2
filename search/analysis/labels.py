"""One readable label per configuration, the same in the console, the report, its plots and MLflow:

    dsg+equal+all_modalities | bin+sla+sar/mat+gor   scheduler+combiner+modality | the groups (tasks by prefix)
    dsg+equal+all_modalities                         all tasks in one model
    all_tasks+pcgrad@z+all_modalities                a gradient method with `space: representation`
    equal_sum                                        a baseline is its own name

and the names of the MLflow runs built on them (`run_name`): `final dsg+equal+all_modalities | bin+sla+sar/mat+gor seed 1`,
`baseline equal_sum seed 1`, `search 3 dsg+equal+all_modalities` (3: the trial's number in its phase).

A label names the strategy and the grouping, not the training knobs (learning rate, class weights): two
trials of a search may share one. A table tells them apart by the knobs that differ (`distinct`), and a search
run's name carries its number.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from mtl_core.strategies import AXES, BASELINE


def name_key(axis: str) -> str:
    """The dotted override key of a strategy axis's method: `strategy.combiner.name`."""
    return f"strategy.{axis}.name"


def short_names(tasks: Sequence[str], length: int = 3) -> dict[str, str]:
    """Each task's shortest prefix of at least `length` letters that no other task starts with:
    `binary` -> `bin`, `slapstick` -> `sla`, `sarcasm` -> `sar`."""
    out = {}
    for t in tasks:
        n = length
        while n < len(t) and any(o != t and o.startswith(t[:n]) for o in tasks):
            n += 1
        out[t] = t[:n]
    return out


def groups_label(groups: Sequence[Sequence[str]], tasks: Sequence[str] | None = None) -> str:
    """`bin+sla+sar/mat+gor`: the groups of a partition by their tasks' short names."""
    short = short_names(tasks or [t for g in groups for t in g])
    return "/".join("+".join(short.get(t, t) for t in g) for g in groups)


def partition_label(partition: Sequence[Sequence[str]]) -> str:
    """`binary+gory|mature+slapstick+sarcasm`: a partition by its tasks' full names, as Optuna's categorical
    value and as the tables' `groups` cell (`tasks`, one group, is `binary+gory`)."""
    return "|".join("+".join(g) for g in partition)


def partition_of(label: str) -> list[list[str]]:
    """`binary+gory|mature` -> [[binary, gory], [mature]], the inverse of `partition_label`."""
    return [g.split("+") for g in label.split("|")]


def from_cell(key: str, text: str) -> Any:
    """A table's `groups` or `tasks` cell (their label, `binary+gory|mature`) back as lists."""
    return partition_of(text) if key == "groups" else text.split("+")


def _strategy_name(overrides: dict[str, Any], base: dict[str, Any], axis: str) -> str:
    """The method's name; a gradient method in the representation space is its own variant, `pcgrad@z`."""
    raw = (base.get("strategy") or {}).get(axis)
    params = raw if isinstance(raw, dict) and name_key(axis) not in overrides else {}
    space = overrides.get(f"strategy.{axis}.space", params.get("space"))
    suffix = "@z" if space == "representation" else ""
    if name_key(axis) in overrides:
        return str(overrides[name_key(axis)]) + suffix
    if isinstance(raw, dict):
        raw = raw.get("name")
    return (str(raw) if raw else BASELINE[axis]) + suffix


def config_label(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """The label of the configuration `overrides` gives on top of the space's run sections `base`."""
    base = base or {}
    strategy = "+".join(_strategy_name(overrides, base, axis) for axis in AXES)
    tasks = list(overrides.get("tasks") or base.get("tasks") or [])
    groups = overrides.get("groups", base.get("groups"))
    if isinstance(groups, str):  # a table cell holds its label
        groups = from_cell("groups", groups)
    if "tasks" in overrides and not groups:  # a group trial of the exhaustive mode trains these tasks alone
        return f"{strategy} | {groups_label([tasks], base.get('tasks') or tasks)}"
    if not groups or len(groups) == 1:
        return strategy
    return f"{strategy} | {groups_label(groups, tasks or None)}"


def _present(value: Any) -> bool:
    """A table cell that holds a value: not None, not NaN (pandas' empty cell)."""
    return value is not None and not (isinstance(value, float) and value != value)


def trial_number(trial_id: str, number: Any = None) -> str:
    """A trial's number in its phase: the Optuna trial's (`number`, a searching phase), else Tune's count in the
    id of a listed trial (`b7589_00003` -> `3`), else the id as it is."""
    if _present(number):
        return str(int(number))
    head, _, tail = str(trial_id).rpartition("_")
    return str(int(tail)) if head and tail.isdigit() else str(trial_id)


def distinct(labels: Sequence[str], numbers: Sequence[str],
             configs: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """Labels made distinct where they repeat: by the training knobs that tell the repeats apart, taken from
    each row's `configs` (its `config/<key>` cells; `dsg+equal+all_modalities (class_weight balanced, lr 0.0018)`, at
    most two knobs, those with the most distinct values first), else by the trial's number (`dsg+equal+all_modalities #3`),
    also where a knob-named label would equal another row's."""
    out = list(labels)
    for label in dict.fromkeys(labels):
        rows = [i for i, other in enumerate(labels) if other == label]
        if len(rows) < 2:
            continue
        knobs = _differing_knobs([configs[i] for i in rows]) if configs is not None else []
        for i in rows:
            shown = ", ".join(f"{_knob_name(k)} {_knob_value(configs[i][k])}" for k in knobs[:2])
            out[i] = f"{label} ({shown})" if shown else label
        named = [out[i] for i in rows]
        if len(set(named)) < len(rows) or any(n in labels for n in named):
            for i in rows:
                out[i] = f"{label} #{numbers[i]}"
    return out


def _differing_knobs(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The `config/` keys (without the prefix) that every row sets and not all to one value, strategy names
    and groupings aside (the label shows them): those with the most distinct values first, then by name."""
    keys = set.intersection(*({k for k, v in c.items() if _present(v)} for c in configs))
    shown_in_label = {name_key(axis) for axis in AXES} | {"groups", "tasks"}
    spread = {k: len({repr(c[k]) for c in configs}) for k in keys if k not in shown_in_label}
    return sorted((k for k, n in spread.items() if n > 1), key=lambda k: (-spread[k], k))


def _knob_name(key: str) -> str:
    """`train.lr` -> `lr`, `pretrain.combiner.name` -> `pretrain.combiner`, `model.dropout` as it is."""
    key = key.removesuffix(".name")
    return key.removeprefix("train.")


def _knob_value(value: Any) -> str:
    if isinstance(value, str) and value.startswith("["):  # a list as its table cell holds it (JSON)
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():  # an integer column with a gap reads back as floats
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.2g}"
    if isinstance(value, (list, tuple)):  # pretrain.tasks: the tasks, or none
        return "+".join(map(str, value)) or "none"
    return str(value)


def run_name(phase: str, trial_id: str, entry: dict[str, Any]) -> str:
    """The MLflow run name of a trial: its phase, what it trains, and its seed in the final phase."""
    meta = entry.get("meta") or {}
    seed = f" seed {meta['seed']}" if meta.get("seed") is not None else ""
    seed += f" fold {meta['fold']}" if meta.get("fold") is not None else ""
    if meta.get("role") == "baseline":
        return f"baseline {meta.get('name')}{seed}"
    if meta.get("role") == "axis":
        return f"axis {meta.get('name')}{seed}"
    if meta.get("name"):
        return f"{phase} {meta['name']}{seed}"
    number = trial_number(trial_id, meta.get("number"))
    return f"{phase} {number} {meta.get('label', '')}{seed}"
