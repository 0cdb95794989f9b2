"""Sweep efficiency: wall time of a whole sweep, Ray start-up included, divided by the trials'
own training time over the concurrency. 1.0 = no overhead. Prints ratios, not a test.

    python bench/bench_sweep.py [spaces/smoke.yaml] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml


def main():
    p = argparse.ArgumentParser()
    p.add_argument("space", nargs="?", default="spaces/smoke.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "search.launch", args.space, "--storage", tmp, "--name", "bench",
               "--set", "search.final_k=0"]  # the search phase only: the final retraining is no search overhead
        for o in args.overrides:
            cmd += ["--set", o]
        # warm the data caches first, as a user's second sweep would find them
        subprocess.run(cmd[:3] + [args.space, "--dry-run"], check=True, capture_output=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:])
            raise SystemExit(proc.returncode)
        exp = Path(tmp) / "bench"
        trials = pd.read_parquet(exp / "trials.parquet")
        search = yaml.safe_load((exp / "space.yaml").read_text())["search"]
        conc = min(search["max_concurrent"], len(trials))
        busy = trials["time_total_s"].sum()
        max_t = yaml.safe_load((exp / "space.yaml").read_text())["train"]["epochs"]
        used = trials["epochs"].sum()
        print(f"space {args.space}: {len(trials)} trials, concurrency {conc}")
        print(f"wall {wall:.1f}s (Ray start-up, data check, search, report), trials' own time {busy:.1f}s")
        print(f"sweep efficiency ratio: wall / (trial time / concurrency) = {wall / (busy / conc):.2f}")
        print(f"ASHA: {used} of {len(trials) * max_t} epochs run ({1 - used / (len(trials) * max_t):.0%} saved)")


if __name__ == "__main__":
    main()
