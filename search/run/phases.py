"""The phases of an experiment, per grouping mode, and what each hands on to the next.

    mode         phases                                       the leaderboard's rows
    search       search -> final                              the searched trials
    exhaustive   group -> score -> final                      the group trials
    affinity     affinity -> tag -> final                     the trained TAG proposals
    both         group -> score -> affinity -> tag -> final   the group trials

Every Tune phase is built by `search.tune.tuner.build_tuner`. Each phase that ranks configurations adds
`Candidate`s; `final` retrains the best `final_k` of them with `final_seeds` seeds, and the baselines,
on the test split. Every mode then ends in the same finish step (`search.run.finish`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtl_core import keys
from mtl_core.predictions import PREDICTIONS_FILE, load_predictions
from mtl_core.grouping import tag_partitions
from search.run.axis_study import (
    axis_design, axis_effects_table, axis_values, pretraining_effects_table,
)
from search.space.baselines import baseline_overrides, shared_knobs
from search.analysis.decision import RunScores, decision_table, looks, race, still_open
from search.tune.experiment import Candidate, Experiment, Outcome  # noqa: F401 (Candidate, Outcome: re-exported)
from search.io.files import Files
from search.io.folder_write import write_csv, write_text
from search.analysis.pareto import front_picks
from search.analysis.labels import config_label, partition_label, partition_of
from search.tracking.model_export import export_winner
from search.analysis.groupings import distinct_configs, group_trials, score_table, summarise
from search.analysis.results import collect, leaderboard, trial_id_of, write_parquet
from search.io.console import error_line
from search.io.signals import fit_interrupted
from search.space.optuna import sample_configs
from search.tracking.tracker import close_orphans
from search.space.trial import TrialMeta, meta_of, models_of, trial_entry
from search.tune.tuner import SearchPlan, build_tuner, drop_local_runs, keep_latest_checkpoints

log = logging.getLogger(__name__)


def _fit(exp: Experiment, phase: str, trials: list[dict] | None = None, **kwargs):
    tuner, expected = build_tuner(exp, phase, trials, **kwargs)
    results = tuner.fit()
    # Ctrl-C (or SIGTERM) makes fit() return normally with partial results: count what really ended
    interrupted = fit_interrupted() or results.num_terminated + results.num_errors < expected
    drop_local_runs(exp)
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
        out.candidates.append(Candidate(row["label"], overrides[row["trial_id"]],
                                        float(row[exp.spec.search.metric]), row["trial_id"]))


def tune_baselines(exp: Experiment, out: Outcome) -> None:
    """`search.tune_baselines`: each named baseline gets its own search over the space's non-strategy knobs
    (learning rate, class weights, ...) with its strategy fixed, at the search's per-trial budget, sampler
    and ASHA schedule (Kurin et al. 2022, Xin et al. 2022: an untuned baseline flatters every method). Its
    trials are kept apart from the leaderboard (`tune_<baseline>.csv`); the final phase trains the baseline
    with its own best knobs instead of the winner's (`tuned_baselines.json`)."""
    s, tasks = exp.spec.search, exp.spec.config.tasks
    knobs = {k: v for k, v in exp.spec.space.items() if k not in ("strategy", "groups")}
    if not s.baselines.tuned or out.interrupted:
        return
    if not knobs:
        print("tuned baselines: the space has no non-strategy knobs to tune; baselines use the defaults", flush=True)
        return
    for b in s.baselines.tuned:
        n = s.baselines.samples or s.num_samples
        plan = SearchPlan(knobs, baseline_overrides(b, {}, tasks), n, f"{exp.name}-{b}")
        print(f"tuned baselines: {b}, its own search over {', '.join(sorted(knobs))} ({n} trials)", flush=True)
        results, _, out.interrupted = _fit(exp, f"tune-{b}", plan=plan)
        if out.interrupted:
            return
        _, trials = collect(results, s.metric, s.mode, exp.max_t)
        board = leaderboard(trials, s.metric, s.mode)
        write_csv(board, exp.dir / Files.tuning(b))
        out.artifacts.append(exp.dir / Files.tuning(b))
        ok = board[board["status"] != "failed"]
        if ok.empty:
            continue
        overrides = {trial_id_of(r): r.config["trial"]["overrides"] for r in results if r.config is not None}
        best = overrides[ok.iloc[0]["trial_id"]]
        out.tuned[b] = best
        out.tuning[b] = {"trials": len(board), "score": float(ok.iloc[0][s.metric]), "overrides": shared_knobs(best)}
        print(f"  {b}: best {s.metric} {out.tuning[b]['score']:.4f} with {out.tuning[b]['overrides']}", flush=True)
    write_text(exp.dir / Files.TUNED, json.dumps(out.tuning, indent=2))
    out.artifacts.append(exp.dir / Files.TUNED)


def _strategy_configs(exp: Experiment, out: Outcome) -> list[dict]:
    """The distinct strategy configurations a grouping mode trains groups with (`groups` dropped)."""
    if not out.configs:
        out.configs = distinct_configs(sample_configs(exp.spec, exp.spec.search.num_samples))
    return out.configs


def group(exp: Experiment, out: Outcome) -> None:
    """Every non-empty group of tasks, once per sampled strategy configuration, at the full budget."""
    spec = exp.spec
    grid = [trial_entry(overrides, TrialMeta("group", config=i), exp.spec.base)
            for i, overrides in group_trials(_strategy_configs(exp, out), spec.config.tasks)]
    print(f"exhaustive groupings: {len(grid)} group trials", flush=True)
    results, expected, out.interrupted = _fit(exp, "group", grid)
    _rank(exp, out, "group", results, expected)


def score(exp: Experiment, out: Outcome) -> None:
    """Every partition's score from the group trials (no training): groupings.csv, selection.csv."""
    tasks = exp.spec.config.tasks
    ok = out.trials[out.trials["status"] != "failed"].copy()
    ok["group"] = ok["config/tasks"]  # its label, `binary+gory` (search.analysis.results.cell)
    ok["config"] = ok["meta/config"].astype(int)
    every, picks = summarise(score_table(ok, tasks), tasks, top=len(tasks) ** len(tasks))
    top = every[every["rank"] <= 10] if not every.empty else every
    write_csv(top, exp.dir / Files.GROUPINGS)
    write_csv(picks, exp.dir / Files.SELECTION)
    out.artifacts += [exp.dir / Files.GROUPINGS, exp.dir / Files.SELECTION]
    out.scores = every
    if every.empty:
        return
    def label(r) -> str:  # the configuration with this partition, as search.analysis.labels names it
        return config_label({**out.configs[int(r["config"])], "groups": partition_of(r["partition"])}, exp.spec.base)

    print("top partitions (validation macro-F1 of each task from its group's model, averaged):")
    for _, r in top[top["rank"] <= 5].iterrows():
        print(f"  config {r['config']} #{r['rank']}: {label(r):<55} {r[keys.DEFAULT_METRIC]:.4f}")
    print("best selection per budget (overlapping groups allowed):")
    for _, r in picks.iterrows():
        print(f"  config {r['config']} budget {r['budget']}: {r['groups']:<55} {r[keys.DEFAULT_METRIC]:.4f}")
    for _, r in every[every["rank"] == 1].iterrows():  # each configuration's best partition
        overrides = {**out.configs[int(r["config"])], "groups": partition_of(r["partition"])}
        out.candidates.append(Candidate(label(r), overrides, float(r[keys.DEFAULT_METRIC])))


def affinity(exp: Experiment, out: Outcome) -> None:
    """TAG: one all-task run per configuration measures the inter-task affinities."""
    every = exp.spec.config.train.affinity_every or 10
    grid = [trial_entry({**c, "groups": None, "train.affinity_every": every}, TrialMeta("affinity", config=i), exp.spec.base)
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
    write_csv(table, exp.dir / Files.AFFINITY_GROUPINGS)
    out.artifacts.append(exp.dir / Files.AFFINITY_GROUPINGS)
    if table.empty:
        return
    print("TAG proposals (best partition per number of groups), trained:")
    for _, r in table.iterrows():
        print(f"  config {r['config']} k={r['groups']}: {config_label(r['overrides'], exp.spec.base):<55} "
              f"{exp.spec.search.metric} {r[exp.spec.search.metric]:.4f}")
        if r["error"] == "":
            out.candidates.append(Candidate(config_label(r["overrides"], exp.spec.base), r["overrides"],
                                            r[exp.spec.search.metric], r["trial_id"]))


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
            grid.append(trial_entry(overrides, TrialMeta("tag", config=meta.config, k=k, tag_score=tag_score), exp.spec.base))
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
               metric: best, "error": "" if r.error is None else error_line(r.error),
               "trial_id": trial_id_of(r), "overrides": entry["overrides"]}
        if not out.scores.empty:
            match = out.scores[(out.scores["config"] == meta.config) & (out.scores["partition"] == partition)]
            row["exhaustive"] = float(match[keys.DEFAULT_METRIC].iloc[0]) if len(match) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["config", "groups"]) if rows else pd.DataFrame()
    return table


def best_candidates(candidates: list[Candidate], k: int, mode: str) -> list[Candidate]:
    """The top k by validation score; candidates whose score is NaN are dropped before sorting (a NaN in
    a sort leaves the order undefined)."""
    scored = [c for c in candidates if pd.notna(c.score)]
    return sorted(scored, key=lambda c: c.score, reverse=mode == "max")[:k]


def distinct_names(picks: list[Candidate]) -> list[Candidate]:
    """The picks with names that differ: a label two picks share (same strategy and grouping, other knobs)
    gets the pick's place, `dsg+equal+all_modalities (2)`; the final phase tells its runs apart by name."""
    seen: dict[str, int] = {}
    out = []
    for c in picks:
        seen[c.name] = seen.get(c.name, 0) + 1
        out.append(c if seen[c.name] == 1 else replace(c, name=f"{c.name} ({seen[c.name]})"))
    return out


def search_seeds(spec) -> set[int]:
    """Every training seed the search phase may have used: the space file's `train.seed`, and any value
    the space lets `train.seed` take."""
    used = {int(spec.config.train.seed)}
    node = spec.space.get("train", {}).get("seed") if isinstance(spec.space.get("train"), dict) else None
    if isinstance(node, dict) and "choice" in node and isinstance(node["choice"], list):
        used |= {int(v) for v in node["choice"] if isinstance(v, int)}
    elif isinstance(node, dict) and "int" in node:
        lo, hi = node["int"]
        used |= set(range(int(lo), int(hi) + 1))
    elif isinstance(node, int):
        used.add(node)
    return used


def final_seeds(used: set[int], n: int) -> list[int]:
    """n seeds for the final phase, disjoint from every seed the search used: the winner's retraining must
    not be the very run that won the selection (its seed-0 run would carry the selection's luck, the
    baselines' would not)."""
    out, seed = [], 0
    while len(out) < n:
        if seed not in used:
            out.append(seed)
        seed += 1
    return out


def final(exp: Experiment, out: Outcome) -> None:
    """Retrain the best candidates and the baselines at the full budget on seeds the search never used, and
    race: `final_seeds` seeds each, then more seeds only for the comparisons with the best that are still
    undecided (search.analysis.decision), up to `final_max_seeds`. Test metrics and per-clip predictions per run."""
    s, tasks = exp.spec.search, exp.spec.config.tasks
    if s.multi.objectives and not out.trials.empty:  # a front: members spread along it, the best by the metric first
        picks = front_picks(out.candidates, out.trials, s.multi.objectives, s.final.k, s.mode)
    else:
        picks = best_candidates(out.candidates, s.final.k, s.mode)
    picks = distinct_names(picks)
    if not picks:
        return
    entries = _final_entries(exp, out, picks)
    seeds = final_seeds(search_seeds(exp.spec), s.final.seed_cap)
    at = looks(s.final.seeds, s.final.seed_cap, s.final.round_seeds)
    best, others = picks[0].name, [name for name, role, _ in entries if role in ("final", "baseline")][1:]
    overrides = {name: ov for name, _, ov in entries}
    roles = {name: role for name, role, _ in entries}
    todo = {name: seeds[: at[0]] for name in overrides}
    rows: list[dict] = []
    _announce(exp, picks, entries, at)
    for round_ in range(len(at)):
        grid = [trial_entry({**overrides[name], "train.seed": seed, **fold_overrides(s.final.cv_folds, fold, seed)},
                            TrialMeta("final", roles[name], name, seed, fold=fold if s.final.cv_folds else None), exp.spec.base)
                for name, round_seeds in todo.items() for seed in round_seeds for fold in range(max(1, s.final.cv_folds))]
        grid.sort(key=models_of, reverse=True)  # longest first: no partition of 5 models left alone at the end
        results, _, out.interrupted = _fit(exp, "final" if round_ == 0 else f"final-{round_ + 1}", grid, eval_test=True)
        first = results if round_ == 0 else first  # every pick's lowest seeds: the best's model comes from them
        rows += _final_rows(results, {name: i for i, name in enumerate(overrides)}, picks, s.final.cv_folds)
        if out.interrupted:
            break
        out.comparisons = race(RunScores(pd.DataFrame(rows), exp.spec.config.headline_tasks), best, others, seeds, at,
                               done=round_ + 1,
                               margin=s.final.equivalence_margin)
        open_ = still_open(out.comparisons)
        if round_ + 1 == len(at) or not open_:
            break
        print(f"final: {len(open_)} comparison(s) undecided after {at[round_]} seeds "
              f"({', '.join(open_)}); adding seeds {seeds[at[round_]:at[round_ + 1]]}", flush=True)
        todo = {name: seeds[at[round_]:at[round_ + 1]] for name in [best, *open_]}
    out.final_runs = pd.DataFrame(rows).sort_values(["order", "seed"], ignore_index=True) if rows else pd.DataFrame()
    if not out.final_runs.empty:
        write_parquet(out.final_runs, exp.dir / Files.FINAL_RUNS)
        out.artifacts.append(exp.dir / Files.FINAL_RUNS)
        if not out.interrupted:
            export_winner(exp, first, best)
    if out.comparisons:
        path = exp.dir / Files.DECISION
        write_csv(decision_table(out.comparisons), path)
        out.artifacts.append(path)
    values = axis_values(exp.spec.space, tasks) if s.axis_study else {}
    if values and not out.final_runs.empty:
        out.axis_study = axis_effects_table(out.final_runs, picks[0].overrides, values, tasks)
        write_csv(out.axis_study, exp.dir / Files.AXIS_STUDY)
        out.artifacts.append(exp.dir / Files.AXIS_STUDY)
        out.pretraining_study = pretraining_effects_table(out.final_runs, picks[0].overrides, values, tasks,
                                                          RunScores(out.final_runs, tasks))
        if not out.pretraining_study.empty:
            write_csv(out.pretraining_study, exp.dir / Files.PRETRAIN_STUDY)
            out.artifacts.append(exp.dir / Files.PRETRAIN_STUDY)


def _final_entries(exp: Experiment, out: Outcome, picks: list[Candidate]) -> list[tuple[str, str, dict]]:
    """(name, role, overrides): the candidates best first, the baselines (tuned ones with their own knobs),
    the axis-study variants."""
    s, tasks = exp.spec.search, exp.spec.config.tasks
    entries = [(c.name, "final", c.overrides) for c in picks]
    for b in s.baselines.names:
        knobs = out.tuned.get(b, picks[0].overrides)
        entries.append((b, "baseline", baseline_overrides(b, knobs, tasks)))
    values = axis_values(exp.spec.space, tasks) if s.axis_study else {}
    entries += [(name, "axis", ov) for name, ov in axis_design(picks[0].overrides, values, tasks)]
    return entries


def _announce(exp: Experiment, picks, entries, at: list[int]) -> None:
    s = exp.spec.search
    others = f", the baselines {', '.join(s.baselines.names)}" if s.baselines.names else ""
    study = sum(role == "axis" for _, role, _ in entries)
    study = f", {study} axis-study variants" if study else ""
    top = "the best configuration" if len(picks) == 1 else f"the top {len(picks)} configurations"
    unit = f"repeats of {s.final.cv_folds}-fold cross-validation" if s.final.cv_folds else "seeds"
    more = f", racing up to {at[-1]} {unit} for comparisons still undecided" if len(at) > 1 else ""
    print(f"final: retraining {top}{others}{study} with {at[0]} {unit} each{more}", flush=True)


def fold_overrides(folds: int, fold: int, seed: int) -> dict[str, int]:
    """A final run's data under cross-validation: fold `fold` of `folds`, the repeat's assignment of clips
    to folds drawn by its seed (so pairs of configurations meet on the same folds)."""
    return {"data.cv.folds": folds, "data.cv.fold": fold, "data.cv.shuffle": seed} if folds else {}


def _final_rows(results, order: dict[str, int], picks: list[Candidate], folds: int = 0) -> list[dict]:
    by_name = {c.name: c.trial_id for c in picks}
    rows = []
    for r in results:
        if r.config is None:  # interrupted before Tune recorded the trial's config
            continue
        meta, m = meta_of(r.config["trial"]), r.metrics or {}
        cv = {"fold": meta.fold, "folds": folds} if folds else {}
        rows.append({"name": meta.name, "role": meta.role, "order": order[meta.name], "seed": meta.seed, **cv,
                     "trial_id": by_name.get(meta.name),
                     "error": "" if r.error is None else error_line(r.error),
                     **{k: v for k, v in m.items() if k.startswith("test/")}, **_predictions(r)})
    return rows


def _predictions(result) -> dict[str, np.ndarray]:
    """The run's per-clip test predictions and labels (`pred/<task>`, `label/<task>`) from its checkpoint."""
    if result.error is not None or result.checkpoint is None:
        return {}
    try:
        with result.checkpoint.as_directory() as d:
            path = Path(d) / PREDICTIONS_FILE
            arrays = load_predictions(path) if path.is_file() else {}
    except Exception as exc:  # a statistic without the test-set term is still worth having
        log.warning("no test predictions for %s: %s", trial_id_of(result), exc)
        return {}
    return {k: v for k, v in arrays.items() if k.startswith(("pred/", "label/"))}


PHASES: dict[str, tuple[Callable[[Experiment, Outcome], None], ...]] = {
    "search": (search, tune_baselines, final),
    "exhaustive": (group, score, tune_baselines, final),
    "affinity": (affinity, tag, tune_baselines, final),
    "both": (group, score, affinity, tag, tune_baselines, final),
}
