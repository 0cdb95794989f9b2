"""Exhaustive task-grouping mode (Standley et al.; docs/methods.md#exhaustive-grouping): train every
distinct group once per strategy configuration, then score all partitions and the best selection per
budget without training.

`search.grouping_mode: exhaustive` draws `num_samples` strategy configurations from the space (its
`groups` entry, if any, is ignored), trains each non-empty subset of the tasks as its own Ray trial at
the full budget (no early stopping: every group needs a comparable score), and never trains the same
(group, configuration, seed) twice.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from mtl_core import keys
from mtl_core.grouping import best_selection, rank_partitions, subsets
from search.analysis.labels import partition_label


def distinct_configs(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strategy configurations without their `groups`, each once (in first-seen order)."""
    out, seen = [], set()
    for cfg in configs:
        cfg = {k: v for k, v in cfg.items() if k != "groups"}
        key = json.dumps(cfg, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def group_trials(configs: list[dict[str, Any]], tasks: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """(configuration index, trial overrides): every (distinct configuration, group) pair once."""
    return [(i, {**cfg, "tasks": list(group), "groups": None})
            for i, cfg in enumerate(distinct_configs(configs)) for group in subsets(tasks)]


def score_table(runs: pd.DataFrame, tasks: tuple[str, ...], metric: str = "f1") -> dict[int, dict]:
    """config id -> {group: {task: best-epoch validation score}} from one row per group trial."""
    tables: dict[int, dict] = {}
    for _, row in runs.iterrows():
        group = tuple(t for t in tasks if t in row["group"].split("+"))
        scores = {t: float(row[keys.task("val", t, metric)]) for t in group}
        tables.setdefault(int(row["config"]), {})[group] = scores
    return tables


def summarise(tables: dict[int, dict], tasks: tuple[str, ...], top: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top partitions per configuration, best selection per budget per configuration)."""
    parts, picks = [], []
    for cid, scores in sorted(tables.items()):
        if len(scores) < len(subsets(tasks)):
            continue  # a failed group trial: this configuration cannot be scored exactly
        for rank, (value, partition) in enumerate(rank_partitions(tasks, scores)[:top], start=1):
            parts.append({"config": cid, "rank": rank, "partition": partition_label(partition),
                          "groups": len(partition), keys.DEFAULT_METRIC: value})
        for budget in range(1, len(tasks) + 1):
            value, groups = best_selection(scores, tasks, budget)
            picks.append({"config": cid, "budget": budget, "models": len(groups),
                          "groups": partition_label(groups), keys.DEFAULT_METRIC: value})
    return pd.DataFrame(parts), pd.DataFrame(picks)
