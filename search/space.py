"""Search-space YAML: parse, validate before Ray starts, and turn into an Optuna define-by-run function.

A space file holds the run config sections (`tasks`, `data`, `model`, `train`, `strategy`) that every
trial shares, a `search` section (metric, budget, ASHA, resources) and a `space` section whose
entries mirror the config keys they override. A `space` leaf is a fixed value or one of::

    {choice: [a, b, c]}                      # a categorical over constants
    {choice: {optA: {k: ...}, optB: {}}}     # a strategy choice: `name` plus that option's own knobs,
                                             # sampled only when the option is chosen
    {uniform: [lo, hi]}  {loguniform: [lo, hi]}  {int: [lo, hi]}
    groups: {partition: all}                 # a task grouping: any partition of `tasks` (52 for five),
    groups: {partition: [[[binary, gory], [mature, slapstick, sarcasm]], [[binary, ...]]]}  # or some

Optuna parameter names are dotted paths (`train.lr`, `strategy.combiner`,
`strategy.combiner.gradnorm.alpha`), unique per branch as define-by-run requires. A trial's config is
the flat dict of the dotted config keys it used (`strategy.combiner.name`, `strategy.combiner.alpha`,
`train.lr`), which is also what MLflow records as its parameters.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl_core.config import Config, ConfigError, apply_overrides, build_config, load_yaml

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "partition")
RUN_SECTIONS = ("tasks", "data", "model", "train", "strategy")


@dataclass(frozen=True)
class SearchSettings:
    metric: str = "val/avg_f1"
    mode: str = "max"
    num_samples: int = 8
    seed: int = 0
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 3
    cpu: float = 1.0  # resources_per_trial
    gpu: float = 0.0
    max_failures: int = 2  # retries of a trial whose worker died (from its last checkpoint)
    final_k: int = 3  # retrain the top k configurations ...
    final_seeds: int = 3  # ... with this many seeds, evaluated on the test split; final_k 0 = off
    grouping_mode: str = "search"  # `search` (Optuna + ASHA), `exhaustive` (every group), `affinity` (TAG), `both`


@dataclass
class SpaceSpec:
    path: Path
    name: str
    base: dict[str, Any]  # run config sections shared by every trial (plain YAML dict)
    search: SearchSettings
    space: dict[str, Any]  # the `space` section, validated
    raw: dict[str, Any] = field(default_factory=dict)  # the whole file after --set

    def base_config(self) -> Config:
        return build_config(copy.deepcopy(self.base))

    def trial_config(self, overrides: dict[str, Any]) -> Config:
        """The run config of one trial: the shared sections plus its sampled dotted overrides."""
        return build_config(with_overrides(self.base, overrides))


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the shared sections with a trial's dotted overrides applied."""
    raw = copy.deepcopy(base)
    for key, value in overrides.items():  # a chosen option replaces the base's whole choice
        if key.endswith(".name"):
            _set(raw, key[: -len(".name")], {"name": value})
    for key, value in overrides.items():
        if not key.endswith(".name"):
            _set(raw, key, value)
    return raw


def _set(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # strategy shorthand `combiner: equal`
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------
# parsing and validation


def _is_distribution(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in DISTRIBUTIONS


def _check_range(kind: str, bounds: Any, path: str) -> None:
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise ConfigError(f"{path}.{kind}: expected [low, high]")
    lo, hi = bounds
    numeric = (int,) if kind == "int" else (int, float)
    for b in bounds:
        if isinstance(b, bool) or not isinstance(b, numeric):
            raise ConfigError(f"{path}.{kind}: bounds must be {'integers' if kind == 'int' else 'numbers'}, got {b!r}")
    if not lo < hi:
        raise ConfigError(f"{path}.{kind}: low must be below high, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{path}.loguniform: bounds must be > 0, got [{lo}, {hi}]")


def _check_node(node: Any, path: str) -> None:
    """Structural checks of a `space` subtree (key paths start with `space.`)."""
    if _is_distribution(node):
        kind, arg = next(iter(node.items()))
        if kind == "choice":
            if isinstance(arg, list):
                if not arg:
                    raise ConfigError(f"{path}.choice: needs at least one option")
            elif isinstance(arg, dict):
                if not arg:
                    raise ConfigError(f"{path}.choice: needs at least one option")
                for option, params in arg.items():
                    if params is not None and not isinstance(params, dict):
                        raise ConfigError(f"{path}.choice.{option}: expected a mapping of that option's parameters")
                    for k, v in (params or {}).items():
                        _check_node(v, f"{path}.choice.{option}.{k}")
            else:
                raise ConfigError(f"{path}.choice: expected a list of values or a mapping of options")
        elif kind == "partition":
            if arg != "all" and not (isinstance(arg, list) and arg and all(isinstance(p, list) for p in arg)):
                raise ConfigError(f"{path}.partition: expected `all` or a list of partitions (lists of task lists)")
        else:
            _check_range(kind, arg, path)
    elif isinstance(node, dict):
        for k, v in node.items():
            _check_node(v, f"{path}.{k}")


def partition_options(arg: Any, tasks: tuple[str, ...]) -> list[list[list[str]]]:
    """The partitions a `partition` entry allows, as lists of task lists in configured order."""
    from mtl_core.grouping import canonical, partitions

    chosen = partitions(tasks) if arg == "all" else [canonical(p, tasks) for p in arg]
    return [[list(g) for g in p] for p in chosen]


def partition_label(partition: list[list[str]]) -> str:
    """`binary+gory|mature+slapstick+sarcasm`: a readable categorical value for Optuna and MLflow."""
    return "|".join("+".join(g) for g in partition)


def corner_samples(space: dict[str, Any], tasks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Dotted overrides covering every option of every choice, with the bounds of every range.

    Validating each of these catches an unknown key, strategy name or parameter in any branch."""
    def expand(node, path) -> list[dict[str, Any]]:
        if _is_distribution(node):
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


def _search_settings(raw: Any) -> SearchSettings:
    raw = dict(raw or {})
    resources = raw.pop("resources_per_trial", {}) or {}
    if not isinstance(resources, dict):
        raise ConfigError("search.resources_per_trial: expected a mapping like {cpu: 1, gpu: 0.5}")
    unknown = sorted(set(resources) - {"cpu", "gpu"})
    if unknown:
        raise ConfigError(f"search.resources_per_trial.{unknown[0]}: unknown key; valid keys here: cpu, gpu")
    known = {f for f in SearchSettings.__dataclass_fields__ if f not in ("cpu", "gpu")}
    bad = sorted(set(raw) - known)
    if bad:
        raise ConfigError(f"search.{bad[0]}: unknown key; valid keys here: {', '.join(sorted(known))}, resources_per_trial")
    from mtl_core.config import coerce_value

    hints = {"grouping_mode": str, "metric": str, "mode": str, "num_samples": int, "seed": int, "max_concurrent": int,
             "grace_period": int, "reduction_factor": int, "max_failures": int, "final_k": int, "final_seeds": int}
    kwargs = {k: coerce_value(hints[k], v, f"search.{k}") for k, v in raw.items()}
    for k in ("cpu", "gpu"):
        if k in resources:
            kwargs[k] = coerce_value(float, resources[k], f"search.resources_per_trial.{k}")
    s = SearchSettings(**kwargs)
    if s.grouping_mode not in ("search", "exhaustive", "affinity", "both"):
        raise ConfigError(f"search.grouping_mode: unknown mode {s.grouping_mode!r}; "
                          "valid choices: search, exhaustive, affinity, both")
    if s.mode not in ("min", "max"):
        raise ConfigError(f"search.mode: expected min or max, got {s.mode!r}")
    for key in ("num_samples", "max_concurrent", "grace_period", "final_seeds"):
        if getattr(s, key) < 1:
            raise ConfigError(f"search.{key}: must be >= 1, got {getattr(s, key)}")
    if s.reduction_factor < 2:
        raise ConfigError(f"search.reduction_factor: must be >= 2, got {s.reduction_factor}")
    if s.final_k < 0 or s.max_failures < -1:
        raise ConfigError("search.final_k: must be >= 0 (and max_failures >= -1)")
    if s.cpu <= 0 or s.gpu < 0:
        raise ConfigError(f"search.resources_per_trial: cpu must be > 0 and gpu >= 0, got cpu {s.cpu}, gpu {s.gpu}")
    if 0 < s.gpu < 1 and not math.isclose(1 / s.gpu, round(1 / s.gpu)):
        raise ConfigError(f"search.resources_per_trial.gpu: a fraction must divide 1 (0.5, 0.25, ...), got {s.gpu}")
    return s


METRIC_RE = re.compile(r"^val/(avg_f1|avg_loss|[a-z]+/(loss|acc|f1|f1_pos))$")


def load_space(path: str | Path, overrides: list[str] | None = None) -> SpaceSpec:
    """Read and fully validate a space file; raise ConfigError (one line, key path) on any problem."""
    path = Path(path)
    raw = apply_overrides(load_yaml(path), overrides or [])
    allowed = set(RUN_SECTIONS) | {"name", "search", "space"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; valid keys here: {', '.join(sorted(allowed))}")
    base = {k: copy.deepcopy(raw[k]) for k in RUN_SECTIONS if k in raw}
    base_cfg = build_config(copy.deepcopy(base))  # key paths of the shared sections
    if base_cfg.data.root is not None:  # trials run in their own directories: make it absolute
        base.setdefault("data", {})["root"] = str(Path(base_cfg.data.root).expanduser().resolve())
    if base_cfg.data.cache_dir is not None:
        base["data"]["cache_dir"] = str(Path(base_cfg.data.cache_dir).expanduser().resolve())
    search = _search_settings(raw.get("search"))
    if not METRIC_RE.match(search.metric):
        raise ConfigError(f"search.metric: {search.metric!r} is not a reported metric (e.g. val/avg_f1, val/gory/f1)")
    space = raw.get("space") or {}
    if not isinstance(space, dict):
        raise ConfigError("space: expected a mapping of config keys to values or distributions")
    _check_node(space, "space")
    spec = SpaceSpec(path, str(raw.get("name") or path.stem), base, search, space, raw)
    for sample in corner_samples(space, base_cfg.tasks):
        try:
            spec.trial_config(sample)
        except ConfigError as exc:
            raise ConfigError(f"space.{exc}") from None
    return spec


# ---------------------------------------------------------------------------------------------
# Optuna define-by-run


class DefineByRun:
    """The space as an Optuna define-by-run function (a picklable module-level class: Tune pickles the
    searcher into the experiment, and a function defined in __main__ would not restore)."""

    def __init__(self, space: dict[str, Any], tasks: tuple[str, ...] = ()):
        self.space, self.tasks = space, tuple(tasks)

    def __call__(self, trial) -> dict[str, Any]:
        used: dict[str, Any] = {}
        self._walk(trial, self.space, "", used)
        # Constants returned here are merged into the Tune config: the trial reads its overrides here.
        return {"overrides": used}

    def _walk(self, trial, node, path, used) -> None:
        if _is_distribution(node):
            kind, arg = next(iter(node.items()))
            if kind == "choice" and isinstance(arg, dict):
                option = trial.suggest_categorical(path, list(arg))
                used[f"{path}.name"] = option
                branch: dict[str, Any] = {}
                prefix = f"{path}.{option}"
                for k, v in (arg[option] or {}).items():
                    self._walk(trial, v, f"{prefix}.{k}", branch)
                # sampled under a branch-unique Optuna name, stored under the config key
                used.update({path + key[len(prefix):]: val for key, val in branch.items()})
                return
            if kind == "choice":
                # Optuna categoricals hold scalars; lists/dicts are chosen by index.
                if all(isinstance(v, (str, int, float, bool)) or v is None for v in arg):
                    used[path] = trial.suggest_categorical(path, arg)
                else:
                    used[path] = arg[trial.suggest_categorical(path, list(range(len(arg))))]
            elif kind == "partition":
                options = {partition_label(p): p for p in partition_options(arg, self.tasks)}
                used[path] = options[trial.suggest_categorical(path, list(options))]
            elif kind == "uniform":
                used[path] = trial.suggest_float(path, float(arg[0]), float(arg[1]))
            elif kind == "loguniform":
                used[path] = trial.suggest_float(path, float(arg[0]), float(arg[1]), log=True)
            else:
                used[path] = trial.suggest_int(path, arg[0], arg[1])
        elif isinstance(node, dict):
            for k, v in node.items():
                self._walk(trial, v, f"{path}.{k}" if path else k, used)
        else:
            used[path] = node


def sample_configs(spec: SpaceSpec, n: int) -> list[dict[str, Any]]:
    """n configurations as the search would draw them first (TPE's random start-up), no Ray."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.search.seed),
                                direction="maximize" if spec.search.mode == "max" else "minimize")
    fn = DefineByRun(spec.space, spec.base_config().tasks)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(fn(trial)["overrides"])
        study.tell(trial, 0.0)
    return out


def dump_resolved(spec: SpaceSpec) -> str:
    """The space file as it will run (after --set and path resolution), for the experiment folder."""
    return yaml.safe_dump({"name": spec.name, **spec.base, "search": spec.search.__dict__, "space": spec.space},
                          sort_keys=False)
