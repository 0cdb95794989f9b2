"""Checkpoints: model, optimizer, LR scheduler, every strategy's state, RNG state and progress.

Written atomically (temp file, then rename) so a killed process never leaves half a checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_checkpoint(folder: Path, model, optimizer, lr_scheduler, strategies: dict, progress: dict,
                    best_model: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "strategies": {k: s.state_dict() for k, s in strategies.items()},
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        **progress,
    }
    if best_model:
        _atomic_save(state["model"], folder / "best_model.pt")
    _atomic_save(state, folder / "state.pt")


def load_checkpoint(folder: Path, model, optimizer, lr_scheduler, strategies: dict) -> dict:
    path = folder / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    for k, s in strategies.items():
        s.load_state_dict(state["strategies"][k])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state
