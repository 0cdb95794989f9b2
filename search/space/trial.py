"""What a trial receives: typed settings shared by a phase, its own overrides, and bookkeeping (`TrialMeta`)
that is never a sampled parameter and never an MLflow parameter.

A Tune trial's config is ``{"settings": {...}, "trial": {"overrides": {...}, "meta": {...}}}``, plain values
only (Tune writes trial configs into its experiment state, and a restored experiment must read them back):
`TrialSettings.of` and `meta_of` turn them into typed objects at the edges. The dotted overrides are a trial's
one wire format: the driver checks them (every branch of the space when it is loaded, every listed trial
before its phase starts), and the worker builds the trial's `Config` from them once (`trial_config`).
"""
from __future__ import annotations

import copy
import hashlib
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mtl_core.config import Config, build_config
from search.analysis.labels import config_label, partition_label

DIVERGED = "diverged"  # the last result of a trial whose loss went non-finite: its error message


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a phase shares."""

    base: dict[str, Any]  # the run-config sections of the space file (validated when it was loaded)
    metric: str
    mode: str
    cpus: float  # torch threads = the CPUs Tune gives a trial
    eval_test: bool = False  # the final retraining: evaluate the best epoch's model on the test split
    objectives: tuple[str, ...] = ()  # a multi-objective search: each gets its own search score
    scratch: str = ""  # the experiment's key for its trials' local runs on each node (`scratch_dir`)

    @classmethod
    def of(cls, plain: dict[str, Any]) -> "TrialSettings":
        return cls(**{**plain, "objectives": tuple(plain.get("objectives", ()))})  # a list after a restore

    def runtime(self, cfg: Config) -> Config:
        """The config as a trial runs it: threads from its CPU share, no progress bar, each model's best epoch
        chosen by the experiment's metric."""
        return replace(cfg, train=replace(cfg.train, num_threads=max(1, int(self.cpus)), progress=False,
                                          select_metric=self.metric, select_mode=self.mode))


def scratch_key(exp_dir: Path) -> str:
    """Names an experiment's trial runs on every node (`scratch_dir`): the same on --resume, another for a
    copy of the folder elsewhere."""
    return hashlib.sha256(str(Path(exp_dir).resolve()).encode()).hexdigest()[:16]


def scratch_dir(key: str) -> Path:
    """Where a node keeps the runs of one experiment's trials while they train (each trial's checkpoint
    folder, copied to the experiment folder with every report): the node's temp folder, never Ray's trial
    folder, which Ray keeps for ever and, for the first trial on each worker, copies into the experiment
    folder. The driver deletes its node's after each phase (`search.tune.tuner.drop_local_runs`)."""
    return Path(tempfile.gettempdir(), "mtl-runs", key or "unnamed")


@dataclass(frozen=True)
class TrialMeta:
    """Launcher bookkeeping about a trial (MLflow tags, result columns `meta/...`)."""

    phase: str
    role: str = "search"  # search | final | baseline
    name: str = ""  # `rank 1`, `equal_sum`, ... in the final phase
    seed: int | None = None
    fold: int | None = None  # the final phase under cross-validation (search.cv_folds): the run's test fold
    config: int | None = None  # index of the strategy configuration (grouping modes)
    k: int | None = None  # number of groups of a TAG proposal
    tag_score: float | None = None
    number: int | None = None  # the Optuna trial's number (a searching phase): how the console and MLflow count it
    label: str = ""  # the configuration's label (search.analysis.labels), set once by trial_entry
    partition: str = ""  # its tasks' models by full name, `binary+gory|mature+slapstick+sarcasm`

    def tags(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v not in (None, "")}


def trial_entry(overrides: dict[str, Any], meta: TrialMeta, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a trial receives: its `overrides` of the space's run sections `base`, and `meta`, which gets the
    configuration's label and partition here, once; the console, the study, MLflow and the tables read them."""
    base = base or {}
    groups = overrides["groups"] if "groups" in overrides else base.get("groups")  # None set here: one model
    groups = groups or [list(overrides.get("tasks") or base.get("tasks") or [])]
    meta = replace(meta, label=config_label(overrides, base), partition=partition_label(groups))
    return {"overrides": overrides, "meta": asdict(meta)}


def meta_of(entry: dict[str, Any]) -> TrialMeta:
    return TrialMeta(**entry["meta"]) if entry.get("meta") else TrialMeta("search")


def trial_config(base: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The run config of one trial: the space's shared sections `base` with its dotted overrides, validated
    (ConfigError naming every problem)."""
    return build_config(with_overrides(base, overrides))


def check_listed(base: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Raise ConfigError for a listed trial whose config is not valid: on the driver, before its phase starts,
    rather than as a failure in each of its trials (the worker builds that config from the same overrides)."""
    for entry in entries:
        trial_config(base, entry["overrides"])


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


def models_of(entry: dict) -> int:
    """How many models a trial entry trains (its partition's groups): its cost per epoch."""
    groups = entry["overrides"].get("groups")  # a space's shared sections hold none
    return len(groups) if groups else 1
