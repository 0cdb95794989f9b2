"""The Ray side of a launch: prepare data once, start or join Ray, run (or restore) the Tune experiment,
export results, retrain the best configurations, write the report, close the MLflow parent run."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search.results import collect, compute_saved, leaderboard, print_leaderboard, write_parquet
from search.space import SpaceSpec, dump_resolved

log = logging.getLogger("search.sweep")
STATE_FILE = "launch_state.json"  # our bookkeeping beside Tune's: the MLflow parent run, the space file


def _prepare_data(spec: SpaceSpec) -> None:
    """Build the synthetic default, the columnar cache and the frozen text features once, before
    any trial: trials then only memory-map them."""
    import torch

    from mtl_core.prepare import prepare

    prepare(spec.base_config(), torch.device("cpu"), splits=("train", "val", "test"))


def _start_ray(address: str | None) -> bool:
    import ray

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # per-epoch checkpoints are the point
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=False)
    return True


def _tuner(spec: SpaceSpec, exp_dir: Path, uri: str, parent: str, resume: bool):
    from optuna.samplers import TPESampler
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.progress import Progress
    from search.searcher import PrunedAwareOptunaSearch
    from search.space import DefineByRun
    from search.tracking import MLflowTrials
    from search.trainable import train_trial, trial_dirname

    s = spec.search
    max_t = spec.base_config().train.epochs
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    path = exp_dir / "search"
    if resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False), max_t
    searcher = PrunedAwareOptunaSearch(
        space=DefineByRun(spec.space, spec.base_config().tasks), sampler=TPESampler(seed=s.seed, multivariate=True, group=True),
        storage=JournalStorage(JournalFileBackend(str(exp_dir / "optuna.journal"))),
        study_name=exp_dir.name, max_t=max_t, metric=s.metric, mode=s.mode)  # define-by-run: set here too
    tuner = tune.Tuner(
        trainable,
        param_space={"base": spec.base, "metric": s.metric, "mode": s.mode, "cpus": s.cpu},
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=searcher, num_samples=s.num_samples,
            scheduler=ASHAScheduler(max_t=max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor),
            max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname,
            reuse_actors=True),  # no new process (torch import, data mapping) per trial
        run_config=tune.RunConfig(
            name="search", storage_path=str(exp_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[MLflowTrials(uri, exp_dir.name, parent, max_t),
                       Progress(s.metric, s.mode, s.num_samples, max_t)]),
    )
    return tuner, max_t


def _final_phase(spec, exp_dir, uri, parent, board, overrides_by_trial, resume) -> pd.DataFrame:
    """Retrain the top k configurations with `final_seeds` seeds at the full budget; test metrics."""
    from ray import tune

    from search.progress import Progress
    from search.tracking import MLflowTrials
    from search.trainable import train_trial, trial_dirname

    s = spec.search
    top = board[board["status"] != "failed"].head(s.final_k)
    if top.empty:
        return pd.DataFrame()
    max_t = spec.base_config().train.epochs
    grid = []
    for rank, tid in enumerate(top["trial_id"], start=1):
        for seed in range(s.final_seeds):
            grid.append({**overrides_by_trial[tid], "train.seed": seed, "_rank": rank})
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    path = exp_dir / "final"
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"base": spec.base, "metric": s.metric, "mode": s.mode, "cpus": s.cpu, "eval_test": True,
                         "overrides": tune.grid_search(grid)},
            tune_config=tune.TuneConfig(max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name="final", storage_path=str(exp_dir), verbose=0,
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[MLflowTrials(uri, exp_dir.name, parent, max_t, phase="final"),
                           Progress("test/avg_f1", "max", len(grid), max_t)]),
        )
    print(f"final: retraining the top {len(top)} configurations with {s.final_seeds} seeds each", flush=True)
    rows = []
    for r in tuner.fit():
        m = r.metrics or {}
        rows.append({"rank": r.config["overrides"]["_rank"], "seed": r.config["overrides"]["train.seed"],
                     **{k: v for k, v in m.items() if k.startswith("test/")}})
    runs = pd.DataFrame(rows)
    if runs.empty or "test/avg_f1" not in runs:
        return pd.DataFrame()
    keep = [c for c in runs.columns if c == "test/avg_f1" or (c.startswith("test/") and c.endswith("/f1"))]
    stats = runs.groupby("rank")[keep].agg(["mean", "std"])
    stats.columns = [f"final/{k}/{agg}" for k, agg in stats.columns]
    write_parquet(runs, exp_dir / "final_runs.parquet")
    return stats.reset_index()


def _exhaustive(spec: SpaceSpec, exp_dir: Path, uri: str, parent: str, resume: bool):
    """Every non-empty group of tasks, once per sampled strategy configuration, at the full budget."""
    from ray import tune

    from search.groupings import group_trials
    from search.progress import Progress
    from search.space import sample_configs
    from search.tracking import MLflowTrials
    from search.trainable import train_trial, trial_dirname

    s = spec.search
    max_t = spec.base_config().train.epochs
    grid = group_trials(sample_configs(spec, s.num_samples), spec.base_config().tasks)
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    path = exp_dir / "groups"
    if resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True), max_t, len(grid)
    print(f"exhaustive groupings: {len(grid)} group trials "
          f"({len(grid) // (2 ** len(spec.base_config().tasks) - 1)} strategy configurations)", flush=True)
    tuner = tune.Tuner(
        trainable,
        param_space={"base": spec.base, "metric": s.metric, "mode": s.mode, "cpus": s.cpu,
                     "overrides": tune.grid_search(grid)},
        tune_config=tune.TuneConfig(max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name="groups", storage_path=str(exp_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[MLflowTrials(uri, exp_dir.name, parent, max_t, phase="group"),
                       Progress(s.metric, s.mode, len(grid), max_t)]),
    )
    return tuner, max_t, len(grid)


def _score_groupings(trials: pd.DataFrame, tasks: tuple[str, ...], exp_dir: Path) -> list[Path]:
    from search.groupings import score_table, summarise

    ok = trials[trials["status"] != "failed"].copy()
    ok["group"] = ok["config/tasks"].map(lambda v: "+".join(json.loads(v) if isinstance(v, str) else v))
    ok["config"] = ok["config/_config"].astype(int)
    parts, picks = summarise(score_table(ok, tasks), tasks)
    parts.to_csv(exp_dir / "groupings.csv", index=False)
    picks.to_csv(exp_dir / "selection.csv", index=False)
    if not parts.empty:
        print("top partitions (validation macro-F1 of each task from its group's model, averaged):")
        for _, r in parts[parts["rank"] <= 5].iterrows():
            print(f"  config {r['config']} #{r['rank']}: {r['partition']:<55} {r['val_avg_f1']:.4f}")
        print("best selection per budget (overlapping groups allowed):")
        for _, r in picks.iterrows():
            print(f"  config {r['config']} budget {r['budget']}: {r['groups']:<55} {r['val_avg_f1']:.4f}")
    return [exp_dir / "groupings.csv", exp_dir / "selection.csv"]


def _state(exp_dir: Path) -> dict:
    path = exp_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_experiment(spec: SpaceSpec, exp_dir: Path, uri: str, address: str | None, resume: bool) -> int:
    from mlflow import MlflowClient

    from mtl_core.data.layout import DataError
    from search.tracking import open_parent

    state = _state(exp_dir)
    (exp_dir / "space.yaml").write_text(dump_resolved(spec))
    try:
        _prepare_data(spec)
    except DataError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    params = {"space_file": str(spec.path), **{f"search.{k}": v for k, v in spec.search.__dict__.items()}}
    parent = open_parent(uri, exp_dir.name, state.get("parent_run_id"), params, exp_dir / "space.yaml")
    state.update({"parent_run_id": parent, "space": str(spec.path.resolve()), "tracking_uri": uri})
    (exp_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
    client = MlflowClient(tracking_uri=uri)
    print(f"experiment {exp_dir} (MLflow: {uri}, parent run {parent})", flush=True)

    import ray

    started = _start_ray(address)
    try:
        s = spec.search
        exhaustive = s.grouping_mode == "exhaustive"
        if exhaustive:
            tuner, max_t, expected = _exhaustive(spec, exp_dir, uri, parent, resume)
        else:
            (tuner, max_t), expected = _tuner(spec, exp_dir, uri, parent, resume), s.num_samples
        results = tuner.fit()
        history, trials = collect(results, s.metric, s.mode, max_t)
        # Ctrl-C makes fit() return normally with partial results: count what really ended
        interrupted = results.num_terminated + results.num_errors < expected
        board = leaderboard(trials, s.metric, s.mode)
        write_parquet(history, exp_dir / "history.parquet")
        write_parquet(trials, exp_dir / "trials.parquet")
        if interrupted:
            board.to_csv(exp_dir / "leaderboard.csv", index=False)
            client.set_terminated(parent, status="KILLED")
            print(f"interrupted with {len(trials)} of {expected} trials; continue with:\n"
                  f"  python -m search.launch {spec.path} --name {exp_dir.name} --storage {exp_dir.parent} --resume",
                  flush=True)
            return 130
        saved = compute_saved(trials, expected, max_t)
        extra = _score_groupings(trials, spec.base_config().tasks, exp_dir) if exhaustive else []
        if s.final_k > 0 and not exhaustive:
            overrides = {_tid(r): r.config["overrides"] for r in results}
            final = _final_phase(spec, exp_dir, uri, parent, board, overrides, resume)
            if not final.empty:
                ranked = board[board["status"] != "failed"].head(len(final))
                board = board.merge(final.assign(trial_id=list(ranked["trial_id"])).drop(columns="rank"),
                                    on="trial_id", how="left")
        board.to_csv(exp_dir / "leaderboard.csv", index=False)
        print_leaderboard(board, s.metric)
        print(f"epochs run {saved['epochs_run']} of {saved['epochs_budget']} "
              f"({saved['compute_saved_frac']:.0%} saved by ASHA)", flush=True)
        for path in extra:
            client.log_artifact(parent, str(path))
        _finish_parent(client, parent, board, saved, s.metric, exp_dir)
        failed = int((trials["status"] == "failed").sum()) if not trials.empty else 0
        return 1 if failed == len(trials) else 0
    finally:
        if started:
            ray.shutdown()


def _tid(result) -> str:
    from search.results import _trial_id

    return _trial_id(result)


def _finish_parent(client, parent: str, board: pd.DataFrame, saved: dict, metric: str, exp_dir: Path) -> None:
    from search.report import write_report

    ok = board[board["status"] != "failed"]
    metrics = {k: float(v) for k, v in saved.items()}
    if not ok.empty and np.isfinite(ok.iloc[0].get(metric, np.nan)):
        metrics[f"best/{metric}"] = float(ok.iloc[0][metric])
    for key in [c for c in board.columns if c.startswith("final/")]:
        if not ok.empty and pd.notna(ok.iloc[0].get(key)):
            metrics[f"best_{key}"] = float(ok.iloc[0][key])
    for k, v in metrics.items():
        client.log_metric(parent, k, v)
    try:
        report_dir = write_report(exp_dir)
        client.log_artifacts(parent, str(report_dir), "report")
    except Exception as exc:  # a plot must never lose the sweep's results
        log.warning("report failed: %s", exc)
    for name in ("leaderboard.csv", "trials.parquet", "history.parquet"):
        client.log_artifact(parent, str(exp_dir / name))
    client.set_terminated(parent, status="FINISHED")
    print(f"results in {exp_dir}; MLflow UI: mlflow ui --backend-store-uri {client.tracking_uri}", flush=True)
