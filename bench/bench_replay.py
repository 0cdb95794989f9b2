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
split's score of each configuration's full run), and the hypervolume (`search.pareto.hypervolume`, against the
majority-class reference `search.reference`) of the front of each trial's vector at its last epoch run.

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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import replay_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/bench_replay.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="train every configuration to max_t, one JSON line each")
    r.add_argument("space", type=Path)
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--n", type=int, default=40, help="configurations to record (default 40)")
    r.add_argument("--jobs", type=int, default=2, help="configurations training at once, one thread each")
    r.add_argument("--out", type=Path, default=None, help="default bench/results/curves-<space>.jsonl")
    args = p.parse_args(argv)
    if args.command == "record":
        out = args.out or replay_record.ROOT / "bench" / "results" / f"curves-{args.space.stem}.jsonl"
        return replay_record.record(args.space, args.overrides, args.n, out, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
