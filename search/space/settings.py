"""A parsed space: its search settings (`SearchSettings`), the run sections every trial shares, the `space`
section, and the corners of its ranges."""
from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from mtl_core import keys
from mtl_core.config import Config
from search.space.baselines import BASELINES
from search.space.optuna import is_distribution, partition_options
from search.space.trial import trial_config


RUN_SECTIONS = ("tasks", "data", "model", "train", "strategy", "pretrain")


# Upper bounds of the search settings (docs/spaces.md): beyond them a sweep cannot run or never ends.
SEARCH_UPPER = {"num_samples": 100_000, "max_concurrent": 10_000, "grace_period": 10_000, "reduction_factor": 100,
                "max_failures": 100, "final_k": 100, "final_seeds": 100, "final_max_seeds": 1000, "final_seed_step": 1000,
                "baseline_samples": 100_000, "seed": 2**32 - 1,
                "resources_per_trial.cpu": 1024, "resources_per_trial.gpu": 64}


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a registered model's name, safe in `models:/NAME/1`


SAMPLERS = ("tpe", "nsga2")  # Optuna's samplers a space may pick (both take one or several objectives)


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class SearchSettings:
    metric: str = keys.DEFAULT_METRIC
    mode: str = "max"
    num_samples: int = 8
    seed: int = 0
    max_concurrent: int = 2
    grace_period: int = 1  # in a space file, `auto` (the default) derives it: search.space.rungs
    reduction_factor: int = 3
    resources_per_trial: Resources = field(default_factory=Resources)
    max_failures: int = 2  # retries of a trial whose worker died (from its last checkpoint)
    final_k: int = 3  # retrain the top k configurations ...
    final_seeds: int = 3  # ... with this many seeds first, evaluated on the test split; final_k 0 = off
    final_max_seeds: int | None = None  # the race adds seeds to undecided comparisons up to this (None: 2 x final_seeds)
    final_seed_step: int | None = None  # seeds added per round (None: final_seeds)
    equivalence_margin: float = 0.02  # the race also decides "equivalent within ±margin" (test macro-F1; 0 = off)
    cv_folds: int = 0  # > 1: the final phase evaluates by repeated k-fold CV, one repeat per seed (0: the test split)
    grouping_mode: str = "search"  # `search` (Optuna + ASHA), `exhaustive` (every group), `affinity` (TAG), `both`
    baselines: tuple[str, ...] = BASELINES  # retrained with the final configurations; [] = none
    tune_baselines: tuple[str, ...] = ()  # these baselines get their own search over the non-strategy knobs
    baseline_samples: int | None = None  # trials of each such search (None: num_samples)
    axis_study: bool = False  # also retrain the best with one axis changed to each value (search.run.axis_study)
    objectives: tuple[str, ...] = ()  # a multi-objective search (`tasks` = each task's val F1); () = metric alone
    sampler: str = "tpe"  # tpe or nsga2
    tie_break: str = "hypervolume"  # MO-ASHA, inside a front: hypervolume contribution, crowding or epsilon_net
    register_model: str | None = None  # the best configuration's model is registered in MLflow under this name

    @property
    def max_seeds(self) -> int:
        return self.final_max_seeds if self.final_max_seeds is not None else 2 * self.final_seeds

    @property
    def seed_step(self) -> int:
        return self.final_seed_step if self.final_seed_step is not None else self.final_seeds

    @property
    def cpu(self) -> float:
        return self.resources_per_trial.cpu

    @property
    def kind(self) -> str:
        """What proposes and stops the trials, for the parent run's `sweep.kind` tag: `optuna-tpe+asha`,
        `optuna-nsga2+mo-asha`, or the grouping mode (`groupings-exhaustive`, ...), which trains fixed lists."""
        if self.grouping_mode != "search":
            return f"groupings-{self.grouping_mode}"
        return f"optuna-{self.sampler}+{'mo-asha' if self.objectives else 'asha'}"

    @property
    def gpu(self) -> float:
        return self.resources_per_trial.gpu


@dataclass
class SpaceSpec:
    path: Path
    name: str
    base: dict[str, Any]  # run config sections shared by every trial (plain YAML dict)
    search: SearchSettings
    space: dict[str, Any]  # the `space` section, validated
    config: Config  # the shared sections as a typed config (validated once, when the file is loaded)
    raw: dict[str, Any] = field(default_factory=dict)  # the whole file after --set

    @property
    def max_t(self) -> int:
        """The full budget of a trial, in epochs."""
        return self.config.train.epochs

    @functools.cached_property
    def corner_configs(self) -> list[Config]:
        """The run configuration at every corner of the space (each choice's branches, each range's ends),
        built once (load_space keeps those it validated): the first-rung rule reads them at load and at launch."""
        return [trial_config(self.base, sample) for sample in corner_samples(self.space, self.config.tasks) or [{}]]


def corner_samples(space: dict[str, Any], tasks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Dotted overrides covering every option of every choice, with the bounds of every range.

    Validating each of these catches an unknown key, strategy name or parameter in any branch."""
    def expand(node, path) -> list[dict[str, Any]]:
        if is_distribution(node):
            kind, arg = next(iter(node.items()))
            if kind == "choice" and isinstance(arg, dict):
                out = []
                for option, params in arg.items():
                    subs = [expand(v, f"{path}.{k}") for k, v in (params or {}).items()]
                    for combo in _merge_products(subs):
                        out.append({f"{path}.name": option, **combo})
                return out
            if kind == "choice":
                return [{path: v} for v in arg]
            if kind == "partition":
                return [{path: p} for p in partition_options(arg, tasks)]
            lo, hi = arg
            return [{path: lo}, {path: hi}]
        if isinstance(node, dict):
            return _merge_products([expand(v, f"{path}.{k}" if path else k) for k, v in node.items()])
        return [{path: node}]
    return expand(space, "")


def _merge_products(groups: list[list[dict]], limit: int = 64) -> list[dict]:
    """Combine alternatives from independent subtrees; beyond `limit`, zip instead of a full product."""
    groups = [g for g in groups if g]
    if not groups:
        return [{}]
    size = math.prod(len(g) for g in groups)
    if size <= limit:
        return [dict(kv for d in combo for kv in d.items()) for combo in itertools.product(*groups)]
    n = max(len(g) for g in groups)
    return [dict(kv for g in groups for kv in g[i % len(g)].items()) for i in range(n)]
