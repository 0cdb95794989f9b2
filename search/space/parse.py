"""A space file read and validated whole before Ray starts: one ConfigError naming every problem."""
from __future__ import annotations

import copy
import dataclasses
import functools
import typing
import math
from pathlib import Path
from typing import Any

import yaml

from mtl_core import keys
from mtl_core.config import Config, ConfigError, apply_overrides, build_config, load_yaml
from mtl_core.validation import Problems, build_dataclass, coerce_value, finite, show
from search.space.baselines import BASELINES
from search.space.rungs import derived_grace
from search.analysis.pareto import TIE_BREAKS
from search.space.trial import trial_config
from search.io.files import CorruptFile, Files
from search.io.folder_read import read_space
from search.space.settings import GROUPS, MODEL_NAME, RUN_SECTIONS, SAMPLERS, SEARCH_UPPER, SearchSettings, SpaceSpec, corner_samples, search_keys
from search.space.optuna import is_distribution


def _check_range(kind: str, bounds: Any, path: str, problems: Problems) -> None:
    if not (isinstance(bounds, list) and len(bounds) == 2):
        return problems.add(f"{path}.{kind}: expected [low, high]")
    lo, hi = bounds
    numeric = (int,) if kind == "int" else (int, float)
    if any(isinstance(b, bool) or not isinstance(b, numeric) for b in bounds):
        bad = next(b for b in bounds if isinstance(b, bool) or not isinstance(b, numeric))
        return problems.add(f"{path}.{kind}: bounds must be {'integers' if kind == 'int' else 'numbers'}, got {bad!r}")
    if not (finite(lo) and finite(hi)):
        return problems.add(f"{path}.{kind}: bounds must be finite, got [{show(lo)}, {show(hi)}]")
    if not lo < hi:
        problems.add(f"{path}.{kind}: low must be below high, got [{lo}, {hi}]")
    elif kind == "loguniform" and lo <= 0:
        problems.add(f"{path}.loguniform: bounds must be > 0, got [{lo}, {hi}]")


def _check_node(node: Any, path: str, problems: Problems) -> None:
    """Structural checks of a `space` subtree (key paths start with `space.`)."""
    if not is_distribution(node):
        for k, v in (node.items() if isinstance(node, dict) else ()):
            _check_node(v, f"{path}.{k}", problems)
        return
    kind, arg = next(iter(node.items()))
    if kind == "partition":
        if arg != "all" and not (isinstance(arg, list) and arg and all(isinstance(p, list) for p in arg)):
            problems.add(f"{path}.partition: expected `all` or a list of partitions (lists of task lists)")
    elif kind != "choice":
        _check_range(kind, arg, path, problems)
    elif not isinstance(arg, (list, dict)):
        problems.add(f"{path}.choice: expected a list of values or a mapping of options")
    elif not arg:
        problems.add(f"{path}.choice: needs at least one option")
    elif isinstance(arg, dict):
        for option, params in arg.items():
            if params is not None and not isinstance(params, dict):
                problems.add(f"{path}.choice.{option}: expected a mapping of that option's parameters")
                continue
            for k, v in (params or {}).items():
                _check_node(v, f"{path}.choice.{option}.{k}", problems)


def check_name(name: Any, where: str) -> None:
    """An experiment name becomes a folder under --storage, an MLflow experiment and an Optuna study: one
    plain path component, never a path that escapes the storage folder."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: expected a non-empty name, got {show(name)}")
    if name in (".", "..") or any(c in name or not c.isprintable() for c in "/\\") or not name.isprintable() \
            or len(name.encode("utf-8", "surrogatepass")) > 200:  # a folder name's limit is 255 bytes, not characters
        raise ConfigError(f"{where}: {show(name)} is not a plain folder name (no /, \\, . or .., no control "
                          f"characters, at most 200 bytes in UTF-8)")


def _search_settings(raw: Any, problems: Problems, tasks: tuple[str, ...] = ()) -> SearchSettings:
    if isinstance(raw, dict) and raw.get("objectives") == "tasks":
        raw = {**raw, "objectives": [keys.task("val", t) for t in tasks]}
    s = _build_search(raw or {}, problems)
    if s.multi.sampler not in SAMPLERS:
        problems.add(f"search.sampler: unknown sampler {s.multi.sampler!r}; valid choices: {', '.join(SAMPLERS)}")
    if s.multi.tie_break not in TIE_BREAKS:
        problems.add(f"search.tie_break: unknown rule {s.multi.tie_break!r}; valid choices: {', '.join(TIE_BREAKS)}")
    _check_objectives(s, raw if isinstance(raw, dict) else {}, tasks, problems)
    if s.grouping_mode not in ("search", "exhaustive", "affinity", "both"):
        problems.add(f"search.grouping_mode: unknown mode {s.grouping_mode!r}; valid choices: search, exhaustive, affinity, both")
    if s.mode not in ("min", "max"):
        problems.add(f"search.mode: expected min or max, got {s.mode!r}")
    if not keys.SEARCHABLE.match(s.metric):
        problems.add(f"search.metric: {s.metric!r} is not a reported metric (e.g. val/avg_f1, val/gory/f1)")
    for key in ("num_samples", "max_concurrent", "grace_period", "final_seeds"):
        if _value(s, key) < 1:
            problems.add(f"search.{key}: must be >= 1, got {_value(s, key)}")
    for key, bound in SEARCH_UPPER.items():
        value = s.resources_per_trial.cpu if key == "resources_per_trial.cpu" else \
            s.resources_per_trial.gpu if key == "resources_per_trial.gpu" else _value(s, key)
        if value is not None and value > bound:
            problems.add(f"search.{key}: at most {bound:g}, got {show(value)}")
    if s.seed < 0:
        problems.add(f"search.seed: must be >= 0, got {s.seed}")
    if s.reduction_factor < 2:
        problems.add(f"search.reduction_factor: must be >= 2, got {s.reduction_factor}")
    if s.final.k < 0:
        problems.add(f"search.final_k: must be >= 0, got {s.final.k}")
    f, b = s.final, s.baselines
    if f.max_seeds is not None and f.max_seeds < f.seeds:
        problems.add(f"search.final_max_seeds: must be >= final_seeds ({f.seeds}), got {f.max_seeds}")
    if f.cv_folds != 0 and not 2 <= f.cv_folds <= 100:
        problems.add(f"search.cv_folds: 0 (the test split) or 2 to 100, got {f.cv_folds}")
    if not (isinstance(f.equivalence_margin, (int, float)) and 0 <= f.equivalence_margin < 1):
        problems.add(f"search.equivalence_margin: must be >= 0 and < 1 (test macro-F1), got {f.equivalence_margin!r}")
    if f.seed_step is not None and f.seed_step < 1:
        problems.add(f"search.final_seed_step: must be >= 1, got {f.seed_step}")
    if b.samples is not None and b.samples < 1:
        problems.add(f"search.baseline_samples: must be >= 1, got {b.samples}")
    for name in b.tuned:
        if name not in b.names:
            problems.add(f"search.tune_baselines: {name!r} is not one of search.baselines ({', '.join(b.names) or 'none'})")
    if s.register_model is not None and not MODEL_NAME.fullmatch(s.register_model):
        problems.add(f"search.register_model: {show(s.register_model)} is not a model name (letters, digits, "
                     f"'_', '-', '.'; at most 100, starting with a letter or digit)")
    elif s.register_model is not None and s.final.k < 1:
        problems.add("search.register_model: the model is the final phase's best run (needs search.final_k >= 1)")
    if s.max_failures < -1:
        problems.add(f"search.max_failures: must be >= -1 (-1 = retry forever), got {s.max_failures}")
    for name in s.baselines.names:
        if name not in BASELINES:
            problems.add(f"search.baselines: unknown baseline {name!r}; valid choices: {', '.join(BASELINES)}")
    if s.cpu <= 0 or s.gpu < 0:
        problems.add(f"search.resources_per_trial: cpu must be > 0 and gpu >= 0, got cpu {s.cpu}, gpu {s.gpu}")
    elif 0 < s.gpu < 1 and not math.isclose(1 / s.gpu, round(1 / s.gpu)):
        problems.add(f"search.resources_per_trial.gpu: a fraction must divide 1 (0.5, 0.25, ...), got {s.gpu}")
    return s


def _build_search(raw: Any, problems: Problems) -> SearchSettings:
    """SearchSettings from a space file's flat `search` section: each key coerced to the type of the field it
    names (search_keys), every problem named by the key as written."""
    if not isinstance(raw, dict):
        problems.add(f"search: expected a mapping, got {show(raw)}")
        return SearchSettings()
    where = search_keys()
    for key in sorted(set(raw) - set(where), key=str):
        problems.add(f"search.{key}: unknown key; valid keys here: {', '.join(where)}")
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for key in [k for k in where if k in raw]:
        *group, name = where[key]
        owner = GROUPS[group[0]] if group else SearchSettings
        hint, into = typing.get_type_hints(owner)[name], nested[group[0]] if group else top
        if dataclasses.is_dataclass(hint):  # a section (resources_per_trial): each of its problems named
            into[name] = build_dataclass(hint, raw[key], f"search.{key}", problems)
            continue
        with problems.collect():
            into[name] = coerce_value(hint, raw[key], f"search.{key}")
    return SearchSettings(**top, **{group: cls(**nested[group]) for group, cls in GROUPS.items()})


def _value(s: SearchSettings, key: str) -> Any:
    """The value of a `search` key as written in a space file."""
    return functools.reduce(getattr, search_keys()[key], s)


def _check_objectives(s: SearchSettings, raw: dict, tasks: tuple[str, ...], problems: Problems) -> None:
    """Several objectives replace the one metric: both written, or an objective no trial reports, is refused."""
    if not s.multi.objectives:
        return
    if "metric" in raw:
        problems.add("search.objectives: set search.metric (one objective) or search.objectives (several), not both")
    unknown = [o for o in s.multi.objectives if not keys.SEARCHABLE.match(o)
               or not (o in (keys.average("val"), keys.average("val", "loss")) or keys.task_of(o) in tasks)]
    twice = [o for o in s.multi.objectives if s.multi.objectives.count(o) > 1]
    if unknown:
        problems.add(f"search.objectives: {unknown[0]!r} is not a reported metric of the tasks {', '.join(tasks)} "
                     f"(e.g. val/{tasks[0] if tasks else 'gory'}/f1, val/avg_f1; or `tasks`)")
    elif twice:
        problems.add(f"search.objectives: {twice[0]!r} is named twice")
    elif len(s.multi.objectives) < 2:
        problems.add("search.objectives: needs two or more metrics (one objective is search.metric)")
    if s.grouping_mode != "search":
        problems.add(f"search.objectives: only grouping_mode search samples configurations, not {s.grouping_mode!r}")


def _absolute_paths(base: dict[str, Any], cfg: Config) -> None:
    """Trials run in their own directories: the data and cache folders become absolute paths."""
    if cfg.data.root is not None:
        base.setdefault("data", {})["root"] = str(Path(cfg.data.root).expanduser().resolve())
    if cfg.data.cache_dir is not None:
        base.setdefault("data", {})["cache_dir"] = str(Path(cfg.data.cache_dir).expanduser().resolve())


def _absolute_run_paths(node: Any) -> Any:
    """A `transferred` combiner's `from_run` (a value or a choice's values) as an absolute path: trials
    rebuild their config in their own directories."""
    if isinstance(node, list):
        return [_absolute_run_paths(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _absolute_run_paths(v) for k, v in node.items()}
    path = out.get("from_run")
    if isinstance(path, str):
        out["from_run"] = str(Path(path).expanduser().resolve())
    elif is_distribution(path) and isinstance(path.get("choice"), list):
        out["from_run"] = {"choice": [str(Path(p).expanduser().resolve()) if isinstance(p, str) else p
                                      for p in path["choice"]]}
    return out


def as_written(spec: SpaceSpec, text: str) -> str:
    """`text` with the resolved data folder put back as the user wrote it (`${CM_DATA}/x`, `~/data`): an
    environment variable's value is never printed."""
    written = (spec.raw.get("data") or {}).get("root") if isinstance(spec.raw.get("data"), dict) else None
    resolved = (spec.base.get("data") or {}).get("root")
    if isinstance(written, str) and resolved and written != resolved:
        return text.replace(resolved, written.rstrip("/") or written)
    return text


def load_space(path: str | Path, overrides: list[str] | None = None) -> SpaceSpec:
    """Read and fully validate a space file; raise one ConfigError naming every problem (key paths)."""
    path = Path(path)
    return space_from(apply_overrides(load_yaml(path), overrides or []), path)


def space_from(raw: dict[str, Any], path: Path) -> SpaceSpec:
    """A space file's mapping (`path` names it in messages and the spec), fully validated."""
    problems = Problems()
    allowed = set(RUN_SECTIONS) | {"name", "search", "space"}
    for key in sorted(set(raw) - allowed, key=str):
        problems.add(f"{key}: unknown key; valid keys here: {', '.join(sorted(allowed))}")
    base = _absolute_run_paths({k: copy.deepcopy(raw[k]) for k in RUN_SECTIONS if k in raw})
    base_cfg = Config()
    with problems.collect():
        base_cfg = build_config(copy.deepcopy(base))
        _absolute_paths(base, base_cfg)
    tasks_ok = not any(p.split(":")[0].split(".")[0] == "tasks" for p in problems.items)  # strategies check against them
    raw_search = raw.get("search")
    derive_grace = not isinstance(raw_search, dict) or raw_search.get("grace_period", "auto") == "auto"
    if derive_grace and isinstance(raw_search, dict):
        raw_search = {k: v for k, v in raw_search.items() if k != "grace_period"}
    elif isinstance(raw_search, dict) and isinstance(raw_search.get("grace_period"), (str, type(None))):
        problems.add(f"search.grace_period: expected an integer (epochs) or auto, got {show(raw_search['grace_period'])}")
        raw_search = {k: v for k, v in raw_search.items() if k != "grace_period"}
    search = _search_settings(raw_search, problems, base_cfg.tasks)
    space = _absolute_run_paths(raw.get("space") or {})
    if not isinstance(space, dict):
        problems.add("space: expected a mapping of config keys to values or distributions")
        space = {}
    before = list(problems.items)
    _check_node(space, "space", problems)
    name = raw.get("name") or path.stem
    with problems.collect():
        check_name(name, "name")
    spec = SpaceSpec(path, str(name), base, search, space, base_cfg, raw)
    configs: list[Config] = []
    if tasks_ok and len(problems.items) == len(before):  # every branch's corners, once the space itself is well formed
        corners = Problems()
        for sample in corner_samples(space, base_cfg.tasks) or [{}]:
            with corners.collect():
                configs.append(trial_config(base, sample))
        problems.items += [f"space.{p}" for p in corners.items if p not in before]  # not the base's again
    problems.raise_if_any()
    spec.corner_configs = configs  # every corner built without a problem: kept for the first-rung rule
    if derive_grace:  # `auto`: the first rung after every sampleable strategy acts (search.space.rungs)
        spec.search = dataclasses.replace(spec.search, grace_period=derived_grace(spec.corner_configs, spec.max_t))
    return spec


def resolved(spec: SpaceSpec) -> dict[str, Any]:
    """The space as it will run (after --set and path resolution), as plain YAML values."""
    search = spec.search.as_keys()
    if search["objectives"]:  # they replace the metric: written together, the file would be refused
        del search["metric"]
    return {"name": spec.name, **spec.base, "search": search, "space": spec.space}


def dump_resolved(spec: SpaceSpec) -> str:
    """The space file as it will run, for the experiment folder."""
    return yaml.safe_dump(resolved(spec), sort_keys=False)


def recorded_space(exp_dir: Path) -> SpaceSpec:
    """The space an experiment ran, as `space.yaml` records it, read as a stranger may have left it and
    validated as a launch would. Its data folder is left out: the report reads the tables, never the data,
    and the folder may have moved."""
    path = exp_dir / Files.SPACE
    raw = read_space(path)
    if isinstance(raw.get("data"), dict):
        raw["data"] = {k: v for k, v in raw["data"].items() if k not in ("root", "cache_dir")}
    try:
        return space_from(raw, path)
    except ConfigError as exc:
        raise CorruptFile(f"{path}: not a space this service recorded ({exc.problems[0]})") from None
