"""The training loop: one configuration (one model per task group), per-epoch metrics through `report`.

`train(cfg, report)` is what `search/` wraps as a Ray Tune trainable; `python -m mtl_core.train`
runs it alone for debugging.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mtl_core import TASKS, keys
from mtl_core.affinity import lookahead_affinity
from mtl_core.checkpoint import load_checkpoint, save_checkpoint
from mtl_core.config import Config, ConfigError
from mtl_core.data.dataset import SplitData
from mtl_core.losses import class_weights, task_losses
from mtl_core.metrics import binary_task_metrics, mean_over_tasks
from mtl_core.model.hiccap import HICCAP
from mtl_core.model.text_encoder import TextEncoder
from mtl_core.prepare import Prepared, prepare
from mtl_core.strategies import StrategyContext, build_strategy
from mtl_core.strategies.gradients import backward_aggregated, last_layer_grad_norms

log = logging.getLogger(__name__)
Report = Callable[[int, dict, Path], None]


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run cannot continue (the message names epoch, step and task)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested, but torch sees no CUDA device here (use auto or cpu)")
    return torch.device(name)


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """On CUDA, attention's fused kernels, cuDNN and cuBLAS are non-deterministic by default, and cuDNN's
    LSTM dropout has a state of its own, so two runs of one config (or a run and its resume) drift
    apart. This picks deterministic kernels and the native LSTM for the duration of a run, then
    restores the previous settings."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark,
             torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without such a kernel warns, never fails
    # cuDNN's LSTM keeps its own dropout state, outside torch's generators (so outside checkpoints):
    # the native LSTM draws its dropout from the CUDA generator that checkpoints carry
    torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark = False, False
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.backends.cuda.enable_flash_sdp(saved[4])
        torch.backends.cuda.enable_mem_efficient_sdp(saved[5])


def autocast(precision: str, device: torch.device):
    """Mixed precision for the forward pass (`train.precision`); a no-op context at fp32."""
    dtype = _DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def build_model(cfg: Config, encoder: TextEncoder) -> HICCAP:
    width, heads = encoder.hidden_size, cfg.model.attention_heads
    if width % heads:
        raise ConfigError(f"model.attention_heads: {heads} does not divide the text encoder width {width}")
    m = cfg.model
    # a fine-tuned encoder is the model's own copy: the models of a partition must not share (and jointly
    # train) one encoder, and the pretrained weights stay as loaded for the next model
    return HICCAP(cfg.tasks, width, text_encoder=None if m.freeze_text else copy.deepcopy(encoder.model),
                  freeze_text=m.freeze_text, rnn_units=m.rnn_units, attention_heads=heads,
                  dropout=m.dropout, head_dropout=m.head_dropout, head_dims=m.head_dims)


def backward_step(model: HICCAP, z: torch.Tensor, losses: torch.Tensor, active: torch.Tensor, combiner,
                  scaler: torch.amp.GradScaler | None = None) -> None:
    """Fill `.grad` for one step by the combiner's rule: a weighted loss, or aggregated task gradients.
    `scaler` (fp16) scales the combined loss; gradient methods run unscaled (config forbids fp16 there)."""
    if combiner.uses_gradients:
        backward_aggregated(model, z, losses, active, combiner)
    else:
        norms = last_layer_grad_norms(model, losses, active) if combiner.needs_grad_norms else None
        loss = combiner.combine(losses, active, norms)
        (scaler.scale(loss) if scaler is not None else loss).backward()


@torch.no_grad()
def evaluate(model: HICCAP, split: SplitData, batch_size: int, device: torch.device, prefix: str,
             precision: str = "fp32") -> dict[str, float]:
    model.eval()
    logits_all = {t: [] for t in split.tasks}
    for inputs, _ in split.batches(batch_size):
        with autocast(precision, device):
            outputs = model(inputs.to(device))
        for t, lg in outputs.items():
            logits_all[t].append(lg.float().cpu())
    out: dict[str, float] = {}
    for j, t in enumerate(split.tasks):
        lg = torch.cat(logits_all[t])
        y = split.labels[:, j]
        keep = y >= 0
        loss = F.cross_entropy(lg[keep], torch.from_numpy(y[keep])).item() if keep.any() else float("nan")
        out[keys.task(prefix, t, "loss")] = loss
        for k, v in binary_task_metrics(y, lg.argmax(1).numpy()).items():
            out[keys.task(prefix, t, k)] = v
    out[keys.average(prefix)] = mean_over_tasks(out, split.tasks, "f1", prefix)
    out[keys.average(prefix, "loss")] = mean_over_tasks(out, split.tasks, "loss", prefix)
    return out


def _optimizer(cfg: Config, model: HICCAP, combiner, steps_total: int):
    params = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.train.weight_decay}]
    extra = combiner.parameters()
    if extra:  # learned task weights: never decayed (METHODS.md 2, pitfall on UW), their own lr
        params.append({"params": extra, "weight_decay": 0.0, "lr": combiner.param_lr or cfg.train.lr})
    opt = torch.optim.AdamW(params, lr=cfg.train.lr)
    total = max(1, steps_total)
    if cfg.train.lr_schedule == "cosine":  # each group decays to a tenth of its own lr
        factor = lambda step: 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, sched


@dataclass
class GroupRun:
    """One model, its optimizer and its strategies, training the tasks of one group."""

    tasks: tuple[str, ...]
    model: HICCAP
    opt: torch.optim.Optimizer
    lr_sched: torch.optim.lr_scheduler.LRScheduler
    strategies: dict
    train_split: SplitData
    val_split: SplitData
    class_weights: torch.Tensor | None = None  # [T, 2] from train.class_weight
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    step: int = 0
    affinity: list = field(default_factory=list)  # this epoch's TAG measurements


def build_group(cfg: Config, tasks: tuple[str, ...], data: Prepared, device: torch.device) -> GroupRun:
    gcfg = replace(cfg, tasks=tuple(tasks), groups=None)
    train_split = data.splits["train"].for_tasks(tasks)
    model = build_model(gcfg, data.encoder).to(device)
    positives = tuple(int((train_split.labels[:, j] == 1).sum()) for j in range(len(tasks)))
    ctx = StrategyContext(tuple(tasks), cfg.train.epochs, cfg.train.seed, positives, train_split.modalities())
    strategies = {axis: build_strategy(axis, getattr(cfg.strategy, axis), ctx)
                  for axis in ("scheduler", "combiner", "modality")}
    steps = _steps_per_epoch(len(train_split), cfg.train.batch_size) * cfg.train.epochs
    opt, lr_sched = _optimizer(cfg, model, strategies["combiner"], steps)
    weights = class_weights(cfg.train.class_weight, train_split.labels, tuple(tasks))
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None
    return GroupRun(tuple(tasks), model, opt, lr_sched, strategies, train_split, data.splits["val"].for_tasks(tasks),
                    None if weights is None else weights.to(device), scaler)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n > batch_size else 1  # drop_last when possible: BatchNorm needs 2+ clips


def train_epoch(run: GroupRun, cfg: Config, epoch: int, device: torch.device, progress=None) -> dict[str, float]:
    """One epoch of one group: train, validate, let the strategies react; returns that group's metrics."""
    scheduler, combiner, modality = (run.strategies[k] for k in ("scheduler", "combiner", "modality"))
    for s in run.strategies.values():
        s.start_epoch(epoch)
    run.model.train()
    n_tasks = len(run.tasks)
    loss_sum, loss_n = torch.zeros(n_tasks), torch.zeros(n_tasks)
    bs = cfg.train.batch_size
    order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(run.train_split))
    batches = run.train_split.batches(bs, order, drop_last=len(run.train_split) > bs)
    for inputs, labels in (progress(batches, _steps_per_epoch(len(run.train_split), bs), epoch) if progress else batches):
        inputs.present = modality.mask(inputs.present)
        inputs, labels = inputs.to(device), labels.to(device)
        if cfg.train.affinity_every and n_tasks > 1 and run.step % cfg.train.affinity_every == 0:
            run.affinity.append(lookahead_affinity(run.model, inputs, labels, run.tasks, run.lr_sched.get_last_lr()[0],
                                                   run.class_weights))
        with autocast(cfg.train.precision, device):
            z = run.model.encode(inputs)
            losses, has = task_losses(run.model.heads_forward(z), labels, run.tasks, run.class_weights)
        detached, has = losses.detach().cpu(), has.cpu()  # one device-to-host copy each per step
        if not torch.isfinite(detached).all():
            bad = run.tasks[int((~torch.isfinite(detached)).nonzero()[0])]
            raise TrainingDiverged(f"epoch {epoch} step {run.step}: the loss of task {bad!r} is not finite")
        active = scheduler.step_mask(run.step) & has
        if active.any():
            run.opt.zero_grad(set_to_none=True)
            backward_step(run.model, z, losses, active.to(device), combiner, run.scaler)
            if run.scaler is not None:
                run.scaler.unscale_(run.opt)  # clip the true gradients
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
            if run.scaler is not None:
                run.scaler.step(run.opt)  # skips the step when fp16 overflowed
                run.scaler.update()
            else:
                run.opt.step()
        run.lr_sched.step()
        scheduler.observe(detached, active)
        loss_sum += detached * has
        loss_n += has
        run.step += 1

    metrics = {keys.task("train", t, "loss"): float(loss_sum[j] / max(1, loss_n[j])) for j, t in enumerate(run.tasks)}
    metrics.update(evaluate(run.model, run.val_split, cfg.train.eval_batch_size, device, "val", cfg.train.precision))
    for s in run.strategies.values():
        s.end_epoch(epoch, metrics)
        metrics.update(s.log())
    if run.affinity:
        mean = torch.nanmean(torch.stack(run.affinity), dim=0)
        metrics.update({keys.affinity(a, b): float(mean[i, j])
                        for i, a in enumerate(run.tasks) for j, b in enumerate(run.tasks) if i != j})
        run.affinity = []
    return metrics


def _group_keys(metrics: dict, index: int, several: bool) -> dict:
    """Task keys stay as they are; a group's own keys (grad cosine, stage, ...) get `group<i>/`."""
    if not several:
        return metrics
    out = {}
    for k, v in metrics.items():
        parts = k.split("/")
        task_key = len(parts) >= 2 and parts[1] in TASKS or k.startswith("affinity/")
        out[k if task_key else f"{parts[0]}/group{index}/{'/'.join(parts[1:])}"] = v
    return out


def train(cfg: Config, report: Report | None = None, run_dir: str | Path = "run", *, resume: bool = False,
          prepared: Prepared | None = None, progress: Callable | None = None) -> list[dict]:
    """Train one configuration; call `report(epoch, metrics, checkpoint_dir)` after every epoch.

    With `groups`, one model per group trains side by side and the epoch's metrics are the partition's:
    each task's from the model of its group, `val/avg_f1` their mean. With `resume`, continue from
    `run_dir/checkpoint` exactly where it stopped."""
    with deterministic_kernels(cfg.train.deterministic):
        return _train(cfg, report, Path(run_dir), resume, prepared, progress)


def _train(cfg: Config, report: Report | None, run_dir: Path, resume: bool, prepared: Prepared | None,
           progress: Callable | None) -> list[dict]:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    data = prepared or prepare(cfg, device, splits=("train", "val"))
    groups = cfg.partition()
    runs = [build_group(cfg, g, data, device) for g in groups]

    start_epoch, best, history = 0, -math.inf, []
    ckpt_dir = run_dir / "checkpoint"
    if resume:
        state = load_checkpoint(ckpt_dir, runs)
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        metrics: dict = {"epoch": epoch}
        for i, run in enumerate(runs):
            metrics.update(_group_keys(train_epoch(run, cfg, epoch, device, progress), i, len(runs) > 1))
        if len(runs) > 1:
            metrics[keys.average("val")] = mean_over_tasks(metrics, cfg.tasks, "f1", "val")
            metrics[keys.average("val", "loss")] = mean_over_tasks(metrics, cfg.tasks, "loss", "val")
        metrics["time/epoch_s"] = time.perf_counter() - t0
        score = metrics[keys.average("val")]
        is_best = math.isfinite(score) and score > best
        best = max(best, score) if math.isfinite(score) else best
        history.append(metrics)
        save_checkpoint(ckpt_dir, runs, {"epoch": epoch, "best": best, "history": history}, best_model=is_best)
        if report is not None:
            report(epoch, metrics, ckpt_dir)
    return history


def evaluate_best(cfg: Config, run_dir: str | Path, split: str = "test", prepared: Prepared | None = None) -> dict:
    """Metrics of the best checkpoint (highest val/avg_f1) of a finished run on `split`."""
    device = resolve_device(cfg.train.device)
    data = prepared or prepare(cfg, device, splits=(split,))
    states = torch.load(Path(run_dir) / "checkpoint" / "best_model.pt", map_location=device)
    out: dict[str, float] = {}
    for tasks, state in zip(cfg.partition(), states):
        model = build_model(replace(cfg, tasks=tasks, groups=None), data.encoder).to(device)
        model.load_state_dict(state)
        out.update(evaluate(model, data.splits[split].for_tasks(tasks), cfg.train.eval_batch_size, device, split,
                            cfg.train.precision))
    out[keys.average(split)] = mean_over_tasks(out, cfg.tasks, "f1", split)
    out[keys.average(split, "loss")] = mean_over_tasks(out, cfg.tasks, "loss", split)
    return out


# ---------------------------------------------------------------------------------------------
# command line: python -m mtl_core.train CONFIG.yaml [--set key.path=value ...] [--out DIR]


def _progress_bar(enabled: bool):
    from tqdm import tqdm

    def wrap(batches, total, epoch):
        return tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, disable=not enabled, dynamic_ncols=True)
    return wrap


def _print_row(metrics: dict, tasks, first: bool) -> None:
    cols = ["epoch", "train_loss", "val_loss", "val_avg_f1"] + [f"{t}_f1" for t in tasks] + ["sec"]
    if first:
        print(" ".join(f"{c:>11}" for c in cols), flush=True)
    train_loss = float(np.mean([metrics[f"train/{t}/loss"] for t in tasks]))
    vals = [metrics["epoch"], train_loss, metrics["val/avg_loss"], metrics["val/avg_f1"]]
    vals += [metrics[f"val/{t}/f1"] for t in tasks] + [metrics["time/epoch_s"]]
    print(f"{vals[0]:>11d} " + " ".join(f"{v:>11.4f}" for v in vals[1:]), flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    import yaml

    from mtl_core.cli import fail, setup_logging
    from mtl_core.config import load_config
    from mtl_core.data.layout import DataError
    from mtl_core.model.text_encoder import EncoderNotFound

    p = argparse.ArgumentParser(prog="python -m mtl_core.train", description="Train one configuration (no Ray).")
    p.add_argument("config", type=Path, nargs="?", help="YAML config; omitted = all defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config key (repeatable), e.g. --set train.epochs=3")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--eval-test", action="store_true", help="evaluate the best checkpoint on the test split")
    args = p.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        return fail(str(exc))
    if args.resume and (args.out is None or not (args.out / "checkpoint" / "state.pt").is_file()):
        return fail("--resume: needs --out DIR holding a checkpoint from an earlier run")
    out = args.out or Path("runs") / f"{args.config.stem if args.config else 'default'}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except OSError as exc:  # --out is a file, under a file, or not writable: one line, not a traceback
        return fail(f"--out: {out}: {exc.strerror or exc}")
    metrics_path = out / "metrics.jsonl"
    if not args.resume:
        metrics_path.unlink(missing_ok=True)
    first = [True]

    def report(epoch: int, metrics: dict, checkpoint_dir: Path) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        _print_row(metrics, cfg.tasks, first[0])
        first[0] = False

    try:
        history = train(cfg, report, out, resume=args.resume,
                        progress=_progress_bar(cfg.train.progress and sys.stderr.isatty()))
        if args.eval_test:
            test = evaluate_best(cfg, out)
            (out / "test_metrics.json").write_text(json.dumps(test, indent=2))
            print(f"test/avg_f1 {test['test/avg_f1']:.4f} (best checkpoint) -> {out / 'test_metrics.json'}")
    except (ConfigError, EncoderNotFound) as exc:
        return fail(str(exc))
    except DataError as exc:
        return fail(str(exc), code=1)
    except TrainingDiverged as exc:
        return fail(f"training diverged: {exc}", code=1)
    except KeyboardInterrupt:
        print(f"interrupted; resume with: python -m mtl_core.train {args.config or ''} --out {out} --resume",
              file=sys.stderr)
        return 130
    if history:
        best = max(history, key=lambda m: m["val/avg_f1"] if math.isfinite(m["val/avg_f1"]) else -1)
        print(f"best val/avg_f1 {best['val/avg_f1']:.4f} at epoch {best['epoch']}; run folder {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
