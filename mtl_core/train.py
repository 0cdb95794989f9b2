"""The training loop: one configuration (one model per task group), per-epoch metrics through `report`.

`train(cfg, report)` is what `search/` wraps as a Ray Tune trainable; `python -m mtl_core.train`
runs it alone (`mtl_core.train_cli`). Devices and precision: `mtl_core.precision`; the test split's
per-clip predictions: `mtl_core.predictions`.
"""
from __future__ import annotations

if __name__ == "__main__":  # the command: its module, before this one's heavy imports run twice
    import sys

    from mtl_core.train_cli import main

    sys.exit(main())

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mtl_core import TASKS, keys
from mtl_core.affinity import lookahead_affinity
from mtl_core.checkpoint import FOLDER as CHECKPOINT, load_checkpoint, save_checkpoint
from mtl_core.config import Config, ConfigError, StrategyChoice, StrategyConfig, model_width
from mtl_core.data.dataset import SplitData
from mtl_core.losses import class_weights
from mtl_core.metrics import binary_task_metrics, mean_over_tasks
from mtl_core.model.fusion import ARCHITECTURES
from mtl_core.model.hiccap import HICCAP
from mtl_core.model.text_encoder import TextEncoder
from mtl_core.prepare import Prepared, cache_root, prepare
from mtl_core.precision import autocast, deterministic_kernels, resolve_device, resolve_precision
from mtl_core.predictions import PREDICTIONS_FILE, save_predictions
from mtl_core.pretrain import check_modalities
from mtl_core.pretrain.cache import pretrained_encoder
from mtl_core.pretrain.objectives import PretrainModel, evaluate_pretraining
from mtl_core.strategies import AXES, StrategyContext, build_strategy
from mtl_core.strategies.gradients import backward_aggregated, last_layer_grad_norms

log = logging.getLogger(__name__)
Report = Callable[[int, dict, Path], None]


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run cannot continue (the message names epoch, step and task)."""


def build_model(cfg: Config, encoder: TextEncoder) -> HICCAP:
    """The `model.arch` fusion (HICCAP by default); every architecture has HICCAP's interface."""
    m = cfg.model
    width, heads = model_width(m, encoder.hidden_size), m.attention_heads
    if width % heads:
        what = "model.width" if m.width is not None else "the text encoder width"
        raise ConfigError(f"model.attention_heads: {heads} does not divide {what} {width}")
    # a fine-tuned encoder is the model's own copy: the models of a partition must not share (and jointly
    # train) one encoder, and the pretrained weights stay as loaded for the next model
    return ARCHITECTURES[m.arch](cfg.tasks, width, text_encoder=None if m.freeze_text else copy.deepcopy(encoder.model),
                  text_width=encoder.hidden_size, freeze_text=m.freeze_text, rnn_units=m.rnn_units,
                  attention_heads=heads, dropout=m.dropout, head_dropout=m.head_dropout, head_dims=m.head_dims)


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
             precision: str = "fp32", predictions: dict | None = None) -> dict[str, float]:
    """The split's metrics per task and their means; `predictions`, when given, receives each task's
    predicted class per clip (int8, in the split's order)."""
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
    for name in keys.TASK_METRICS:
        out[keys.average(prefix, name)] = mean_over_tasks(out, split.tasks, name, prefix)
    if predictions is not None:
        predictions.update({t: torch.cat(logits_all[t]).argmax(1).numpy().astype(np.int8) for t in split.tasks})
    return out


def _optimizer(cfg: Config, model: HICCAP, combiner, steps_total: int):
    params = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.train.weight_decay}]
    extra = combiner.parameters()
    if extra:  # learned task weights: never decayed (docs/methods.md#combiner-uncertainty), their own lr
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
    best: float = math.nan  # this model's best selection score so far (train.select_metric over its tasks)
    best_epoch: int = -1
    best_state: dict | None = None  # its weights at that epoch (on the CPU)
    validate: Callable | None = None  # the validation metrics (`evaluate`'s signature); None: `evaluate`

    def select(self, metrics: dict, epoch: int, metric: str, mode: str) -> bool:
        """Keep this epoch's weights when they beat this model's best so far; each model of a partition
        selects its own epoch (a joint choice would deny the single-task models their early stopping)."""
        score = metrics.get(keys.for_group(metric, self.tasks), math.nan)
        best = self.best if math.isfinite(self.best) else (-math.inf if mode == "max" else math.inf)
        if not keys.better(score, best, mode):
            return False
        self.best, self.best_epoch = float(score), epoch
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        return True


def build_group(cfg: Config, tasks: tuple[str, ...], data: Prepared, device: torch.device) -> GroupRun:
    gcfg = replace(cfg, tasks=tuple(tasks), groups=None)
    train_split = data.splits["train"].for_tasks(tasks)
    model = build_model(gcfg, data.encoder).to(device)
    positives = tuple(int((train_split.labels[:, j] == 1).sum()) for j in range(len(tasks)))
    ctx = StrategyContext(tuple(tasks), cfg.train.epochs, cfg.train.seed, positives, train_split.modalities())
    strategies = {axis: build_strategy(axis, getattr(cfg.strategy, axis), ctx)
                  for axis in AXES}
    steps = _steps_per_epoch(len(train_split), cfg.train.batch_size) * cfg.train.epochs
    opt, lr_sched = _optimizer(cfg, model, strategies["combiner"], steps)
    weights = class_weights(cfg.train.class_weight, train_split.labels, tuple(tasks))
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None
    return GroupRun(tuple(tasks), model, opt, lr_sched, strategies, train_split, data.splits["val"].for_tasks(tasks),
                    None if weights is None else weights.to(device), scaler)


def run_pilot(run: GroupRun, cfg: Config, data: Prepared, device: torch.device) -> None:
    """A combiner that asks for a pilot (`transferred`) gets the per-epoch metrics of one: a fresh model of the
    group trained with the pilot's combiner, all tasks and all modalities, seeded like a run of its own (so it
    equals that run without affinity measurements); the group's model and the global RNG stay as they were."""
    pilot = run.strategies["combiner"].pilot()
    if pilot is None:
        return
    source, epochs = pilot
    pcfg = replace(cfg, train=replace(cfg.train, epochs=epochs, affinity_every=0),
                   strategy=StrategyConfig(combiner=StrategyChoice(source)))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train.seed)
        pilot_run = build_group(pcfg, run.tasks, data, device)
        history = [train_epoch(pilot_run, pcfg, epoch, device) for epoch in range(epochs)]
    run.strategies["combiner"].transfer(history)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n > batch_size else 1  # drop_last when possible: BatchNorm needs 2+ clips


def train_step(run: GroupRun, cfg: Config, inputs, labels: torch.Tensor, epoch: int, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch; returns the detached per-task losses, which tasks had a label and
    which were active ([T] each, on the CPU). A task that is not active this step (its scheduler left it
    out, or the batch has no label for it) leaves its head and its entries of the combiner's parameters
    exactly as they were, whatever the combiner: AdamW would otherwise move them on old momentum."""
    scheduler, combiner = run.strategies["scheduler"], run.strategies["combiner"]
    head_buffers = [[b.detach().clone() for b in run.model.heads[t].buffers()] for t in run.tasks]
    with autocast(cfg.train.precision, device):
        z = run.model.encode(inputs)
        losses, has = run.model.task_losses(z, labels, run.class_weights)
    detached, has = losses.detach().cpu(), has.cpu()  # one device-to-host copy each per step
    if not torch.isfinite(detached).all():
        bad = run.tasks[int((~torch.isfinite(detached)).nonzero()[0])]
        raise TrainingDiverged(f"epoch {epoch} step {run.step}: the loss of task {bad!r} is not finite")
    active = scheduler.step_mask(run.step) & has
    if active.any():
        run.opt.zero_grad(set_to_none=True)
        backward_step(run.model, z, losses, active.to(device), combiner, run.scaler)
        with _inactive_tasks_frozen(run, active, head_buffers):
            if run.scaler is not None:
                run.scaler.unscale_(run.opt)  # clip the true gradients
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
            if run.scaler is not None:
                run.scaler.step(run.opt)  # skips the step when fp16 overflowed
                run.scaler.update()
            else:
                run.opt.step()
    else:
        _restore_buffers(run, range(len(run.tasks)), head_buffers)
    run.lr_sched.step()
    return detached, has, active


@contextlib.contextmanager
def _inactive_tasks_frozen(run: GroupRun, active: torch.Tensor, head_buffers: list):
    """Inactive tasks' heads get no gradient (so AdamW skips them: no momentum, no weight decay) and their
    BatchNorm statistics back from before the forward pass; the combiner's per-task parameters ([T] vectors)
    get their inactive entries, and those entries' optimizer moments, put back after the step."""
    inactive = (~active.cpu()).nonzero().flatten().tolist()
    for j in inactive:
        for p in run.model.heads[run.tasks[j]].parameters():
            p.grad = None
    _restore_buffers(run, inactive, head_buffers)
    saved = []
    if inactive:
        idx = torch.tensor(inactive)
        for p in run.strategies["combiner"].parameters():
            state = run.opt.state.get(p, {})
            moments = {k: v[idx.to(v.device)].clone() for k, v in state.items() if torch.is_tensor(v) and v.shape == p.shape}
            saved.append((p, idx.to(p.device), p.detach()[idx.to(p.device)].clone(), moments))
    yield
    with torch.no_grad():
        for p, i, values, moments in saved:
            p[i] = values
            for k, v in moments.items():
                run.opt.state[p][k][i.to(v.device)] = v


def _restore_buffers(run: GroupRun, tasks, head_buffers: list) -> None:
    with torch.no_grad():
        for j in tasks:
            for b, saved in zip(run.model.heads[run.tasks[j]].buffers(), head_buffers[j]):
                b.copy_(saved)


def train_epoch(run: GroupRun, cfg: Config, epoch: int, device: torch.device, progress=None) -> dict[str, float]:
    """One epoch of one group: train, validate, let the strategies react; returns that group's metrics."""
    scheduler, modality = run.strategies["scheduler"], run.strategies["modality"]
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
        detached, has, active = train_step(run, cfg, inputs, labels, epoch, device)
        scheduler.observe(detached, active)
        loss_sum += detached * has
        loss_n += has
        run.step += 1

    metrics = {keys.task("train", t, "loss"): float(loss_sum[j] / max(1, loss_n[j])) for j, t in enumerate(run.tasks)}
    metrics.update((run.validate or evaluate)(run.model, run.val_split, cfg.train.eval_batch_size, device, "val",
                                              cfg.train.precision))
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
          prepared: Prepared | None = None, progress: Callable | None = None, eval_test: bool = False) -> list[dict]:
    """Train one configuration; call `report(epoch, metrics, checkpoint_dir)` after every epoch.

    With `groups`, one model per group trains side by side and the epoch's metrics are the partition's:
    each task's from the model of its group, `val/avg_f1` their mean. Each model keeps the weights of its
    own best epoch (`train.select_metric` over its tasks). With `eval_test`, the last epoch's metrics also
    hold the test split's, each task from its model's best weights, and the checkpoint folder the test
    predictions (`test_predictions.npz`). With `resume`, continue from `run_dir/checkpoint` exactly where it
    stopped."""
    with deterministic_kernels(cfg.train.deterministic):
        return _train(cfg, report, Path(run_dir), resume, prepared, progress, eval_test)


def _train(cfg: Config, report: Report | None, run_dir: Path, resume: bool, prepared: Prepared | None,
           progress: Callable | None, eval_test: bool) -> list[dict]:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)  # once per run: every model and epoch alike
    cfg = replace(cfg, train=replace(cfg.train, precision=precision))
    splits = ("train", "val", "test") if eval_test else ("train", "val")
    data = prepared or prepare(cfg, device, splits=splits)
    runs = [build_group(cfg, g, data, device) for g in cfg.partition()]

    start_epoch, history = 0, []
    ckpt_dir = run_dir / CHECKPOINT
    curve = None
    if resume:
        state = load_checkpoint(ckpt_dir, runs)
        start_epoch, history = state["epoch"] + 1, state["history"]
    elif cfg.pretrain.tasks:
        curve = _start_from_pretrained(cfg, runs, data, device)
    for run in runs:  # after a resume the transferred weights come from the checkpoint: no second pilot
        run_pilot(run, cfg, data, device)

    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        metrics: dict = {"epoch": epoch}
        improved = False
        for i, run in enumerate(runs):
            group = train_epoch(run, cfg, epoch, device, progress)
            improved |= run.select(group, epoch, cfg.train.select_metric, cfg.train.select_mode)
            metrics.update(_group_keys(group, i, len(runs) > 1))
        for name in keys.TASK_METRICS:  # over the models, and without a derived binary
            metrics[keys.average("val", name)] = mean_over_tasks(metrics, cfg.headline_tasks, name, "val")
        metrics["time/epoch_s"] = time.perf_counter() - t0
        metrics["precision"] = precision  # what `auto` became on this machine
        if curve is not None and epoch == start_epoch:
            metrics[keys.PRETRAIN_CURVE] = [  # plain numbers: the result travels through Tune to the tracker
                {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if isinstance(v, (int, float))}
                for row in curve]
        history.append(metrics)
        save_checkpoint(ckpt_dir, runs, {"epoch": epoch, "history": history}, best_model=improved)
        if eval_test and epoch == cfg.train.epochs - 1:
            metrics.update(_test_best(cfg, runs, data, device, ckpt_dir))
        if report is not None:
            report(epoch, metrics, ckpt_dir)
    return history


def pretrain_run_config(cfg: Config) -> Config:
    """What the pretraining epochs run with: the `train` section but where `pretrain` has its own (epochs,
    lr, batch size, also for validation: the contrastive tasks' candidate sets), and no affinity measurement."""
    p = cfg.pretrain
    return replace(cfg, train=replace(cfg.train, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                      eval_batch_size=p.batch_size, affinity_every=0))


def pretrain(cfg: Config, data: Prepared, device: torch.device) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Hybrid pretraining (docs/methods.md#pretraining): the encoders and one head per task of
    cfg.pretrain.tasks, trained by this loop's epoch under the `pretrain` section's strategies on the
    training clips, without labels. Returns (encoder state on the CPU, per-epoch `pretrain/...` metrics)."""
    pcfg, tasks = pretrain_run_config(cfg), tuple(cfg.pretrain.tasks)
    train_split, val_split = data.splits["train"].for_tasks(()), data.splits["val"].for_tasks(())
    check_modalities(tasks, train_split.modalities(), str(data.root))
    torch.manual_seed(cfg.train.seed)
    encoder = build_model(replace(cfg, tasks=()), data.encoder)  # no downstream heads
    model = PretrainModel(encoder, tasks, encoder.width, temperature=cfg.pretrain.temperature,
                          seed=cfg.train.seed).to(device)
    ctx = StrategyContext(tasks, pcfg.train.epochs, cfg.train.seed, None, train_split.modalities())
    strategies = {axis: build_strategy(axis, getattr(cfg.pretrain, axis), ctx, section="pretrain")
                  for axis in AXES}
    opt, lr_sched = _optimizer(pcfg, model, strategies["combiner"],
                               _steps_per_epoch(len(train_split), pcfg.train.batch_size) * pcfg.train.epochs)
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None

    def validate(m, split, batch_size, dev, prefix, precision):
        return evaluate_pretraining(m, split, batch_size, dev, prefix, lambda: autocast(precision, dev), cfg.train.seed)

    run = GroupRun(tasks, model, opt, lr_sched, strategies, train_split, val_split, scaler=scaler, validate=validate)
    history = []
    for epoch in range(pcfg.train.epochs):
        t0 = time.perf_counter()
        metrics = train_epoch(run, pcfg, epoch, device)
        metrics["time/epoch_s"] = time.perf_counter() - t0
        history.append({"epoch": epoch, **{keys.pretrain(k): v for k, v in metrics.items()}})
        log.info("pretraining epoch %d: %s", epoch, ", ".join(
            f"{t} {metrics[keys.task('val', t, 'acc')]:.3f}" for t in tasks))
    return {k: v.detach().to("cpu", copy=True) for k, v in encoder.encoder_state().items()}, history


def _start_from_pretrained(cfg: Config, runs: list[GroupRun], data: Prepared, device: torch.device) -> list[dict]:
    """Every model of the partition starts from one pretrained encoder state (trained here, or by an
    earlier run with the same cache key); heads stay as initialised. Returns the pretraining curve. The
    RNG state is as without pretraining afterwards, so a trained and a cached pretraining fine-tune alike."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        state, curve, _ = pretrained_encoder(cfg, data, cache_root(cfg) / "pretrain",
                                             lambda c, d: pretrain(c, d, device))
    for run in runs:
        run.model.load_encoder_state(state)
    return curve


def _test_best(cfg: Config, runs: list[GroupRun], data: Prepared, device: torch.device, ckpt_dir: Path) -> dict:
    """Each model's best weights on the test split: the metrics, and every clip's predictions saved beside
    the checkpoint (`test_predictions.npz`: clip ids, labels, predictions; for bootstraps over test clips)."""
    out: dict[str, float] = {}
    predicted: dict[str, np.ndarray] = {}
    split = data.splits["test"]
    for run in runs:
        if run.best_state is not None:
            run.model.load_state_dict(run.best_state)
        out.update(evaluate(run.model, split.for_tasks(run.tasks), cfg.train.eval_batch_size, device, "test",
                            cfg.train.precision, predicted))
    for name in keys.TASK_METRICS:
        out[keys.average("test", name)] = mean_over_tasks(out, cfg.headline_tasks, name, "test")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    labels = {t: split.labels[:, j].astype(np.int8) for j, t in enumerate(split.tasks) if t in cfg.tasks}
    save_predictions(ckpt_dir / PREDICTIONS_FILE, np.asarray(split.arrays.clip_ids, dtype=str), labels, predicted)
    return out
