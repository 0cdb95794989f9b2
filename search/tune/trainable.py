"""The Ray Tune trainable: a thin adapter from a trial's entry (see `search.space.trial`) to `mtl_core.train`.

Every epoch is reported with `ray.tune.report` together with the epoch's checkpoint, so ASHA can stop
the trial and a retried or restored trial continues from its last epoch. The search schedules on
`search/score` (`mtl_core.keys`): the metric, or the worst value when a trial diverged.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune

from mtl_core import keys
from mtl_core.config import Config
from mtl_core.checkpoint import FOLDER as CHECKPOINT
from mtl_core.train import TrainingDiverged, train
from search.space.trial import DIVERGED, TrialSettings, scratch_dir, trial_config

log = logging.getLogger(__name__)


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
    settings = TrialSettings.of(config["settings"])
    cfg, gpu_ids = placement(settings.runtime(trial_config(settings.base, config["trial"]["overrides"])))
    context = tune.get_context()
    run_dir = scratch_dir(settings.scratch) / context.get_experiment_name() / context.get_trial_id()
    resume = False
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # retried after a failure, or restored with --resume
        checkpoint.to_directory(str(run_dir / CHECKPOINT))
        resume = True

    def report(epoch: int, metrics: dict, checkpoint_dir: Path) -> None:
        metrics = dict(metrics)
        metrics[keys.SCORE] = keys.score(metrics.get(settings.metric), settings.mode)
        for objective in settings.objectives:  # finite too, so no sampler or scheduler ever sees NaN
            metrics[keys.objective_score(objective)] = keys.score(metrics.get(objective), keys.direction(objective))
        metrics["gpu_ids"] = gpu_ids  # "" without a GPU
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    try:
        train(cfg, report, run_dir, resume=resume, eval_test=settings.eval_test)  # test: each model's best epoch
    except TrainingDiverged as exc:
        # The same checkpoint diverges the same way again: a last result tells the driver not to retry
        # (NoRetryOnDivergence), then the trial fails with its error as usual.
        epoch = re.match(r"epoch (\d+)", str(exc))
        # search/score NaN: Tune requires the metric in every result, and ASHA never stops on NaN (a STOP
        # here would end the trial as stopped instead of failed)
        tune.report({DIVERGED: str(exc), "epoch": int(epoch.group(1)) if epoch else 0, keys.SCORE: float("nan")})
        raise
    finally:
        # Every report copied the checkpoint to the experiment folder (a retry or --resume starts from that
        # copy). A trial that ASHA stops gets here too (its report raises SystemExit) unless its worker exits
        # first: the driver then deletes what is left on its node (search.tune.tuner.drop_local_runs).
        shutil.rmtree(run_dir, ignore_errors=True)


class NoRetryOnDivergence(tune.Callback):
    """A trial whose loss went non-finite is not retried (search.max_failures is for lost workers and
    other passing failures); the trial reports DIVERGED just before it fails."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if DIVERGED in result:
            trial.max_failures = 0


class StopOnFullDisk(tune.Callback):
    """A trial that failed for a full disk (search.io.disk) stops the phase at once: DiskFull, naming the path
    the error names (else the experiment folder `where`, or another device when the folder has room), comes
    out of Tuner.fit and the launcher says it in one line. A retry would fail the same way, and a trial that
    used up its retries would stay failed on --resume; stopped here, it is continued by --resume from its
    last whole checkpoint. First among the callbacks, so that no other one
    reports the failure as a retry."""

    def __init__(self, where: str):
        self.where = where

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._check(trial)

    def _check(self, trial) -> None:
        from search.io.disk import DiskFull, has_room, named_path, says_no_space

        text = str(getattr(trial, "error_msg", "") or "")
        path = getattr(trial, "error_file", None)
        try:
            if path:
                with open(path, "rb") as f:
                    f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
                    text = f.read().decode(errors="replace")
        except OSError:
            pass
        latest = text.rsplit("Failure # ", 1)[-1]  # Tune appends each failure: the latest is last
        if says_no_space(latest):  # the path the error names (e.g. /dev/shm), else the folder unless it has room
            path = named_path(latest)
            raise DiskFull(path) if path else DiskFull(self.where, elsewhere=has_room(self.where))
