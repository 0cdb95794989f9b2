"""Trials packed on one GPU: 1, 2 and 4 smoke-sized trainings at once, as Ray runs trials with
resources_per_trial.gpu = 1, 0.5, 0.25 (Ray only counts GPU shares; the trials share the device).
Prints trial-epochs per minute and each trial's throughput relative to a trial alone (target >= 0.8
at 4 per GPU). Timing comes from each trial's own epoch times, after its first (warm-up) epoch, so
process start-up does not count. Part of bench/gpu_check.sh; needs a CUDA device.

    python bench/gpu_pack.py [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SMOKE = ["--set", "model.text_encoder=tiny", "--set", "model.rnn_units=32", "--set", "model.attention_heads=4",
         "--set", "train.progress=false", "--set", "train.num_threads=2"]  # as Ray gives a 2-CPU trial


def epoch_times(n: int, epochs: int, root: Path, device: str = "cuda") -> list[float]:
    """Start n trainings at once; each trial's median steady-state epoch time."""
    procs, outs = [], []
    for i in range(n):
        out = root / f"n{n}-{i}"
        outs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-m", "mtl_core.train", "configs/default.yaml", *SMOKE,
                                       "--set", f"train.device={device}",
                                       "--set", f"train.epochs={epochs}", "--set", f"train.seed={i}", "--out", str(out)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a training failed:\n{err[-2000:]}")
    times = []
    for out in outs:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        times.append(statistics.median(r["time/epoch_s"] for r in rows[1:]))
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--device", default="cuda", help="cpu: only to try the script out")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gpu_pack-"))
    epoch_times(1, 2, root / "warm", args.device)  # synthetic data and caches built once, outside the timing
    alone = None
    print(f"{'trials/GPU':>10} {'trial-epochs/min':>17} {'per-trial vs alone':>19}")
    for n in (1, 2, 4):
        times = epoch_times(n, args.epochs, root, args.device)
        per_min = sum(60.0 / t for t in times)
        alone = alone or per_min
        rel = per_min / n / alone
        print(f"{n:>10} {per_min:>17.1f} {rel:>19.2f}", flush=True)
    print(f"target: 4 per GPU each >= 0.80 of a trial alone: {'met' if rel >= 0.8 else 'NOT met'} ({rel:.2f})")


if __name__ == "__main__":
    main()
