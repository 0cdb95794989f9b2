"""The pretrained-state cache: one entry per hash of everything pretraining depends on, trained once.

Trials that share an entry (same data, model, pretraining config and seed) train it once, also when they
run at the same time in different processes or on different nodes sharing the cache folder: the first
takes an exclusive `flock` on the entry's lock file and trains, the others wait on the lock and then read
its result. An entry is written to a temporary file and renamed into place, so a reader never sees half an
entry, and a writer killed midway leaves only its temporary file (and its lock, which the kernel releases).
Entries are read with `torch.load(weights_only=True)` after a size check: a cache folder may be shared.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mtl_core.checkpoint import CheckpointError, safe_load
from mtl_core.pretrain import check_modalities

CACHE_FORMAT = 1  # bump when an entry's layout changes (the objectives have OBJECTIVES_VERSION)
MAX_ENTRY_BYTES = 4 * 2**30  # an entry is an encoder's weights plus its curve; beyond this it is not ours


class FileLock:
    """An exclusive `flock` on `path` for the duration of a `with` block (blocking)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def arrays_digest(split) -> str:
    """A content hash of one split's model inputs (clip ids, tokens, video, audio and their lengths)."""
    a = split.arrays
    h = hashlib.sha256()
    h.update("\n".join(a.clip_ids).encode())
    for arr in (split.tokens.values, split.tokens.offsets, a.video_lens, a.audio_lens, a.video, a.audio):
        h.update(str(arr.shape).encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def entry_key(parts: dict[str, Any]) -> str:
    """The hash naming an entry: of the JSON of `parts` (data digests, model, pretraining, seed, ...)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_entry(path: Path) -> dict:
    """An entry: {"encoder": state dict, "history_json": str}; CheckpointError when it is not one."""
    size = path.stat().st_size
    if size > MAX_ENTRY_BYTES:
        raise CheckpointError(f"{path}: {size} bytes, larger than a pretrained state can be ({MAX_ENTRY_BYTES})")
    entry = safe_load(path)
    if not (isinstance(entry, dict) and isinstance(entry.get("encoder"), dict)
            and isinstance(entry.get("history_json"), str)
            and all(isinstance(k, str) and torch.is_tensor(v) for k, v in entry["encoder"].items())):
        raise CheckpointError(f"{path}: not a pretrained state (expected encoder weights and a history)")
    return entry


def write_entry(path: Path, entry: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(entry, tmp)
    tmp.replace(path)  # atomic: readers see the old state (none) or the whole new one


def cached(folder: Path, key: str, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """The entry `key` in `folder`, computed by `compute()` (and written) when absent. Returns (entry,
    whether this call computed it). Concurrent callers with one key compute it once."""
    path = folder / f"{key}.pt"
    if path.is_file():  # the common case once it exists: no lock needed, the file is whole
        return read_entry(path), False
    with FileLock(folder / f"{key}.lock"):
        if path.is_file():  # another process trained it while this one waited
            return read_entry(path), False
        entry = compute()
        write_entry(path, entry)
        return entry, True


def cache_parts(cfg, data) -> dict:
    """Everything a pretrained state depends on: the train and val clips' contents, the text encoder, the
    model (but its heads), the pretraining section, the seed, the training settings pretraining uses and the
    version of the objectives."""
    from mtl_core.pretrain.objectives import OBJECTIVES_VERSION

    plain = cfg.to_dict()
    model = {k: v for k, v in plain["model"].items() if k not in ("head_dims", "head_dropout")}
    t = cfg.train
    return {"train": arrays_digest(data.splits["train"]), "val": arrays_digest(data.splits["val"]),
            "encoder": data.encoder.identity, "model": model, "pretrain": plain["pretrain"],
            "objectives": OBJECTIVES_VERSION,
            "train_settings": {"seed": t.seed, "precision": t.precision, "grad_clip": t.grad_clip,
                               "weight_decay": t.weight_decay, "lr_schedule": t.lr_schedule}}


def pretrained_encoder(cfg, data, folder: Path, pretrain: Callable) -> tuple[dict[str, torch.Tensor], list[dict], bool]:
    """(encoder state, pretraining curve, whether this call trained it): `pretrain(cfg, data)` -> (state,
    history) runs only when no run with the same key has left an entry in `folder` (or is writing it)."""
    check_modalities(cfg.pretrain.tasks, data.splits["train"].modalities(), str(data.root))
    key = entry_key(cache_parts(cfg, data))

    def compute() -> dict:
        state, history = pretrain(cfg, data)
        return {"encoder": state, "history_json": json.dumps(history, default=float)}

    entry, trained = cached(Path(folder), key, compute)
    return entry["encoder"], json.loads(entry["history_json"]), trained
