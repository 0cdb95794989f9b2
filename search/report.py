"""python -m search.report EXPERIMENT_DIR: PNG plots and a Markdown summary of a sweep.

Reads the experiment's `trials.parquet`, `history.parquet`, `leaderboard.csv` and Optuna journal;
writes `EXPERIMENT_DIR/report/`: the answer (retrained configurations against the baselines, Δm%, the
paired verdict against equal sum), the Pareto front of the tasks, each strategy axis at a matched
budget with effects and intervals, learning curves, per-task F1 of the top configurations, the affinity
heatmap, Optuna's parameter importances, the bag-of-words floor, and `summary.md` linking them.
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

from mtl_core import TASKS, keys  # noqa: E402
from search.axis_study import AXIS_STUDY_FILE  # noqa: E402
from search.space import partition_label  # noqa: E402
from search.stats import axis_effects, best_vs, final_table, matched_budget, pareto_front  # noqa: E402

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


AXES = (  # config column, short name, the axis's baseline value
    ("config/strategy.scheduler.name", "scheduler", "all"),
    ("config/strategy.combiner.name", "combiner", "equal"),
    ("config/strategy.modality.name", "modality", "all"),
    ("config/groups", "grouping", None),  # baseline: all tasks in one model (the first partition listed)
)


def write_report(exp_dir: str | Path, top: int = 5) -> Path:
    exp_dir = Path(exp_dir)
    out = exp_dir / "report"
    out.mkdir(exist_ok=True)
    metric, mode = _settings(exp_dir)
    trials = pd.read_parquet(exp_dir / "trials.parquet")
    history = pd.read_parquet(exp_dir / "history.parquet") if (exp_dir / "history.parquet").is_file() else pd.DataFrame()
    runs = pd.read_parquet(exp_dir / "final_runs.parquet") if (exp_dir / "final_runs.parquet").is_file() else pd.DataFrame()
    ok = trials[(trials["status"] != "failed") & trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    ranked = ok.sort_values(metric, ascending=mode == "min")
    lines = [f"# Sweep report: {exp_dir.name}", "",
             f"{len(trials)} trials: {int((trials['status'] == 'finished').sum())} finished, "
             f"{int((trials['status'] == 'stopped').sum())} stopped early by ASHA, "
             f"{int((trials['status'] == 'failed').sum())} failed. Metric: `{metric}` ({mode}).", ""]
    if not ranked.empty:
        lines += [f"Best trial `{ranked.iloc[0]['trial_id']}`: {metric} = {ranked.iloc[0][metric]:.4f}.", ""]
    tasks = [t for t in TASKS if f"test/{t}/f1" in runs]
    table = final_table(runs, tasks)
    lines += _answer_section(runs, table, tasks)
    lines += _pareto_section(out, table, tasks, ranked)
    lines += _axis_study_section(exp_dir)
    lines += _axes_section(out, history, trials, metric, mode)
    lines += _learning_curves(out, history, ranked, metric, top)
    lines += _task_heatmap(out, ranked, top)
    lines += _affinity_heatmap(out, history, ranked)
    lines += _importances_plot(out, _importances(exp_dir))
    lines += _floor_section(exp_dir)
    if (exp_dir / "leaderboard.csv").is_file():
        lines += ["Full ranking: [leaderboard.csv](../leaderboard.csv).", ""]
    (out / "summary.md").write_text("\n".join(lines))
    return out


def _save(fig, out: Path, name: str, alt: str) -> list[str]:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return [f"![{alt}]({name})", ""]


def _answer_section(runs: pd.DataFrame, table: pd.DataFrame, tasks: list[str]) -> list[str]:
    """Which configuration is best on the test split, and by how much: the retrained configurations and
    the baselines (mean ± std over seeds per task, Δm% against single-task models), the paired verdict."""
    if table.empty:
        return []
    n = int(table["final/seeds"].max())
    lines = ["## Which configuration is best, and by how much", "",
             f"Retrained at the full budget with the same {n} seed(s) each, evaluated on the test split "
             f"(macro-F1, mean ± std over seeds). Baselines use the best configuration's training knobs.", ""]
    head = "| configuration | role | avg | " + " | ".join(tasks) + " | Δm% vs single-task |"
    lines += [head, "|" + "---|" * (4 + len(tasks))]
    for _, r in table.iterrows():
        cells = [_pm(r, "test/avg_f1")] + [_pm(r, f"test/{t}/f1") for t in tasks]
        dm = r.get("final/delta_m", np.nan)
        lines.append(f"| {_cell(r['name'])} | {r['role']} | " + " | ".join(cells) + f" | {dm:+.2f} |".replace("nan", "-"))
    lines.append("")
    compared = best_vs(runs, "equal_sum")
    if compared is not None:
        best, diff = compared
        lines += [diff.sentence(f"The best configuration ({best})", "equal sum", "test macro-F1 averaged over tasks"), ""]
    else:
        lines += ["No equal-sum baseline ran (search.baselines), so there is no paired verdict.", ""]
    return lines


def _pm(row, key: str) -> str:
    mean, std = row.get(f"final/{key}/mean", np.nan), row.get(f"final/{key}/std", np.nan)
    return f"{mean:.3f} ± {std:.3f}" if pd.notna(std) else f"{mean:.3f}"


def _pareto_section(out: Path, final: pd.DataFrame, tasks: list[str], ranked: pd.DataFrame) -> list[str]:
    """Parallel coordinates of the per-task F1: the retrained configurations' test means when there are
    any, else the trials' validation scores; the Pareto front drawn solid."""
    if tasks and not final.empty:
        table = final.set_index("name")
        cols, what = [f"final/test/{t}/f1/mean" for t in tasks], "test macro-F1 (mean over seeds)"
    else:
        tasks = [t for t in TASKS if f"val/{t}/f1" in ranked]
        table, cols, what = ranked.set_index("trial_id").head(15), [f"val/{t}/f1" for t in tasks], "validation macro-F1"
    if len(tasks) < 2 or len(table) < 2:
        return []
    front = pareto_front(table, cols)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, row in table.iterrows():
        on = bool(front[name])
        ax.plot(tasks, row[cols].to_numpy(float), marker="o", lw=2 if on else 1, ls="-" if on else "--",
                alpha=1 if on else 0.5, label=f"{name}{' (front)' if on else ''}")
    ax.set_ylabel(what)
    ax.set_title("per-task trade-off: the Pareto front solid")
    ax.legend(fontsize=7)
    names = ", ".join(f"`{n}`" for n in table.index[front.to_numpy()])
    return ["## Pareto front of the tasks", "",
            f"On the front ({what}; no other configuration is at least as good on every task and better on one): "
            f"{names}.", ""] + _save(fig, out, "pareto.png", "Pareto front")


def _axes_section(out: Path, history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str) -> list[str]:
    """Each strategy axis at one budget (the last rung every trial reached), with effects against the
    axis's baseline value."""
    budget, scores = matched_budget(history, trials, metric, mode)
    if scores.empty:
        return []
    table = trials.set_index("trial_id").loc[scores.index].assign(score=scores)
    lines = ["## Strategy axes at a matched budget", "",
             f"Every trial's best `{metric}` within its first {budget} epoch(s), the last rung every trial reached "
             f"(trials that ASHA stopped early are not compared with longer ones at their own budgets). "
             f"Differences are against the axis's baseline value with a 95% Welch t interval where both sides "
             f"have 2+ trials; the other axes vary too, so these are marginal effects.", ""]
    for column, name, baseline in AXES:
        if column not in table or table[column].nunique() < 2:
            continue
        labels = table[column].astype(str).map(_readable)
        base = baseline if baseline is not None else _one_group_label(labels)
        fig, ax = plt.subplots(figsize=(7, 4))
        _strip(ax, table.assign(**{column: labels}), column, "score",
               f"{metric} by {name} at epoch {budget} (matched budget; line = median)")
        ax.set_ylabel(f"best {metric} within {budget} epoch(s)")
        lines += [f"### {name} at epoch {budget} (matched budget)", ""]
        lines += _save(fig, out, f"by_{name}.png", f"{metric} by {name}")
        lines += [f"| {name} | trials | mean | difference vs {_cell(base)} [95% interval] |", "|---|---|---|---|"]
        for e in axis_effects(table["score"], labels, base):
            interval = f"[{e.low:+.4f}, {e.high:+.4f}]" if np.isfinite(e.low) else "(too few trials)"
            diff = "baseline" if e.value == base else f"{e.diff:+.4f} {interval}"
            lines.append(f"| {_cell(e.value)} | {e.n} | {e.mean:.4f} | {diff} |")
        lines.append("")
    return lines


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")  # a partition's `|` would end a Markdown table cell


def _readable(value: str) -> str:
    """A partition as `binary+gory|mature+slapstick+sarcasm`; any other value as it is."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, list) and parsed and all(isinstance(g, list) for g in parsed):
        return partition_label(parsed)
    return value


def _axis_study_section(exp_dir: Path) -> list[str]:
    """search.axis_study: each axis value with the others held at the best configuration's, full budget."""
    path = exp_dir / AXIS_STUDY_FILE
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    lines = ["## Axis study: one factor at a time around the best configuration", "",
             "The best configuration retrained with one axis changed to each value of the space (the other axes "
             "held fixed), at the full budget with the final phase's seeds; differences in test macro-F1 against "
             "the axis's baseline value, paired by seed, with 95% t intervals.", ""]
    for axis, rows in table.groupby("axis", sort=False):
        base = rows["baseline"].iloc[0]
        lines += [f"| {axis} | seeds | test macro-F1 | difference vs {_cell(base)} [95% interval] |", "|---|---|---|---|"]
        for _, r in rows.iterrows():
            mark = " (best)" if r["best"] else ""
            diff = "baseline" if r["value"] == base else (
                f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]" if pd.notna(r["low"]) else f"{r['diff']:+.4f}")
            lines.append(f"| {_cell(r['value'])}{mark} | {r['seeds']} | {r['mean']:.4f} | {diff} |")
        lines.append("")
    return lines


def _one_group_label(labels: pd.Series) -> str:
    """The grouping axis's baseline: all tasks in one model, else the commonest partition."""
    single = [v for v in labels.unique() if "|" not in v]
    return single[0] if single else labels.mode().iloc[0]


def _learning_curves(out: Path, history: pd.DataFrame, ranked: pd.DataFrame, metric: str, top: int) -> list[str]:
    if history.empty or ranked.empty or metric not in history:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for tid in ranked["trial_id"].head(top):
        h = history[history["trial_id"] == tid].sort_values("training_iteration")
        ax.plot(h["training_iteration"], h[metric], marker="o", label=tid)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves of the top {min(top, len(ranked))} trials")
    ax.legend(fontsize=7)
    return _save(fig, out, "learning_curves.png", "learning curves")


def _task_heatmap(out: Path, ranked: pd.DataFrame, top: int) -> list[str]:
    f1_cols = [f"val/{t}/f1" for t in TASKS if f"val/{t}/f1" in ranked]
    if not f1_cols or ranked.empty:
        return []
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
    return _save(fig, out, "task_f1_heatmap.png", "per-task F1")


def _affinity_heatmap(out: Path, history: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
    aff_cols = [c for c in history.columns if c.startswith("affinity/")] if not history.empty else []
    if not aff_cols or ranked.empty:
        return []
    measured = history.dropna(subset=aff_cols, how="all")
    measured = measured[measured["trial_id"].isin(ranked["trial_id"])]
    if measured.empty:
        return []
    tid = next(t for t in ranked["trial_id"] if t in set(measured["trial_id"]))
    last = measured[measured["trial_id"] == tid].sort_values("training_iteration").iloc[-1]
    tasks = [t for t in TASKS if any(c.startswith(f"affinity/{t}/") for c in aff_cols)]
    matrix = np.array([[last.get(keys.affinity(i, j), np.nan) if i != j else np.nan for j in tasks]
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
    return _save(fig, out, "affinity.png", "inter-task affinity")


def _importances_plot(out: Path, importances: dict[str, float]) -> list[str]:
    if not importances:
        return ["Parameter importances need at least two completed trials with different parameters.", ""]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(importances) + 1.5))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (Optuna fANOVA)")
    ax.set_title("parameter importances")
    return _save(fig, out, "param_importances.png", "parameter importances")


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
