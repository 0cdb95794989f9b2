"""python -m search.report EXPERIMENT_DIR: PNG plots and a Markdown summary of a sweep.

Reads the experiment's `trials.parquet`, `history.parquet`, `leaderboard.csv` and Optuna journal;
writes `EXPERIMENT_DIR/report/`: the metric by scheduler and by combiner (strip plots over trials),
learning curves of the top trials, per-task F1 of the top configurations (heatmap), Optuna's
parameter importances, and `summary.md` linking them.
"""
from __future__ import annotations

import json

import argparse
import logging
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from mtl_core import TASKS  # noqa: E402

log = logging.getLogger(__name__)


def _settings(exp_dir: Path) -> tuple[str, str]:
    space = yaml.safe_load((exp_dir / "space.yaml").read_text()) if (exp_dir / "space.yaml").is_file() else {}
    search = space.get("search", {})
    return search.get("metric", "val/avg_f1"), search.get("mode", "max")


def _strip(ax, trials: pd.DataFrame, column: str, metric: str, title: str) -> None:
    groups = sorted(trials[column].dropna().astype(str).unique())
    for i, g in enumerate(groups):
        values = trials.loc[trials[column].astype(str) == g, metric].dropna()
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
        ax.scatter(np.full(len(values), i) + jitter, values, alpha=0.7)
        if len(values):
            ax.hlines(values.median(), i - 0.3, i + 0.3, color="black")
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(title)


FLOOR_FILE = "bow_floor.json"


def _floor_section(exp_dir: Path) -> list[str]:
    """The bag-of-words floor beside the best configuration's final test score, when both exist."""
    path = exp_dir / FLOOR_FILE
    if not path.is_file():
        return []
    floor = json.loads(path.read_text())
    tasks = [k.split("/")[1] for k in floor if k.startswith("test/") and k.endswith("/f1")]
    lines = ["## Bag-of-words floor", "",
             f"TF-IDF + logistic regression, one model per task on the text alone (C chosen on val): "
             f"test macro-F1 {floor['test/avg_f1']:.4f} averaged over {', '.join(tasks)}.", ""]
    board = pd.read_csv(exp_dir / "leaderboard.csv") if (exp_dir / "leaderboard.csv").is_file() else pd.DataFrame()
    key = "final/test/avg_f1/mean"
    if key in board and board[key].notna().any():
        best = board[board[key].notna()].iloc[0]
        gap = best[key] - floor["test/avg_f1"]
        lines += [f"The best configuration (`{best['trial_id']}`) retrained: test macro-F1 {best[key]:.4f} "
                  f"± {best.get('final/test/avg_f1/std', float('nan')):.4f} over seeds, "
                  f"{abs(gap):.4f} {'above' if gap > 0 else 'below'} the floor.", ""]
    lines += ["| task | floor test macro-F1 |", "|---|---|"]
    lines += [f"| {t} | {floor[f'test/{t}/f1']:.4f} |" for t in tasks] + [""]
    return lines


def write_report(exp_dir: str | Path, top: int = 5) -> Path:
    exp_dir = Path(exp_dir)
    out = exp_dir / "report"
    out.mkdir(exist_ok=True)
    metric, mode = _settings(exp_dir)
    trials = pd.read_parquet(exp_dir / "trials.parquet")
    history = pd.read_parquet(exp_dir / "history.parquet") if (exp_dir / "history.parquet").is_file() else pd.DataFrame()
    ok = trials[(trials["status"] != "failed") & trials.get(metric, pd.Series(dtype=float)).notna()] \
        if metric in trials else trials.iloc[0:0]
    ranked = ok.sort_values(metric, ascending=mode == "min")
    lines = [f"# Sweep report: {exp_dir.name}", "",
             f"{len(trials)} trials: {int((trials['status'] == 'finished').sum())} finished, "
             f"{int((trials['status'] == 'stopped').sum())} stopped early by ASHA, "
             f"{int((trials['status'] == 'failed').sum())} failed. Metric: `{metric}` ({mode}).", ""]
    if not ranked.empty:
        lines += [f"Best trial `{ranked.iloc[0]['trial_id']}`: {metric} = {ranked.iloc[0][metric]:.4f}.", ""]

    for column, name in (("config/strategy.scheduler.name", "scheduler"), ("config/strategy.combiner.name", "combiner")):
        if column in ok and not ok.empty:
            fig, ax = plt.subplots(figsize=(7, 4))
            _strip(ax, ok, column, metric, f"{metric} by {name} (one point per trial, line = median)")
            fig.tight_layout()
            fig.savefig(out / f"by_{name}.png", dpi=110)
            plt.close(fig)
            lines += [f"![{metric} by {name}](by_{name}.png)", ""]

    if not history.empty and not ranked.empty and metric in history:
        fig, ax = plt.subplots(figsize=(7, 4))
        for tid in ranked["trial_id"].head(top):
            h = history[history["trial_id"] == tid].sort_values("training_iteration")
            ax.plot(h["training_iteration"], h[metric].where(h[metric].abs() < 1e8), marker="o", label=tid)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"learning curves of the top {min(top, len(ranked))} trials")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png", dpi=110)
        plt.close(fig)
        lines += ["![learning curves](learning_curves.png)", ""]

    f1_cols = [f"val/{t}/f1" for t in TASKS if f"val/{t}/f1" in ranked]
    if f1_cols and not ranked.empty:
        best = ranked.head(top)
        fig, ax = plt.subplots(figsize=(1.2 * len(f1_cols) + 2, 0.5 * len(best) + 1.5))
        data = best[f1_cols].to_numpy(dtype=float)
        im = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(f1_cols)), [c.split("/")[1] for c in f1_cols])
        ax.set_yticks(range(len(best)), list(best["trial_id"]))
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(im, ax=ax, label="validation macro-F1")
        ax.set_title("per-task F1 of the top configurations")
        fig.tight_layout()
        fig.savefig(out / "task_f1_heatmap.png", dpi=110)
        plt.close(fig)
        lines += ["![per-task F1](task_f1_heatmap.png)", ""]

    aff_cols = [c for c in history.columns if c.startswith("affinity/")] if not history.empty else []
    if aff_cols and not ranked.empty:
        measured = history.dropna(subset=aff_cols, how="all")
        measured = measured[measured["trial_id"].isin(ranked["trial_id"])]
        if not measured.empty:
            tid = next(t for t in ranked["trial_id"] if t in set(measured["trial_id"]))
            last = measured[measured["trial_id"] == tid].sort_values("training_iteration").iloc[-1]
            tasks = [t for t in TASKS if any(c.startswith(f"affinity/{t}/") for c in aff_cols)]
            matrix = np.array([[last.get(f"affinity/{i}/{j}", np.nan) if i != j else np.nan for j in tasks]
                               for i in tasks], dtype=float)
            bound = np.nanmax(np.abs(matrix)) or 1.0
            fig, ax = plt.subplots(figsize=(6, 5))
            im = ax.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
            ax.set_xticks(range(len(tasks)), tasks, rotation=30)
            ax.set_yticks(range(len(tasks)), tasks)
            ax.set_xlabel("j (task whose loss changes)")
            ax.set_ylabel("i (task stepped on)")
            for (i, j), v in np.ndenumerate(matrix):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8)
            fig.colorbar(im, ax=ax, label="Z(i -> j)")
            ax.set_title(f"inter-task affinity, trial {tid} (last epoch)")
            fig.tight_layout()
            fig.savefig(out / "affinity.png", dpi=110)
            plt.close(fig)
            lines += ["![inter-task affinity](affinity.png)", ""]

    importances = _importances(exp_dir)
    if importances:
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(importances) + 1.5))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel("importance (Optuna fANOVA)")
        ax.set_title("parameter importances")
        fig.tight_layout()
        fig.savefig(out / "param_importances.png", dpi=110)
        plt.close(fig)
        lines += ["![parameter importances](param_importances.png)", ""]
    else:
        lines += ["Parameter importances need at least two completed trials with different parameters.", ""]
    lines += _floor_section(exp_dir)
    if (exp_dir / "leaderboard.csv").is_file():
        lines += ["Full ranking: [leaderboard.csv](../leaderboard.csv).", ""]
    (out / "summary.md").write_text("\n".join(lines))
    return out


def _importances(exp_dir: Path) -> dict[str, float]:
    journal = exp_dir / "optuna.journal"
    if not journal.is_file():
        return {}
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        study = optuna.load_study(study_name=exp_dir.name, storage=storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": we still plot what it gives
            return optuna.importance.get_param_importances(study)
    except Exception as exc:  # too few trials, a single distribution, ...
        log.info("no parameter importances: %s", exc)
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.report", description=__doc__)
    p.add_argument("experiment_dir", type=Path)
    args = p.parse_args(argv)
    if not (args.experiment_dir / "trials.parquet").is_file():
        print(f"error: {args.experiment_dir}: no trials.parquet (not an experiment folder, or no trial ended yet)",
              file=sys.stderr)
        return 2
    out = write_report(args.experiment_dir)
    print(f"report written to {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
