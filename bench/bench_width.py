"""The fusion width (`model.width`) against epoch time and macro-F1 on the real text: prints ratios, not a test.

    python bench/bench_width.py --real ../shared/data/comic_mischief [--widths 0,192,128,64] [--seeds 0,1,2]

Each (seed, width) trains configs/comic_mischief_cpu.yaml's run (the CPU space's model and train settings,
`all_tasks` + `equal`, 4 epochs, one thread as a search trial has, `train.precision: auto`) at that width (0 = the
text encoder's own, 384 for MiniLM), widths alternating within a seed so that the machine's load falls on all
alike. Each run appends one JSON line to --out (the run is resumable: pairs already there are skipped) with its
mean epoch seconds (training and validation), the best epoch's validation macro-F1 and the test macro-F1 of
that epoch's weights, both over the headline tasks. The table gives each width's epoch time as a speed-up
over the encoder's width and its F1 differences from it, paired by seed (mean and a 95% t interval).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from mtl_core.config import build_config, load_yaml
from mtl_core.prepare import prepare
from mtl_core.precision import resolve_precision
from mtl_core.train import train

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "comic_mischief"
CONFIG = ROOT / "configs" / "comic_mischief_cpu.yaml"


def run_config(root: Path, width: int, seed: int, epochs: int | None = None):
    raw = load_yaml(CONFIG)
    raw["data"] = {**raw["data"], "root": str(root)}
    raw["model"] = {**raw["model"], "width": width or None}
    raw["train"] = {**raw["train"], "seed": seed, "device": "cpu", "progress": False,
                    **({"epochs": epochs} if epochs else {})}
    return build_config(raw)


def summarise_run(history: list[dict]) -> dict:
    """Mean epoch seconds, the best validation epoch's val and test macro-F1 (test: the best weights')."""
    best = max(history, key=lambda m: m["val/avg_f1"])
    return {"epoch_s": float(np.mean([m["time/epoch_s"] for m in history])),
            "val_f1": float(best["val/avg_f1"]), "test_f1": float(history[-1]["test/avg_f1"])}


def paired(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% t interval (NaN bounds under two pairs)."""
    d = np.asarray(diffs, float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else float("nan"), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def table(rows: list[dict]) -> str:
    """One line per width: runs, epoch seconds, speed-up over width 0, val and test F1 and their paired
    differences from width 0."""
    by = {(r["width"], r["seed"]): r for r in rows}
    widths = sorted({r["width"] for r in rows}, key=lambda w: (w != 0, -w))
    out = ["| width | runs | epoch (s) | speed-up | val F1 | val - encoder's [95%] | test F1 | test - encoder's [95%] |",
           "|---|---|---|---|---|---|---|---|"]
    for w in widths:
        mine = [r for r in rows if r["width"] == w]
        seeds = [r["seed"] for r in mine if (0, r["seed"]) in by]
        line = [str(w or "encoder's"), str(len(mine)), f"{np.mean([r['epoch_s'] for r in mine]):.1f}"]
        if seeds and w:
            speed = [by[(0, s)]["epoch_s"] / by[(w, s)]["epoch_s"] for s in seeds]
            line.append(f"{np.mean(speed):.2f}x")
        else:
            line.append("1.00x" if not w else "")
        for metric in ("val_f1", "test_f1"):
            line.append(f"{np.mean([r[metric] for r in mine]):.3f}")
            if w and seeds:
                m, lo, hi = paired([by[(w, s)][metric] - by[(0, s)][metric] for s in seeds])
                line.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            else:
                line.append("")
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=REAL, help="the Comic Mischief release")
    p.add_argument("--widths", default="0,192,128,64", help="comma-separated; 0 = the text encoder's width")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's (4)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "width-real-text.jsonl")
    args = p.parse_args(argv)
    if not args.real.is_dir():
        print(f"error: --real: no such folder {args.real}", file=sys.stderr)
        return 2
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    done = {(r["width"], r["seed"]) for r in rows}
    data = prepare(run_config(args.real, 0, 0, args.epochs), torch.device("cpu"))  # the widths share it
    for seed in seeds:
        for width in widths:
            if (width, seed) in done:
                continue
            cfg = run_config(args.real, width, seed, args.epochs)
            with tempfile.TemporaryDirectory() as tmp:
                precision = resolve_precision(cfg.train.precision, torch.device("cpu"))
                row = {"width": width, "seed": seed, "precision": precision,
                       **summarise_run(train(cfg, None, tmp, prepared=data, eval_test=True))}
            rows.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
