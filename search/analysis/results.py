"""Sweep results as tables: per-epoch history and per-trial summary (Parquet via pyarrow), leaderboard (CSV)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_core import TASKS, keys
from search.io.console import error_line
from search.io.folder_write import write_bytes
from search.analysis.labels import distinct, partition_label, trial_number
from search.analysis.pareto import rank_and_crowding



def trial_id_of(result) -> str:
    if result.metrics and result.metrics.get("trial_id"):
        return str(result.metrics["trial_id"])
    return Path(result.path).name.removeprefix("trial_")


def _with_lost_epochs(df: pd.DataFrame | None, checkpoint) -> pd.DataFrame | None:
    """A trial retried on another node can miss earlier epochs in Tune's result log; mtl_core keeps the
    whole metric history in each checkpoint, so the missing epochs are taken from the latest one. It can
    also report an epoch twice (its node died after the report, before the checkpoint reached storage, and
    the retry trained that epoch again): the last report is the one the trial went on from."""
    if df is not None and not df.empty and "epoch" in df:
        df = df.drop_duplicates("epoch", keep="last").reset_index(drop=True)
    if df is None or df.empty or "epoch" not in df or checkpoint is None:
        return df
    missing = set(range(int(df["epoch"].max()) + 1)) - set(df["epoch"].astype(int))
    if not missing:
        return df
    from mtl_core.checkpoint import read_history

    with checkpoint.as_directory() as d:
        history = read_history(Path(d))
    lost = pd.DataFrame([m for m in history if m["epoch"] in missing])
    if lost.empty:
        return df
    lost["training_iteration"] = lost["epoch"] + 1
    return pd.concat([lost, df], ignore_index=True).sort_values("training_iteration", ignore_index=True)


def collect(results, metric: str, mode: str, max_t: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history: one row per trial and epoch, trials: one row per trial at its best epoch)."""
    history, trials = [], []
    for r in results:
        tid = trial_id_of(r)
        entry = (r.config or {}).get("trial", {})
        df = _with_lost_epochs(r.metrics_dataframe, r.checkpoint)
        epochs = 0 if df is None or df.empty else int(df["training_iteration"].max())
        row: dict[str, Any] = {"trial_id": tid, "label": (entry.get("meta") or {}).get("label", ""), "epochs": epochs}
        row.update({f"config/{k}": cell(k, v) for k, v in entry.get("overrides", {}).items()})
        if entry.get("meta"):
            row.update({f"meta/{k}": v for k, v in entry["meta"].items() if v is not None})
        if r.error is not None:
            row["status"], row["error"] = "failed", error_line(r.error, type(r.error).__name__)
        else:
            row["status"], row["error"] = ("finished" if epochs >= max_t else "stopped"), ""
        if df is not None and not df.empty:
            keep = [c for c in df.columns if c.startswith(keys.TRACKED)
                    or c in ("epoch", "training_iteration", "time_total_s", "hostname", "node_ip", "gpu_ids")]
            h = df[keep].copy()
            h.insert(0, "trial_id", tid)
            history.append(h)
            values = df[metric] if metric in df else pd.Series(dtype=float)
            best = df.loc[values.idxmax() if mode == "max" else values.idxmin()] if values.notna().any() else df.iloc[-1]
            for c in keep:
                if c.startswith(("val/", "test/")) or c in ("hostname", "node_ip", "gpu_ids"):
                    row[c] = best[c]
            row["best_epoch"] = int(best.get("epoch", best["training_iteration"] - 1)) + 1  # counted from 1, as MLflow's steps
            row["time_total_s"] = float(df["time_total_s"].max()) if "time_total_s" in df else float("nan")
        trials.append(row)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    table = pd.DataFrame(trials)
    if not table.empty:  # one label per row: two trials of the same strategy and grouping by their number
        table["label"] = distinct(list(table["label"]), numbers(table), config_cells(table))
    return hist, with_fronts(table, _objectives_of(results))


def cell(key: str, value: Any) -> Any:
    """An override as a table cell: a partition as its label (`binary+gory|mature`, `tasks`: `binary+gory`),
    any other list or mapping as JSON (a Parquet column holds one type)."""
    if key == "groups" and value:
        return partition_label(value)
    if key == "tasks" and value:
        return partition_label([value])
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def config_cells(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's `config/<key>` cells by their key (what `search.analysis.labels.distinct` tells repeats apart by)."""
    columns = [c for c in trials.columns if str(c).startswith("config/")]
    return [{c[len("config/"):]: v for c, v in zip(columns, values)} for values in trials[columns].itertuples(index=False)]


def numbers(trials: pd.DataFrame) -> list[str]:
    """Each trial's number in its phase (`search.analysis.labels.trial_number`)."""
    given = trials["meta/number"] if "meta/number" in trials else pd.Series(None, index=trials.index)
    return [trial_number(t, n) for t, n in zip(trials["trial_id"], given)]


def _objectives_of(results) -> tuple[str, ...]:
    """The objectives the trials were searched on (their settings say; empty for a single metric)."""
    for r in results:
        objectives = ((r.config or {}).get("settings") or {}).get("objectives")
        if objectives:
            return tuple(objectives)
    return ()


def with_fronts(trials: pd.DataFrame, objectives) -> pd.DataFrame:
    """`front` (0 = non-dominated) and `crowding` of each trial's best-epoch objective vector, for a
    multi-objective search; a failed trial, or one with a NaN objective, is dominated by every other."""
    if not objectives or trials.empty:
        return trials
    trials = trials.copy()
    values = np.column_stack([trials[o].to_numpy(float) if o in trials else np.full(len(trials), np.nan)
                              for o in objectives])
    values *= np.array([1.0 if keys.direction(o) == "max" else -1.0 for o in objectives])
    values[(trials["status"] == "failed").to_numpy()] = np.nan
    trials["front"], trials["crowding"] = rank_and_crowding(values)
    return trials


def leaderboard(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Trials ranked by their best-epoch metric, or (a multi-objective search, see `with_fronts`) by
    front, then crowding, then the metric; failed trials last with their reason."""
    if trials.empty:
        return trials
    df = trials.copy()
    if metric not in df:
        df[metric] = math.nan
    df["_ok"] = df["status"] != "failed"
    by = ["_ok", "front", "crowding", metric] if "front" in df else ["_ok", metric]
    ascending = [False, True, False, mode == "min"] if "front" in df else [False, mode == "min"]
    df = df.sort_values(by, ascending=ascending, na_position="last", kind="stable").drop(columns="_ok")
    df.insert(0, "rank", range(1, len(df) + 1))
    cols = ["rank", "trial_id", "label", "status", "epochs", "front", "crowding", metric]
    cols += [keys.task("val", t) for t in TASKS if keys.task("val", t) in df]
    cols += [c for c in df.columns if c.startswith("config/")] + ["best_epoch", "meta/number", "hostname", "error"]
    cols += [c for c in df.columns if c.startswith(keys.FINAL)]
    return df[[c for c in dict.fromkeys(cols) if c in df]]


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    # object columns mixing types (e.g. a config value that is a string in one trial, a number in
    # another) are written as strings so the schema is stable
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object and not df[c].map(lambda v: isinstance(v, (list, np.ndarray))).all():
            df[c] = df[c].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    sink = pa.BufferOutputStream()  # whole, then renamed into the folder (search.io.folder_write)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, compression="zstd")
    write_bytes(path, sink.getvalue().to_pybytes())


def compute_saved(trials: pd.DataFrame, num_samples: int, max_t: int) -> dict[str, float]:
    used = int(trials["epochs"].sum()) if not trials.empty else 0
    full = num_samples * max_t
    return {"epochs_run": used, "epochs_budget": full, "compute_saved_frac": 1 - used / full if full else 0.0}


def print_leaderboard(board: pd.DataFrame, metric: str, top: int = 10) -> None:
    if board.empty:
        print("no trials")
        return
    name = "label" if "label" in board else "trial_id"
    show = ["rank", name, "status", "epochs"] + (["front"] if "front" in board else []) + [metric]
    show += [keys.task("val", t) for t in TASKS if keys.task("val", t) in board]
    view = board[board["rank"].notna()][show].head(top).rename(columns={name: "configuration"})
    view.columns = [c.replace("val/", "").replace("/f1", "_f1") for c in view.columns]
    view["rank"] = view["rank"].astype(int)
    view["epochs"] = view["epochs"].astype(int)  # a float column once the baselines' rows (no epochs) are in
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        print(view.to_string(index=False))
    mean, std = keys.final(keys.average("test"), "mean"), keys.final(keys.average("test"), "std")
    if mean in board:
        final = board.dropna(subset=[mean])
        protocol = (f"by {int(final[keys.final('folds')].max())}-fold cross-validation (mean ± std over folds and repeats"
                    if keys.final("folds") in final and final[keys.final("folds")].notna().any() else
                    "on the test split (mean ± std over seeds")
        print(f"final retraining {protocol}; baselines under the same protocol):")
        for _, row in final.iterrows():
            tasks = "  ".join(f"{t} {row[keys.final(keys.task('test', t), 'mean')]:.3f}±{row[keys.final(keys.task('test', t), 'std')]:.3f}"
                              for t in TASKS if keys.final(keys.task("test", t), "mean") in row)
            delta = f"  Δm {row[keys.final('delta_m')]:+.1f}%" if pd.notna(row.get(keys.final("delta_m"))) else ""
            print(f"  {row[keys.final('name')]:<24} avg_f1 {row[mean]:.4f}"
                  f"±{row[std]:.4f}{delta}  {tasks}")
    failed = board[board["status"] == "failed"]
    for _, row in failed.iterrows():
        print(f"trial {trial_number(row['trial_id'], row.get('meta/number'))} {row.get('label', '')} failed: {row['error']}")
