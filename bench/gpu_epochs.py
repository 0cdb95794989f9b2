"""Epoch time and peak GPU memory of the real-data configuration, fp32 vs bf16, MiniLM frozen and
fine-tuned (part of bench/gpu_check.sh; needs a CUDA device).

    python bench/gpu_epochs.py --data ../shared/data/comic_mischief [--encoder minilm] [--epochs 2]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from mtl_core.config import build_config
from mtl_core.model import hiccap
from mtl_core.prepare import prepare
from mtl_core.train import train


def run(data: str, encoder: str, precision: str, freeze: bool, epochs: int, cache: str, device: str = "cuda",
        batch_size: int = 16) -> tuple[float, float]:
    cfg = build_config({
        "data": {"root": data, "derive_binary": True, "cache_dir": cache},
        "model": {"text_encoder": encoder, "freeze_text": freeze, "rnn_units": 256, "attention_heads": 12},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 1e-4, "device": device, "precision": precision,
                  "progress": False},
    })
    prepared = prepare(cfg, torch.device(device), splits=("train", "val"))  # frozen cache built outside the timing
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    history = train(cfg, None, f"/tmp/gpu_epochs/{precision}-{freeze}-{time.time_ns()}", prepared=prepared)
    steady = [m["time/epoch_s"] for m in history[1:]] or [history[0]["time/epoch_s"]]  # the first warms up
    return min(steady), (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan"))


@contextlib.contextmanager
def autocast_recurrence():
    """The LSTMs left under autocast, as before they ran at fp32 under bf16: on CUDA cuDNN then runs them in
    fp16 with their weights re-flattened every call. Timed beside the model's fp32 recurrence."""
    original = hiccap.recurrence_precision
    hiccap.recurrence_precision = lambda device_type: contextlib.nullcontext()
    try:
        yield
    finally:
        hiccap.recurrence_precision = original


def profile(data: str, encoder: str, precision: str, cache: str, rows: int = 8) -> None:
    """The CUDA kernels that dominate one fine-tuned epoch (batch 16): where bf16 gains or loses time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run(data, encoder, precision, False, 1, cache)
    events = prof.key_averages()
    key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    print(f"-- {precision}, fine-tuned, one epoch: top CUDA kernels by self time")
    print(events.table(sort_by=key, row_limit=rows, max_name_column_width=60))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cache", default="/tmp/gpu_epochs_cache")
    p.add_argument("--device", default="cuda", help="cpu: only to try the script out")
    p.add_argument("--profile", action="store_true", help="then the top CUDA kernels of one epoch, fp32 and bf16")
    args = p.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"real data, {args.encoder}, rnn_units 256, batch 16, {name}")
    print(f"{'text encoder':<12} {'precision':<9} {'epoch s':>8} {'peak MiB':>9}")
    times = {}
    for freeze in (True, False):
        for precision in ("fp32", "bf16"):
            t, mem = run(args.data, args.encoder, precision, freeze, args.epochs, args.cache, args.device)
            times[freeze, precision] = t
            print(f"{'frozen' if freeze else 'fine-tuned':<12} {precision:<9} {t:>8.2f} {mem:>9.0f}", flush=True)
    for precision in ("fp32", "bf16"):  # where bf16 pays: bigger batches are compute-bound, not launch-bound
        t, mem = run(args.data, args.encoder, precision, False, args.epochs, args.cache, args.device, batch_size=64)
        times["batch64", precision] = t
        print(f"{'fine-tuned':<12} {precision:<9} {t:>8.2f} {mem:>9.0f}   (batch 64)", flush=True)
    for freeze in (True, False):
        with autocast_recurrence():
            t, mem = run(args.data, args.encoder, "bf16", freeze, args.epochs, args.cache, args.device)
        times["autocast lstm", freeze] = t
        print(f"{'frozen' if freeze else 'fine-tuned':<12} {'bf16':<9} {t:>8.2f} {mem:>9.0f}   (LSTMs under autocast)",
              flush=True)
    for key, what in ((True, "frozen encoder"), (False, "fine-tuned encoder"), ("batch64", "fine-tuned, batch 64")):
        print(f"bf16 speed-up, {what}: {times[key, 'fp32'] / times[key, 'bf16']:.2f}x")
    for freeze in (True, False):
        print(f"bf16 with LSTMs under autocast (cuDNN fp16) speed-up, {'frozen' if freeze else 'fine-tuned'} "
              f"encoder: {times[freeze, 'fp32'] / times['autocast lstm', freeze]:.2f}x")
    ok = times[False, "fp32"] / times[False, "bf16"] >= 1.5
    print(f"target bf16 >= 1.5x with MiniLM fine-tuned: {'met' if ok else 'NOT met'}")
    if args.profile and args.device == "cuda":
        for precision in ("fp32", "bf16"):
            profile(args.data, args.encoder, precision, args.cache)


if __name__ == "__main__":
    main()
