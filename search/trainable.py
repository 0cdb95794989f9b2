"""The Ray Tune trainable: a thin adapter from a trial's config dict to `mtl_core.train`.

Config keys (set by launch): `base` (the shared run config sections), `overrides` (the dotted keys the
define-by-run function sampled), `metric`, `mode`, `cpus`, and `eval_test` for the final retraining.
Every epoch is reported with `ray.tune.report` together with the epoch's checkpoint, so ASHA can stop
the trial and a retried or restored trial continues from its last epoch.
"""
from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune

from mtl_core.config import Config, build_config
from search.space import with_overrides

log = logging.getLogger(__name__)
SENTINEL = 1e9  # ASHA never stops a NaN metric (and crashes on None): report a large finite value


def trial_config(base: dict[str, Any], overrides: dict[str, Any], cpus: float | None = None) -> Config:
    # keys starting with "_" are bookkeeping of the launcher (e.g. the rank in the final phase)
    raw = with_overrides(base, {k: v for k, v in overrides.items() if not k.startswith("_")})
    if cpus:  # torch threads = the CPUs Tune gave this trial
        raw.setdefault("train", {})["num_threads"] = max(1, int(cpus))
    raw.setdefault("train", {})["progress"] = False
    return build_config(raw)


def finite_metric(value: float, mode: str) -> float:
    if value is None or not math.isfinite(value):
        return -SENTINEL if mode == "max" else SENTINEL
    return float(value)


class NoCudaForGpuTrial(RuntimeError):
    """Ray gave the trial a GPU on a node where torch sees none (the message is one line)."""


def placement(cfg: Config) -> tuple[Config, str]:
    """The trial's device from what Ray assigned: returns the config to train with and the GPU ids.

    A GPU that Ray counts but torch cannot see (a node started with --num-gpus and no GPU, or a
    CPU-only torch build) is an error naming the node, unless MTL_ALLOW_FAKE_GPUS=1, which trains on the
    node's CPU instead (for testing placement without GPUs)."""
    import ray
    import torch

    gpu_ids = ",".join(str(g) for g in ray.get_gpu_ids())
    if gpu_ids and not torch.cuda.is_available():
        node = socket.gethostname()
        if os.environ.get("MTL_ALLOW_FAKE_GPUS") != "1":
            raise NoCudaForGpuTrial(f"Ray assigned GPU {gpu_ids} on node {node}, but torch sees no CUDA device there "
                                    f"(a node started with --num-gpus but no GPU? MTL_ALLOW_FAKE_GPUS=1 trains on its CPU)")
        log.warning("GPU %s assigned on node %s is not visible to torch; training on CPU (MTL_ALLOW_FAKE_GPUS=1)",
                    gpu_ids, node)
        cfg = replace(cfg, train=replace(cfg.train, device="cpu"))
    return cfg, gpu_ids


def train_trial(config: dict[str, Any]) -> None:
    from mtl_core.train import evaluate_best, train

    cfg, gpu_ids = placement(trial_config(config["base"], config["overrides"], config.get("cpus")))
    metric, mode = config["metric"], config["mode"]
    run_dir = Path(tune.get_context().get_trial_dir()) / "run"
    resume = False
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # retried after a failure, or restored with --resume
        checkpoint.to_directory(str(run_dir / "checkpoint"))
        resume = True

    def report(epoch: int, metrics: dict, checkpoint_dir: Path) -> None:
        metrics = dict(metrics)
        metrics[metric] = finite_metric(metrics.get(metric), mode)
        metrics["gpu_ids"] = gpu_ids  # "" without a GPU
        if config.get("eval_test") and epoch == cfg.train.epochs - 1:
            metrics.update(evaluate_best(cfg, run_dir))  # the best epoch's model on the test split
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    train(cfg, report, run_dir, resume=resume)


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"
