"""Typed run configuration: YAML in, frozen dataclasses out, validated at the boundary.

Defaults live only here. Every problem is reported as one line naming the key path,
e.g. ``train.lr: expected a number, got 'fast'``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl_core import TASKS


class ConfigError(ValueError):
    """A user mistake in a config: the message is one line that names the key path."""


@dataclass(frozen=True)
class SyntheticConfig:
    n_train: int = 400  # clips per split of the embedded synthetic default
    n_val: int = 120
    n_test: int = 120
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # dataset folder; None means the embedded synthetic default
    retokenize: bool = False  # re-tokenise `words` with the encoder's tokenizer instead of `indexes`
    derive_binary: bool = False  # fill a missing `y` as the OR of the four fine-grained labels
    text_max_len: int = 500  # reference cap; batches pad only to their longest text
    video_len: int = 36  # reference pads or cuts i3d features to 36 steps
    audio_len: int = 63  # and vggish to 63
    cache_dir: str | None = None  # default: $MTL_CACHE_DIR or ~/.cache/mtl_core
    use_cache: bool = True  # read features from the columnar cache (rebuilt when sources change)
    train_file: str | None = None  # split file names; None = auto-detect (train*.json, ...)
    val_file: str | None = None
    test_file: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class ModelConfig:
    text_encoder: str = "minilm"  # `minilm`, `tiny`, a Hugging Face name or a local path
    freeze_text: bool = True  # frozen encoder outputs are cached on disk once per dataset
    rnn_units: int = 512  # per direction, as in the reference
    attention_heads: int = 12
    dropout: float = 0.2
    head_dropout: float = 0.3
    head_dims: tuple[int, ...] = (200, 40, 20)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 1e-4
    lr_schedule: str = "cosine"  # `constant`, or `cosine` decay to lr/10 over the run
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping
    seed: int = 0
    affinity_every: int = 0  # measure TAG inter-task affinity every n steps (0 = off; TAG uses 10)
    class_weight: Any = "none"  # `none`, `balanced` (from the training labels) or {task: positive weight}
    device: str = "auto"  # `auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`, ...
    precision: str = "fp32"  # `fp32`, `bf16` (autocast) or `fp16` (autocast + GradScaler; loss combiners only)
    deterministic: bool = False  # deterministic kernels: exact reruns and resumes on CUDA too (slower)
    num_threads: int | None = None  # torch intra-op threads; None leaves torch's default
    progress: bool = True  # progress bar within an epoch (CLI only)


@dataclass(frozen=True)
class StrategyChoice:
    """One choice on a strategy axis: a registry name plus that method's own parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategyConfig:
    scheduler: StrategyChoice = field(default_factory=lambda: StrategyChoice("all"))
    combiner: StrategyChoice = field(default_factory=lambda: StrategyChoice("equal"))
    modality: StrategyChoice = field(default_factory=lambda: StrategyChoice("all"))


@dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = TASKS
    groups: tuple[tuple[str, ...], ...] | None = None  # a partition of `tasks`: one model per group
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def partition(self) -> tuple[tuple[str, ...], ...]:
        """The groups that train as separate models (one group of all tasks by default)."""
        return self.groups or (tuple(self.tasks),)


# ---------------------------------------------------------------------------------------------
# loading, overrides, validation


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: cannot set a key below the scalar {part!r}")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            node[parts[-1]] = value
    return raw


def build_config(raw: dict[str, Any] | None = None) -> Config:
    """Validate a plain dict (from YAML) into a Config, or raise ConfigError naming the key."""
    raw = dict(raw or {})
    data = raw.get("data")
    if isinstance(data, dict):  # paths may name environment variables: root: ${CM_DATA}
        raw["data"] = {k: os.path.expandvars(v) if k in ("root", "cache_dir") and isinstance(v, str) else v
                       for k, v in data.items()}
    cfg = _build(Config, raw, "")
    _check_semantics(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    raw = load_yaml(path) if path is not None else {}
    return build_config(apply_overrides(raw, overrides or []))


def _check_semantics(cfg: Config) -> None:
    if not cfg.tasks:
        raise ConfigError("tasks: at least one task is required")
    for t in cfg.tasks:
        if t not in TASKS:
            raise ConfigError(f"tasks: unknown task {t!r}; valid tasks: {', '.join(TASKS)}")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        raise ConfigError("tasks: a task is listed twice")
    if cfg.groups is not None:
        from mtl_core.grouping import check_partition

        try:
            check_partition(cfg.groups, cfg.tasks)
        except ValueError as exc:
            raise ConfigError(f"groups: not a partition of the tasks: {exc}") from None
    _check_class_weight(cfg.train.class_weight, cfg.tasks)
    if cfg.train.affinity_every < 0:
        raise ConfigError(f"train.affinity_every: must be >= 0, got {cfg.train.affinity_every}")
    positive = {
        "train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
        "train.eval_batch_size": cfg.train.eval_batch_size, "train.lr": cfg.train.lr,
        "data.text_max_len": cfg.data.text_max_len, "data.video_len": cfg.data.video_len,
        "data.audio_len": cfg.data.audio_len, "model.rnn_units": cfg.model.rnn_units,
        "model.attention_heads": cfg.model.attention_heads,
        "data.synthetic.n_train": cfg.data.synthetic.n_train,
        "data.synthetic.n_val": cfg.data.synthetic.n_val,
        "data.synthetic.n_test": cfg.data.synthetic.n_test,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if cfg.train.batch_size < 2:
        raise ConfigError("train.batch_size: must be at least 2 (the heads use BatchNorm)")
    for key, value in {"model.dropout": cfg.model.dropout, "model.head_dropout": cfg.model.head_dropout}.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key}: must be in [0, 1), got {value}")
    if cfg.train.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision: unknown precision {cfg.train.precision!r}; valid choices: fp32, bf16, fp16")
    if not (cfg.train.device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", cfg.train.device)):
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {cfg.train.device!r}")
    if cfg.train.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"train.lr_schedule: unknown schedule {cfg.train.lr_schedule!r}; valid choices: constant, cosine")
    if cfg.train.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be >= 0, got {cfg.train.weight_decay}")
    if cfg.data.text_max_len > 512:
        raise ConfigError(f"data.text_max_len: at most 512 (BERT positions), got {cfg.data.text_max_len}")
    if cfg.data.root is not None and not Path(cfg.data.root).expanduser().is_dir():
        hint = " (set that environment variable or --set data.root=PATH)" if "$" in cfg.data.root else ""
        raise ConfigError(f"data.root: dataset folder not found: {cfg.data.root}{hint}")
    # Strategy names and parameters are checked against the registries' constructors.
    from mtl_core.strategies import validate_strategy

    for axis in ("scheduler", "combiner", "modality"):
        validate_strategy(axis, getattr(cfg.strategy, axis), cfg)
    if cfg.train.precision == "fp16":
        from mtl_core.strategies import REGISTRIES

        if REGISTRIES["combiner"][cfg.strategy.combiner.name].uses_gradients:
            raise ConfigError(f"train.precision: fp16 needs a loss scale, which the gradient method "
                              f"{cfg.strategy.combiner.name!r} cannot take (its weights depend on gradient norms); use bf16")


def _check_class_weight(value: Any, tasks: tuple[str, ...]) -> None:
    if value in (None, "none", "balanced"):
        return
    if not isinstance(value, dict):
        raise ConfigError(f"train.class_weight: expected none, balanced or a mapping task: positive weight, "
                          f"got {_show(value)}")
    for task, w in value.items():
        if task not in tasks:
            raise ConfigError(f"train.class_weight.{task}: not one of the configured tasks ({', '.join(tasks)})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise ConfigError(f"train.class_weight.{task}: expected a positive number, got {_show(w)}")


# ---------------------------------------------------------------------------------------------
# generic dataclass builder with key-path errors


def _build(cls: type, raw: Any, path: str) -> Any:
    if cls is StrategyChoice:
        return _build_choice(raw, path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{where}: unknown key; valid keys here: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = coerce_value(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _build_choice(raw: Any, path: str) -> StrategyChoice:
    if isinstance(raw, str):
        return StrategyChoice(raw)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{path}: expected a mapping with `name` (and that method's parameters)")
    if not isinstance(raw["name"], str):
        raise ConfigError(f"{path}.name: expected a string, got {_show(raw['name'])}")
    params = {k: v for k, v in raw.items() if k != "name"}
    return StrategyChoice(raw["name"], params)


def coerce_value(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_show(value)}")
        item = typing.get_args(tp)[0]
        return tuple(coerce_value(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        item = typing.get_args(tp)[1]
        return {k: coerce_value(item, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_show(value)}")
        return value
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, StrategyChoice):
        return {"name": obj.name, **obj.params}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj
