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


def save_checkpoint(folder: Path, runs: list, progress: dict, best_model: bool = False) -> None:
    """Everything needed to resume `runs` (one per task group) exactly, plus the progress dict."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "groups": [{"model": r.model.state_dict(), "optimizer": r.opt.state_dict(),
                    "lr_scheduler": r.lr_sched.state_dict(), "step": r.step,
                    "scaler": r.scaler.state_dict() if r.scaler is not None else None,
                    "strategies": {k: s.state_dict() for k, s in r.strategies.items()}} for r in runs],
        "rng": rng_states(),
        **progress,
    }
    if best_model:
        _atomic_save([g["model"] for g in state["groups"]], folder / "best_model.pt")
    _atomic_save(state, folder / "state.pt")


def load_checkpoint(folder: Path, runs: list) -> dict:
    path = folder / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if len(state["groups"]) != len(runs):
        raise ValueError(f"{path}: checkpoint of {len(state['groups'])} group models, config has {len(runs)}")
    for r, g in zip(runs, state["groups"]):
        r.model.load_state_dict(g["model"])
        r.opt.load_state_dict(g["optimizer"])
        r.lr_sched.load_state_dict(g["lr_scheduler"])
        r.step = g["step"]
        if r.scaler is not None and g.get("scaler"):
            r.scaler.load_state_dict(g["scaler"])
        for k, s in r.strategies.items():
            s.load_state_dict(g["strategies"][k])
    set_rng_states(state["rng"])
    return state


def rng_states() -> dict:
    """The CPU generator and every visible CUDA device's (dropout on a GPU draws from the latter)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
