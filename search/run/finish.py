"""The step every experiment ends in, whatever its phases: the tables (leaderboard with the final
retraining, baselines and Pareto columns), the bag-of-words floor, the report, the parent run's metrics and
artifacts, and the parent run closed (FINISHED, or KILLED when a phase was interrupted)."""
from __future__ import annotations

import json
import logging
import math
import re
import time

import numpy as np
import pandas as pd

from mtl_core import keys
from mtl_core.bow import bag_of_words_floor
from mtl_core.prepare import cache_root, data_root
from search.tune.experiment import Experiment
from search.io.files import Files
from search.io.folder_write import write_csv, write_text
from search.report.inputs import observed
from search.run.phases import Outcome
from search.analysis.decision import RunScores, decision_table
from search.analysis.reference import validation_reference
from search.analysis.decision import dominators
from search.report.sections import write_report_folder
from search.report.inputs import ReportInput
from search.analysis.results import compute_saved, leaderboard, print_leaderboard, write_parquet
from search.tune.progress import duration
from search.io.signals import settle, terminated
from search.analysis.pareto import pareto_front
from search.analysis.stats import final_table
from search.space.rungs import rungs
from search.tracking.tracker import ui_hint, ui_link

log = logging.getLogger("search.run.finish")


def finish(exp: Experiment, out: Outcome) -> int:
    """Returns the launcher's exit code."""
    s, tasks, headline = exp.spec.search, exp.spec.config.tasks, exp.spec.config.headline_tasks
    table = final_table(out.final_runs, tasks, headline)
    dominated = dominators(RunScores(out.final_runs, headline), list(table["name"])) if not table.empty else {}
    board = with_final(leaderboard(out.trials, s.metric, s.mode), table, tasks, dominated)
    write_parquet(out.history, exp.dir / Files.HISTORY)
    write_parquet(out.trials, exp.dir / Files.TRIALS)
    write_csv(board, exp.dir / Files.LEADERBOARD)
    if out.interrupted:
        exp.tracker.call("set_terminated", status="KILLED")
        exp.tracker.close()
        how = "stopped by SIGTERM" if terminated() else "interrupted"
        print(f"{how} with {len(out.trials)} of {out.expected} trials started; {exp.resume_hint()}",
              flush=True)
        return 143 if terminated() else 130
    floor = _bow_floor(exp, out.final_runs, table)
    if floor:
        out.artifacts.append(exp.dir / Files.FLOOR)
    saved = compute_saved(out.trials, out.expected, exp.max_t)
    print_leaderboard(board, s.metric)
    print(f"epochs run {saved['epochs_run']} of {saved['epochs_budget']} "
          f"({saved['compute_saved_frac']:.0%} saved by {'MO-ASHA' if s.multi.objectives else 'ASHA'})", flush=True)
    exp.tracker.log_metrics({**saved, **_headline(board, out.comparisons, s.metric), **_axis_metrics(out.axis_study)})
    try:
        report = write_report_folder(report_input(exp, out, board, floor), exp.dir)
        exp.tracker.call("log_artifacts", str(report), Files.REPORT)
    except Exception as exc:  # a plot must never lose the sweep's results
        log.warning("report failed: %s", exc)
    summary = exp.dir / Files.REPORT / Files.SUMMARY
    exp.tracker.call("set_tag", "mlflow.note.content", answer_markdown(board, table, out.comparisons, s.metric))
    for path in [*out.artifacts, *(exp.dir / n for n in (Files.LEADERBOARD, Files.TRIALS, Files.HISTORY))]:
        exp.tracker.call("log_artifact", str(path))
    settle()  # finished from here on: a signal now changes nothing (no KILLED after FINISHED, no exit 143)
    exp.tracker.call("set_terminated", status="FINISHED")
    exp.tracker.close()
    print(f"results in {exp.dir} (other libraries' messages: {exp.dir / Files.LOG})", flush=True)
    experiment_id = exp.tracker.experiment_id()  # never a wait on a server that is down
    print(ui_hint(exp.tracker.uri, experiment_id), flush=True)
    print("", flush=True)
    for line in conclusion(board, table, out.comparisons, s.metric):
        print(line, flush=True)
    print(f"  details: {summary} (with the plots inside: {summary.with_suffix('.html').name})", flush=True)
    print(f"  MLflow: {ui_link(exp.tracker.uri, experiment_id, exp.tracker.parent_run_id)}", flush=True)
    print(f"  total time: {duration(time.time() - out.started)}", flush=True)
    failed = int((out.trials["status"] == "failed").sum()) if not out.trials.empty else 0
    return 1 if len(out.trials) and failed == len(out.trials) else 0


def with_final(board: pd.DataFrame, table: pd.DataFrame, tasks, dominated: dict[str, list[str]] | None = None
               ) -> pd.DataFrame:
    """The leaderboard with the final retraining: retrained trials get their test columns, baselines (and
    candidates that were no trial of their own) are added as named rows; `pareto` marks the trials on the
    front of the per-task validation F1, `final/dominated_by` names the retrained configurations shown
    better than this one on every task of the test split (empty: none; `search.analysis.decision.dominated_by`), not a
    front of means, which noise alone fills."""
    board = board.copy()
    if not board.empty:
        board["role"] = "search"
        board["pareto"] = pareto_front(board, [keys.task("val", t) for t in tasks]) if all(
            keys.task("val", t) in board for t in tasks) else False
    if table.empty:
        return board
    table = table.rename(columns={"name": keys.final("name")})
    known = table["trial_id"].isin(board.get("trial_id", pd.Series(dtype=str)))
    if known.any():
        board = board.merge(table[known].drop(columns="role"), on="trial_id", how="left")
        board.loc[board[keys.final("name")].notna(), "role"] = "final"
    extra = table[~known].assign(trial_id=lambda t: t[keys.final("name")], status="retrained")
    board = pd.concat([board, extra], ignore_index=True)
    if "rank" in board:  # the added rows have no search rank: an empty cell, and the others stay integers
        board["rank"] = board["rank"].astype("Int64")
    board[keys.final("dominated_by")] = board[keys.final("name")].map({n: ", ".join(ys) for n, ys in (dominated or {}).items()})
    return board


def _headline(board: pd.DataFrame, comparisons: list, metric: str) -> dict[str, float]:
    """The parent run's summary metrics: the best trial, each retrained configuration, each decision."""
    out = {}
    ok = board[board.get("status", pd.Series(dtype=str)) != "failed"] if not board.empty else board
    if not ok.empty and metric in ok and np.isfinite(ok.iloc[0].get(metric, np.nan)):
        out[f"best/{metric}"] = float(ok.iloc[0][metric])
    retrained = board[board[keys.final("name")].notna()] if keys.final("name") in board else board.iloc[0:0]
    for _, row in retrained.iterrows():
        name = metric_name(str(row[keys.final("name")]))
        for key in (keys.final(keys.average("test"), "mean"), keys.final(keys.average("test"), "std"),
                    keys.final("delta_m")):
            if key in row and pd.notna(row[key]):
                out[keys.final(f"{name}/{key.removeprefix(keys.FINAL)}")] = float(row[key])
    for c in comparisons:
        low, high = c.estimate.interval()
        key = f"verdict/{metric_name(c.other)}"
        out.update({f"{key}/diff": c.estimate.value, f"{key}/low": low, f"{key}/high": high,
                    f"{key}/seeds": float(c.estimate.n), f"{key}/decided": float(c.decided)})
    return out


def decision_lines(comparisons: list) -> list[str]:
    """One sentence per comparison of the best configuration with another entry (search.analysis.decision)."""
    return [c.sentence(len(comparisons)) for c in comparisons]


def _mean_sd(row, key: str = keys.average("test")) -> str:
    mean, sd = row.get(keys.final(key, "mean"), np.nan), row.get(keys.final(key, "std"), np.nan)
    return f"{mean:.3f} ± {sd:.3f}" if pd.notna(sd) else f"{mean:.3f}"


def conclusion(board: pd.DataFrame, table: pd.DataFrame, comparisons: list, metric: str) -> list[str]:
    """The console's last word: the best configuration by name, what it beats and what it does not with the
    final phase's statistics (test macro-F1 over seeds the search never used; 95% intervals, family-wise
    over the comparisons), or, without a final phase, the best trial on validation (a multi-objective search:
    its validation front and the best on it by the metric)."""
    ok = board[board["status"].isin(["finished", "stopped"])] if "status" in board else board.iloc[0:0]
    if table.empty:
        if ok.empty or metric not in ok or ok[metric].isna().all():
            return ["answer: no trial produced a score"]
        no_decision = "no final retraining on the test split (search.final_k 0), so no decision"
        if "front" not in ok:
            best = ok.iloc[0]
            return [f"answer: the best trial is {_name(best)} ({metric} {best[metric]:.4f} on validation); {no_decision}"]
        # a multi-objective search: its leaderboard starts with an end of the front, not the best by the metric
        front = ok[(ok["front"] == ok["front"].min()) & ok[metric].notna()]
        front = front if not front.empty else ok[ok[metric].notna()]
        best = front.loc[front[metric].idxmax() if keys.direction(metric) == "max" else front[metric].idxmin()]
        names = ", ".join(_name(r) for _, r in front.head(5).iterrows()) + (", ..." if len(front) > 5 else "")
        return [f"answer: the validation front holds {len(front)} trial{'s' * (len(front) != 1)} ({names}); the "
                f"highest {metric} on it is {_name(best)}'s ({best[metric]:.4f}); {no_decision}"]
    rows = table.set_index("name")
    best = comparisons[0].best if comparisons else str(table[table["role"] == "final"]["name"].iloc[0]) \
        if (table["role"] == "final").any() else str(table["name"].iloc[0])
    seeds = int(rows.loc[best, keys.final("seeds")])
    over = (f"{seeds} repeat{'s' * (seeds != 1)} of {int(rows.loc[best, keys.final('folds')])}-fold cross-validation"
            if keys.final("folds") in rows else f"{seeds} seeds the search never used")
    lines = [f"answer: the best configuration is {best}: test macro-F1 {_mean_sd(rows.loc[best])} over {over}"]
    for c in comparisons:
        other = f"{c.other} ({_mean_sd(rows.loc[c.other])})" if c.other in rows.index else c.other
        verb = {"beats": "beats", "equivalent": "is equivalent to"}.get(c.status, "does not beat")
        lines.append(f"  {verb} {other}: {_verdict(c, len(comparisons))}")
    if not comparisons:
        lines.append("  no baseline was retrained beside it (search.baselines), so there is no decision")
    top = table.sort_values(keys.final(keys.average("test"), "mean"), ascending=False).iloc[0]
    if top["name"] != best:
        lines.append(f"  the highest test mean is {top['name']}'s ({_mean_sd(top)}), not the searched configuration's")
    return lines


def _name(row) -> str:
    return str(row.get("label", row["trial_id"]))


def _verdict(c, comparisons: int) -> str:
    """`+0.0500 [+0.0100, +0.0900] over 3 seeds, decided`: the paired difference in test macro-F1 (best minus
    other, 95% interval over seeds and test clips) and what the race made of it."""
    e = c.estimate
    low, high = e.interval()
    diff = f"{e.value:+.4f} [{low:+.4f}, {high:+.4f}] over {e.count()}" if e.n >= 2 else f"{e.value:+.4f} ({e.count()})"
    if c.status in ("beats", "worse"):
        return f"{diff}, decided ({'better' if c.status == 'beats' else 'worse'})"
    if c.status == "equivalent":
        return f"{diff}, decided (equivalent within ±{c.margin:g})"
    if c.status == "inconclusive":
        return f"{diff}, inconclusive ({'fewer than 3 shared seeds' if e.n < 3 else 'no spread over seeds'})"
    cost = c.cost(comparisons)
    power = f"power {cost['power']:.0%}" if math.isfinite(cost["power"]) else "power unknown"
    unit = f"repeats of {e.folds}-fold CV" if e.folds else "seeds"
    clips = f"; about {cost['clips_needed']} test clips would" if cost["clips_needed"] else ""
    if not cost["seeds_could_decide"]:
        more = f"no number of {unit} would decide it{clips}"
    elif cost["seeds_needed"] and cost["seeds_needed"] <= e.n:
        more = "a single look at these seeds would decide it; the race's earlier looks spent part of its 5%"
    elif cost["seeds_needed"]:
        need = math.ceil(cost["seeds_needed"] / e.folds) if e.folds else cost["seeds_needed"]
        more = f"about {need} {unit} per side would decide it with 80% power"
    else:
        more = f"more {unit} alone are unlikely to decide it{clips}"
    return f"{diff}, undecided ({power}; {more})"


def answer_markdown(board: pd.DataFrame, table: pd.DataFrame, comparisons: list, metric: str) -> str:
    """The parent run's description (`mlflow.note.content`): the console's answer, and the retrained
    configurations and baselines as a table (test macro-F1, mean ± std over seeds, and the verdict)."""
    lines = conclusion(board, table, comparisons, metric)
    text = [f"**{lines[0]}**", ""] + [f"- {line.strip()}" for line in lines[1:]]
    if table.empty:
        return "\n".join(text)
    verdict = {c.other: c for c in comparisons}
    text += ["", "| configuration | role | test macro-F1 | seeds | against the best [95%] |", "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        c = verdict.get(r["name"])
        against = "-" if c is None else f"{c.status} {c.estimate.value:+.4f}" + (
            " [{:+.4f}, {:+.4f}]".format(*c.estimate.interval()) if c.estimate.n >= 2 else "")
        name = str(r["name"]).replace("|", "\\|")
        text.append(f"| {name} | {r['role']} | {_mean_sd(r)} | {int(r[keys.final('seeds')])} | {against} |")
    if comparisons:
        text += ["", "The decisions (test split, seeds the search never used, 95% family-wise):", ""]
        text += [f"- {line}" for line in decision_lines(comparisons)]
    return "\n".join(text)


def metric_name(text: str) -> str:
    """A name MLflow accepts as part of a metric key (letters, digits, `_-./ `): `config 0: a+b|c` -> `config_0_a_b/c`."""
    return re.sub(r"[^A-Za-z0-9_\-./]+", "_", text.replace("|", "/"))[:200]


def report_input(exp: Experiment, out: Outcome, board: pd.DataFrame, floor: dict[str, float]) -> ReportInput:
    """What the report is written from, as the phases left it (nothing read back from the folder but Tune's
    record of a multi-objective search's results, in the order they came)."""
    s = exp.spec.search
    objectives = list(s.multi.objectives)
    return ReportInput(
        name=exp.name, metric=s.metric, mode=s.mode, milestones=rungs(s.grace_period, s.reduction_factor, exp.max_t),
        base=exp.spec.base, baselines=list(s.baselines.names), trials=out.trials, history=out.history, leaderboard=board,
        final_runs=out.final_runs, decisions=decision_table(out.comparisons), axis_study=out.axis_study,
        pretraining_study=out.pretraining_study, tuning=out.tuning, floor=floor, objectives=objectives,
        observed=observed(exp.dir, objectives) if objectives else pd.DataFrame(),
        reference=validation_reference(objectives, exp.spec.config) if objectives else None)


def _axis_metrics(table: pd.DataFrame) -> dict[str, float]:
    if table.empty:
        return {}
    return {f"axis/{r['axis']}/{metric_name(str(r['value']))}/diff": float(r["diff"])
            for _, r in table.iterrows() if pd.notna(r["diff"])}


def _bow_floor(exp: Experiment, final_runs: pd.DataFrame | None = None, table: pd.DataFrame | None = None
               ) -> dict[str, float]:
    """The bag-of-words floor on the experiment's data (seconds): bow_floor.json, parent-run metrics; {} when
    it could not be computed. With the final phase's runs, also the best configuration minus the floor,
    paired clip by clip over the same resamples (`paired/diff`, `paired/low`, `paired/high`, `paired/seeds`)."""
    cfg = exp.spec.config
    predictions: dict = {}
    try:
        files = {"train": cfg.data.train_file, "val": cfg.data.val_file, "test": cfg.data.test_file}
        floor = bag_of_words_floor(data_root(cfg), cfg.tasks, derive_binary=cfg.data.derive_binary,
                                   cache_dir=cache_root(cfg), files=files, predictions=predictions)
    except Exception as exc:  # the floor is context, never a reason to lose the sweep's results
        log.warning("bag-of-words floor failed: %s", exc)
        return {}
    if final_runs is not None and table is not None and not table.empty:
        best = str(table["name"].iloc[0])
        paired = RunScores(final_runs, cfg.headline_tasks).against_fixed(best, predictions)
        if paired is not None and paired.n >= 2:
            low, high = paired.interval()
            floor.update({"paired/name": best, "paired/diff": paired.value, "paired/low": low, "paired/high": high,
                          "paired/seeds": paired.n})
    folds = exp.spec.search.final.cv_folds
    if folds:  # the floor is scored on the test split, the configurations over folds: not the same clips
        floor.update({"protocol": "test_split", "configurations_protocol": "cross_validation", "cv_folds": folds})
    path = exp.dir / Files.FLOOR
    write_text(path, json.dumps(floor, indent=2))
    exp.tracker.log_metrics({f"floor/bow/{k}": float(v) for k, v in floor.items() if k.startswith(("test/", "paired/d"))})
    print(f"bag-of-words floor (TF-IDF + logistic regression on the text): test/avg_f1 {floor[keys.average('test')]:.4f}"
          + (f" on the dataset's test split (the configurations: {folds}-fold cross-validation, not compared)"
             if folds else ""), flush=True)
    return floor
