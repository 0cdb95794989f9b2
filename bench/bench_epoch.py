"""An epoch against the machine's limit: prints ratios, not a test.

    python bench/bench_epoch.py --real ../shared/data/comic_mischief [--repeats 2] [--gpu-batches 3]

For the real-text CPU model (spaces/comic_mischief_cpu.yaml's model and train sections) and the GPU-size model
(spaces/comic_mischief.yaml's: rnn_units 256, 12 heads; on a CPU only a few batches of it), on one thread
(a search trial's one CPU):

1. the FLOPs of one training step by part (the HCA's projections and its attention, the LSTM encoders, the
   pools, the heads): torch's FLOP formulas (torch.utils.flop_counter), each op counted once against its module;
2. this machine's matmul peak on one thread, fp32 and bf16 ([8192 x 384] by [384 x 384]: the HCA's
   projections of 32 clips x 256 text states at MiniLM's width);
3. fp32 and bf16 epochs side by side (alternating, the best of --repeats each, through mtl_core.train's own
   train_epoch: validation included), the achieved rate against the peak, and where a step's time goes:
   data, forward, backward, optimizer (perf_counter around each), and within them the time in torch's
   kernels by kind (torch.profiler) against the rest (Python, dispatch, the autograd engine);
4. the space as shipped (fusion width 192, `train.precision: auto`) against fp32 at MiniLM's width 384, whole
   epochs alternating in one process: what the two speed-ups give together;
5. the LSTM encoders alone on video-shaped input, at fp32 and under bf16 autocast: speed and error (they
   run at fp32 under bf16 in the model: mtl_core.model.hiccap.recurrence_precision).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from mtl_core.config import build_config, load_yaml
from mtl_core.model.hiccap import HCABranch, SequenceEncoder

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "comic_mischief"
PRECISIONS = ("fp32", "bf16")

# which aten ops are matrix products of projections (linear layers) and which are attention's own
PROJECTION_OPS = {"mm", "addmm", "linear"}
MATMUL_OPS = PROJECTION_OPS | {"bmm", "baddbmm", "matmul", "_scaled_dot_product_flash_attention_for_cpu",
                               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
                               "convolution"}


# ---------------------------------------------------------------------------------------------
# FLOP accounting


def op_name(op) -> str:
    """`aten.addmm.default` -> `addmm`."""
    return str(op).split(".")[1] if str(op).count(".") >= 1 else str(op)


class _Attributed(TorchDispatchMode):
    """Counts each op's FLOPs (torch's own formulas: torch.utils.flop_counter) against the module that runs
    it: in the forward the innermost module whose forward is running, in the backward the module whose
    forward created the autograd node being run (set by the nodes' pre-hooks)."""

    def __init__(self, counts: dict, stack: list):
        super().__init__()
        self.counts, self.stack, self.current = counts, stack, None  # current: None in the forward

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            ops = self.counts.setdefault(self.stack[-1] if self.current is None else self.current, {})
            ops[op_name(func)] = ops.get(op_name(func), 0) + int(formula(*args, **kwargs, out_val=out))
        return out


class _Creator(TorchFunctionMode):
    """Tags the autograd node of every tensor a torch function makes with the innermost running module."""

    def __init__(self, stack: list, tags: dict):
        super().__init__()
        self.stack, self.tags = stack, tags

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                self.tags.setdefault(t.grad_fn, self.stack[-1])
        return out


def count_flops(model: nn.Module, loss_fn) -> tuple[int, dict[str, dict[str, int]]]:
    """FLOPs of `loss_fn()` (the forward, a scalar) and its backward: (total, {module path: {op: FLOPs}}).
    A path is the model's class name and a submodule's dotted name; each op counts once, against the
    innermost module (so paths add up without overlap: a part is the sum over the paths under it). Nodes
    built inside a C++ composite (an LSTM's steps) belong to the module of the node that consumes them."""
    names = {id(m): f"{type(model).__name__}{'.' + n if n else ''}" for n, m in model.named_modules()}
    counts: dict[str, dict[str, int]] = {}
    stack, tags = ["Global"], {}

    def enter(module, args):
        stack.append(names.get(id(module), stack[-1]))

    def leave(module, args, out):
        stack.pop()
    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
             torch.nn.modules.module.register_module_forward_hook(leave, always_call=True)]
    counter = _Attributed(counts, stack)
    try:
        with _Creator(stack, tags), counter:
            loss = loss_fn()
    finally:
        for h in hooks:
            h.remove()
    # every node of the graph: its own tag, else its consumer's
    todo, seen = [(loss.grad_fn, "Global")], set()
    while todo:
        node, parent = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        tag = tags.setdefault(node, parent)

        def pre(grad_outputs, tag=tag):
            counter.current = tag
        node.register_prehook(pre)
        todo.extend((n, tag) for n, _ in node.next_functions)
    counter.current = "Global"
    with counter:
        loss.backward()
    return sum(sum(ops.values()) for ops in counts.values()), counts


def training_step(model: nn.Module, inputs, labels, class_weights=None):
    """The summed task losses of one forward of a HICCAP-like model (for `count_flops`)."""
    from mtl_core.losses import task_losses

    return lambda: task_losses(model(inputs), labels, model.tasks, class_weights)[0].sum()


def under(by_module: dict[str, dict[str, int]], path: str) -> dict[str, int]:
    """The op counts of `path` and every path below it."""
    out: dict[str, int] = {}
    for name, ops in by_module.items():
        if name == path or name.startswith(path + "."):
            for op, n in ops.items():
                out[op] = out.get(op, 0) + n
    return out


def model_parts(model: nn.Module) -> dict[str, list[tuple[str, set[str] | None]]]:
    """Each reported part of HICCAP-like models as (module path, ops counted or None for every op)."""
    root = type(model).__name__
    parts: dict[str, list] = {"HCA projections": [], "HCA attention": [], "LSTM encoders": [], "pools": [], "heads": []}
    for name, child in model.named_children():
        path = f"{root}.{name}"
        if isinstance(child, HCABranch):
            parts["HCA projections"].append((f"{path}.attn", PROJECTION_OPS))
            parts["HCA attention"].append((f"{path}.attn", "not projections"))
        elif isinstance(child, SequenceEncoder):
            parts["LSTM encoders"].append((path, None))
        elif name == "pools":
            parts["pools"] += [(f"{path}.{i}", None) for i in range(len(child))]
        elif name == "heads":
            parts["heads"] += [(f"{path}.{t}", None) for t in child.keys()]
    return parts


def flops_by_part(total: int, by_module: dict[str, dict[str, int]], parts: dict[str, list]) -> dict[str, int]:
    """FLOPs per part; `other` is what no part holds (losses, the missing-token fill, ...)."""
    out = {}
    for part, members in parts.items():
        n = 0
        for path, ops in members:
            counts = under(by_module, path)
            if ops is None:
                n += sum(counts.values())
            elif ops == "not projections":
                n += sum(v for k, v in counts.items() if k not in PROJECTION_OPS)
            else:
                n += sum(v for k, v in counts.items() if k in ops)
        out[part] = n
    out["other"] = total - sum(out.values())
    return out


def linear_flops(rows: int, fan_in: int, fan_out: int, input_grad: bool) -> int:
    """A Linear layer's matmul FLOPs for one forward and backward: 2*rows*in*out each for the forward, the
    weight's gradient and (when the input needs one) the input's gradient."""
    return 2 * rows * fan_in * fan_out * (3 if input_grad else 2)


def rate(flops: float, seconds: float) -> float:
    """GFLOP/s."""
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# the machine's peak


def matmul_peak(dtype: torch.dtype, rows: int = 8192, width: int = 384, repeat: int = 5, inner: int = 10) -> float:
    """GFLOP/s of [rows x width] @ [width x width] on the current thread count, best of `repeat`."""
    a, b = torch.randn(rows, width, dtype=dtype), torch.randn(width, width, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        best = min(best, (time.perf_counter() - t0) / inner)
    return rate(2 * rows * width * width, best)


# ---------------------------------------------------------------------------------------------
# the model and its data


def space_config(space: Path, root: Path, precision: str, extra: dict | None = None):
    """The space's base run config (tasks, data, model, train) on the dataset `root` at `precision`."""
    raw = load_yaml(space)
    base = {k: raw[k] for k in ("tasks", "data", "model", "train") if k in raw}
    base["data"] = {**base.get("data", {}), "root": str(root)}
    base["train"] = {**base.get("train", {}), "precision": precision, "device": "cpu", "progress": False,
                     **((extra or {}).get("train", {}))}
    base["model"] = {**base.get("model", {}), **((extra or {}).get("model", {}))}
    return build_config(base)


def make_run(cfg, data, seed: int = 0):
    from mtl_core.train import build_group

    torch.manual_seed(seed)
    return build_group(cfg, cfg.tasks, data, torch.device("cpu"))


def one_step(run, cfg, inputs, labels):
    """What mtl_core.train.train_step does, phase by phase: {phase: seconds}."""
    from mtl_core.precision import autocast
    from mtl_core.train import backward_step

    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    with autocast(cfg.train.precision, cpu):
        z = run.model.encode(inputs)
        losses, has = run.model.task_losses(z, labels, run.class_weights)
    losses.detach().cpu()
    t1 = time.perf_counter()
    run.opt.zero_grad(set_to_none=True)
    backward_step(run.model, z, losses, has, run.strategies["combiner"], run.scaler)
    t2 = time.perf_counter()
    if cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
    run.opt.step()
    run.lr_sched.step()
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2}


KINDS = [("matmul", MATMUL_OPS), ("casts/copies", {"copy_", "to", "_to_copy", "clone", "contiguous"}),
         ("dropout RNG", {"bernoulli_", "native_dropout", "dropout"}),
         ("LSTM", {"mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "lstm", "_thnn_fused_lstm_cell"}),
         ("layer/batch norm", {"native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
                               "native_batch_norm_backward", "_batch_norm_with_update"}),
         ("optimizer", {"_fused_adamw_", "_foreach_mul_", "_foreach_add_", "_foreach_addcmul_", "_foreach_lerp_",
                        "_foreach_sqrt", "_foreach_div_", "_foreach_addcdiv_", "_foreach_maximum_", "_foreach_norm"})]


def kernel_time(events) -> dict[str, float]:
    """Self CPU seconds of aten ops by kind (profiler key averages)."""
    out = {k: 0.0 for k, _ in KINDS} | {"other kernels": 0.0}
    for e in events:
        if not e.key.startswith("aten::"):
            continue
        name = e.key.split("::", 1)[1]
        kind = next((k for k, ops in KINDS if name in ops), "other kernels")
        out[kind] += e.self_cpu_time_total / 1e6
    return out


def timed_batches(n: int, steps: int, batch_size: int) -> list[np.ndarray]:
    """The clip indices of the breakdown's batches: a warm-up batch, then `steps` timed ones (random clips)."""
    order = np.random.default_rng(0).permutation(n)
    return [order[s:s + batch_size] for s in range(0, (steps + 1) * batch_size, batch_size)]


def phase_breakdown(run, cfg, split, steps: int, batch_size: int) -> tuple[dict, dict, float]:
    """Per step: {phase: s} (data included), {kernel kind: s} and the step's wall time, over `steps` steps
    after one warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    run.model.train()
    batches = timed_batches(len(split), steps, batch_size)
    phases = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    inputs, labels = split.batch(batches[0])
    one_step(run, cfg, inputs, labels)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t_all = time.perf_counter()
        for idx in batches[1:steps + 1]:
            t0 = time.perf_counter()
            inputs, labels = split.batch(idx)
            phases["data"] += time.perf_counter() - t0
            for k, v in one_step(run, cfg, inputs, labels).items():
                phases[k] += v
        wall = time.perf_counter() - t_all
    kernels = kernel_time(prof.key_averages())
    return ({k: v / steps for k, v in phases.items()}, {k: v / steps for k, v in kernels.items()}, wall / steps)


def timed_epoch(run, cfg, epoch: int) -> float:
    from mtl_core.train import train_epoch

    t0 = time.perf_counter()
    train_epoch(run, cfg, epoch, torch.device("cpu"))
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# printing


def fmt_parts(parts: dict[str, int], steps_per_epoch: int) -> str:
    total = sum(parts.values())
    return "\n".join(f"    {k:<16} {v / 1e9:9.2f} GFLOP/step {100 * v / total:5.1f}%  "
                     f"{v * steps_per_epoch / 1e12:7.3f} TFLOP/epoch" for k, v in parts.items())


def bench_model(name: str, space: Path, root: Path, repeats: int, steps: int | None, peaks: dict) -> dict:
    """FLOPs, side-by-side epochs (or `steps` steps), the breakdown; returns the figures."""
    from mtl_core.prepare import prepare
    from mtl_core.train import _steps_per_epoch

    cfgs = {p: space_config(space, root, p) for p in PRECISIONS}
    data = prepare(cfgs["fp32"], torch.device("cpu"), splits=("train", "val"))
    cfg = cfgs["fp32"]
    bs = cfg.train.batch_size
    split = data.splits["train"]
    per_epoch = _steps_per_epoch(len(split), bs)
    print(f"\n== {name}: {space.name} (rnn_units {cfg.model.rnn_units}, {cfg.model.attention_heads} heads, "
          f"batch {bs}, {len(split)} training clips: {per_epoch} steps per epoch, text cut at {cfg.data.text_max_len})")

    run = make_run(cfg, data)
    run.model.train()
    n = steps or min(6, per_epoch - 1)
    parts: dict[str, float] = {}
    for idx in timed_batches(len(split), n, bs)[1:]:  # the batches the breakdown times: rates are of the same work
        inputs, labels = split.batch(idx)
        counted, by_module = count_flops(run.model, training_step(run.model, inputs, labels, run.class_weights))
        for k, v in flops_by_part(counted, by_module, model_parts(run.model)).items():
            parts[k] = parts.get(k, 0) + v / n
    total = sum(parts.values())
    print(f"  FLOPs of one training step (forward + backward; the mean of the {n} batches timed below, each padded "
          f"to its longest text):")
    print(fmt_parts(parts, per_epoch))

    runs = {p: make_run(cfgs[p], data) for p in PRECISIONS}
    figures: dict = {"flops_step": total, "parts": parts, "steps_per_epoch": per_epoch}
    if steps is None:  # whole epochs, alternating fp32 and bf16
        times: dict = {p: [] for p in PRECISIONS}
        for r in range(repeats):
            for p in PRECISIONS:
                times[p].append(timed_epoch(runs[p], cfgs[p], r))
        epoch = {p: min(v) for p, v in times.items()}
        for p in PRECISIONS:
            print(f"  {p} epoch (train + validation): best {epoch[p]:.1f}s of {', '.join(f'{t:.1f}' for t in times[p])}")
        figures["epoch_s"] = epoch
    breakdown = {}
    for p in PRECISIONS:
        breakdown[p] = phase_breakdown(runs[p], cfgs[p], split, n, bs)
    print(f"  one step, mean of {n} (random batches; perf_counter by phase, torch.profiler by kernel):")
    header = f"    {'':<22}" + "".join(f"{p:>10}" for p in PRECISIONS) + f"{'fp32/bf16':>11}"
    print(header)
    rows = list(breakdown["fp32"][0]) + ["step wall"]
    for k in rows:
        v = {p: (breakdown[p][2] if k == "step wall" else breakdown[p][0][k]) for p in PRECISIONS}
        print(f"    {k:<22}" + "".join(f"{v[p]:>9.3f}s" for p in PRECISIONS) + f"{v['fp32'] / v['bf16']:>10.2f}x")
    print("    in kernels, by kind:")
    for k in breakdown["fp32"][1]:
        v = {p: breakdown[p][1][k] for p in PRECISIONS}
        print(f"    {'  ' + k:<22}" + "".join(f"{v[p]:>9.3f}s" for p in PRECISIONS)
              + (f"{v['fp32'] / v['bf16']:>10.2f}x" if v["bf16"] > 0 else ""))
    for p in PRECISIONS:
        phases, kernels, wall = breakdown[p]
        outside = wall - sum(kernels.values())
        achieved = rate(total, phases["forward"] + phases["backward"])
        mm_rate = rate(total, kernels["matmul"])  # the counter counts matrix products only
        print(f"  {p}: forward + backward {rate(total, phases['forward'] + phases['backward']):.0f} GFLOP/s = "
              f"{100 * achieved / peaks[p]:.0f}% of this machine's {peaks[p]:.0f} ({p} matmul peak); "
              f"the matmul kernels alone {mm_rate:.0f} GFLOP/s ({100 * mm_rate / peaks[p]:.0f}%); "
              f"outside kernels (Python, dispatch, autograd engine, profiler): {outside:.3f}s/step "
              f"({100 * outside / wall:.0f}%)")
        figures[f"{p}_achieved"] = achieved
    wall = {p: breakdown[p][2] for p in PRECISIONS}
    print(f"  ratio bf16 vs fp32: one step {wall['fp32'] / wall['bf16']:.2f}x"
          + (f", epoch {figures['epoch_s']['fp32'] / figures['epoch_s']['bf16']:.2f}x" if "epoch_s" in figures else "")
          + f" (matmul peak ratio {peaks['bf16'] / peaks['fp32']:.2f}x)")
    if steps is not None:
        print(f"  an epoch, estimated from the step ({per_epoch} steps, no validation): fp32 {wall['fp32'] * per_epoch:.0f}s, "
              f"bf16 {wall['bf16'] * per_epoch:.0f}s")
    figures["step_s"] = wall
    return figures


def bench_shipped(space: Path, root: Path, repeats: int, against_width: int) -> float:
    """The space as shipped (its fusion width, `train.precision: auto` as it resolves here) against fp32 at
    fusion width `against_width`, whole epochs alternating in one process; returns the epoch ratio."""
    from mtl_core.prepare import prepare
    from mtl_core.precision import resolve_precision

    shipped = resolve_precision("auto", torch.device("cpu"))
    cfgs = {"shipped": space_config(space, root, shipped),
            "fp32 wide": space_config(space, root, "fp32", {"model": {"width": against_width}})}
    data = prepare(cfgs["shipped"], torch.device("cpu"), splits=("train", "val"))
    runs = {k: make_run(c, data) for k, c in cfgs.items()}
    times: dict = {k: [] for k in cfgs}
    for r in range(repeats):
        for k in cfgs:
            times[k].append(timed_epoch(runs[k], cfgs[k], r))
    best = {k: min(v) for k, v in times.items()}
    print(f"\n== {space.name} as shipped (fusion width {cfgs['shipped'].model.width}, precision auto = {shipped}) "
          f"against fp32 at fusion width {against_width}, {repeats} epochs each, alternating:")
    for k in cfgs:
        print(f"  {k:<10} epoch (train + validation): best {best[k]:.1f}s of {', '.join(f'{t:.1f}' for t in times[k])}")
    ratio = best["fp32 wide"] / best["shipped"]
    print(f"  ratio: the shipped epoch is {ratio:.2f}x faster")
    return ratio


def bench_lstm(rnn_units: int, width: int, batch: int = 16, steps: int = 36, repeat: int = 3) -> None:
    """The video encoder on [batch, 36, 1024] (the reference's i3d length): fp32 vs under bf16 autocast."""
    torch.manual_seed(0)
    enc = SequenceEncoder(1024, rnn_units, width, 0.0)
    x = torch.randn(batch, steps, 1024)
    mask = torch.ones(batch, steps, dtype=torch.bool)

    def run(bf16: bool):
        out = None
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        best = float("inf")
        for _ in range(repeat):
            enc.zero_grad()
            t0 = time.perf_counter()
            with ctx:
                lengths = mask.sum(1)
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                out, _ = enc.lstm(packed)  # the LSTM alone, autocast on (the model turns it off under bf16)
                out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            out.float().sum().backward()
            best = min(best, time.perf_counter() - t0)
        grads = torch.cat([p.grad.flatten() for p in enc.lstm.parameters()])
        return best, out.detach().float(), grads

    t32, o32, g32 = run(False)
    t16, o16, g16 = run(True)
    err = float((o16 - o32).norm() / o32.norm())
    gerr = float((g16 - g32).norm() / g32.norm())
    print(f"  LSTM rnn_units {rnn_units} on [{batch}, {steps}, 1024], forward + backward: fp32 {t32 * 1e3:.0f} ms, "
          f"bf16 autocast {t16 * 1e3:.0f} ms ({t32 / t16:.2f}x); relative error of the outputs {err:.4f}, "
          f"of the weight gradients {gerr:.4f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=REAL, help="the Comic Mischief release (default ../shared/data/comic_mischief)")
    p.add_argument("--repeats", type=int, default=2, help="epochs per precision for the CPU model, alternating")
    p.add_argument("--gpu-batches", type=int, default=3, help="timed steps of the GPU-size model")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a search trial has one CPU)")
    p.add_argument("--skip", choices=["cpu", "gpu", "lstm", "shipped"], action="append", default=[])
    p.add_argument("--against-width", type=int, default=384,
                   help="the shipped CPU space is timed against fp32 at this fusion width (MiniLM's own: 384)")
    args = p.parse_args(argv)
    if not args.real.is_dir():
        print(f"error: --real: dataset folder not found: {args.real}")
        return 2
    torch.set_num_threads(args.threads)
    flags = sorted(set(open("/proc/cpuinfo").read(1 << 20).split()) & {"amx_bf16", "avx512_bf16", "avx512f"}) \
        if os.path.exists("/proc/cpuinfo") else []
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 flags {flags}, load average {os.getloadavg()[0]:.1f} at the start")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak, [8192 x 384] @ [384 x 384]: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} "
          f"GFLOP/s ({peaks['bf16'] / peaks['fp32']:.2f}x)")
    if "cpu" not in args.skip:
        bench_model("real-text CPU model", ROOT / "spaces" / "comic_mischief_cpu.yaml", args.real, args.repeats, None, peaks)
    if "shipped" not in args.skip:
        bench_shipped(ROOT / "spaces" / "comic_mischief_cpu.yaml", args.real, args.repeats, args.against_width)
    if "gpu" not in args.skip:
        bench_model("GPU-size model", ROOT / "spaces" / "comic_mischief.yaml", args.real, 1, args.gpu_batches, peaks)
    if "lstm" not in args.skip:
        print("\n== the LSTM encoders alone (the real text has no video or audio: there they run one step)")
        for units in (32, 256):
            bench_lstm(units, 384)
    peaks_end = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"\nmatmul peak again at the end: fp32 {peaks_end['fp32']:.0f}, bf16 {peaks_end['bf16']:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
