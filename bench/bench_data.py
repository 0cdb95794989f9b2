"""Data-path benchmarks: prints ratios, not a test.

    python bench/bench_data.py [--real ../shared/data/comic_mischief] [--batches 8]

1. frozen-encoder cache vs recomputing the (frozen) MiniLM encoder every batch: epoch time;
2. dynamic padding vs fixed 500 tokens on the real token-length distribution: train-step time;
3. columnar cache vs per-clip .npy loading: one pass over the training split.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtl_core import TASKS
from mtl_core.data.arrays import build_cache, load_split, read_source
from mtl_core.data.dataset import SplitData, token_rows
from mtl_core.data.synth import write_synthetic
from mtl_core.data.text_cache import cached_hidden
from mtl_core.model.hiccap import HICCAP
from mtl_core.model.text_encoder import load_text_encoder
from mtl_core.losses import task_losses

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "comic_mischief"


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _model(encoder, with_encoder: bool):
    torch.manual_seed(0)
    return HICCAP(TASKS, encoder.hidden_size, text_encoder=encoder.model if with_encoder else None,
                  freeze_text=True, rnn_units=64, attention_heads=12)


def _epoch(model, split: SplitData, n_batches: int, batch_size: int) -> float:
    """Seconds for `n_batches` training steps, after one untimed warm-up step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    batches = split.batches(batch_size, np.arange(len(split)), drop_last=True)
    t0 = None
    for b, (inputs, labels) in enumerate(batches):
        if b == 1:
            t0 = time.perf_counter()
        if b == n_batches + 1:
            break
        opt.zero_grad()
        losses, _ = task_losses(model(inputs), labels, TASKS)
        losses.sum().backward()
        opt.step()
    return time.perf_counter() - t0


def bench_frozen_cache(arrays, encoder, cache_dir: Path, n_batches: int, batch_size: int) -> float:
    rows = token_rows(arrays, encoder.tokenizer, False, 500)
    hidden = cached_hidden(encoder, rows, cache_dir, torch.device("cpu"))  # built once
    live = SplitData(arrays, rows, TASKS)
    cached = SplitData(arrays, rows, TASKS, hidden)
    t_live = _epoch(_model(encoder, True), live, n_batches, batch_size)
    t_cached = _epoch(_model(encoder, False), cached, n_batches, batch_size)
    print(f"[1] frozen MiniLM, {n_batches} batches of {batch_size}: recompute every batch {t_live:.2f}s, "
          f"cached outputs {t_cached:.2f}s -> {t_live / t_cached:.1f}x")
    return t_live / t_cached


def bench_padding(arrays, encoder, n_batches: int, batch_size: int) -> float:
    rows = token_rows(arrays, encoder.tokenizer, False, 500)
    dynamic = SplitData(arrays, rows, TASKS)
    # A fixed-500 collate: every row is 500 ids long, so every batch costs 500 positions.
    fixed = SplitData(arrays, [np.pad(r, (0, 500 - len(r))) for r in rows], TASKS)

    def run(split):
        torch.manual_seed(0)
        model = HICCAP(TASKS, encoder.hidden_size, text_encoder=encoder.model, freeze_text=False, rnn_units=64,
                       attention_heads=12)
        return _epoch(model, split, n_batches, batch_size)

    t_fixed = run(fixed)
    t_dyn = run(dynamic)
    lens = np.array([len(r) for r in rows])
    print(f"[2] fine-tuned MiniLM, token lengths median {int(np.median(lens))} max {lens.max()}: "
          f"fixed 500 {t_fixed:.2f}s, dynamic {t_dyn:.2f}s -> {t_fixed / t_dyn:.1f}x")
    return t_fixed / t_dyn


def bench_columnar(root: Path, cache_dir: Path) -> float:
    build_cache(root, cache_dir=cache_dir)

    def one_pass(arr):
        s = 0.0
        for i in range(0, len(arr), 32):  # touch every feature once, batch by batch
            s += float(arr.video[i:i + 32].sum()) + float(arr.audio[i:i + 32].sum())
        return s

    # Without the cache every epoch re-reads and pads the per-clip files; with it an epoch reads the
    # memory-mapped columns. Opening the cache (fingerprint check included) happens once per run.
    t_npy = timed(lambda: one_pass(read_source(root, "train")), repeat=3)
    t_open = timed(lambda: load_split(root, "train", cache_dir=cache_dir), repeat=3)
    arr = load_split(root, "train", cache_dir=cache_dir)
    t_arrow = timed(lambda: one_pass(arr), repeat=3)
    print(f"[3] one pass over {len(arr)} clips: per-clip .npy {t_npy:.3f}s, columnar cache {t_arrow:.4f}s "
          f"-> {t_npy / t_arrow:.1f}x (opening the cache once per run: {t_open:.3f}s)")
    return t_npy / t_arrow


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"device: cpu, {torch.get_num_threads()} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = write_synthetic(tmp / "synth", seed=0, n_train=400, n_val=10, n_test=10)
        encoder = load_text_encoder("minilm")
        if args.real.is_dir():
            arrays = read_source(args.real, "train")
            print(f"text from the real release ({args.real}), no video/audio features")
        else:
            arrays = read_source(synth, "train")
            print("real data not found: using synthetic text (shorter than the real distribution)")
        bench_frozen_cache(arrays, encoder, tmp / "cache", args.batches, args.batch_size)
        bench_padding(arrays, encoder, args.batches, args.batch_size)
        bench_columnar(synth, tmp / "cache")


if __name__ == "__main__":
    main()
