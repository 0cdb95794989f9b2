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


CHUNK = 64  # rows copied at a time: a temporary of at most this many clips' features


def _take_rows(sources: list[np.ndarray], part: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Row `row[j]` of `sources[part[j]]` as row j of one new array: each row copied once, from its own
    split, with no joined copy of the pool."""
    out = np.empty((len(part), *sources[0].shape[1:]), sources[0].dtype)
    for k, src in enumerate(sources):
        at = np.flatnonzero(part == k)
        for s in range(0, len(at), CHUNK):
            out[at[s:s + CHUNK]] = src[row[at[s:s + CHUNK]]]
    return out


def _take_arrays(parts: list[SplitArrays], part: np.ndarray, row: np.ndarray) -> SplitArrays:
    rows = [parts[k].tokens(int(i)) for k, i in zip(part, row)]
    offsets = np.zeros(len(rows) + 1, np.int32)
    np.cumsum([len(x) for x in rows], out=offsets[1:])
    values = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    def take(name: str) -> np.ndarray:
        return _take_rows([getattr(a, name) for a in parts], part, row)

    return SplitArrays([parts[k].clip_ids[i] for k, i in zip(part, row)], values, offsets,
                       [parts[k].texts[i] for k, i in zip(part, row)], take("labels"), take("video"),
                       take("video_lens"), take("audio"), take("audio_lens"))


def gather(parts: list[SplitData], index: list[tuple[int, int]]) -> SplitData:
    """One SplitData of the clips `index`, (part, row) pairs, in that order: arrays, tokens and frozen text
    features follow their clips. One pass: each clip's rows are copied once, straight from its part."""
    part = np.array([k for k, _ in index], np.int64)
    row = np.array([i for _, i in index], np.int64)
    arrays = _take_arrays([p.arrays for p in parts], part, row)
    tokens = [parts[k].tokens.row(i) for k, i in index]
    hidden = None
    if all(p.text_features is not None for p in parts):
        feats = [parts[k].text_features.row(i) for k, i in index]
        offsets = np.zeros(len(feats) + 1, np.int64)
        np.cumsum([len(x) for x in feats], out=offsets[1:])
        hidden = Ragged(np.concatenate(feats) if feats else parts[0].text_features.values[:0], offsets)
    return SplitData(arrays, tokens, parts[0].tasks, hidden)


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
