"""Training-ready splits: tokens for the chosen encoder, optional frozen text features, padded batches.

A batch pads text to its own longest sequence (cap `text_max_len`) and video/audio to their own
longest clip, so short batches cost little.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from mtl_core import MODALITIES, TASKS
from mtl_core.data.arrays import SplitArrays
from mtl_core.model.hiccap import ModelInputs


@dataclass
class Ragged:
    """Variable-length rows stored flat: row i is values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[np.ndarray], dtype) -> "Ragged":
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        values = np.concatenate(rows).astype(dtype, copy=False) if rows else np.zeros(0, dtype)
        return cls(values, offsets)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


def token_rows(arrays: SplitArrays, tokenizer, retokenize: bool, max_len: int) -> list[np.ndarray]:
    """Token ids per clip: the stored `indexes`, or the encoder tokenizer's ids for `words`; cut to max_len."""
    if retokenize:
        enc = tokenizer(arrays.texts, truncation=True, max_length=max_len, add_special_tokens=True)
        return [np.asarray(ids, np.int64) for ids in enc["input_ids"]]
    return [arrays.tokens(i)[:max_len].astype(np.int64) for i in range(len(arrays))]


class SplitData:
    """One split ready for batching, for a chosen subset of tasks."""

    def __init__(self, arrays: SplitArrays, tokens: list[np.ndarray], tasks: tuple[str, ...],
                 text_features: Ragged | None = None):
        self.arrays = arrays
        self.tokens = Ragged.from_rows(tokens, np.int64)
        self.tasks = tasks
        self.labels = arrays.labels[:, [TASKS.index(t) for t in tasks]].astype(np.int64)  # [N, T], -1 missing
        self.text_features = text_features

    def __len__(self) -> int:
        return len(self.arrays)

    def for_tasks(self, tasks: tuple[str, ...]) -> "SplitData":
        """The same clips and features (shared, not copied) with the labels of `tasks`."""
        view = copy.copy(self)
        view.tasks = tuple(tasks)
        view.labels = self.arrays.labels[:, [TASKS.index(t) for t in tasks]].astype(np.int64)
        return view

    def modalities(self) -> tuple[str, ...]:
        """The modalities at least one clip of the split has."""
        a = self.arrays
        has = (len(self.tokens.values) > 0, bool((a.video_lens > 0).any()), bool((a.audio_lens > 0).any()))
        return tuple(m for m, h in zip(MODALITIES, has) if h)

    def batch(self, idx: np.ndarray) -> tuple[ModelInputs, torch.Tensor]:
        """Inputs and labels [B, T] (-1 = missing) for clip indices `idx`."""
        a = self.arrays
        t_len = self.tokens.lengths()[idx]
        L = max(1, int(t_len.max()))
        ids = np.zeros((len(idx), L), np.int64)
        for r, i in enumerate(idx):
            ids[r, :t_len[r]] = self.tokens.row(i)
        text_mask = np.arange(L)[None, :] < t_len[:, None]
        hidden = None
        if self.text_features is not None:
            d = self.text_features.values.shape[1]
            h = np.zeros((len(idx), L, d), np.float32)
            for r, i in enumerate(idx):
                h[r, :t_len[r]] = self.text_features.row(i)
            hidden = torch.from_numpy(h)
        v_len, a_len = a.video_lens[idx], a.audio_lens[idx]
        Tv, Ta = max(1, int(v_len.max())), max(1, int(a_len.max()))
        present = np.stack([t_len > 0, v_len > 0, a_len > 0], axis=1)
        inputs = ModelInputs(
            text_ids=torch.from_numpy(ids), text_mask=torch.from_numpy(text_mask),
            video=torch.from_numpy(a.video[idx, :Tv]), video_mask=torch.from_numpy(np.arange(Tv)[None] < v_len[:, None]),
            audio=torch.from_numpy(a.audio[idx, :Ta]), audio_mask=torch.from_numpy(np.arange(Ta)[None] < a_len[:, None]),
            present=torch.from_numpy(present), text_hidden=hidden,
        )
        return inputs, torch.from_numpy(self.labels[idx])

    def batches(self, batch_size: int, order: np.ndarray | None = None, drop_last: bool = False
                ) -> Iterator[tuple[ModelInputs, torch.Tensor]]:
        order = np.arange(len(self)) if order is None else order
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            if len(idx):
                yield self.batch(idx)

    def summary(self) -> dict:
        return {"clips": len(self), "missing_video": self.arrays.missing_video,
                "missing_audio": self.arrays.missing_audio}

