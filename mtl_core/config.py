"""Typed run configuration: YAML in, frozen dataclasses out, validated at the boundary.

Defaults live only here. Every problem is reported as one line naming the key path,
e.g. ``train.lr: expected a number, got 'fast'``.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from mtl_core import TASKS, keys, safe_yaml
from mtl_core.grouping import check_partition
from mtl_core.model.fusion import ARCHITECTURES
from mtl_core.pretrain import PRETRAIN_TASKS
from mtl_core.strategies import AXES, BASELINE, REGISTRIES, StrategyContext, build_strategy, validate_strategy
from mtl_core.validation import ConfigError, Problems, build_dataclass, coerce_value, show  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class SyntheticConfig:
    n_train: int = 400  # clips per split of the embedded synthetic default
    n_val: int = 120
    n_test: int = 120
    seed: int = 0


@dataclass(frozen=True)
class FoldConfig:
    """Cross-validation over the dataset's labelled clips (`mtl_core.data.folds`): fold `fold` of `folds`,
    the clips of the train and test splits shuffled into folds by `shuffle`; the val split stays the
    validation set of every fold. folds 0 (the default) trains and tests on the dataset's own splits."""

    folds: int = 0
    fold: int = 0
    shuffle: int = 0  # one repeat of repeated k-fold: another value, another assignment of clips to folds


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
    cv: FoldConfig = field(default_factory=FoldConfig)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "hiccap"  # how the modalities meet: `hiccap` (HCA), `late_fusion` or `early_fusion`
    text_encoder: str = "minilm"  # `minilm`, `tiny`, a Hugging Face name or a local path
    freeze_text: bool = True  # frozen encoder outputs are cached on disk once per dataset
    rnn_units: int = 512  # per direction, as in the reference
    attention_heads: int = 12
    # the width the modalities meet at: null = the text encoder's; smaller adds a learned projection of the
    # text states (video and audio are projected anyway), cutting the HCA's projections by (width / d)^2
    width: int | None = None
    dropout: float = 0.2
    head_dropout: float = 0.3
    head_dims: tuple[int, ...] = (200, 40, 20)


def model_width(model: ModelConfig, text_width: int) -> int:
    """The width the modalities meet at: `model.width`, or the text encoder's own."""
    return model.width if model.width is not None else text_width


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
    precision: str = "fp32"  # `fp32`, `bf16` (autocast), `fp16` (autocast + GradScaler; loss combiners only) or
    # `auto`: bf16 where the device multiplies in bf16 natively (AMX or AVX-512 BF16 CPUs, bf16 GPUs), else fp32
    deterministic: bool = False  # deterministic kernels: exact reruns and resumes on CUDA too (slower)
    num_threads: int | None = None  # torch intra-op threads; None leaves torch's default
    progress: bool = True  # progress bar within an epoch (CLI only)
    # each model of a partition keeps the weights of its own best epoch by this metric, computed over its
    # own tasks (`val/avg_f1` -> the mean over the group's tasks; a task's key -> that task in its group,
    # the group's average of the same metric in the other groups); the search sets the experiment's metric
    select_metric: str = keys.DEFAULT_METRIC
    select_mode: str = "max"


@dataclass(frozen=True)
class StrategyChoice:
    """One choice on a strategy axis: a registry name plus that method's own parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Any, path: str) -> "StrategyChoice":
        """`combiner: equal` or `combiner: {name: gradnorm, alpha: 1.5}` (the parameters are checked
        against the method's constructor by `validate_strategy`)."""
        if isinstance(raw, str):
            return cls(raw)
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{path}: expected a mapping with `name` (and that method's parameters)")
        if not isinstance(raw["name"], str):
            raise ConfigError(f"{path}.name: expected a string, got {show(raw['name'])}")
        return cls(raw["name"], {k: v for k, v in raw.items() if k != "name"})


@dataclass(frozen=True)
class StrategyConfig:
    scheduler: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["scheduler"]))
    combiner: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["combiner"]))
    modality: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["modality"]))


@dataclass(frozen=True)
class PretrainConfig:
    """Hybrid pretraining before fine-tuning (docs/methods.md#pretraining); no tasks = none."""

    tasks: tuple[str, ...] = ()  # a subset of contrast_tv, contrast_ta, contrast_av, vtm, vam, atm
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32  # also the contrastive tasks' number of in-batch candidates
    temperature: float = 0.1  # InfoNCE's
    scheduler: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["scheduler"]))
    combiner: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["combiner"]))
    modality: StrategyChoice = field(default_factory=lambda: StrategyChoice(BASELINE["modality"]))


@dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = TASKS
    groups: tuple[tuple[str, ...], ...] | None = None  # a partition of `tasks`: one model per group
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def partition(self) -> tuple[tuple[str, ...], ...]:
        """The groups that train as separate models (one group of all tasks by default)."""
        return self.groups or (tuple(self.tasks),)

    @property
    def headline_tasks(self) -> tuple[str, ...]:
        """The tasks `val/avg_f1`, `test/avg_f1` and Δm% average over (`binary` out when it is derived)."""
        from mtl_core.metrics import headline_tasks

        return headline_tasks(self.tasks, self.data.derive_binary)


# ---------------------------------------------------------------------------------------------
# loading, overrides, validation


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config or space file: bounded in size, values and depth, duplicate keys refused (see safe_yaml)."""
    raw = safe_yaml.load_file(path) or {}
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
        if not value.strip():  # an unset shell variable, most likely: never silently the default
            raise ConfigError(f"--set {key}: empty value (null asks for the default)")
        try:
            node[parts[-1]] = safe_yaml.loads(value, f"--set {key}")
        except ConfigError as exc:
            if "not valid YAML" not in str(exc):  # too large, too deep, a duplicate key: refused
                raise
            node[parts[-1]] = value  # not YAML: the text itself
    return raw


def build_config(raw: dict[str, Any] | None = None) -> Config:
    """Validate a plain dict (from YAML) into a Config, or raise one ConfigError naming every problem."""
    raw = dict(raw or {})
    data = raw.get("data")
    written = data.get("root") if isinstance(data, dict) else None  # messages print it as written
    if isinstance(data, dict):  # paths may name environment variables: root: ${CM_DATA}
        raw["data"] = {k: os.path.expandvars(v) if k in ("root", "cache_dir") and isinstance(v, str) else v
                       for k, v in data.items()}
    problems = Problems()
    cfg = build_dataclass(Config, raw, "", problems)
    _check_semantics(cfg, problems, written if isinstance(written, str) else cfg.data.root)
    problems.raise_if_any()
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    raw = load_yaml(path) if path is not None else {}
    return build_config(apply_overrides(raw, overrides or []))


def _check_semantics(cfg: Config, problems: Problems, root_as_written: str | None = None) -> None:
    """Rules across fields (the types were checked by the builder); every broken rule is one problem."""
    _check_tasks(cfg, problems)
    _check_class_weight(cfg.train.class_weight, cfg.tasks, problems)
    _check_ranges(cfg, problems)
    _check_folds(cfg, problems)
    t = cfg.train
    if t.precision not in ("fp32", "bf16", "fp16", "auto"):
        problems.add(f"train.precision: unknown precision {t.precision!r}; valid choices: fp32, bf16, fp16, auto")
    if not (t.device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", t.device)):
        problems.add(f"train.device: expected auto, cpu, cuda or cuda:N, got {t.device!r}")
    if not keys.SEARCHABLE.match(t.select_metric):
        problems.add(f"train.select_metric: expected val/avg_f1, val/avg_loss or val/<task>/<loss|acc|f1|f1_pos>, "
                     f"got {t.select_metric!r}")
    if t.select_mode not in ("max", "min"):
        problems.add(f"train.select_mode: expected max or min, got {t.select_mode!r}")
    if cfg.model.arch not in ARCHITECTURES:
        problems.add(f"model.arch: unknown architecture {cfg.model.arch!r}; valid choices: {', '.join(ARCHITECTURES)}")
    if t.lr_schedule not in ("constant", "cosine"):
        problems.add(f"train.lr_schedule: unknown schedule {t.lr_schedule!r}; valid choices: constant, cosine")
    if cfg.data.root is not None and not Path(cfg.data.root).expanduser().is_dir():
        hint = " (set that environment variable or --set data.root=PATH)" if "$" in cfg.data.root else ""
        problems.add(f"data.root: dataset folder not found: {root_as_written or cfg.data.root}{hint}")
    # strategy names and parameters are checked against the registries' constructors
    for axis in AXES:
        with problems.collect():
            validate_strategy(axis, getattr(cfg.strategy, axis), cfg)
    for section, choice in (("strategy", cfg.strategy.combiner), ("pretrain", cfg.pretrain.combiner)):
        combiner = REGISTRIES["combiner"].get(choice.name)
        if t.precision == "fp16" and combiner is not None and combiner.uses_gradients:
            problems.add(f"train.precision: fp16 needs a loss scale, which the gradient method {choice.name!r} "
                         f"({section}.combiner) cannot take (its weights depend on gradient norms); use bf16")
    _check_pretrain(cfg, problems)


def _check_pretrain(cfg: Config, problems: Problems) -> None:
    p = cfg.pretrain
    for task in p.tasks:
        if task not in PRETRAIN_TASKS:
            problems.add(f"pretrain.tasks: unknown pretraining task {task!r}; valid tasks: {', '.join(PRETRAIN_TASKS)}")
    if len(set(p.tasks)) != len(p.tasks):
        problems.add("pretrain.tasks: a task is listed twice")
    if not 1 <= p.epochs <= UPPER["train.epochs"]:
        problems.add(f"pretrain.epochs: must be in [1, {UPPER['train.epochs']}], got {p.epochs}")
    if not 2 <= p.batch_size <= UPPER["train.batch_size"]:
        problems.add(f"pretrain.batch_size: must be in [2, {UPPER['train.batch_size']}] (in-batch negatives), "
                     f"got {p.batch_size}")
    if not p.lr > 0:
        problems.add(f"pretrain.lr: must be positive, got {p.lr}")
    if not 1e-3 <= p.temperature <= 10:
        problems.add(f"pretrain.temperature: must be in [0.001, 10], got {p.temperature}")
    if p.tasks and all(t in PRETRAIN_TASKS for t in p.tasks) and len(set(p.tasks)) == len(p.tasks):
        ctx = StrategyContext(tuple(p.tasks), p.epochs, cfg.train.seed)
        for axis in AXES:
            with problems.collect():
                build_strategy(axis, getattr(p, axis), ctx, section="pretrain")


def _check_tasks(cfg: Config, problems: Problems) -> None:
    if not cfg.tasks:
        problems.add("tasks: at least one task is required")
    for t in cfg.tasks:
        if t not in TASKS:
            problems.add(f"tasks: unknown task {t!r}; valid tasks: {', '.join(TASKS)}")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        problems.add("tasks: a task is listed twice")
    if cfg.groups is not None:
        try:
            check_partition(cfg.groups, cfg.tasks)
        except ValueError as exc:
            problems.add(f"groups: not a partition of the tasks: {exc}")


def _check_ranges(cfg: Config, problems: Problems) -> None:
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
            problems.add(f"{key}: must be positive, got {value}")
    if cfg.train.batch_size == 1:
        problems.add("train.batch_size: must be at least 2 (the heads use BatchNorm)")
    for key, value in {"model.dropout": cfg.model.dropout, "model.head_dropout": cfg.model.head_dropout}.items():
        if not 0.0 <= value < 1.0:
            problems.add(f"{key}: must be in [0, 1), got {value}")
    if cfg.train.affinity_every < 0:
        problems.add(f"train.affinity_every: must be >= 0, got {cfg.train.affinity_every}")
    if cfg.train.weight_decay < 0:
        problems.add(f"train.weight_decay: must be >= 0, got {cfg.train.weight_decay}")
    if cfg.data.text_max_len > 512:
        problems.add(f"data.text_max_len: at most 512 (BERT positions), got {cfg.data.text_max_len}")
    _check_upper_bounds(cfg, problems)


# Upper bounds (docs/usage.md, "Config keys"): sizes and counts above these pass a type check but cannot run (a
# model that cannot be allocated, a run that never ends), so they are refused before anything starts. Rates
# (lr, weight_decay, grad_clip) need only be finite: a rate that diverges is a trial's outcome, not a crash.
UPPER = {
    "train.epochs": 10_000, "train.batch_size": 65_536, "train.eval_batch_size": 65_536,
    "train.affinity_every": 1_000_000,
    "train.num_threads": 1024, "train.seed": 2**32 - 1, "data.video_len": 100_000, "data.audio_len": 100_000,
    "data.synthetic.n_train": 100_000, "data.synthetic.n_val": 100_000, "data.synthetic.n_test": 100_000,
    "data.synthetic.seed": 2**32 - 1, "model.rnn_units": 8192, "model.attention_heads": 256,
    "model.width": 8192,
}
MAX_HEAD_DIM = 8192


def _lookup(cfg: Config, key: str) -> Any:
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_folds(cfg: Config, problems: Problems) -> None:
    cv = cfg.data.cv
    if cv.folds == 0:
        return
    if not 2 <= cv.folds <= 100:
        problems.add(f"data.cv.folds: 0 (the dataset's own splits) or 2 to 100, got {cv.folds}")
    elif not 0 <= cv.fold < cv.folds:
        problems.add(f"data.cv.fold: must be in [0, {cv.folds - 1}] (data.cv.folds {cv.folds}), got {cv.fold}")
    if not 0 <= cv.shuffle < 2**32:
        problems.add(f"data.cv.shuffle: must be in [0, 2**32), got {cv.shuffle}")


def _check_upper_bounds(cfg: Config, problems: Problems) -> None:
    for key, bound in UPPER.items():
        value = _lookup(cfg, key)
        if value is not None and value > bound:
            problems.add(f"{key}: at most {bound:g}, got {show(value)}")
    if cfg.train.seed < 0 or cfg.data.synthetic.seed < 0:
        problems.add("train.seed / data.synthetic.seed: must be >= 0")
    if cfg.train.grad_clip is not None and cfg.train.grad_clip <= 0:
        problems.add(f"train.grad_clip: must be positive (or null for no clipping), got {cfg.train.grad_clip}")
    if cfg.train.num_threads is not None and cfg.train.num_threads < 1:
        problems.add(f"train.num_threads: must be >= 1, got {cfg.train.num_threads}")
    if cfg.model.width is not None and cfg.model.width < 1:
        problems.add(f"model.width: must be >= 1 (or null for the text encoder's width), got {cfg.model.width}")
    if not cfg.model.head_dims or len(cfg.model.head_dims) > 16 \
            or any(not 0 < d <= MAX_HEAD_DIM for d in cfg.model.head_dims):
        problems.add(f"model.head_dims: 1 to 16 sizes, each in [1, {MAX_HEAD_DIM}], got {show(cfg.model.head_dims)}")


def _check_class_weight(value: Any, tasks: tuple[str, ...], problems: Problems) -> None:
    if value in (None, "none", "balanced"):
        return
    if not isinstance(value, dict):
        problems.add(f"train.class_weight: expected none, balanced or a mapping task: positive weight, "
                     f"got {show(value)}")
        return
    for task, w in value.items():
        if task not in tasks:
            problems.add(f"train.class_weight.{task}: not one of the configured tasks ({', '.join(tasks)})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1e6:
            problems.add(f"train.class_weight.{task}: expected a positive number up to 1e6, got {show(w)}")


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, StrategyChoice):
        return {"name": obj.name, **obj.params}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj
