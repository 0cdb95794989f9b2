"""One builder for the Tune experiment of any phase: Optuna + ASHA over the space (the search phase; with
several objectives a multi-objective study + MO-ASHA), or a fixed list of trials, each trained once at the
full budget (every other phase). Restored instead of built when --resume finds the phase's folder."""
from __future__ import annotations

import logging
import posixpath
import shutil
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from optuna.samplers import NSGAIISampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from mtl_core import keys
from search.tracking.data_input import dataset, inputs
from search.tune.experiment import Experiment
from search.io.files import Files
from search.tracking.front_trace import FrontTrace
from search.tune.mo_asha import MultiObjectiveASHA
from search.space.rungs import expected_epochs
from search.tune.progress import Progress
from search.analysis.reference import validation_reference
from search.tune.searcher import PrunedAwareOptunaSearch
from search.space.optuna import DefineByRun
from search.tracking.tracker import MLflowTrials
from search.tune.trainable import NoRetryOnDivergence, StopOnFullDisk, train_trial
from search.space.trial import check_listed, models_of, scratch_dir, scratch_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPlan:
    """What a searching phase explores: a space (a `space` section), overrides every trial gets, how many
    trials, and the Optuna study's name. The search phase's is the space file's; a tuned baseline's is the
    space's non-strategy knobs with the baseline's strategy fixed."""

    space: dict
    fixed: dict
    num_samples: int
    study: str


def build_tuner(exp: Experiment, phase: str, trials: list[dict] | None = None, eval_test: bool = False,
                progress_metric: str | None = None, plan: SearchPlan | None = None) -> tuple[tune.Tuner, int]:
    """(the phase's Tuner, how many trials it should end with). `trials`: entries from
    `search.space.trial.trial_entry`; None searches (`plan`, by default the space file's) instead."""
    s = exp.spec.search
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    plan = plan or SearchPlan(exp.spec.space, {}, s.num_samples, exp.name)
    expected = plan.num_samples if trials is None else len(trials)
    path = exp.dir / phase
    if exp.resume and tune.Tuner.can_restore(str(path)):
        restored = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
        return restored, expected
    param_space = {"settings": asdict(exp.trial_settings(eval_test))}  # plain values: see search.space.trial
    common = dict(max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname,
                  reuse_actors=True)  # no new process (torch import, data mapping) per trial
    if trials is None and s.multi.objectives:  # the scheduler and the study hold the objectives, Tune no metric
        tune_config = tune.TuneConfig(search_alg=_searcher(exp, plan, phase), num_samples=plan.num_samples,
                                      scheduler=_mo_scheduler(exp), **common)
    elif trials is None:
        tune_config = tune.TuneConfig(metric=keys.SCORE, mode=s.mode, search_alg=_searcher(exp, plan, phase),
                                      num_samples=plan.num_samples,
                                      scheduler=ASHAScheduler(max_t=exp.max_t, grace_period=s.grace_period,
                                                              reduction_factor=s.reduction_factor), **common)
    else:
        check_listed(exp.spec.base, trials)
        param_space["trial"] = tune.grid_search(trials)
        tune_config = tune.TuneConfig(**common)
    budget = (expected_epochs(plan.num_samples, exp.max_t, s.grace_period, s.reduction_factor) if trials is None
              else expected * exp.max_t)
    listed = {} if trials is None else dict(cost=_trial_models, work=sum(map(models_of, trials)) * exp.max_t)
    progress = Progress(phase, progress_metric or s.metric, s.mode, expected, exp.max_t, budget,
                        show_best=not eval_test, **listed)  # the final phase: no test score before the end
    datasets = inputs(dataset(exp.spec.config), "train")  # the data folder: the parent's input and each trial's
    if datasets:
        exp.tracker.call("log_inputs", datasets=datasets)  # once per run: MLflow keeps one link per dataset
    callbacks = [StopOnFullDisk(str(exp.dir)), NoRetryOnDivergence(),
                 MLflowTrials(exp.tracker.fork(), phase, exp.max_t, datasets), progress]
    if trials is None and s.multi.objectives:
        callbacks.append(_front_trace(exp, phase))
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


def drop_local_runs(exp: Experiment) -> None:
    """Delete what the experiment's trials left in this node's scratch folder (`search.space.trial.scratch_dir`):
    the runs of trials whose worker exited before they could delete their own (ASHA's stops race the
    worker's exit). Call when a phase has ended; a resume starts from the experiment folder's checkpoints."""
    shutil.rmtree(scratch_dir(scratch_key(exp.dir)), ignore_errors=True)


def objectives(exp: Experiment) -> tuple[list[str], list[str]]:
    """(the score keys the search optimises, their modes): one per objective, or `search/score` alone."""
    s = exp.spec.search
    if not s.multi.objectives:
        return [keys.SCORE], [s.mode]
    return [keys.objective_score(o) for o in s.multi.objectives], [keys.direction(o) for o in s.multi.objectives]


def startup_trials(num_samples: int) -> int:
    """TPE's random start-up: Optuna's 10, but a third of a small budget (at least 4), or a 12-trial search
    would be a random search with two TPE proposals at the end."""
    return min(10, max(4, num_samples // 3))


def _searcher(exp: Experiment, plan: SearchPlan | None = None, phase: str = "search") -> PrunedAwareOptunaSearch:
    s = exp.spec.search
    plan = plan or SearchPlan(exp.spec.space, {}, s.num_samples, exp.name)
    metrics, modes = objectives(exp)
    if s.multi.sampler == "nsga2":  # Optuna's generation of 50 would leave most searches at random: about 4 generations
        sampler = NSGAIISampler(seed=s.seed, population_size=min(50, max(4, s.num_samples // 4)))
    else:
        sampler = TPESampler(seed=s.seed, multivariate=True, group=True, n_startup_trials=startup_trials(plan.num_samples))
    single = not s.multi.objectives
    return PrunedAwareOptunaSearch(
        space=DefineByRun(plan.space, exp.spec.config.tasks, plan.fixed, exp.spec.base), sampler=sampler,
        storage=JournalStorage(JournalFileBackend(str(exp.dir / Files.OPTUNA_JOURNAL))),
        study_name=plan.study, max_t=exp.max_t,  # define-by-run: metric and mode set here too
        metric_names=list(s.multi.objectives) or [s.metric], phase=phase,  # what the dashboard shows
        metric=metrics[0] if single else metrics, mode=modes[0] if single else modes)


def _mo_scheduler(exp: Experiment) -> MultiObjectiveASHA:
    s = exp.spec.search
    metrics, modes = objectives(exp)
    return MultiObjectiveASHA(metrics, modes, max_t=exp.max_t, grace_period=s.grace_period,
                              reduction_factor=s.reduction_factor, state_file=str(exp.dir / Files.MO_ASHA_RUNGS),
                              tie_break=s.multi.tie_break)


def _front_trace(exp: Experiment, phase: str) -> FrontTrace:
    """search/hypervolume per epoch spent, against the majority-class scores on validation; front_rank tags."""
    s = exp.spec.search
    reference = validation_reference(s.multi.objectives, exp.spec.config)
    return FrontTrace(exp.tracker.fork(), phase, s.multi.objectives, s.mode, reference)


def _trial_models(trial) -> int:
    """A listed trial's cost per epoch (the progress line's ETA); a module function: Tune pickles callbacks."""
    return models_of(trial.config["trial"])


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"
