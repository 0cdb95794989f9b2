"""Repeated k-fold cross-validation over a dataset's labelled clips, as a re-split of its prepared splits.

A decision on one fixed test split of a hundred clips is limited by that split's own sampling noise. Here
every clip of the train and test splits is tested once per repeat: the two are pooled and dealt into
`folds` folds (stratified on the task with the fewest positives, so each fold holds some), fold `fold` is
the test set, the others train, and the val split stays every fold's validation set. The val split is the
one whose scores chose the configurations a search compares, so it never sits in a test fold.

The split is made after the frozen text features are computed for the dataset's own splits, so a fold
costs no encoder pass: rows are taken from the prepared splits, not read again.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from mtl_core.data.arrays import SplitArrays
from mtl_core.data.dataset import Ragged, SplitData


def take_arrays(a: SplitArrays, idx: np.ndarray) -> SplitArrays:
    """The clips `idx` of `a`, in that order."""
    rows = [a.tokens(int(i)) for i in idx]
    offsets = np.zeros(len(idx) + 1, np.int32)
    np.cumsum([len(x) for x in rows], out=offsets[1:])
    values = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return SplitArrays([a.clip_ids[i] for i in idx], values, offsets, [a.texts[i] for i in idx], a.labels[idx],
                       a.video[idx], a.video_lens[idx], a.audio[idx], a.audio_lens[idx])


def gather(parts: list[SplitData], index: list[tuple[int, int]]) -> SplitData:
    """One SplitData of the clips `index`, (part, row) pairs, in that order: arrays, tokens and frozen text
    features follow their clips."""
    starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]).astype(np.int64)
    rows = np.array([starts[k] + i for k, i in index], np.int64)
    arrays = take_arrays(_join_arrays([p.arrays for p in parts]), rows)
    tokens = [parts[k].tokens.row(i) for k, i in index]
    hidden = None
    if all(p.text_features is not None for p in parts):
        feats = [parts[k].text_features.row(i) for k, i in index]
        offsets = np.zeros(len(feats) + 1, np.int64)
        np.cumsum([len(x) for x in feats], out=offsets[1:])
        hidden = Ragged(np.concatenate(feats) if feats else parts[0].text_features.values[:0], offsets)
    return SplitData(arrays, tokens, parts[0].tasks, hidden)


def _join_arrays(parts: list[SplitArrays]) -> SplitArrays:
    values, offsets, base = [], [np.zeros(1, np.int64)], 0
    for a in parts:
        values.append(a.token_values)
        offsets.append(a.token_offsets[1:].astype(np.int64) + base)
        base += int(a.token_offsets[-1])
    cat = np.concatenate
    return SplitArrays(sum((a.clip_ids for a in parts), []), cat(values).astype(np.int32),
                       cat(offsets).astype(np.int32), sum((a.texts for a in parts), []),
                       cat([a.labels for a in parts]), cat([a.video for a in parts]),
                       cat([a.video_lens for a in parts]), cat([a.audio for a in parts]),
                       cat([a.audio_lens for a in parts]))


def fold_of(labels: np.ndarray, folds: int, shuffle: int) -> np.ndarray:
    """Each clip's fold, 0..folds-1: stratified on the task whose labels have the fewest positives (a
    missing label counts as its own class), shuffled by `shuffle`. labels [N, T], -1 = missing."""
    positives = [(labels[:, t] == 1).sum() for t in range(labels.shape[1])]
    rare = labels[:, int(np.argmin(positives))] if labels.shape[1] else np.zeros(len(labels))
    counts = np.bincount(rare.astype(np.int64) + 1, minlength=3)
    strata = rare if counts[counts > 0].min() >= folds else np.zeros(len(labels))  # too few to stratify
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=shuffle)
    out = np.empty(len(labels), np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), strata)):
        out[test] = k
    return out


def resplit(splits: dict[str, SplitData], folds: int, fold: int, shuffle: int) -> dict[str, SplitData]:
    """train / val / test for fold `fold` of `folds`: the train and test splits pooled and dealt into folds,
    this fold the test set, the rest the training set; val as it was."""
    pool = [splits["train"], splits["test"]]
    index = [(k, i) for k, part in enumerate(pool) for i in range(len(part))]
    labels = np.concatenate([p.arrays.labels for p in pool])
    where = fold_of(labels, folds, shuffle)
    test = [index[i] for i in np.flatnonzero(where == fold)]
    train = [index[i] for i in np.flatnonzero(where != fold)]
    return {"train": gather(pool, train), "val": splits["val"], "test": gather(pool, test)}
