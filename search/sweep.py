"""The Ray side of a launch: prepare data once, start or join Ray, run (or restore) the Tune experiment,
export results, retrain the best configurations, write the report, close the MLflow parent run."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search.results import (
    collect, compute_saved, error_line, leaderboard, print_leaderboard, trial_id_of, write_parquet,
)
from search.console import is_quiet, route_third_party_logs
from search.signals import terminate_like_interrupt, terminated
from search.space import SpaceSpec, dump_resolved

log = logging.getLogger("search.sweep")
STATE_FILE = "launch_state.json"  # our bookkeeping beside Tune's: the MLflow parent run, the space file


def _prepare_data(spec: SpaceSpec) -> None:
    """Build the synthetic default, the columnar cache and the frozen text features once, before
    any trial: trials then only memory-map them."""
    import torch

    from mtl_core.prepare import prepare

    # frozen text features on this machine's GPU when it has one (trials then only read the cache)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prepare(spec.base_config(), device, splits=("train", "val", "test"))


def _start_ray(address: str | None) -> bool:
    import ray

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # per-epoch checkpoints are the point
    quiet = {"configure_logging": False} if is_quiet() else {}  # Ray's own console logging off
    if address is not None:  # token authentication was set up by the launcher, before ray's import
        ray.init(address=address, log_to_driver=False, **quiet)
        started = False
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=False,
                 **quiet)
        started = True
    route_third_party_logs()
    terminate_like_interrupt()  # after ray.init: Ray installs its own SIGTERM handler there
    return started


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
            callbacks=[MLflowTrials(uri, exp_dir.name, parent, max_t, spool=str(exp_dir / "mlflow_pending.jsonl")),
                       Progress(s.metric, s.mode, s.num_samples, max_t)]),
    )
    return tuner, max_t


def _grid_tuner(spec: SpaceSpec, exp_dir: Path, uri: str, parent: str, resume: bool, name: str,
                grid: list[dict], metric: str | None = None, eval_test: bool = False):
    """A Tune experiment that trains each of `grid`'s overrides once at the full budget (no searcher,
    no early stopping); restored instead when --resume finds it."""
    from ray import tune

    from search.progress import Progress
    from search.tracking import MLflowTrials
    from search.trainable import train_trial, trial_dirname

    s = spec.search
    max_t = spec.base_config().train.epochs
    trainable = tune.with_resources(train_trial, {"cpu": s.cpu, "gpu": s.gpu})
    path = exp_dir / name
    if resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True)
    return tune.Tuner(
        trainable,
        param_space={"base": spec.base, "metric": s.metric, "mode": s.mode, "cpus": s.cpu, "eval_test": eval_test,
                     "overrides": tune.grid_search(grid)},
        tune_config=tune.TuneConfig(max_concurrent_trials=s.max_concurrent, trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=str(exp_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            callbacks=[MLflowTrials(uri, exp_dir.name, parent, max_t, phase=name,
                                    spool=str(exp_dir / "mlflow_pending.jsonl")),
                       Progress(metric or s.metric, s.mode, len(grid), max_t)]),
    )


def _final_phase(spec, exp_dir, uri, parent, board, overrides_by_trial, resume) -> pd.DataFrame:
    """Retrain the top k configurations with `final_seeds` seeds at the full budget; test metrics."""
    s = spec.search
    top = board[board["status"] != "failed"].head(s.final_k)
    if top.empty:
        return pd.DataFrame()
    grid = []
    for rank, tid in enumerate(top["trial_id"], start=1):
        for seed in range(s.final_seeds):
            grid.append({**overrides_by_trial[tid], "train.seed": seed, "_rank": rank})
    tuner = _grid_tuner(spec, exp_dir, uri, parent, resume, "final", grid, metric="test/avg_f1", eval_test=True)
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


def _strategy_configs(spec: SpaceSpec) -> list[dict]:
    """The distinct strategy configurations a grouping mode trains groups with (`groups` dropped)."""
    from search.groupings import distinct_configs
    from search.space import sample_configs

    return distinct_configs(sample_configs(spec, spec.search.num_samples))


def _exhaustive(spec: SpaceSpec, exp_dir: Path, uri: str, parent: str, resume: bool):
    """Every non-empty group of tasks, once per sampled strategy configuration, at the full budget."""
    from search.groupings import group_trials

    grid = group_trials(_strategy_configs(spec), spec.base_config().tasks)
    print(f"exhaustive groupings: {len(grid)} group trials", flush=True)
    return _grid_tuner(spec, exp_dir, uri, parent, resume, "group", grid), len(grid)


def _affinity_phase(spec: SpaceSpec, exp_dir: Path, uri: str, parent: str, resume: bool, exhaustive: pd.DataFrame):
    """TAG: one all-task run per configuration measures affinities; the best partition for each number
    of groups is then trained. Returns the comparison table (and the grouping trials' results)."""
    from mtl_core.grouping import tag_partitions

    cfg = spec.base_config()
    tasks = cfg.tasks
    every = cfg.train.affinity_every or 10
    configs = _strategy_configs(spec)
    grid = [{**c, "groups": None, "train.affinity_every": every, "_config": i} for i, c in enumerate(configs)]
    print(f"affinity: measuring inter-task affinity in {len(grid)} all-task runs (every {every} steps)", flush=True)
    measured = list(_grid_tuner(spec, exp_dir, uri, parent, resume, "affinity", grid).fit())
    proposals = []
    for r in measured:
        df = r.metrics_dataframe
        if r.error is not None or df is None or df.empty:
            continue
        cols = {(i, j): f"affinity/{i}/{j}" for i in tasks for j in tasks if i != j}
        affinity = {k: float(df[c].mean()) for k, c in cols.items() if c in df}  # averaged over training
        for k, (score, partition) in tag_partitions(affinity, tasks).items():
            proposals.append({**configs[r.config["overrides"]["_config"]], "groups": [list(g) for g in partition],
                              "_config": r.config["overrides"]["_config"], "_k": k, "_tag_score": score})
    print(f"affinity: training the {len(proposals)} proposed groupings", flush=True)
    trained = list(_grid_tuner(spec, exp_dir, uri, parent, resume, "tag", proposals).fit())
    rows = []
    for r in trained:
        ov, df = r.config["overrides"], r.metrics_dataframe
        partition = "|".join("+".join(g) for g in ov["groups"])
        best = float(df[spec.search.metric].max()) if df is not None and not df.empty else float("nan")
        row = {"config": ov["_config"], "groups": ov["_k"], "partition": partition, "tag_score": ov["_tag_score"],
               "trained_val_avg_f1": best, "error": "" if r.error is None else error_line(r.error)}
        if not exhaustive.empty:  # the exhaustive score of the same partition, when both ran
            match = exhaustive[(exhaustive["config"] == ov["_config"]) & (exhaustive["partition"] == partition)]
            row["exhaustive_val_avg_f1"] = float(match["val_avg_f1"].iloc[0]) if len(match) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["config", "groups"]) if rows else pd.DataFrame()
    table.to_csv(exp_dir / "affinity_groupings.csv", index=False)
    if not table.empty:
        print("TAG proposals (best partition per number of groups), trained:")
        for _, r in table.iterrows():
            print(f"  config {r['config']} k={r['groups']}: {r['partition']:<55} val/avg_f1 {r['trained_val_avg_f1']:.4f}")
    return table


def _score_groupings(trials: pd.DataFrame, tasks: tuple[str, ...], exp_dir: Path) -> pd.DataFrame:
    """Writes groupings.csv (top partitions) and selection.csv; returns every partition's score."""
    from search.groupings import score_table, summarise

    ok = trials[trials["status"] != "failed"].copy()
    ok["group"] = ok["config/tasks"].map(lambda v: "+".join(json.loads(v) if isinstance(v, str) else v))
    ok["config"] = ok["config/_config"].astype(int)
    tables = score_table(ok, tasks)
    every, picks = summarise(tables, tasks, top=len(tasks) ** len(tasks))
    parts = every[every["rank"] <= 10] if not every.empty else every
    parts.to_csv(exp_dir / "groupings.csv", index=False)
    picks.to_csv(exp_dir / "selection.csv", index=False)
    if not parts.empty:
        print("top partitions (validation macro-F1 of each task from its group's model, averaged):")
        for _, r in parts[parts["rank"] <= 5].iterrows():
            print(f"  config {r['config']} #{r['rank']}: {r['partition']:<55} {r['val_avg_f1']:.4f}")
        print("best selection per budget (overlapping groups allowed):")
        for _, r in picks.iterrows():
            print(f"  config {r['config']} budget {r['budget']}: {r['groups']:<55} {r['val_avg_f1']:.4f}")
    return every


def resume_hint(space: Path, exp_dir: Path) -> str:
    return f"continue with: python -m search.launch {space} --name {exp_dir.name} --storage {exp_dir.parent} --resume"


def _state(exp_dir: Path) -> dict:
    path = exp_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_experiment(spec: SpaceSpec, exp_dir: Path, uri: str, address: str | None, resume: bool) -> int:
    from mlflow import MlflowClient

    from mtl_core.data.layout import DataError
    from search.tracking import default_tracking_uri, open_parent

    state = _state(exp_dir)
    (exp_dir / "space.yaml").write_text(dump_resolved(spec))
    try:
        _prepare_data(spec)
    except DataError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    params = {"space_file": str(spec.path), **{f"search.{k}": v for k, v in spec.search.__dict__.items()}}
    artifacts = exp_dir / "mlartifacts" if uri == default_tracking_uri(exp_dir) else None
    parent = open_parent(uri, exp_dir.name, state.get("parent_run_id"), params, exp_dir / "space.yaml", artifacts)
    state.update({"parent_run_id": parent, "space": str(spec.path.resolve()), "tracking_uri": uri})
    (exp_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
    client = MlflowClient(tracking_uri=uri)
    print(f"experiment {exp_dir} (MLflow: {uri}, parent run {parent})", flush=True)

    import ray

    started = _start_ray(address)
    try:
        s = spec.search
        max_t = spec.base_config().train.epochs
        exhaustive = s.grouping_mode in ("exhaustive", "both")
        if s.grouping_mode == "affinity":  # the TAG phases are the whole experiment
            table = _affinity_phase(spec, exp_dir, uri, parent, resume, pd.DataFrame())
            client.log_artifact(parent, str(exp_dir / "affinity_groupings.csv"))
            client.set_terminated(parent, status="FINISHED" if not table.empty else "FAILED")
            return 0 if not table.empty else 1
        if exhaustive:
            tuner, expected = _exhaustive(spec, exp_dir, uri, parent, resume)
        else:
            tuner, expected = _tuner(spec, exp_dir, uri, parent, resume)[0], s.num_samples
        results = tuner.fit()
        history, trials = collect(results, s.metric, s.mode, max_t)
        if resume:
            from search.tracking import close_orphans

            close_orphans(uri, exp_dir.name, parent, "group" if exhaustive else "search", set(trials["trial_id"]))
        # Ctrl-C makes fit() return normally with partial results: count what really ended
        interrupted = results.num_terminated + results.num_errors < expected
        board = leaderboard(trials, s.metric, s.mode)
        write_parquet(history, exp_dir / "history.parquet")
        write_parquet(trials, exp_dir / "trials.parquet")
        if interrupted:
            board.to_csv(exp_dir / "leaderboard.csv", index=False)
            client.set_terminated(parent, status="KILLED")
            how = "stopped by SIGTERM" if terminated() else "interrupted"
            print(f"{how} with {len(trials)} of {expected} trials; {resume_hint(spec.path, exp_dir)}", flush=True)
            return 143 if terminated() else 130
        saved = compute_saved(trials, expected, max_t)
        extra = []
        if exhaustive:
            scores = _score_groupings(trials, spec.base_config().tasks, exp_dir)
            extra = [exp_dir / "groupings.csv", exp_dir / "selection.csv"]
            if s.grouping_mode == "both":
                _affinity_phase(spec, exp_dir, uri, parent, resume, scores)
                extra.append(exp_dir / "affinity_groupings.csv")
        if s.final_k > 0 and not exhaustive:
            overrides = {trial_id_of(r): r.config["overrides"] for r in results}
            final = _final_phase(spec, exp_dir, uri, parent, board, overrides, resume)
            if not final.empty:
                ranked = board[board["status"] != "failed"].head(len(final))
                board = board.merge(final.assign(trial_id=list(ranked["trial_id"])).drop(columns="rank"),
                                    on="trial_id", how="left")
        board.to_csv(exp_dir / "leaderboard.csv", index=False)
        extra += _bow_floor(spec, exp_dir, client, parent)
        if terminated():  # SIGTERM during the final phase: its trials stopped at their checkpoints
            client.set_terminated(parent, status="KILLED")
            print(f"stopped by SIGTERM during the final phase; {resume_hint(spec.path, exp_dir)}", flush=True)
            return 143
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


def _bow_floor(spec: SpaceSpec, exp_dir: Path, client, parent: str) -> list[Path]:
    """The bag-of-words floor on the experiment's data (seconds): bow_floor.json, parent-run metrics."""
    from mtl_core.bow import bag_of_words_floor
    from mtl_core.prepare import cache_root, data_root
    from search.report import FLOOR_FILE

    cfg = spec.base_config()
    try:
        files = {"train": cfg.data.train_file, "val": cfg.data.val_file, "test": cfg.data.test_file}
        floor = bag_of_words_floor(data_root(cfg), cfg.tasks, derive_binary=cfg.data.derive_binary,
                                   cache_dir=cache_root(cfg), files=files)
    except Exception as exc:  # the floor is context, never a reason to lose the sweep's results
        log.warning("bag-of-words floor failed: %s", exc)
        return []
    path = exp_dir / FLOOR_FILE
    path.write_text(json.dumps(floor, indent=2))
    for key, value in floor.items():
        if key.startswith("test/") and np.isfinite(value):
            client.log_metric(parent, f"floor/bow/{key}", float(value))
    print(f"bag-of-words floor (TF-IDF + logistic regression on the text): test/avg_f1 {floor['test/avg_f1']:.4f}",
          flush=True)
    return [path]


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
    print(f"results in {exp_dir} (other libraries' messages: {exp_dir / 'launch.log'})", flush=True)
    print(ui_hint(client.tracking_uri, client.get_run(parent).info.experiment_id), flush=True)


def ui_hint(uri: str, experiment_id: str) -> str:
    """How to look at the runs. MLflow 3.17's UI opens on its GenAI pages unless the URL asks for the
    training view (the experiment's `mlflow.experimentKind` tag alone does not override the UI's toggle)."""
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    if uri.startswith("sqlite:"):
        return (f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000, "
                f"then open http://127.0.0.1:5000/{page}")
    return f"MLflow UI: {uri.rstrip('/')}/{page}"
