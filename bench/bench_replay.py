"""Schedulers replayed on recorded learning curves: every configuration of a search trained once to max_t
without stopping (`record`), then each stopping rule replayed offline on those curves over hundreds of seeds
(`replay`, `target`, `rungs`), as Syne Tune's simulator backend and the tabular benchmarks of HPO research do.

    python bench/bench_replay.py record SPACE [--set key=value ...] [--n 40] [--jobs 2] [--out FILE.jsonl]
    python bench/bench_replay.py replay CURVES.jsonl [--seeds 300] [--num-samples N] [--workers 2]
        [--grace 1] [--eta 4]
    python bench/bench_replay.py target CURVES.jsonl [--seeds 400] [--num-samples 10]
    python bench/bench_replay.py rungs CURVES.jsonl [--seeds 300] [--num-samples 12]

record: `bench/replay_record.py` (the configurations the search draws first, trained by mtl_core.train with
no Ray, resumable; one JSON line each in bench/results/curves-<space>.jsonl).

replay: a seed draws `num_samples` of the recorded configurations in a random order (all of them by default);
`workers` simulated workers take them in that order; a trial's epoch takes its recorded seconds, and after
each epoch the scheduler sees that epoch's recorded values and says continue or stop, as Tune would ask it.
The schedulers:
    asha          Ray's own AsyncHyperBandScheduler on the search metric, driven with stand-in trials
    scalar_asha   the same on the mean of the tasks' val F1 (MO-ASHA's objectives, scalarised)
    mo_asha_*     the project's MultiObjectiveASHA over each task's val F1, with each tie-break
    syne_moasha   Syne Tune's MOASHA rule: non-dominated fronts, an ε-net inside each front seeded by the best
                  on the first objective; a trial continues while at most (m + 1) / eta of the m + 1 vectors
                  at the rung (itself included) rank strictly ahead of it
    fifo          no stopping: every trial to max_t
Reported per scheduler, over seeds: the share of epochs (of num_samples x max_t), the regret of the
configuration it picks (its trial with the best search metric at any epoch it ran; the regret is the best
drawn configuration's full-curve best minus the pick's full-curve best, on val, and the same on the test
split's score of each configuration's full run), and the hypervolume (`search.analysis.pareto.hypervolume`, against the
majority-class reference `search.analysis.reference`) of the front of each trial's vector at its last epoch run.

The replay resamples configurations and orders from one recording (one training seed per configuration): its
intervals cover the draw and the order, not training noise, and no sampler learns (the draws are random, as
TPE's start-up; the launcher's TPE after its start-up is not replayed).

THE FIRST TARGET, decided by `target` (rule fixed before its run):
    "MO-ASHA's front at least as good as scalarised ASHA's at the same epochs", on
    bench/results/curves-strategies.jsonl (spaces/strategies.yaml, train.epochs=16, batch 32, balanced class
    weights; replayed with grace 1, reduction factor 4, max_t 16, 2 workers, 10 trials a seed as in
    bench/bench_multiobjective.py), 400 replay seeds, each seed the same draw and order for both arms.
    MO-ASHA is the project's MultiObjectiveASHA with tie_break epsilon_net (that bench's arm); the hypervolume
    tie-break is reported beside it, not decided on.
    Front at the same epochs: per seed, E = the smaller of the two arms' epochs; each arm's front is that of
    every (trial, epoch) vector of per-task val F1 it observed within its first E epochs (in simulated time
    order), as bench_multiobjective traces it. d = HV(MO-ASHA) - HV(scalar ASHA), paired by seed.
    Margin: 10% of scalarised ASHA's mean hypervolume at those epochs.
    Decision, from the one-sided 95% bounds of mean d (paired t over seeds; a paired bootstrap of 10000
    resamples printed beside it as a check):
        met, and better       lower bound > 0
        met (within margin)   lower bound > -margin
        not met               upper bound < -margin
        undecided             otherwise
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import replay_record  # noqa: E402
import replay_sim as sim  # noqa: E402

SCHEDULERS = ("fifo", "asha", "scalar_asha", "mo_asha_hypervolume", "mo_asha_crowding", "mo_asha_epsnet",
              "syne_moasha")
TIE_BREAKS = {"mo_asha_hypervolume": "hypervolume", "mo_asha_crowding": "crowding", "mo_asha_epsnet": "epsilon_net"}
TARGET_ARM, TARGET_BASE, TARGET_MARGIN = "mo_asha_epsnet", "scalar_asha", 0.10  # the first target (docstring)


def make_scheduler(name: str, max_t: int, grace: int, eta: int, tasks: int):
    if name == "fifo" or grace >= max_t:
        return sim.NoStop()
    if name == "asha":
        return sim.RayASHA(max_t, grace, eta)
    if name == "scalar_asha":
        return sim.RayASHA(max_t, grace, eta, value=sim.mean_f1)
    if name in TIE_BREAKS:
        return sim.ProjectMOASHA(max_t, grace, eta, tasks, TIE_BREAKS[name])
    if name == "syne_moasha":
        return sim.SyneMOASHA(max_t, grace, eta)
    raise SystemExit(f"error: scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")


def load(path: Path) -> tuple[list[sim.Curve], dict, list[float] | None]:
    """The curves of a recording, its setting, and the hypervolume's reference point (the majority-class val
    F1 of each task, from the space's data)."""
    rows = replay_record.read_curves(path)
    if not rows:
        raise SystemExit(f"error: {path}: no recorded curves (run `record` first)")
    settings = {json.dumps(r.get("setting"), sort_keys=True) for r in rows}
    if len(settings) != 1:
        raise SystemExit(f"error: {path}: curves of {len(settings)} different settings; one file per setting")
    setting = rows[0]["setting"]
    # a run that diverged in its first epoch has nothing to replay: no trial of a search would report either
    curves = [sim.Curve.of(r, setting["max_t"]) for r in rows if r["val"]]
    return curves, setting, reference_of(setting, list(rows[0]["tasks"]))


def reference_of(setting: dict, tasks: list[str]) -> list[float] | None:
    from mtl_core import keys
    from search.analysis.reference import validation_reference
    from search.space.parse import load_space

    spec = load_space(replay_record.ROOT / setting["space"], list(setting["overrides"]))
    return validation_reference([keys.task("val", t) for t in tasks], spec.config)


def without(curves: list[sim.Curve], names: set[str]) -> list[sim.Curve]:
    """The curves whose strategies (the label's `scheduler+combiner+modality`) name none of `names`."""
    return [c for c in curves if not names & set(c.label.split(" | ")[0].split("+"))]


def draw(n_curves: int, num_samples: int, seed: int) -> list[int]:
    """A seed's trials: num_samples of the recorded configurations, in a random order."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n_curves)[:num_samples]]


def run_seeds(curves, names, seeds, num_samples, max_t, grace, eta, workers, reference) -> pd.DataFrame:
    """One row per scheduler and seed: epochs, share, regret (val, test), hypervolume of the last-epoch front
    and of everything observed, and the replay itself (for matched-epoch comparisons)."""
    tasks = curves[0].tasks.shape[1]
    rows = []
    for seed in seeds:
        order = draw(len(curves), num_samples, seed)
        for name in names:
            replay = sim.simulate(curves, order, make_scheduler(name, max_t, grace, eta, tasks), max_t, workers)
            r_val, r_test = sim.regret(curves, replay)
            rows.append({"scheduler": name, "seed": seed, "epochs": replay.epochs(),
                         "share": sim.share_of_epochs(replay, max_t), "regret_val": r_val, "regret_test": r_test,
                         "hv_last": sim.front_volume(sim.last_vectors(curves, replay), reference) if reference else np.nan,
                         "replay": replay})
    return pd.DataFrame(rows)


def table(df: pd.DataFrame, max_t: int) -> str:
    """Mean over seeds per scheduler; ratios against the unpruned replay (fifo) when it ran."""
    lines = ["| scheduler | seeds | share of epochs | regret val (mean, median, share 0) | regret test (mean) "
             "| hypervolume (last epochs) | hv / fifo's |", "|---|---|---|---|---|---|---|"]
    fifo = df[df["scheduler"] == "fifo"]["hv_last"].mean() if (df["scheduler"] == "fifo").any() else np.nan
    for name, r in df.groupby("scheduler", sort=False):
        ratio = f"{r['hv_last'].mean() / fifo:.2f}" if fifo and np.isfinite(fifo) else "-"
        lines.append(f"| {name} | {len(r)} | {r['share'].mean():.1%} | {r['regret_val'].mean():.4f}, "
                     f"{r['regret_val'].median():.4f}, {(r['regret_val'] <= 1e-12).mean():.0%} "
                     f"| {r['regret_test'].mean():.4f} | {r['hv_last'].mean():.5f} | {ratio} |")
    return "\n".join(lines)


def matched(curves, a: sim.Replay, b: sim.Replay, reference) -> tuple[int, float, float]:
    """(E, hypervolume of a's observed front within its first E epochs, b's likewise), E the smaller of the
    two replays' epochs."""
    e = min(a.epochs(), b.epochs())
    return (e, sim.front_volume(sim.observed_vectors(curves, a, e), reference),
            sim.front_volume(sim.observed_vectors(curves, b, e), reference))


def decide(diff: np.ndarray, base_mean: float, margin: float = TARGET_MARGIN, boot: int = 10000,
           seed: int = 0) -> dict:
    """The first target's verdict (the rule in the docstring) from the paired differences `diff` (arm minus
    base, one per seed) and the base's mean hypervolume."""
    n = len(diff)
    mean, sd = float(np.mean(diff)), float(np.std(diff, ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.95, n - 1) * sd / np.sqrt(n)) if n > 1 else float("inf")
    lower, upper = mean - half, mean + half
    means = np.random.default_rng(seed).choice(diff, size=(boot, n), replace=True).mean(axis=1)
    allowed = margin * base_mean
    verdict = ("met, and better" if lower > 0 else "met (within margin)" if lower > -allowed
               else "not met" if upper < -allowed else "undecided")
    return {"n": n, "mean": mean, "sd": sd, "lower": lower, "upper": upper,
            "boot_lower": float(np.quantile(means, 0.05)), "boot_upper": float(np.quantile(means, 0.95)),
            "margin": allowed, "verdict": verdict}


def target(curves, reference, seeds: int, num_samples: int, max_t: int, grace: int, eta: int, workers: int) -> str:
    arms = [TARGET_ARM, "mo_asha_hypervolume", TARGET_BASE]
    df = run_seeds(curves, arms, range(seeds), num_samples, max_t, grace, eta, workers, reference)
    out = [table(df.drop(columns="replay"), max_t), ""]
    base = df[df["scheduler"] == TARGET_BASE].set_index("seed")
    for arm in arms[:-1]:
        mine = df[df["scheduler"] == arm].set_index("seed")
        m = pd.DataFrame([matched(curves, mine.loc[s, "replay"], base.loc[s, "replay"], reference)
                          for s in mine.index], columns=["E", "hv_arm", "hv_base"], index=mine.index)
        d = decide((m["hv_arm"] - m["hv_base"]).to_numpy(), float(m["hv_base"].mean()))
        out.append(f"{arm} vs {TARGET_BASE} at the same epochs (mean E {m['E'].mean():.1f}, {len(m)} seeds): "
                   f"hypervolume {m['hv_arm'].mean():.5f} vs {m['hv_base'].mean():.5f}; d {d['mean']:+.5f} "
                   f"(sd {d['sd']:.5f}), one-sided 95% t bounds [{d['lower']:+.5f}, {d['upper']:+.5f}], bootstrap "
                   f"[{d['boot_lower']:+.5f}, {d['boot_upper']:+.5f}]; margin {d['margin']:.5f}; d >= 0 on "
                   f"{int((m['hv_arm'] >= m['hv_base']).sum())} seeds"
                   + (f"; the first target's rule: {d['verdict']}" if arm == TARGET_ARM else f" (reported only: {d['verdict']})"))
    out.append("(the first target is decided on the strategies recording at its setting: see the docstring)")
    return "\n".join(out)


def earliest_rung(path: Path, setting: dict, skip: set[str] = frozenset()) -> tuple[int, dict[str, int], tuple]:
    """The epoch the first rung must reach so that every recorded configuration's strategies (as recorded,
    with their own parameters; but those in `skip`) have acted (search.space.rungs), and the space file's
    own rungs (grace, reduction factor)."""
    from search.space.rungs import acting_epochs
    from search.space.parse import load_space
    from search.space.trial import trial_config

    spec = load_space(replay_record.ROOT / setting["space"], list(setting["overrides"]))
    configs = [trial_config(spec.base, r["overrides"]) for r in replay_record.read_curves(path) if r["val"]]
    late = {k: v for k, v in acting_epochs(configs).items() if k.split()[-1] not in skip}
    return max(late.values(), default=1), late, (spec.search.grace_period, spec.search.reduction_factor)


def rungs(path: Path, curves, setting, reference, seeds: int, num_samples: int, workers: int,
          skip: set[str] = frozenset()) -> str:
    full_t = setting["max_t"]
    earliest, late, current = earliest_rung(path, setting, skip)
    rows = []
    for max_t in range(2, full_t + 1):
        for grace in range(1, max_t + 1):
            for eta in ((2, 3, 4) if grace < max_t else (4,)):
                df = run_seeds(curves, ["asha"], range(seeds), num_samples, max_t, grace, eta, workers, reference)
                rows.append({"grace": grace, "eta": eta, "max_t": max_t,
                             "share": float((df["epochs"] / (num_samples * full_t)).mean()),
                             "share_own": float(df["share"].mean()), "regret_val": float(df["regret_val"].mean()),
                             "regret_test": float(df["regret_test"].mean()),
                             "zero": float((df["regret_val"] <= 1e-12).mean()),
                             "rung_ok": grace >= earliest or grace >= max_t,
                             "grace_ok": grace >= earliest})
    t = pd.DataFrame(rows)
    now = t[(t["grace"] == current[0]) & (t["eta"] == current[1]) & (t["max_t"] == full_t)]
    if now.empty:  # the space's own rungs are not among the rows (or its max_t differs): against grace 1, eta 4
        current = (1, 4)
        now = t[(t["grace"] == 1) & (t["eta"] == 4) & (t["max_t"] == full_t)]
    now = now.iloc[0]
    lines = [f"first rung at or after epoch {earliest} for the recorded configurations "
             f"({', '.join(f'{k} from {v}' for k, v in sorted(late.items()))}); 'vs the space's' is against grace "
             f"{current[0]}, eta {current[1]}, max_t {full_t}",
             f"| grace | eta | max_t | epochs / ({num_samples} x {full_t}) | epochs / ({num_samples} x max_t) "
             "| regret val | vs the space's | regret test | vs the space's | regret 0 | first rung after every strategy acts "
             "| <= 35% |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r['grace']} | {r['eta'] if r['grace'] < r['max_t'] else '-'} | {r['max_t']} | "
                     f"{r['share']:.1%} | {r['share_own']:.1%} | {r['regret_val']:.4f} | "
                     f"{r['regret_val'] - now['regret_val']:+.4f} | {r['regret_test']:.4f} | "
                     f"{r['regret_test'] - now['regret_test']:+.4f} | {r['zero']:.0%} | "
                     f"{'yes' if r['grace_ok'] else 'no'} | {'yes' if r['share_own'] <= 0.35 else 'no'} |")
    both = t[t["grace_ok"] & (t["share_own"] <= 0.35)]
    lines.append("\nsettings meeting both: " + (", ".join(
        f"grace {r['grace']} eta {r['eta']} max_t {r['max_t']} (regret val {r['regret_val']:.4f}, "
        f"{r['regret_val'] - now['regret_val']:+.4f} vs the space's)" for _, r in both.iterrows()) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/bench_replay.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="train every configuration to max_t, one JSON line each")
    r.add_argument("space", type=Path)
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--n", type=int, default=40, help="configurations to record (default 40)")
    r.add_argument("--jobs", type=int, default=2, help="configurations training at once, one thread each")
    r.add_argument("--out", type=Path, default=None, help="default bench/results/curves-<space>.jsonl")
    for name, seeds, samples in (("replay", 300, 0), ("target", 400, 10), ("rungs", 300, 12)):
        q = sub.add_parser(name)
        q.add_argument("curves", type=Path)
        q.add_argument("--seeds", type=int, default=seeds)
        q.add_argument("--num-samples", type=int, default=samples, help="trials a seed draws (0: every curve)")
        q.add_argument("--workers", type=int, default=2)
        q.add_argument("--grace", type=int, default=1)
        q.add_argument("--eta", type=int, default=4)
        q.add_argument("--max-t", type=int, default=0, help="default: the recording's")
        q.add_argument("--without", default="", metavar="NAMES",
                       help="leave out the curves whose label names one of these strategies (comma-separated)")
        if name == "replay":
            q.add_argument("--schedulers", default=",".join(SCHEDULERS))
    args = p.parse_args(argv)
    if args.command == "record":
        out = args.out or replay_record.ROOT / "bench" / "results" / f"curves-{args.space.stem}.jsonl"
        return replay_record.record(args.space, args.overrides, args.n, out, args.jobs)
    t0 = time.perf_counter()
    curves, setting, reference = load(args.curves)
    if args.without:
        curves = without(curves, set(args.without.split(",")))
    max_t = args.max_t or setting["max_t"]
    n = args.num_samples or len(curves)
    if n > len(curves):
        raise SystemExit(f"error: --num-samples {n}: the file holds {len(curves)} curves")
    print(f"{args.curves}: {len(curves)} curves of {setting['space']} {' '.join(setting['overrides'])} "
          f"(max_t {setting['max_t']}); {args.seeds} seeds of {n} trials, {args.workers} workers")
    if args.command == "replay":
        names = [s for s in args.schedulers.split(",") if s]
        df = run_seeds(curves, names, range(args.seeds), n, max_t, args.grace, args.eta, args.workers, reference)
        print(f"grace {args.grace}, eta {args.eta}, max_t {max_t}")
        print(table(df.drop(columns="replay"), max_t))
    elif args.command == "target":
        print(target(curves, reference, args.seeds, n, max_t, args.grace, args.eta, args.workers))
    else:
        print(rungs(args.curves, curves, setting, reference, args.seeds, n, args.workers,
                    skip=set(args.without.split(",")) - {""}))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
