"""The report's sections, each a list of Markdown lines, and `write_report`, which puts them in order."""
from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mtl_core import TASKS, keys
from mtl_core.config import ModelConfig, TrainConfig
from mtl_core.metrics import headline_tasks
from mtl_core.strategies import AXES as STRATEGY_AXES, BASELINE, ONE_MODEL, REGISTRIES
from search.analysis.decision import RunScores
from search.io.files import Files
from search.io.folder_read import check_output_folder
from search.io.folder_write import write_text
from search.report.front import front_section
from search.analysis.labels import from_cell, groups_label, name_key
from search.report.inputs import ReportInput
from search.analysis.results import numbers
from search.analysis.pareto import pareto_front
from search.analysis.stats import axis_effects, final_table, matched_budget, scores_at

log = logging.getLogger(__name__)
from search.report.plots import md_cell, affinity_heatmap, learning_curves, save_figure, strip_plot, task_heatmap
from search.report.html import html_page
from search.analysis.decision import dominators


def _floor_section(floor: dict[str, float], board: pd.DataFrame | None) -> list[str]:
    """The bag-of-words floor beside the best configuration's final test score, when both exist."""
    if not floor:
        return []
    tasks = [k.split("/")[1] for k in floor if k.startswith("test/") and k.endswith("/f1")]
    lines = ["## Bag-of-words floor", "",
             f"TF-IDF + logistic regression, one model per task on the text alone (C chosen on val): "
             f"test macro-F1 {floor[keys.average('test')]:.4f} averaged over {', '.join(tasks)}.", ""]
    board = board if board is not None else pd.DataFrame()
    key = keys.final(keys.average("test"), "mean")
    if floor.get("configurations_protocol") == "cross_validation":
        lines += [f"The floor is scored on the dataset's own test split, the configurations by "
                  f"{floor.get('cv_folds', 'k')}-fold cross-validation over the pooled train and test splits: "
                  f"different clips and training sets, so the two are not compared here.", ""]
    elif key in board and board[key].notna().any():
        best = board[board[key].notna()].iloc[0]
        gap = best[key] - floor[keys.average("test")]
        lines += [f"The best configuration (`{md_cell(best.get(keys.final('name'), best['trial_id']))}`) retrained: test macro-F1 {best[key]:.4f} "
                  f"± {best.get(keys.final(keys.average('test'), 'std'), float('nan')):.4f} over seeds, "
                  f"{abs(gap):.4f} {'above' if gap > 0 else 'below'} the floor.", ""]
    if "paired/diff" in floor:
        shown = floor["paired/low"] > 0 or floor["paired/high"] < 0
        lines += [f"Paired clip by clip (the best's {int(floor['paired/seeds'])} seeds, the same test-clip resamples "
                  f"as the decisions): {floor['paired/diff']:+.4f} [{floor['paired/low']:+.4f}, "
                  f"{floor['paired/high']:+.4f}], 95% interval over seeds and test clips: "
                  + ("above the floor beyond noise." if floor["paired/diff"] > 0 and shown else
                     "below the floor beyond noise." if shown else "not shown apart from the floor."), ""]
    lines += ["| task | floor test macro-F1 |", "|---|---|"]
    lines += [f"| {t} | {floor[keys.task('test', t)]:.4f} |" for t in tasks] + [""]
    return lines

STRATEGY_COLUMNS = {f"config/{name_key(axis)}": axis for axis in STRATEGY_AXES}

AXES = (  # config column, short name, the axis's baseline value (a space without it: its commonest value)
    *((column, axis, BASELINE[axis]) for column, axis in STRATEGY_COLUMNS.items()),
    ("config/groups", "grouping", ONE_MODEL),  # all tasks in one model, else the commonest partition
    ("config/train.class_weight", "class_weight", TrainConfig.class_weight),
    ("config/model.arch", "arch", ModelConfig.arch),
    ("config/model.text_encoder", "text_encoder", ModelConfig.text_encoder),
)

def write_report(given: ReportInput, out: Path, top: int = 5) -> Path:
    """The report of the experiment `given` describes, in the folder `out` (made if missing)."""
    out.mkdir(exist_ok=True)
    metric, mode, history, runs = given.metric, given.mode, given.history, given.final_runs
    trials = given.trials
    ok = trials[(trials["status"] != "failed") & trials[metric].notna()] if metric in trials else trials.iloc[0:0]
    ranked = ok.sort_values(metric, ascending=mode == "min") if metric in ok else ok  # every trial failed: no column
    lines = [f"# Sweep report: {given.name}", "",
             f"{len(trials)} trials: {int((trials['status'] == 'finished').sum())} finished, "
             f"{int((trials['status'] == 'stopped').sum())} stopped early by ASHA, "
             f"{int((trials['status'] == 'failed').sum())} failed. Metric: `{metric}` ({mode}).", ""]
    if not ranked.empty:
        lines += [f"Best trial: `{md_cell(ranked.iloc[0]['label'])}` (trial {numbers(ranked.head(1))[0]}), "
                  f"{metric} = {ranked.iloc[0][metric]:.4f}.", ""]
    tasks = [t for t in TASKS if keys.task("test", t) in runs]
    derived = bool((given.base.get("data") or {}).get("derive_binary")) if isinstance(given.base, dict) else False
    headline = list(headline_tasks(tasks, derived))
    table = final_table(runs, tasks, headline)
    scores = RunScores(runs, headline)  # the clip resamples, computed once for the table and the front
    dominated = dominators(scores, list(table["name"])) if not table.empty else {}
    lines += _answer_section(given, scores, table, tasks, dominated)
    lines += _pareto_section(out, table, tasks, ranked, dominated)
    lines += front_section(given.objectives, given.observed, trials, out, given.reference)  # empty: one metric
    lines += _axis_study_section(given.axis_study)
    lines += pretraining_section(given.pretraining_study)
    lines += _axes_section(out, history, trials, metric, mode, given.milestones)
    lines += learning_curves(out, history, ranked, metric, top)
    lines += task_heatmap(out, ranked, top)
    lines += affinity_heatmap(out, history, ranked)
    lines += _importances_section(out, history, trials, metric, mode)
    lines += _floor_section(given.floor, given.leaderboard)
    if given.leaderboard is not None:
        lines += [f"Full ranking: [{Files.LEADERBOARD}](../{Files.LEADERBOARD}).", ""]
    write_text(out / Files.SUMMARY, "\n".join(lines))
    write_text(out / Files.SUMMARY_HTML, html_page(lines, out, f"Sweep report: {given.name}"))
    return out

def _answer_section(given: ReportInput, scores: RunScores, table: pd.DataFrame, tasks: list[str],
                    dominated: dict[str, list[str]]) -> list[str]:
    """Which configuration is best on the test split, and by how much: the race's decisions first, then the
    retrained configurations and baselines (mean ± std over seeds per task, Δm% against single-task models
    with its interval over seeds and test clips, the share of resamples in which each is on the front)."""
    if table.empty:
        return []
    decided = given.decisions
    lines = ["## Which configuration is best, and by how much", ""]
    if not decided.empty:
        lines += [f"- {r['sentence']}" for _, r in decided.iterrows()] + [""]
        lines += [family_wise(decided), ""]
    else:
        lines += ["No comparison with a baseline ran (search.baselines), so there is no decision.", ""]
    reference = "single_task" if (table["name"] == "single_task").any() else None
    if len(scores.tasks) < len(tasks):
        lines += [f"Means over tasks, the comparisons and Δm% count {', '.join(scores.tasks)}: `binary` is derived "
                  f"as the OR of the others (data.derive_binary), and counting it would weigh their information "
                  f"twice; its own F1 is in the table.", ""]
    if scores.folds:
        lines += [f"Retrained at the full budget by repeated {scores.folds}-fold cross-validation, one repeat per "
                  f"seed the search never used ({_seed_counts(table)}): the clips of the train and test splits "
                  f"dealt into {scores.folds} folds anew each repeat, each fold tested once by a run trained on "
                  f"the others; the val split, whose scores chose the configurations, is in no test fold "
                  f"(macro-F1 per fold, mean ± std over folds and repeats). Comparisons pair runs by repeat and "
                  f"fold; intervals are Nadeau and Bengio's corrected resampled t, for training sets that "
                  f"overlap; `dominated by` names the configurations shown better on every task (one-sided tests "
                  f"on each task, all rejecting, Holm over the pairs).", ""]
    else:
        lines += [f"Retrained at the full budget on seeds the search never used ({_seed_counts(table)}), evaluated "
                  f"on the test split (macro-F1, mean ± std over seeds). Intervals hold seed noise and test-set "
                  f"sampling (clips resampled); `dominated by` names the configurations shown better on every "
                  f"task (one-sided tests on each task, all rejecting, Holm over the pairs).", ""]
    protocol = _protocols(given.baselines, given.tuning)
    head = "| configuration | role | avg | " + " | ".join(tasks) + " | Δm% vs single-task [95%] | dominated by |"
    lines += [head, "|" + "---|" * (5 + len(tasks))]
    for _, r in table.iterrows():
        cells = [_pm(r, keys.average("test"))] + [_pm(r, keys.task("test", t)) for t in tasks]
        dm = "-"
        if reference and r["name"] != reference:
            e = scores.delta_m(r["name"], reference)
            low, high = e.interval()
            dm = f"{e.value:+.2f} [{low:+.2f}, {high:+.2f}]" if np.isfinite(low) else f"{e.value:+.2f}"
        role = r["role"] + (f" ({protocol[r['name']]})" if r["name"] in protocol else "")
        by = dominated.get(r["name"])
        lines.append(f"| {md_cell(r['name'])} | {role} | " + " | ".join(cells) + f" | {dm} | "
                     + (md_cell(", ".join(by)) if by else "none" if by is not None else "-") + " |")
    return lines + [""]

def family_wise(decisions: pd.DataFrame) -> str:
    """How the decisions keep their error rate: Holm over the hypotheses of each look, alpha spent over looks."""
    n = len(decisions)
    tests = int(decisions["tests"].max()) if "tests" in decisions and decisions["tests"].notna().any() else n
    looks = int(decisions["look"].max()) if "look" in decisions and decisions["look"].notna().any() else 1
    margin = decisions["margin"].max() if "margin" in decisions and decisions["margin"].notna().any() else 0
    what = (f"{n} comparison{'s' * (n != 1)}, each tested for a difference and for equivalence within "
            f"±{margin:g} ({tests} hypotheses)" if margin and margin > 0 else f"{n} comparison{'s' * (n != 1)}")
    return (f"Family-wise error at most 5% over all of these: Holm's procedure over {what} at each look, and "
            f"the 5% spent across the race's looks (power family, rho 2; {looks} look{'s' * (looks != 1)} ran), "
            f"so the looks and comparisons together stay within 5% by the union bound.")

def _seed_counts(table: pd.DataFrame) -> str:
    counts = table[keys.final("seeds")].astype(int)
    return f"{counts.min()} seeds each" if counts.min() == counts.max() else f"{counts.min()} to {counts.max()} seeds"

def _protocols(baselines: list[str], tuning: dict[str, dict]) -> dict[str, str]:
    """Each baseline's knobs: its own search (search.tune_baselines) or the best configuration's."""
    return {b: (f"own tuning, {tuning[b]['trials']} trials" if b in tuning else "the best configuration's knobs")
            for b in baselines}

def _pm(row, key: str) -> str:
    mean, std = row.get(keys.final(key, "mean"), np.nan), row.get(keys.final(key, "std"), np.nan)
    return f"{mean:.3f} ± {std:.3f}" if pd.notna(std) else f"{mean:.3f}"

def _pareto_section(out: Path, final: pd.DataFrame, tasks: list[str], ranked: pd.DataFrame,
                    dominated: dict[str, list[str]]) -> list[str]:
    """Parallel coordinates of the per-task F1: the retrained configurations' test means, solid where no other
    is shown better on every task (`search.analysis.decision.dominated_by`); without a final phase, the trials'
    validation scores and the front of their values."""
    if tasks and not final.empty and dominated:
        table = final.set_index("name")
        cols, what = [keys.final(keys.task("test", t), "mean") for t in tasks], "test macro-F1 (mean over seeds)"
        solid = {n: not dominated.get(n) for n in table.index}
        label = {n: f"{n}{' (dominated by ' + ', '.join(dominated[n]) + ')' if dominated.get(n) else ''}"
                 for n in table.index}
    else:
        tasks = [t for t in TASKS if keys.task("val", t) in ranked]
        table, cols, what = ranked.set_index("label").head(15), [keys.task("val", t) for t in tasks], "validation macro-F1"
        if len(tasks) < 2 or len(table) < 2:
            return []
        front = pareto_front(table, cols)
        solid = {n: bool(front[n]) for n in table.index}
        label = {n: f"{n}{' (front)' if solid[n] else ''}" for n in table.index}
    if len(tasks) < 2 or len(table) < 2:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, row in table.iterrows():
        ax.plot(tasks, row[cols].to_numpy(float), marker="o", lw=2 if solid[name] else 1,
                ls="-" if solid[name] else "--", alpha=1 if solid[name] else 0.6, label=label[name])
    ax.set_ylabel(what)
    ax.set_title("per-task trade-off (dashed: another is shown better on every task)" if dominated else
                 "per-task trade-off (solid: on the Pareto front)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if dominated:
        shown = [f"`{n}` by {', '.join(f'`{y}`' for y in ys)}" for n, ys in dominated.items() if ys]
        lines = [f"Shown dominated (another configuration better on every task beyond the noise of seeds and "
                 f"test clips; one-sided tests per task, Holm over the pairs): {'; '.join(shown) or 'none'}. "
                 f"The others form the front as far as the data can tell; equally good configurations all "
                 f"stay on it."]
    else:
        names = ", ".join(f"`{n}`" for n in table.index if solid[n])
        lines = [f"On the front ({what}; no other trial is at least as good on every task and better on one): {names}."]
    return ["## Pareto front of the tasks", ""] + lines + [""] + save_figure(fig, out, "pareto.png", "Pareto front")

def _axes_section(out: Path, history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str,
                  milestones: list[int]) -> list[str]:
    """Each strategy axis at every ASHA rung (one table per rung: the trials that reached it, failed ones at
    the worst score), with effects against the axis's baseline value; a value whose strategy has not acted
    yet by that budget is marked. The plot is at the last rung every trial reached."""
    budget, scores = matched_budget(history, trials, metric, mode)
    if scores.empty:
        return []
    table = trials.set_index("trial_id").loc[scores.index].assign(score=scores)
    failed = int((trials["status"] == "failed").sum())
    lines = ["## Strategy axes, rung by rung", "",
             f"At each ASHA rung, every trial that reached it with its best `{metric}` within that many epochs; "
             f"the {failed} failed trial(s) count at the rung's worst score. Differences are against the axis's "
             f"baseline value with a 95% Welch t interval where both sides have 2+ trials; the other axes vary "
             f"too, so these are marginal effects. † marks a value whose strategy had not yet acted by that "
             f"budget in any of its trials (DWA before its third epoch, a curriculum before its assessment, DSG "
             f"before its first stop): its row says nothing about the method.", ""]
    for column, name, baseline in AXES:
        if column not in trials or trials[column].nunique() < 2:
            continue
        labels = _readable(table[column])
        base = baseline if column != "config/groups" else _one_group_label(labels)
        if base not in set(labels):
            base = labels.mode().iloc[0]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        strip_plot(ax, table.assign(**{column: labels}), column, "score", f"{metric} by {name}, after {budget} epoch(s)")
        ax.set_ylabel(f"best {metric} within {budget} epoch(s)")
        lines += [f"### {name}", ""] + save_figure(fig, out, f"by_{name}.png", f"{metric} by {name}")
        for rung in milestones:
            lines += _rung_table(history, trials, metric, mode, rung, column, name, base)
    return lines

def _rung_table(history, trials, metric, mode, rung: int, column: str, name: str, base: str) -> list[str]:
    scores, failed = scores_at(history, trials, metric, mode, rung)
    if scores.empty:
        return []
    at = trials.set_index("trial_id").loc[scores.index]
    labels = _readable(at[column])
    silent = {v for v in labels.unique() if not any(_acted(at.loc[tid], column, history, rung)
                                                      for tid in labels.index[labels == v])}
    lines = [f"At epoch {rung}: {len(scores) - failed} trial(s) reached it, {failed} failed.", "",
             f"| {name} | trials | mean | difference vs {md_cell(base)} [95% interval] |", "|---|---|---|---|"]
    for e in axis_effects(scores, labels, base):
        interval = f"[{e.low:+.4f}, {e.high:+.4f}]" if np.isfinite(e.low) else "(too few trials)"
        diff = "baseline" if e.value == base else f"{e.diff:+.4f} {interval}"
        mark = " †" if e.value in silent else ""
        lines.append(f"| {md_cell(e.value)}{mark} | {e.n} | {e.mean:.4f} | {diff} |")
    return lines + [""]

def _acted(row: pd.Series, column: str, history: pd.DataFrame, budget: int) -> bool:
    """Whether the trial's strategy on this axis had changed its training within `budget` epochs."""
    axis = STRATEGY_COLUMNS.get(column)
    if axis is None:
        return True  # a grouping or a class weight acts from the first step
    cls = REGISTRIES[axis].get(str(row[column]))
    if cls is None:
        return True
    prefix = column[: -len("name")]
    params = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix) and k != column and pd.notna(v)}
    first = cls.acts_from(params)
    if first is not None:
        return first < budget
    h = history[(history["trial_id"] == row.name) & (history["training_iteration"] <= budget)]
    active = [c for c in h.columns if c.startswith("strategy/") and c.endswith("/active")]
    return bool(len(h) and active and (h[active] < 1).to_numpy().any())

def _readable(values: pd.Series) -> pd.Series:
    """A `config/` column's values as text; a partition as in the configuration labels, `bin+gor/mat+sla+sar`."""
    if values.name != "config/groups":
        return values.astype(str)
    return values.map(lambda v: groups_label(from_cell("groups", v)) if isinstance(v, str) else str(v))

def _axis_study_section(table: pd.DataFrame) -> list[str]:
    """search.axis_study: each axis value with the others held at the best configuration's, full budget."""
    if table.empty:
        return []
    lines = ["## Axis study: one factor at a time around the best configuration", "",
             "The best configuration retrained with one axis changed to each value of the space (the other axes "
             "held fixed), at the full budget with the final phase's seeds; differences in test macro-F1 against "
             "the axis's baseline value, paired by seed, with 95% t intervals.", ""]
    for axis, rows in table.groupby("axis", sort=False):
        base = rows["baseline"].iloc[0]
        lines += [f"| {axis} | seeds | test macro-F1 | difference vs {md_cell(base)} [95% interval] |", "|---|---|---|---|"]
        for _, r in rows.iterrows():
            mark = " (best)" if r["best"] else ""
            diff = "baseline" if r["value"] == base else (
                f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]" if pd.notna(r["low"]) else f"{r['diff']:+.4f}")
            lines.append(f"| {md_cell(r['value'])}{mark} | {r['seeds']} | {r['mean']:.4f} | {diff} |")
        lines.append("")
    return lines

def pretraining_section(table: pd.DataFrame) -> list[str]:
    """The axis study's `pretrain.tasks` axis per downstream task: each pretraining option's effect on each
    task's test F1, paired by seed against no pretraining (search.run.axis_study.pretraining_effects_table)."""
    if table.empty:
        return []
    tasks = list(dict.fromkeys(table["task"]))
    lines = ["## Pretraining: the effect of each pretraining option on each task", "",
             "The best configuration retrained with each value of `pretrain.tasks` (the other axes held fixed), "
             "with the final phase's seeds; each cell is the difference in the task's test F1 against no "
             "pretraining, paired by seed, with its 95% interval over seeds and test clips. **Bold**: an effect "
             "Holm's procedure keeps at 5% over every option and task together (one cell at 95% alone, of many, "
             "would show some effect by chance).", "",
             "| pretraining | seeds | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    sure = []
    for value, rows in table.groupby("value", sort=False):
        cells = []
        for t in tasks:
            r = rows[rows["task"] == t]
            if r.empty:
                cells.append("")
                continue
            r = r.iloc[0]
            text = f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" if pd.notna(r["low"]) else f"{r['diff']:+.3f}"
            excludes = bool(r["shown"]) if "shown" in r else pd.notna(r["low"]) and (r["low"] > 0 or r["high"] < 0)
            cells.append(f"**{text}**" if excludes else text)
            if excludes:
                sure.append(f"{value} {'helps' if r['diff'] > 0 else 'hurts'} {t}")
        lines.append(f"| {md_cell(str(value))} | {int(rows['seeds'].iloc[0])} | " + " | ".join(cells) + " |")
    lines += ["", ("Shown with Holm over every option and task: " + "; ".join(sure) + ".") if sure else
              "No effect survives Holm over every option and task: at these seeds no pretraining option is shown "
              "to help or hurt any task.", ""]
    return lines

def _one_group_label(labels: pd.Series) -> str:
    """The grouping axis's baseline: all tasks in one model, else the commonest partition."""
    single = [v for v in labels.unique() if "/" not in v]
    return single[0] if single else labels.mode().iloc[0]

def _importances_section(out: Path, history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str) -> list[str]:
    importances, n, budget = matched_importances(history, trials, metric, mode)
    if not importances:
        return ["## Parameter importances", "",
                "Parameter importances need at least two trials with a score and a parameter that varies.", ""]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(importances) + 1.5))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n_] for n_ in names])
    ax.set_xlabel("importance (Optuna fANOVA)")
    ax.set_title(f"parameter importances, {n} trials after {budget} epoch(s)")
    return ["## Parameter importances", "",
            f"Optuna's fANOVA fitted on all {n} trials that have a score (those ASHA stopped early included), each "
            f"with its best `{metric}` within its first {budget} epoch(s), the budget every one of them reached. "
            f"Parameters that only some trials have (a method's own knobs) are left out.", ""] + \
        save_figure(fig, out, "param_importances.png", "parameter importances")

def matched_importances(history: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str
                        ) -> tuple[dict[str, float], int, int]:
    """(each parameter's fANOVA importance, how many trials it was fitted on, at how many epochs). Optuna's own
    study holds only the trials that finished: the ones ASHA stopped are left out, and with them most of what
    separates the weak values from the strong. Here every trial counts, at the budget all of them reached
    (`stats.matched_budget`), in a fresh in-memory study."""
    budget, scores = matched_budget(history, trials, metric, mode)
    scores = scores.dropna()
    if len(scores) < 2:
        return {}, len(scores), budget
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    table = trials.set_index("trial_id").loc[scores.index]
    params: dict[str, tuple] = {}
    for column in [c for c in table.columns if c.startswith("config/")]:
        values = table[column]
        if values.isna().any() or values.astype(str).nunique() < 2:
            continue  # a knob of one method only, or a constant
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            lo, hi = float(values.min()), float(values.max())
            params[column[len("config/"):]] = (FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 10),
                                               values.astype(float))
        else:
            labels = _readable(values)
            params[column[len("config/"):]] = (CategoricalDistribution(sorted(labels.unique())), labels)
    if not params:
        return {}, len(scores), budget
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for tid, value in scores.items():
        study.add_trial(optuna.trial.create_trial(
            params={name: (float(v[tid]) if isinstance(d, FloatDistribution) else v[tid]) for name, (d, v) in params.items()},
            distributions={name: d for name, (d, _) in params.items()}, value=float(value)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as exc:  # a degenerate fit (every score equal, ...)
        log.info("no parameter importances: %s", exc)
        return {}, len(scores), budget
    return dict(found), len(scores), budget


def fresh_folder(exp_dir: Path) -> Path:
    """A new folder in the experiment folder to write a report into: new, so nothing in it leads elsewhere."""
    return Path(tempfile.mkdtemp(prefix=".report-", dir=exp_dir))


def move_in(fresh: Path, out: Path) -> None:
    """The report written in `fresh` becomes `out`, the old one removed (a link inside it is removed, never
    followed)."""
    fresh.chmod(0o755)
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    fresh.rename(out)


def write_report_folder(given: ReportInput, exp_dir: Path) -> Path:
    """The report in `exp_dir/report`, written in a new folder and then moved in place (the launcher's end):
    a link at `report` is refused (CorruptFile), one inside it replaced, never written through."""
    out = exp_dir / Files.REPORT
    check_output_folder(out)
    fresh = fresh_folder(exp_dir)
    try:
        write_report(given, fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    move_in(fresh, out)
    return out
