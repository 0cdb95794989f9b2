"""Checkpoints: model, optimizer, LR scheduler, every strategy's state, RNG state and progress.

Written atomically (temp file, then rename) so a killed process never leaves half a checkpoint. Read
with `torch.load(weights_only=True)` on every supported torch: a checkpoint folder may come from shared
storage or a stranger's experiment, and a full unpickler would run any code it holds. So a checkpoint holds
tensors and plain containers only; the metric history travels as JSON text beside them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

FOLDER = "checkpoint"  # a run folder's checkpoint, and a Tune trial's
STATE_FILE = "state.pt"
BEST_FILE = "best_model.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (the message is one line naming the file)."""


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)


def safe_load(path: Path) -> Any:
    """`torch.load` that never unpickles code: one line naming the file when it is not a checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a zip, or an object the weights-only unpickler refuses
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None


def save_checkpoint(folder: Path, runs: list, progress: dict, best_model: bool = False) -> None:
    """Everything needed to resume `runs` (one per task group) exactly, plus the progress dict (`epoch`,
    `history`). `best_model`: some model's best weights changed, rewrite `best_model.pt` (each group's)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "groups": [{"model": r.model.state_dict(), "optimizer": r.opt.state_dict(),
                    "lr_scheduler": r.lr_sched.state_dict(), "step": r.step,
                    "scaler": r.scaler.state_dict() if r.scaler is not None else None,
                    "best": r.best, "best_epoch": r.best_epoch,
                    "strategies": {k: s.state_dict() for k, s in r.strategies.items()}} for r in runs],
        "rng": rng_states(),
        "epoch": progress["epoch"],
        "history_json": json.dumps(progress["history"], default=float),
    }
    if best_model:
        _atomic_save([r.best_state if r.best_state is not None else r.model.state_dict() for r in runs],
                     folder / BEST_FILE)
    _atomic_save(state, folder / STATE_FILE)


def read_history(folder: Path) -> list[dict]:
    """The per-epoch metrics a checkpoint holds (without restoring anything)."""
    return json.loads(safe_load(Path(folder) / STATE_FILE)["history_json"])


def load_checkpoint(folder: Path, runs: list) -> dict:
    """Restore `runs` in place; returns {"epoch", "history"}."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    state = safe_load(path)
    try:
        groups = state["groups"]
        if len(groups) != len(runs):
            raise CheckpointError(f"{path}: checkpoint of {len(groups)} group models, config has {len(runs)}")
        best = safe_load(folder / BEST_FILE) if (folder / BEST_FILE).is_file() else [None] * len(runs)
        for r, g, best_state in zip(runs, groups, best):
            r.model.load_state_dict(g["model"])
            r.opt.load_state_dict(g["optimizer"])
            r.lr_sched.load_state_dict(g["lr_scheduler"])
            r.step = g["step"]
            r.best, r.best_epoch = g["best"], g["best_epoch"]
            r.best_state = best_state if r.best_epoch >= 0 else None
            if r.scaler is not None and g.get("scaler"):
                r.scaler.load_state_dict(g["scaler"])
            for k, s in r.strategies.items():
                s.load_state_dict(g["strategies"][k])
        set_rng_states(state["rng"])
        return {"epoch": int(state["epoch"]), "history": json.loads(state["history_json"])}
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # another layout, or another model's shapes
        raise CheckpointError(f"{path}: does not match this configuration ({str(exc).splitlines()[0][:160]})") from None


def rng_states() -> dict:
    """The CPU generator and every visible CUDA device's (dropout on a GPU draws from the latter)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
