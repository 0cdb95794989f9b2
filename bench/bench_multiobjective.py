"""Multi-objective search against the single-objective one: the hypervolume of the validation front
each search found, and the epochs it spent, on the same space, trials and epoch budget, over several seeds.

    python bench/bench_multiobjective.py [spaces/groupings.yaml] [--seeds 3] [--num-samples N] [--set key=value ...]
        [--first-seed 0] [--results FILE.jsonl] [--keep DIR]

Up to four searches per seed, each a whole launch with the final phase off:
    mo_asha         multi-objective TPE over each task's val macro-F1, MO-ASHA stopping (search.objectives:
                    tasks), ties inside a front broken by hypervolume contribution (the default)
    mo_asha_epsnet  the same, ties broken by the ε-net (search.tie_break: epsilon_net, Schmucker et al.'s best)
    scalar_asha     TPE on val/avg_f1 with ASHA (today's search)
    mo_full         multi-objective TPE, no early stopping (grace_period = max_t: no rung below max_t)

The front of a search is that of every (trial, epoch) validation vector it observed; its hypervolume is
taken against the majority-class macro-F1 of each task on validation (`search.analysis.reference`), and traced
against the epochs spent in the order the results came (Tune's result.json timestamps), so two searches can
be compared at the same number of epochs. Targets, for each MO-ASHA arm: its hypervolume >= scalar_asha's at
the same epochs, and its epochs <= 40% of mo_full's. Prints a Markdown table; not a test. The default arms are
mo_asha, scalar_asha and mo_full.

`--results FILE.jsonl` keeps one line per finished search (arm, seed, epochs, its hypervolume trace and the
setting it ran under) and reads the lines of the same setting back instead of running them again: a measurement
can grow by seeds across machines (`--first-seed` starts further on) without keeping the experiments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from mtl_core import keys
from search.analysis.pareto import hypervolume_trace
from search.report.inputs import observed
from search.tune.mo_asha import MultiObjectiveASHA
from search.analysis.reference import majority_scores, reference_point, validation_labels
from search.space.parse import load_space

ARMS = ("mo_asha", "mo_asha_epsnet", "scalar_asha", "mo_full")
DEFAULT_ARMS = ("mo_asha", "scalar_asha", "mo_full")
MO_ASHA_ARMS = ("mo_asha", "mo_asha_epsnet")
TARGET_SHARE = 0.40  # of the unpruned search's epochs


def arm_space(base: dict, arm: str, max_t: int) -> dict:
    """The space file of one arm: the base with its search settings changed, nothing else."""
    data = json.loads(json.dumps(base))
    search = data.setdefault("search", {})
    search["final_k"] = 0  # the search alone: the final phase is no part of the comparison
    if arm == "scalar_asha":
        search["metric"] = "val/avg_f1"
        search.pop("objectives", None)
        return data
    search.pop("metric", None)
    search.update(objectives="tasks", sampler="tpe")
    if arm == "mo_full":
        search["grace_period"] = max_t  # no rung below max_t: every trial trains to the end
    if arm == "mo_asha_epsnet":
        search["tie_break"] = "epsilon_net"
    return data


def run_arm(space: Path, store: Path, name: str, seed: int, num_samples: int | None, overrides: list[str]) -> Path:
    cmd = [sys.executable, "-m", "search.launch", str(space), "--storage", str(store), "--name", name,
           "--set", f"search.seed={seed}"]
    cmd += ["--num-samples", str(num_samples)] if num_samples else []
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"{name} failed with exit {proc.returncode}")
    print(f"  {name}: {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return store / name


def ideal_share(trials: int, max_t: int, grace: int, eta: int, objectives: int = 5, draws: int = 200) -> float:
    """The share of the unpruned epochs MO-ASHA's own decisions (`MultiObjectiveASHA.decide`) spend when trials
    arrive one at a time with independent random score vectors at every rung: what the rule costs before any
    learning signal or asynchrony, for a search of `trials` trials. Ray's ASHA, a single objective, spends the
    same (the rank rule is the same)."""
    rng = np.random.default_rng(0)
    spent = 0
    for _ in range(draws):
        scheduler = MultiObjectiveASHA([f"m{i}" for i in range(objectives)], ["max"] * objectives, max_t, grace, eta)
        for trial in range(trials):
            epochs = max_t
            for level in sorted(scheduler.rungs):
                if scheduler.decide(str(trial), level, list(rng.random(objectives))) == "STOP":
                    epochs = level
                    break
            spent += epochs
    return spent / (draws * trials * max_t)


def at_epochs(trace: np.ndarray, epochs: int) -> float:
    return float(trace[min(epochs, len(trace)) - 1]) if len(trace) and epochs > 0 else 0.0


def summarise(runs: pd.DataFrame, full_epochs: int | None = None) -> str:
    """The Markdown table (mean ± std over seeds) and the two targets for each MO-ASHA arm. `runs`: one row per
    arm and seed, with its hypervolume `trace` over epochs. `full_epochs`: trials x max_t, what the unpruned
    search spends by construction (every trial trains to max_t), for a run without the mo_full arm."""
    epochs_of = runs[runs["arm"] == "mo_asha"].set_index("seed")["epochs"]
    runs = runs.assign(hv_at_mo=[at_epochs(r["trace"], int(epochs_of.get(r["seed"], r["epochs"])))
                                 for _, r in runs.iterrows()])
    lines = ["| search | seeds | epochs | hypervolume | hypervolume at mo_asha's epochs |", "|---|---|---|---|---|"]
    for arm in ARMS:
        r = runs[runs["arm"] == arm]
        if r.empty:
            continue
        lines.append(f"| {arm} | {len(r)} | {r['epochs'].mean():.1f} ± {r['epochs'].std(ddof=1) if len(r) > 1 else 0:.1f} "
                     f"| {r['hv'].mean():.5f} ± {r['hv'].std(ddof=1) if len(r) > 1 else 0:.5f} "
                     f"| {r['hv_at_mo'].mean():.5f} |")
    if (runs["hv"] == 0).all():
        lines.append("\nnote: every hypervolume is 0: no observed vector beats the majority-class reference on every "
                     "task (too few epochs or trials for this space)")
    by = runs.drop(columns="trace").pivot(index="seed", columns="arm")
    scalar = runs[runs["arm"] == "scalar_asha"].set_index("seed")["trace"]
    for arm in (a for a in MO_ASHA_ARMS if a in set(runs["arm"])):
        mine = runs[runs["arm"] == arm].set_index("seed")
        if not scalar.empty:  # each MO-ASHA arm against scalar ASHA's trace cut at that arm's own epochs
            theirs = pd.Series({seed: at_epochs(scalar[seed], int(mine.loc[seed, "epochs"]))
                                for seed in mine.index if seed in scalar.index})
            ours = mine["hv"].reindex(theirs.index)
            lines.append(f"\n{arm}'s hypervolume >= scalar_asha's at the same epochs: {int((ours >= theirs).sum())} "
                         f"of {len(theirs)} seeds (mean {ours.mean():.5f} vs {theirs.mean():.5f}); "
                         + difference_summary((ours - theirs).dropna(), float(theirs.mean())))
        if "mo_full" in set(runs["arm"]) or full_epochs:
            mo = by["epochs"][arm].dropna()
            if "mo_full" in set(runs["arm"]):
                full, of = by["epochs"]["mo_full"].reindex(mo.index), "mo_full's"
            else:
                full, of = pd.Series(float(full_epochs), index=mo.index), f"the unpruned search's ({full_epochs}: trials x max_t)"
            lines.append(f"{arm}'s epochs / {of}: " + share_summary(mo / full))
    return "\n".join(lines)


def difference_summary(diff: pd.Series, base: float | None = None, margins=(0.10, 0.20)) -> str:
    """The paired difference of the hypervolumes (an MO-ASHA arm - scalar_asha, seed by seed) with its 95% t
    interval: the first target holds beyond seed noise when the interval lies above 0, fails when it lies below.
    With `base` (scalar_asha's mean at the same epochs, > 0) and the target not met beyond noise, whether the
    one-sided 95% bound shows non-inferiority within each margin below `base`, and if not what it would cost:
    the seeds at which the bound would clear it, if the mean and the spread held."""
    n, mean = len(diff), float(diff.mean())
    if n < 2:
        return f"difference {mean:+.5f} (one seed)"
    sd = float(diff.std(ddof=1))
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    verdict = ("above 0: met beyond seed noise" if mean - half > 0 else "below 0: not met" if mean + half < 0
               else "contains 0: no difference shown either way")
    text = f"paired difference {mean:+.5f} [{mean - half:+.5f}, {mean + half:+.5f}] (95% t interval, {n} seeds), {verdict}"
    if base is None or not base > 0 or verdict.startswith("above 0"):  # no margin of a zero front; above: met
        return text
    lower = mean - stats.t.ppf(0.95, n - 1) * sd / np.sqrt(n)  # the one-sided 95% bound at these seeds
    costs = []
    for margin in margins:
        floor = -margin * base
        if lower > floor:
            costs.append(f"within {margin:.0%}: shown at these {n} seeds")
            continue
        need = next((k for k in range(n + 1, 100_000) if mean - stats.t.ppf(0.95, k - 1) * sd / np.sqrt(k) > floor),
                    None)
        costs.append(f"within {margin:.0%}: " + (f"about {need} seeds if the mean and the spread held" if need
                                                 else "no number of seeds at this mean"))
    return text + f"; no worse than scalar_asha's (one-sided 95% lower bound {lower:+.5f}, " \
        f"{lower / base:+.1%} of it): " + ", ".join(costs)


def share_summary(shares: pd.Series, target: float = TARGET_SHARE) -> str:
    """The per-seed shares, their mean and median, the mean's one-sided 95% upper bound (Student's t over the
    seeds) and what settling the target would cost: the seeds at which the bound clears it, if the mean and the
    spread held."""
    n, mean, sd = len(shares), float(shares.mean()), float(shares.std(ddof=1)) if len(shares) > 1 else 0.0
    text = (f"{mean:.0%} on the mean, {float(shares.median()):.0%} on the median (per seed: "
            f"{', '.join(f'{v:.0%}' for v in shares)}; target <= {target:.0%})")
    if n < 2:
        return text
    bound = mean + stats.t.ppf(0.95, n - 1) * sd / np.sqrt(n)
    text += f"; one-sided 95% upper bound of the mean {bound:.0%}"
    if bound <= target:
        return text + ": met"
    if mean >= target:
        return text + ": not met, and no number of seeds would meet it at this mean"
    need = next(k for k in range(n + 1, 100_000) if mean + stats.t.ppf(0.95, k - 1) * sd / np.sqrt(k) <= target)
    return text + f": undecided; about {need} seeds would settle it if the mean and the spread held"


RESULTS_MAX_BYTES = 64 << 20  # a results file is read whole: a stranger's may be anything


def setting_of(space: str | Path, overrides: list[str], trials: int) -> dict:
    """What makes two searches comparable: the space file's text (its SHA-256), the overrides in their order
    (a later one wins) and the number of trials."""
    return {"space": Path(space).name, "space_sha256": hashlib.sha256(Path(space).read_bytes()).hexdigest(),
            "overrides": list(overrides), "trials": int(trials)}


def check_results_path(path: Path) -> None:
    """Before any search runs: the file can be written (its folder is made) and is not too large to read."""
    if path.is_dir():
        raise SystemExit(f"--results {path}: a folder, not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    if path.stat().st_size > RESULTS_MAX_BYTES:
        raise SystemExit(f"--results {path}: over {RESULTS_MAX_BYTES >> 20} MiB; not a results file of this bench")


def search_row(arm: str, seed: int, trace: np.ndarray) -> dict:
    """One search: its hypervolume trace over the epochs it spent, and the epochs and final front it implies."""
    return {"arm": arm, "seed": seed, "trace": trace, "epochs": len(trace), "hv": float(trace[-1]) if len(trace) else 0.0}


def _result_row(line: str, setting: dict) -> tuple[dict, bool]:
    raw = json.loads(line)
    trace = np.asarray(raw["trace"], dtype=float)
    if trace.ndim != 1 or not np.isfinite(trace).all():
        raise ValueError("trace: not a list of finite numbers")
    row = search_row(str(raw["arm"]), int(raw["seed"]), trace)  # epochs and front from the trace, never beside it
    if row["arm"] not in ARMS:
        raise ValueError(f"arm {row['arm']!r}")
    return row, raw["setting"] == setting


def read_results(path: Path, setting: dict) -> dict[tuple[str, int], dict]:
    """The finished searches recorded in `path`, by (arm, seed). A line of another setting is refused (two
    settings in one file would be compared as one), and so is a second line for one arm and seed."""
    rows = {}
    if not path.is_file():
        return rows
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"{path}: cannot be read ({type(e).__name__})")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row, same = _result_row(line, setting)
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}:{number}: not a result line of this bench ({type(e).__name__}: {e})")
        if not same:
            raise SystemExit(f"{path}:{number}: a search of another setting (space file, --set or --num-samples); "
                             "use another --results file")
        key = (row["arm"], row["seed"])
        if key in rows:
            raise SystemExit(f"{path}:{number}: {key[0]} seed {key[1]} a second time")
        rows[key] = row
    return rows


def append_result(path: Path, row: dict, setting: dict) -> None:
    line = {"arm": row["arm"], "seed": row["seed"], "trace": [float(v) for v in row["trace"]], "setting": setting}
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", nargs="?", default="spaces/groupings.yaml")
    p.add_argument("--seeds", type=int, default=3, help="how many search seeds")
    p.add_argument("--first-seed", type=int, default=0, help="the first search seed (default 0)")
    p.add_argument("--results", type=Path, default=None, help="a JSON-lines file of finished searches: read back, "
                   "and each new one appended")
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--keep", type=Path, default=None, help="keep the experiments here (default: a temporary folder); "
                   "an arm's experiment already there is read back, not run again (delete its folders to rerun it)")
    args = p.parse_args(argv)
    if unknown := set(args.arms.split(",")) - set(ARMS):
        p.error(f"--arms: unknown {', '.join(sorted(unknown))}; valid: {', '.join(ARMS)}")
    spec = load_space(args.space, args.overrides)
    tasks, max_t = list(spec.config.tasks), spec.max_t
    objectives = [keys.task("val", t) for t in tasks]  # each task's val macro-F1, whatever the arm optimised
    base = yaml.safe_load(Path(args.space).read_text())
    trials = args.num_samples or spec.search.num_samples
    setting = setting_of(args.space, args.overrides, trials)
    if args.results:
        check_results_path(args.results)
    recorded = read_results(args.results, setting) if args.results else {}
    with tempfile.TemporaryDirectory() as tmp:
        store = args.keep or Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        rows, reference = [], None
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in args.arms.split(","):
                if (arm, seed) in recorded:
                    print(f"  {arm}-{seed}: read back from {args.results}", file=sys.stderr, flush=True)
                    rows.append(recorded[(arm, seed)])
                    continue
                space = store / f"{arm}.yaml"
                space.write_text(yaml.safe_dump(arm_space(base, arm, max_t), sort_keys=False))
                name = f"{arm}-{seed}"
                if args.keep and (store / name / "leaderboard.csv").is_file():  # a finished launch of this arm
                    print(f"  {name}: read back from {store / name}", file=sys.stderr, flush=True)
                    exp = store / name
                else:
                    exp = run_arm(space, store, name, seed, args.num_samples, args.overrides)
                if reference is None:  # once the first launch has prepared the data
                    reference = reference_point(objectives, majority_scores(validation_labels(spec.config), tasks))
                trace = hypervolume_trace(observed(exp, objectives)[objectives].to_numpy(float), reference)
                rows.append(search_row(arm, seed, trace))
                if args.results:
                    append_result(args.results, rows[-1], setting)
        runs = pd.DataFrame(rows)
        print(f"space {args.space}: {trials} trials "
              f"of up to {max_t} epochs per search, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}; reference: majority-class val macro-F1")
        print(summarise(runs, trials * max_t))
        s = spec.search
        print("the rule alone (one trial at a time, random vectors), share of the unpruned epochs: " + ", ".join(
            f"{ideal_share(n, max_t, s.grace_period, s.reduction_factor):.0%} at {n} trials"
            for n in sorted({trials, 10, 30})))


if __name__ == "__main__":
    main()
