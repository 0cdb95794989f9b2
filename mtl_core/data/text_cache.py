"""Frozen text-encoder outputs, computed once per (dataset, encoder, tokens) and kept on disk.

Later epochs and later runs read them back (memory-mapped Arrow) instead of running the encoder.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from mtl_core.data.arrays import read_arrow, write_arrow
from mtl_core.data.dataset import Ragged
from mtl_core.model.text_encoder import TextEncoder, encode

log = logging.getLogger(__name__)


def tokens_key(rows: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(np.asarray(r, np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:20]


@torch.no_grad()
def compute_hidden(model: torch.nn.Module, rows: list[np.ndarray], device: torch.device,
                   batch_size: int = 32) -> Ragged:
    """Last hidden states of every row, in length-sorted batches (little padding)."""
    model.eval()
    out: list[np.ndarray | None] = [None] * len(rows)
    order = np.argsort([len(r) for r in rows], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        L = max(1, max(len(rows[i]) for i in idx))
        ids = torch.zeros(len(idx), L, dtype=torch.long)
        mask = torch.zeros(len(idx), L, dtype=torch.bool)
        for r, i in enumerate(idx):
            ids[r, :len(rows[i])] = torch.from_numpy(rows[i])
            mask[r, :len(rows[i])] = True
        hidden = encode(model, ids.to(device), mask.to(device)).float().cpu().numpy()
        for r, i in enumerate(idx):
            out[i] = hidden[r, :len(rows[i])]
    d = out[0].shape[1] if out else 0
    return Ragged.from_rows([o.reshape(-1, d) for o in out], np.float32)


def cached_hidden(encoder: TextEncoder, rows: list[np.ndarray], cache_dir: Path, device: torch.device) -> Ragged:
    """The frozen encoder's outputs for these token rows, from the disk cache or computed once (on
    `device`; the encoder's weights are loaded only then)."""
    key = hashlib.sha256(f"{encoder.identity}|{tokens_key(rows)}".encode()).hexdigest()[:24]
    path = cache_dir / "text" / f"{key}.arrow"
    if path.is_file():
        table = read_arrow(path)
        col = table["hidden"].combine_chunks()  # list<fixed_size_list<float32, d>>
        d = col.type.value_type.list_size
        values = col.values.values.to_numpy(zero_copy_only=True).reshape(-1, d)
        return Ragged(values, col.offsets.to_numpy().astype(np.int64))
    log.info("computing frozen text-encoder outputs for %d clips (cached in %s)", len(rows), path)
    ragged = compute_hidden(encoder.model.to(device), rows, device)
    d = ragged.values.shape[1]
    inner = pa.FixedSizeListArray.from_arrays(pa.array(ragged.values.reshape(-1)), d)
    col = pa.ListArray.from_arrays(pa.array(ragged.offsets.astype(np.int32)), inner)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_arrow(pa.table({"hidden": col}), path)
    return ragged
