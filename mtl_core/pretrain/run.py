"""The pretraining phase: the training loop's own epoch (`train_epoch`) over the pretraining tasks.

`pretrain` trains a `PretrainModel` with the `pretrain` section's strategies on the training clips (no
labels) and returns the encoder's weights and the per-epoch curve; `pretrained_encoder` does that once
per cache key (see `mtl_core.pretrain.cache`). Pretraining runs with the `train` section's settings except
where the `pretrain` section has its own: epochs, lr, batch size (training and validation batches, which
are the contrastive tasks' candidate sets), and no affinity measurement.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from mtl_core import keys
from mtl_core.config import Config, ConfigError
from mtl_core.pretrain import modalities_of
from mtl_core.pretrain.cache import arrays_digest, cached, entry_key
from mtl_core.pretrain.objectives import PretrainModel, evaluate_pretraining
from mtl_core.prepare import Prepared, cache_root
from mtl_core.strategies import StrategyContext, build_strategy

log = logging.getLogger(__name__)


def pretrain_run_config(cfg: Config) -> Config:
    """The config the pretraining epochs run with (see the module docstring)."""
    p = cfg.pretrain
    return replace(cfg, train=replace(cfg.train, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                      eval_batch_size=p.batch_size, affinity_every=0))


def check_modalities(tasks, available: tuple[str, ...], where: str) -> None:
    """A pretraining task whose pair includes a modality no training clip has: one line naming both."""
    for t in tasks:
        for m in modalities_of(t):
            if m not in available:
                raise ConfigError(f"pretrain.tasks: {t} needs {m}, which no training clip of {where} has "
                                  f"(it has {', '.join(available) or 'nothing'})")


def pretrain(cfg: Config, data: Prepared, device: torch.device) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Pretrain the encoders on cfg.pretrain.tasks; returns (encoder state on the CPU, per-epoch metrics)."""
    from mtl_core.train import GroupRun, _optimizer, _steps_per_epoch, build_model, train_epoch

    pcfg = pretrain_run_config(cfg)
    tasks = tuple(cfg.pretrain.tasks)
    train_split, val_split = data.splits["train"].for_tasks(()), data.splits["val"].for_tasks(())
    check_modalities(tasks, train_split.modalities(), str(data.root))
    torch.manual_seed(cfg.train.seed)
    encoder = build_model(replace(cfg, tasks=()), data.encoder)  # no downstream heads
    model = PretrainModel(encoder, tasks, data.encoder.hidden_size, temperature=cfg.pretrain.temperature,
                          seed=cfg.train.seed).to(device)
    ctx = StrategyContext(tasks, pcfg.train.epochs, cfg.train.seed, None, train_split.modalities())
    strategies = {axis: build_strategy(axis, getattr(cfg.pretrain, axis), ctx, section="pretrain")
                  for axis in ("scheduler", "combiner", "modality")}
    steps = _steps_per_epoch(len(train_split), pcfg.train.batch_size) * pcfg.train.epochs
    opt, lr_sched = _optimizer(pcfg, model, strategies["combiner"], steps)
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None

    def validate(m, split, batch_size, dev, prefix, precision):
        return evaluate_pretraining(m, split, batch_size, dev, prefix, precision, cfg.train.seed)

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


def cache_parts(cfg: Config, data: Prepared) -> dict:
    """Everything a pretrained state depends on: the train and val clips' contents, the text encoder, the
    model (but its heads), the pretraining section, the seed and the training settings pretraining uses."""
    model = {k: v for k, v in cfg.to_dict()["model"].items() if k not in ("head_dims", "head_dropout")}
    t = cfg.train
    return {"train": arrays_digest(data.splits["train"]), "val": arrays_digest(data.splits["val"]),
            "encoder": data.encoder.identity, "model": model, "pretrain": cfg.to_dict()["pretrain"],
            "train_settings": {"seed": t.seed, "precision": t.precision, "grad_clip": t.grad_clip,
                               "weight_decay": t.weight_decay, "lr_schedule": t.lr_schedule}}


def pretrained_encoder(cfg: Config, data: Prepared, device: torch.device, cache_dir: Path | None = None
                       ) -> tuple[dict[str, torch.Tensor], list[dict], bool]:
    """(encoder state, pretraining curve, whether this call trained it), from the cache when another run
    with the same key trained it already. `cache_dir`: default `<data.cache_dir>/pretrain`."""
    check_modalities(cfg.pretrain.tasks, data.splits["train"].modalities(), str(data.root))
    folder = Path(cache_dir) if cache_dir is not None else cache_root(cfg) / "pretrain"
    key = entry_key(cache_parts(cfg, data))

    def compute() -> dict:
        state, history = pretrain(cfg, data, device)
        return {"encoder": state, "history_json": json.dumps(history, default=float)}

    entry, trained = cached(folder, key, compute)
    return entry["encoder"], json.loads(entry["history_json"]), trained

