"""Housekeeping of a phase's Tune storage."""
from types import SimpleNamespace

import pyarrow.fs as pafs

from search.tuner import keep_latest_checkpoints


def _trial(root, name, n):
    folder = root / name
    for i in range(n):
        (folder / f"checkpoint_{i:06d}").mkdir(parents=True)
        (folder / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"x")
    (folder / "run").mkdir(parents=True)  # the trial's own working folder: never touched
    return folder


def test_only_the_checkpoint_a_result_points_to_survives(tmp_path):
    three, one, none = _trial(tmp_path, "trial_a", 3), _trial(tmp_path, "trial_b", 1), _trial(tmp_path, "trial_c", 0)
    fs = pafs.LocalFileSystem()
    results = [SimpleNamespace(checkpoint=SimpleNamespace(filesystem=fs, path=str(three / "checkpoint_000002"))),
               SimpleNamespace(checkpoint=SimpleNamespace(filesystem=fs, path=str(one / "checkpoint_000000"))),
               SimpleNamespace(checkpoint=None)]  # a trial that failed before its first epoch
    assert keep_latest_checkpoints(results) == 2
    assert sorted(p.name for p in three.iterdir()) == ["checkpoint_000002", "run"]
    assert (three / "checkpoint_000002" / "state.pt").is_file()
    assert sorted(p.name for p in one.iterdir()) == ["checkpoint_000000", "run"]
    assert sorted(p.name for p in none.iterdir()) == ["run"]
