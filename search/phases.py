"""The phases of an experiment, per grouping mode, and what each hands on to the next.

    mode         phases                                       the leaderboard's rows
    search       search -> final                              the searched trials
    exhaustive   group -> score -> final                      the group trials
    affinity     affinity -> tag -> final                     the trained TAG proposals
    both         group -> score -> affinity -> tag -> final   the group trials

Every Tune phase is built by `search.tuner.build_tuner`. Each phase that ranks configurations adds
`Candidate`s; `final` retrains the best `final_k` of them with `final_seeds` seeds, and the baselines,
on the test split. Every mode then ends in the same finish step (`search.finish`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mtl_core import keys
from mtl_core.grouping import tag_partitions
from search.axis_study import AXIS_STUDY_FILE, axis_design, axis_effects_table, axis_values
from search.baselines import baseline_overrides
from search.experiment import Experiment
from search.groupings import distinct_configs, group_trials, score_table, summarise
from search.results import collect, error_line, leaderboard, trial_id_of, write_parquet
from search.signals import fit_interrupted
from search.space import partition_label, sample_configs
from search.tracking import close_orphans
from search.trial import TrialMeta, meta_of, trial_entry
from search.tuner import build_tuner, keep_latest_checkpoints


@dataclass
class Candidate:
    """A configuration the final phase may retrain: its name there, its overrides, its validation score."""

    name: str
    overrides: dict[str, Any]
    score: float
    trial_id: str | None = None  # the leaderboard row it came from, if any


@dataclass
class Outcome:
    """What the phases of one experiment have produced so far."""

    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the leaderboard's trials (one row each)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # their metrics per epoch
    expected: int = 0  # how many trials that phase should have ended with
    configs: list[dict] = field(default_factory=list)  # strategy configurations of the grouping modes
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # every partition's exhaustive score
    measured: list = field(default_factory=list)  # the affinity runs' results
    candidates: list[Candidate] = field(default_factory=list)
    final_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per retrained (configuration, seed)
    artifacts: list[Path] = field(default_factory=list)  # files for the parent run
    interrupted: bool = False


def _fit(exp: Experiment, phase: str, trials: list[dict] | None = None, **kwargs):
    tuner, expected = build_tuner(exp, phase, trials, **kwargs)
    results = tuner.fit()
    # Ctrl-C (or SIGTERM) makes fit() return normally with partial results: count what really ended
    interrupted = fit_interrupted() or results.num_terminated + results.num_errors < expected
    if not interrupted:
        keep_latest_checkpoints(results)  # one checkpoint per trial on disk, not one per epoch
    return results, expected, interrupted


def _rank(exp: Experiment, out: Outcome, phase: str, results, expected: int) -> None:
    """The phase whose trials make the leaderboard: its tables, and (on --resume) its orphaned runs closed."""
    s = exp.spec.search
    out.history, out.trials = collect(results, s.metric, s.mode, exp.max_t)
    out.expected = expected
    if exp.resume:
        close_orphans(exp.tracker.uri, exp.name, exp.tracker.parent_run_id, phase, set(out.trials["trial_id"]))


def search(exp: Experiment, out: Outcome) -> None:
    """Optuna proposes, ASHA stops the weak; the best trials become the final phase's candidates."""
    results, expected, out.interrupted = _fit(exp, "search")
    _rank(exp, out, "search", results, expected)
    if out.interrupted:  # no candidates from a partial search (a trial stopped before its first result has no config)
        return
    overrides = {trial_id_of(r): r.config["trial"]["overrides"] for r in results if r.config}
    board = leaderboard(out.trials, exp.spec.search.metric, exp.spec.search.mode)
    for _, row in board[board["status"] != "failed"].iterrows():
        out.candidates.append(Candidate(f"rank {row['rank']}", overrides[row["trial_id"]],
                                        float(row[exp.spec.search.metric]), row["trial_id"]))


def _strategy_configs(exp: Experiment, out: Outcome) -> list[dict]:
    """The distinct strategy configurations a grouping mode trains groups with (`groups` dropped)."""
    if not out.configs:
        out.configs = distinct_configs(sample_configs(exp.spec, exp.spec.search.num_samples))
    return out.configs


def group(exp: Experiment, out: Outcome) -> None:
    """Every non-empty group of tasks, once per sampled strategy configuration, at the full budget."""
    spec = exp.spec
    grid = [trial_entry(overrides, TrialMeta("group", config=i), spec.trial_config(overrides))
            for i, overrides in group_trials(_strategy_configs(exp, out), spec.config.tasks)]
    print(f"exhaustive groupings: {len(grid)} group trials", flush=True)
    results, expected, out.interrupted = _fit(exp, "group", grid)
    _rank(exp, out, "group", results, expected)


def score(exp: Experiment, out: Outcome) -> None:
    """Every partition's score from the group trials (no training): groupings.csv, selection.csv."""
    tasks = exp.spec.config.tasks
    ok = out.trials[out.trials["status"] != "failed"].copy()
    ok["group"] = ok["config/tasks"].map(lambda v: "+".join(json.loads(v) if isinstance(v, str) else v))
    ok["config"] = ok["meta/config"].astype(int)
    every, picks = summarise(score_table(ok, tasks), tasks, top=len(tasks) ** len(tasks))
    top = every[every["rank"] <= 10] if not every.empty else every
    top.to_csv(exp.dir / "groupings.csv", index=False)
    picks.to_csv(exp.dir / "selection.csv", index=False)
    out.artifacts += [exp.dir / "groupings.csv", exp.dir / "selection.csv"]
    out.scores = every
    if every.empty:
        return
    print("top partitions (validation macro-F1 of each task from its group's model, averaged):")
    for _, r in top[top["rank"] <= 5].iterrows():
        print(f"  config {r['config']} #{r['rank']}: {r['partition']:<55} {r['val_avg_f1']:.4f}")
    print("best selection per budget (overlapping groups allowed):")
    for _, r in picks.iterrows():
        print(f"  config {r['config']} budget {r['budget']}: {r['groups']:<55} {r['val_avg_f1']:.4f}")
    for _, r in every[every["rank"] == 1].iterrows():  # each configuration's best partition
        groups = [g.split("+") for g in r["partition"].split("|")]
        out.candidates.append(Candidate(f"config {r['config']}: {r['partition']}",
                                        {**out.configs[int(r["config"])], "groups": groups}, float(r["val_avg_f1"])))


def affinity(exp: Experiment, out: Outcome) -> None:
    """TAG: one all-task run per configuration measures the inter-task affinities."""
    every = exp.spec.config.train.affinity_every or 10
    grid = [trial_entry({**c, "groups": None, "train.affinity_every": every}, TrialMeta("affinity", config=i))
            for i, c in enumerate(_strategy_configs(exp, out))]
    print(f"affinity: measuring inter-task affinity in {len(grid)} all-task runs (every {every} steps)", flush=True)
    results, _, out.interrupted = _fit(exp, "affinity", grid)
    out.measured = list(results)


def tag(exp: Experiment, out: Outcome) -> None:
    """Train the best partition for each number of groups from the measured affinities."""
    grid = _tag_proposals(exp, out)
    print(f"affinity: training the {len(grid)} proposed groupings", flush=True)
    results, expected, out.interrupted = _fit(exp, "tag", grid)
    if out.trials.empty:  # affinity mode: the trained proposals are the leaderboard
        _rank(exp, out, "tag", results, expected)
    if out.interrupted:  # a trial stopped before its first result has no config
        return
    table = _tag_table(exp, out, results)
    table.to_csv(exp.dir / "affinity_groupings.csv", index=False)
    out.artifacts.append(exp.dir / "affinity_groupings.csv")
    if table.empty:
        return
    print("TAG proposals (best partition per number of groups), trained:")
    for _, r in table.iterrows():
        print(f"  config {r['config']} k={r['groups']}: {r['partition']:<55} val/avg_f1 {r['trained_val_avg_f1']:.4f}")
        if r["error"] == "":
            out.candidates.append(Candidate(f"config {r['config']} k={r['groups']}: {r['partition']}", r["overrides"],
                                            r["trained_val_avg_f1"], r["trial_id"]))


def _tag_proposals(exp: Experiment, out: Outcome) -> list[dict]:
    tasks = exp.spec.config.tasks
    grid = []
    for r in out.measured:
        df = r.metrics_dataframe
        if r.error is not None or df is None or df.empty:
            continue
        meta = meta_of(r.config["trial"])
        cols = {(i, j): keys.affinity(i, j) for i in tasks for j in tasks if i != j}
        measured = {k: float(df[c].mean()) for k, c in cols.items() if c in df}  # averaged over training
        for k, (tag_score, partition) in tag_partitions(measured, tasks).items():
            overrides = {**out.configs[meta.config], "groups": [list(g) for g in partition]}
            grid.append(trial_entry(overrides, TrialMeta("tag", config=meta.config, k=k, tag_score=tag_score),
                                    exp.spec.trial_config(overrides)))
    return grid


def _tag_table(exp: Experiment, out: Outcome, results) -> pd.DataFrame:
    """One row per trained proposal, with its exhaustive score when both modes ran."""
    rows = []
    for r in results:
        entry, df = r.config["trial"], r.metrics_dataframe
        meta, partition = meta_of(entry), partition_label(entry["overrides"]["groups"])
        metric = exp.spec.search.metric
        best = float(df[metric].max()) if df is not None and not df.empty and metric in df else float("nan")
        row = {"config": meta.config, "groups": meta.k, "partition": partition, "tag_score": meta.tag_score,
               "trained_val_avg_f1": best, "error": "" if r.error is None else error_line(r.error),
               "trial_id": trial_id_of(r), "overrides": entry["overrides"]}
        if not out.scores.empty:
            match = out.scores[(out.scores["config"] == meta.config) & (out.scores["partition"] == partition)]
            row["exhaustive_val_avg_f1"] = float(match["val_avg_f1"].iloc[0]) if len(match) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["config", "groups"]) if rows else pd.DataFrame()
    return table


def final(exp: Experiment, out: Outcome) -> None:
    """Retrain the best candidates and the baselines with `final_seeds` seeds at the full budget; test metrics."""
    s, tasks = exp.spec.search, exp.spec.config.tasks
    ranked = sorted(out.candidates, key=lambda c: c.score, reverse=s.mode == "max")
    picks = [c for c in ranked if pd.notna(c.score)][: s.final_k]
    if not picks:
        return
    entries = [(c.name, "final", c.overrides) for c in picks]
    entries += [(b, "baseline", baseline_overrides(b, picks[0].overrides, tasks)) for b in s.baselines]
    values = axis_values(exp.spec.space, tasks) if s.axis_study else {}
    entries += [(name, "axis", ov) for name, ov in axis_design(picks[0].overrides, values, tasks)]
    grid = []
    for name, role, overrides in entries:
        for seed in range(s.final_seeds):
            ov = {**overrides, "train.seed": seed}
            grid.append(trial_entry(ov, TrialMeta("final", role, name, seed), exp.spec.trial_config(ov)))
    others = f", the baselines {', '.join(s.baselines)}" if s.baselines else ""
    study = f", {sum(role == 'axis' for _, role, _ in entries)} axis-study variants" if values else ""
    top = "the best configuration" if len(picks) == 1 else f"the top {len(picks)} configurations"
    print(f"final: retraining {top}{others}{study} with {s.final_seeds} seeds each", flush=True)
    results, _, out.interrupted = _fit(exp, "final", grid, eval_test=True, progress_metric=keys.average("test"))
    if out.interrupted:  # a trial stopped before its first result has no config
        return
    by_name = {c.name: c.trial_id for c in picks}
    order = {name: i for i, (name, _, _) in enumerate(entries)}  # best first, then the baselines, then the study
    rows = []
    for r in results:
        meta, m = meta_of(r.config["trial"]), r.metrics or {}
        rows.append({"name": meta.name, "role": meta.role, "order": order[meta.name], "seed": meta.seed,
                     "trial_id": by_name.get(meta.name),
                     "error": "" if r.error is None else error_line(r.error),
                     **{k: v for k, v in m.items() if k.startswith("test/")}})
    out.final_runs = pd.DataFrame(rows).sort_values(["order", "seed"], ignore_index=True) if rows else pd.DataFrame()
    if not out.final_runs.empty:
        write_parquet(out.final_runs, exp.dir / "final_runs.parquet")
        out.artifacts.append(exp.dir / "final_runs.parquet")
    if values and not out.final_runs.empty:
        effects = axis_effects_table(out.final_runs, picks[0].overrides, values, tasks)
        effects.to_csv(exp.dir / AXIS_STUDY_FILE, index=False)
        out.artifacts.append(exp.dir / AXIS_STUDY_FILE)


PHASES: dict[str, tuple[Callable[[Experiment, Outcome], None], ...]] = {
    "search": (search, final),
    "exhaustive": (group, score, final),
    "affinity": (affinity, tag, final),
    "both": (group, score, affinity, tag, final),
}
