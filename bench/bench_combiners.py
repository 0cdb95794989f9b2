"""Per-step cost of every loss combiner relative to `equal`: prints ratios, not a test.

    python bench/bench_combiners.py [--steps 20] [--rnn-units 128] [--batch-size 16] [--only famo,upgrad]
    python bench/bench_combiners.py --flagship        # spaces/groupings.yaml's model: rnn_units 32, heads 64-32-16, batch 32
    python bench/bench_combiners.py --flagship --profile pcgrad --steps 3    # where the time goes, batched and looped

Each combiner runs in its own process on the same batches and model (same seed), so the peak RSS
it reports is its own. Gradient methods run three ways: the Jacobian of the shared parameters by one
batched backward (`is_grads_batched`), by the per-task loop (T retained backward passes), and with
`space: representation` (the gradients w.r.t. z, one backward through the encoder).

On a machine shared with other jobs, `--interleave` times every combiner in one process, one step of
each in turn, so a load that comes and goes slows them alike: the ratios are medians of per-round
ratios to `equal` (no peak memory, no per-task loop).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mtl_core import TASKS


def _config(data_dir: str, rnn_units: int, head_dims: list[int] | None):
    from mtl_core.config import build_config

    model = {"text_encoder": "tiny", "rnn_units": rnn_units, "attention_heads": 4}
    return build_config({"data": {"root": data_dir}, "model": model | ({"head_dims": head_dims} if head_dims else {})})


def _combiner(name: str):
    """`pcgrad` or `pcgrad@representation` (a gradient method in the representation space)."""
    from mtl_core.config import StrategyChoice
    from mtl_core.strategies import StrategyContext, build_strategy

    base, _, space = name.partition("@")
    return build_strategy("combiner", StrategyChoice(base, {"space": space} if space else {}), StrategyContext(TASKS, 1, 0))


def one(name: str, steps: int, rnn_units: int, batch_size: int, data_dir: str, loop: bool,
        head_dims: list[int] | None = None) -> dict:
    warnings.filterwarnings("ignore")
    from mtl_core.prepare import prepare
    from mtl_core.strategies import gradients
    from mtl_core.train import build_model

    cfg = _config(data_dir, rnn_units, head_dims)
    data = prepare(cfg, torch.device("cpu"), splits=("train",))
    torch.manual_seed(0)
    model = build_model(cfg, data.encoder)
    combiner = _combiner(name)
    gradients._BATCHED_OK[type(model)] = not loop
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + combiner.parameters(), lr=1e-4)
    split = data.splits["train"]
    batches = list(split.batches(batch_size, np.arange(len(split)), drop_last=True))
    model.train()
    times = []
    for i in range(steps + 2):
        inputs, labels = batches[i % len(batches)]
        times.append(timed_step(model, combiner, opt, inputs, labels))
    shared = sum(p.numel() for p in model.shared_parameters())
    return {"ms": 1000 * float(np.median(times[2:])), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "shared_params": shared}


def profile(name: str, steps: int, rnn_units: int, batch_size: int, data_dir: str, head_dims: list[int] | None) -> None:
    """torch.profiler's top operators over `steps` steps of a gradient method, with the batched Jacobian and with
    the per-task loop, and the operators the batched backward has no batching rule for: vmap runs each of those
    once per task and stacks the results (`aten::copy_`, `aten::cat`)."""
    warnings.filterwarnings("ignore")
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from mtl_core.prepare import prepare
    from mtl_core.strategies import gradients
    from mtl_core.train import build_model

    cfg = _config(data_dir, rnn_units, head_dims)
    data = prepare(cfg, torch.device("cpu"), splits=("train",))
    split = data.splits["train"]
    batches = list(split.batches(batch_size, np.arange(len(split)), drop_last=True))
    for loop in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg, data.encoder).train()
        combiner = _combiner(name)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + combiner.parameters(), lr=1e-4)
        gradients._BATCHED_OK[type(model)] = not loop
        timed_step(model, combiner, opt, *batches[0])  # warm-up
        torch._C._debug_only_display_vmap_fallback_warnings(True)
        with warnings.catch_warnings(record=True) as caught, torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            warnings.simplefilter("always")
            for i in range(steps):
                timed_step(model, combiner, opt, *batches[(i + 1) % len(batches)])
        torch._C._debug_only_display_vmap_fallback_warnings(False)
        print(f"== {name}, {'per-task loop' if loop else 'batched Jacobian (is_grads_batched)'}, {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        ops = Counter(m.group(1) for w in caught if (m := re.search(r"batching rule for (\S+?)\. ", str(w.message))))
        if ops:
            print("no batching rule, run once per task:", ", ".join(f"{op} {n / steps:.0f}/step" for op, n in ops.most_common()))


def timed_step(model, combiner, opt, inputs, labels) -> float:
    """Seconds of one training step: encode, task losses, the combiner's backward, the optimizer."""
    from mtl_core.losses import task_losses
    from mtl_core.train import backward_step

    t0 = time.perf_counter()
    z = model.encode(inputs)
    losses, has = task_losses(model.heads_forward(z), labels, TASKS)
    opt.zero_grad(set_to_none=True)
    backward_step(model, z, losses, has, combiner)
    opt.step()
    return time.perf_counter() - t0


def interleaved(names: list[str], steps: int, rnn_units: int, batch_size: int, data_dir: str,
                head_dims: list[int] | None = None) -> dict[str, float]:
    """Each combiner's median over rounds of (its step time / equal's step time in the same round); a name
    `pcgrad@representation` is that gradient method in the representation space, `pcgrad@loop` its
    parameter-space Jacobian by the per-task loop (the model classes are shared: the path is set per step)."""
    warnings.filterwarnings("ignore")
    from mtl_core.prepare import prepare
    from mtl_core.strategies import gradients
    from mtl_core.train import build_model

    cfg = _config(data_dir, rnn_units, head_dims)
    data = prepare(cfg, torch.device("cpu"), splits=("train",))
    split = data.splits["train"]
    batches = list(split.batches(batch_size, np.arange(len(split)), drop_last=True))
    runs = {}
    for name in ["equal"] + [n for n in names if n != "equal"]:
        torch.manual_seed(0)
        model = build_model(cfg, data.encoder).train()
        combiner = _combiner(name.removesuffix("@loop"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + combiner.parameters(), lr=1e-4)
        runs[name] = (model, combiner, opt)
    times = {name: [] for name in runs}
    for i in range(steps + 2):
        inputs, labels = batches[i % len(batches)]
        for name, (model, combiner, opt) in runs.items():
            gradients._BATCHED_OK[type(model)] = not name.endswith("@loop")
            times[name].append(timed_step(model, combiner, opt, inputs, labels))
    base = np.array(times["equal"][2:])
    return {name: float(np.median(np.array(t[2:]) / base)) for name, t in times.items()} | {
        "equal_ms": 1000 * float(np.median(base))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rnn-units", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--one", default=None)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--interleave-run", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None)
    p.add_argument("--only", default=None, help="comma-separated combiners to time (default: all); equal always runs")
    p.add_argument("--interleave", action="store_true", help="one process, one step of each combiner in turn")
    p.add_argument("--head-dims", default=None, help="comma-separated head layer sizes (default: the config's)")
    p.add_argument("--flagship", action="store_true",
                   help="spaces/groupings.yaml's model and batch: --rnn-units 32 --head-dims 64,32,16 --batch-size 32")
    p.add_argument("--profile", default=None, metavar="COMBINER",
                   help="torch.profiler's table of a gradient method's steps, batched and by the loop, and vmap's fallbacks")
    args = p.parse_args()
    if args.flagship:
        args.rnn_units, args.head_dims, args.batch_size = 32, "64,32,16", 32
    head_dims = [int(d) for d in args.head_dims.split(",")] if args.head_dims else None
    if args.interleave_run:
        print(json.dumps(interleaved(args.interleave_run.split(","), args.steps, args.rnn_units, args.batch_size,
                                     args.data, head_dims)))
        return
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.rnn_units, args.batch_size, args.data, args.loop, head_dims)))
        return
    from mtl_core.data.synth import write_synthetic
    from mtl_core.strategies import REGISTRIES

    names = args.only.split(",") if args.only else list(REGISTRIES["combiner"])
    unknown = [n for n in names if n not in REGISTRIES["combiner"]]
    if unknown:
        sys.exit(f"error: --only: unknown combiner {', '.join(unknown)}; valid: {', '.join(REGISTRIES['combiner'])}")

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MTL_CACHE_DIR": str(Path(tmp) / "cache")}
        data = write_synthetic(Path(tmp) / "data", seed=0, n_train=128, n_val=8, n_test=8)
        if args.profile:
            os.environ["MTL_CACHE_DIR"] = env["MTL_CACHE_DIR"]
            profile(args.profile, min(args.steps, 5), args.rnn_units, args.batch_size, str(data), head_dims)
            return

        shape = ["--steps", str(args.steps), "--rnn-units", str(args.rnn_units), "--batch-size", str(args.batch_size),
                 "--data", str(data)] + (["--head-dims", args.head_dims] if args.head_dims else [])

        def run(name, loop=False):
            cmd = [sys.executable, __file__, "--one", name, *shape]
            out = subprocess.run(cmd + (["--loop"] if loop else []), capture_output=True, text=True, env=env, check=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        print(f"device: cpu, {torch.get_num_threads()} threads; HICCAP rnn_units={args.rnn_units}, heads "
              f"{args.head_dims or 'default'}, tiny encoder (frozen, cached), batch {args.batch_size}, T={len(TASKS)}, "
              f"median of {args.steps} steps")
        if args.interleave:
            variants = [f"{n}{v}" for n in names for v in
                        (["", "@loop", "@representation"] if REGISTRIES["combiner"][n].uses_gradients else [""])]
            cmd = [sys.executable, __file__, "--interleave-run", ",".join(variants), *shape]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            ratios = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"interleaved: equal {ratios.pop('equal_ms'):.1f} ms/step (median); median per-round ratio to equal "
                  "(gradient methods: batched, per-task loop, representation space)")
            print(f"{'combiner':<14}{'x equal':>9}{'loop':>9}{'repr.':>9}")
            for name in names:
                cells = [ratios.get(f"{name}{v}") for v in ("", "@loop", "@representation")]
                print(f"{name:<14}" + "".join(f"{c:>9.2f}" if c is not None else f"{'':>9}" for c in cells))
            return
        base = run("equal")
        print(f"shared parameters: {base['shared_params']:,}")
        print(f"{'combiner':<14}{'ms/step':>9}{'x equal':>9}{'x T':>7}{'peak MB':>9}{'loop x equal':>14}"
              f"{'repr. x equal':>15}{'repr. peak MB':>15}")
        for name in names:
            cls = REGISTRIES["combiner"][name]
            r = base if name == "equal" else run(name)
            ratio = r["ms"] / base["ms"]
            extra = ""
            if cls.uses_gradients:
                rep = run(f"{name}@representation")
                extra = (f"{run(name, loop=True)['ms'] / base['ms']:>14.2f}{rep['ms'] / base['ms']:>15.2f}"
                         f"{rep['peak_mb']:>15.0f}")
            print(f"{name:<14}{r['ms']:>9.1f}{ratio:>9.2f}{ratio / len(TASKS):>7.2f}{r['peak_mb']:>9.0f}{extra}")


if __name__ == "__main__":
    main()
