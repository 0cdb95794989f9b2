"""A parsed space: its search settings (`SearchSettings`), the run sections every trial shares, the `space`
section, and the corners of its ranges."""
from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
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
class MultiObjective:
    """Several objectives in place of the one metric, and how the search proposes and stops trials over them.
    A space file's `objectives`, `sampler` and `tie_break` keys."""

    objectives: tuple[str, ...] = ()  # a multi-objective search (`tasks` = each task's val F1); () = metric alone
    sampler: str = "tpe"  # Optuna's: tpe or nsga2 (both take one or several objectives)
    tie_break: str = "hypervolume"  # MO-ASHA, inside a front: hypervolume contribution, crowding or epsilon_net


@dataclass(frozen=True)
class FinalPhase:
    """The final phase: the best configurations retrained beside the baselines on seeds the search never used,
    raced on the test split (or by repeated k-fold CV). A space file's `final_*` keys and the two below."""

    k: int = 3  # final_k: retrain the top k configurations (0: no final phase) ...
    seeds: int = 3  # final_seeds: ... with this many seeds first
    max_seeds: int | None = None  # final_max_seeds: the race adds seeds to undecided comparisons up to this
    seed_step: int | None = None  # final_seed_step: seeds added per round
    equivalence_margin: float = 0.02  # the race also decides "equivalent within ±margin" (test macro-F1; 0 = off)
    cv_folds: int = 0  # > 1: evaluate by repeated k-fold CV, one repeat per seed (0: the test split)

    @property
    def seed_cap(self) -> int:
        """The most seeds a comparison gets (final_max_seeds; unset: twice final_seeds)."""
        return self.max_seeds if self.max_seeds is not None else 2 * self.seeds

    @property
    def round_seeds(self) -> int:
        """Seeds added per round of the race (final_seed_step; unset: final_seeds)."""
        return self.seed_step if self.seed_step is not None else self.seeds


@dataclass(frozen=True)
class BaselineSettings:
    """The baselines retrained beside the final configurations, under the same protocol."""

    names: tuple[str, ...] = BASELINES  # baselines: [] = none
    tuned: tuple[str, ...] = ()  # tune_baselines: these get their own search over the non-strategy knobs
    samples: int | None = None  # baseline_samples: trials of each such search (None: num_samples)


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
    grouping_mode: str = "search"  # `search` (Optuna + ASHA), `exhaustive` (every group), `affinity` (TAG), `both`
    axis_study: bool = False  # also retrain the best with one axis changed to each value (search.run.axis_study)
    register_model: str | None = None  # the best configuration's model is registered in MLflow under this name
    multi: MultiObjective = field(default_factory=MultiObjective)
    final: FinalPhase = field(default_factory=FinalPhase)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)

    def as_keys(self) -> dict[str, Any]:
        """The settings as a space file's flat `search` section writes them (plain YAML values)."""
        out = {}
        for key, path in search_keys().items():
            value = functools.reduce(getattr, path, self)
            out[key] = list(value) if isinstance(value, tuple) else asdict(value) if is_dataclass(value) else value
        return out

    @property
    def cpu(self) -> float:
        return self.resources_per_trial.cpu

    @property
    def kind(self) -> str:
        """What proposes and stops the trials, for the parent run's `sweep.kind` tag: `optuna-tpe+asha`,
        `optuna-nsga2+mo-asha`, or the grouping mode (`groupings-exhaustive`, ...), which trains fixed lists."""
        if self.grouping_mode != "search":
            return f"groupings-{self.grouping_mode}"
        return f"optuna-{self.multi.sampler}+{'mo-asha' if self.multi.objectives else 'asha'}"

    @property
    def gpu(self) -> float:
        return self.resources_per_trial.gpu


# A space file's `search` section is flat (`final_k`, `tune_baselines`); in code the final phase and the
# baselines are objects of their own. This table says where each nested key lives.
NESTED_KEYS = {"objectives": ("multi", "objectives"), "sampler": ("multi", "sampler"),
               "tie_break": ("multi", "tie_break"), "final_k": ("final", "k"), "final_seeds": ("final", "seeds"), "final_max_seeds": ("final", "max_seeds"),
               "final_seed_step": ("final", "seed_step"), "equivalence_margin": ("final", "equivalence_margin"),
               "cv_folds": ("final", "cv_folds"), "baselines": ("baselines", "names"),
               "tune_baselines": ("baselines", "tuned"), "baseline_samples": ("baselines", "samples")}
GROUPS = {"multi": MultiObjective, "final": FinalPhase, "baselines": BaselineSettings}


@functools.cache
def search_keys() -> dict[str, tuple[str, ...]]:
    """Every key of a space file's `search` section, and where its value lives in SearchSettings (one
    table, built once: callers read it, never change it)."""
    top = [f.name for f in fields(SearchSettings) if f.name not in GROUPS]
    return {**{k: (k,) for k in top}, **NESTED_KEYS}


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
