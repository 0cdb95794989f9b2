"""One builder for the Tune experiment of any phase: Optuna + ASHA over the space (the search phase), or
a fixed list of trials, each trained once at the full budget (every other phase). Restored instead of
built when --resume finds the phase's folder."""
from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict

import pyarrow.fs as pafs

from optuna.samplers import TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from mtl_core import keys
from search.experiment import Experiment
from search.progress import Progress
from search.searcher import PrunedAwareOptunaSearch
from search.space import DefineByRun
from search.tracking import MLflowTrials
from search.trainable import NoRetryOnDivergence, train_trial

log = logging.getLogger(__name__)


def build_tuner(exp: Experiment, phase: str, trials: list[dict] | None = None, eval_test: bool = False,
                progress_metric: str | None = None) -> tuple[tune.Tuner, int]:
    """(the phase's Tuner, how many trials it should end with). `trials`: entries from
    `search.trial.trial_entry`; None searches the space instead."""
    s = exp.spec.search
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    expected = s.num_samples if trials is None else len(trials)
    path = exp.dir / phase
    if exp.resume and tune.Tuner.can_restore(str(path)):
        restored = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
        return restored, expected
    param_space = {"settings": asdict(exp.trial_settings(eval_test))}  # plain values: see search.trial
    common = dict(max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname,
                  reuse_actors=True)  # no new process (torch import, data mapping) per trial
    if trials is None:
        tune_config = tune.TuneConfig(metric=keys.SCORE, mode=s.mode, search_alg=_searcher(exp), num_samples=s.num_samples,
                                      scheduler=ASHAScheduler(max_t=exp.max_t, grace_period=s.grace_period,
                                                              reduction_factor=s.reduction_factor), **common)
    else:
        param_space["trial"] = tune.grid_search(trials)
        tune_config = tune.TuneConfig(**common)
    callbacks = [NoRetryOnDivergence(), MLflowTrials(exp.tracker.fork(), phase, exp.max_t),
                 Progress(progress_metric or s.metric, s.mode, expected, exp.max_t)]
    run_config = tune.RunConfig(name=phase, storage_path=str(exp.dir), verbose=0, callbacks=callbacks,
                                failure_config=tune.FailureConfig(max_failures=s.max_failures))
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config), expected


def keep_latest_checkpoints(results) -> int:
    """Delete every trial's checkpoints but the one its result points to: the latest, which holds the best
    epoch's weights, the whole metric history and all a resume needs. Call it once a phase has ended, never
    while it runs (Tune's saved experiment state can lag several epochs behind and must find what it names).
    Works on any storage Tune writes to (local, NFS, S3) through the checkpoint's filesystem. Returns how
    many checkpoints were deleted."""
    deleted = 0
    for r in results:
        if r.checkpoint is None:
            continue
        fs, keep = r.checkpoint.filesystem, r.checkpoint.path.rstrip("/")
        for info in fs.get_file_info(pafs.FileSelector(posixpath.dirname(keep))):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                    and info.path.rstrip("/") != keep:
                fs.delete_dir(info.path)
                deleted += 1
    log.debug("kept the latest checkpoint of each trial, deleted %d older ones", deleted)
    return deleted


def _searcher(exp: Experiment) -> PrunedAwareOptunaSearch:
    s = exp.spec.search
    return PrunedAwareOptunaSearch(
        space=DefineByRun(exp.spec.space, exp.spec.config.tasks),
        sampler=TPESampler(seed=s.seed, multivariate=True, group=True),
        storage=JournalStorage(JournalFileBackend(str(exp.dir / "optuna.journal"))),
        study_name=exp.name, max_t=exp.max_t, metric=keys.SCORE, mode=s.mode)  # define-by-run: set here too


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"
