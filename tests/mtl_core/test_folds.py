"""Repeated k-fold re-splits: every train and test clip is tested once per repeat, val never, and each
clip's features, tokens and labels follow it."""
import tracemalloc

import numpy as np
import pytest
import torch

from mtl_core import TASKS
from mtl_core.config import ConfigError, build_config
from mtl_core.data.arrays import SplitArrays
from mtl_core.data.dataset import SplitData
from mtl_core.data.folds import fold_of, resplit
from mtl_core.data.synth import write_synthetic
from mtl_core.prepare import prepare


def _prepared(root, tmp_path, **cv):
    cfg = build_config({"data": {"root": str(root), "cache_dir": str(tmp_path / "cache"), "cv": cv},
                        "model": {"text_encoder": "tiny", "freeze_text": True}})
    return prepare(cfg, torch.device("cpu")).splits


def test_the_folds_of_a_repeat_test_every_train_and_test_clip_once_and_never_a_val_clip(tmp_path):
    root = write_synthetic(tmp_path / "d", seed=1, n_train=40, n_val=10, n_test=20)
    own = _prepared(root, tmp_path)
    pool = set(own["train"].arrays.clip_ids) | set(own["test"].arrays.clip_ids)
    val = set(own["val"].arrays.clip_ids)
    by_id = {cid: (name, i) for name in ("train", "test") for i, cid in enumerate(own[name].arrays.clip_ids)}
    tested = []
    for fold in range(4):
        s = _prepared(root, tmp_path, folds=4, fold=fold, shuffle=7)
        train, test = set(s["train"].arrays.clip_ids), set(s["test"].arrays.clip_ids)
        assert not train & test and not (train | test) & val and train | test == pool
        assert s["val"].arrays.clip_ids == own["val"].arrays.clip_ids
        tested += s["test"].arrays.clip_ids
        for j, cid in enumerate(s["test"].arrays.clip_ids):  # each clip's rows follow it
            name, i = by_id[cid]
            src = own[name]
            assert np.array_equal(s["test"].arrays.video[j], src.arrays.video[i])
            assert np.array_equal(s["test"].labels[j], src.labels[i])
            assert np.array_equal(s["test"].tokens.row(j), src.tokens.row(i))
            assert np.array_equal(s["test"].text_features.row(j), src.text_features.row(i))
    assert sorted(tested) == sorted(pool)  # once each
    other = _prepared(root, tmp_path, folds=4, fold=0, shuffle=8)["test"].arrays.clip_ids
    assert set(other) != set(_prepared(root, tmp_path, folds=4, fold=0, shuffle=7)["test"].arrays.clip_ids)


def test_folds_are_stratified_on_the_rarest_task():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(100, 3))
    labels[:, 2] = 0
    labels[:10, 2] = 1  # 10 positives for 5 folds: two in each
    where = fold_of(labels, 5, shuffle=3)
    assert sorted(np.bincount(where)) == [20] * 5
    assert all((labels[where == k, 2] == 1).sum() == 2 for k in range(5))
    assert not np.array_equal(where, fold_of(labels, 5, shuffle=4))


@pytest.mark.parametrize("cv, says", [({"folds": 1}, "data.cv.folds"), ({"folds": 5, "fold": 5}, "data.cv.fold"),
                                      ({"folds": 5, "shuffle": -1}, "data.cv.shuffle")])
def test_a_bad_fold_setting_is_one_line_naming_it(cv, says):
    with pytest.raises(ConfigError, match=says):
        build_config({"data": {"cv": cv}})


def _split(n: int, first: int, video_len: int = 8) -> SplitData:
    rng = np.random.default_rng(first)
    tokens = [rng.integers(1, 100, size=int(rng.integers(1, 9))) for _ in range(n)]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum([len(t) for t in tokens], out=offsets[1:])
    arrays = SplitArrays([f"c{first + i}" for i in range(n)], np.concatenate(tokens).astype(np.int32), offsets,
                         ["w"] * n, rng.integers(0, 2, size=(n, len(TASKS))).astype(np.int8),
                         rng.standard_normal((n, video_len, 1024), dtype=np.float32), np.full(n, video_len, np.int32),
                         rng.standard_normal((n, video_len, 128), dtype=np.float32), np.full(n, video_len, np.int32))
    return SplitData(arrays, tokens, TASKS)


def test_a_fold_copies_each_clip_s_features_once():
    """The re-split holds the pool's features once more (train and test folds), never a joined copy of the
    whole pool besides: measured as the peak of the allocations numpy reports to tracemalloc."""
    splits = {"train": _split(300, 0), "val": _split(20, 1000), "test": _split(100, 2000)}
    pool = sum(s.arrays.video.nbytes + s.arrays.audio.nbytes for k, s in splits.items() if k != "val")
    tracemalloc.start()
    try:
        out = resplit(splits, folds=5, fold=2, shuffle=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * pool, (peak / pool)
    where = {cid: (s, i) for s in ("train", "test") for i, cid in enumerate(splits[s].arrays.clip_ids)}
    for name in ("train", "test"):
        for j, cid in enumerate(out[name].arrays.clip_ids):
            src, i = splits[where[cid][0]], where[cid][1]
            assert np.array_equal(out[name].arrays.video[j], src.arrays.video[i])
            assert np.array_equal(out[name].arrays.audio[j], src.arrays.audio[i])
            assert np.array_equal(out[name].arrays.tokens(j), src.arrays.tokens(i))
            assert np.array_equal(out[name].labels[j], src.labels[i])


@pytest.mark.parametrize("cv", [{"folds": 4, "fold": 1, "shuffle": 7}, {}], ids=["cv", "own-splits"])
def test_a_clip_in_two_splits_is_refused_naming_it_and_both(tmp_path, cv):
    """Under cross-validation the pooled train and test splits would put it in a training fold and a test
    fold; on the dataset's own splits it is tested after training on it."""
    import json

    from mtl_core.data.layout import DataError

    root = write_synthetic(tmp_path / "d", seed=1, n_train=12, n_val=4, n_test=6)
    train, test = (json.loads((root / f"{s}.json").read_text()) for s in ("train", "test"))
    cid = next(iter(train))
    test[cid] = train[cid]
    (root / "test.json").write_text(json.dumps(test))
    with pytest.raises(DataError) as raised:
        _prepared(root, tmp_path, **cv)
    line = str(raised.value)
    assert "\n" not in line and cid in line and "'train'" in line and "'test'" in line
