import math

import pandas as pd
import pytest

from search.stats import delta_m, paired_difference, pareto_front


def test_delta_m_on_a_hand_computed_case():
    # a: +20% relative, b: -10% relative -> mean +5%
    assert delta_m({"a": 0.6, "b": 0.45}, {"a": 0.5, "b": 0.5}, ("a", "b")) == pytest.approx(5.0)
    assert delta_m({"a": 0.5}, {"a": 0.5}, ("a",)) == 0.0


def test_paired_difference_t_interval_on_a_known_case():
    diff = paired_difference([1, 2, 3, 4], [0, 0, 0, 0])
    # mean 2.5, sd 1.29099, se 0.645497, t(0.975, 3) = 3.182446 -> half-width 2.054260
    assert diff.mean == pytest.approx(2.5)
    assert diff.low == pytest.approx(0.445740, abs=1e-5) and diff.high == pytest.approx(4.554260, abs=1e-5)
    assert diff.significant and "beats eq beyond seed noise" in diff.sentence("best", "eq", "test/avg_f1")
    noise = paired_difference([0.61, 0.58, 0.60], [0.60, 0.60, 0.59])
    assert not noise.significant
    assert "does not beat" in noise.sentence("best", "equal sum", "test/avg_f1")
    one = paired_difference([0.6], [0.5])
    assert one.n == 1 and math.isnan(one.low) and "one seed only" in one.sentence("a", "b", "m")


def test_pareto_front_on_a_hand_made_table():
    table = pd.DataFrame({"x": [0.9, 0.5, 0.6, 0.9, 0.4, 0.7],
                          "y": [0.1, 0.5, 0.6, 0.1, 0.9, float("nan")]}, index=list("abcdef"))
    front = pareto_front(table, ["x", "y"])
    # b is dominated by c; a and d tie (neither dominates the other); f has a missing value
    assert front.to_dict() == {"a": True, "b": False, "c": True, "d": True, "e": True, "f": False}


def test_bag_of_words_floor_learns_text_tasks_not_video_ones(tmp_path):
    """On the synthetic data mature and sarcasm are driven by words, gory and slapstick by video and
    audio: the text-only floor must do clearly better on the first two."""
    from mtl_core.bow import bag_of_words_floor
    from mtl_core.data.synth import write_synthetic

    root = write_synthetic(tmp_path / "data", seed=0, n_train=400, n_val=120, n_test=200)
    tasks = ("mature", "gory", "slapstick", "sarcasm")
    out = bag_of_words_floor(root, tasks, cache_dir=tmp_path / "cache")
    text, other = ("mature", "sarcasm"), ("gory", "slapstick")
    assert min(out[f"test/{t}/f1"] for t in text) > max(out[f"test/{t}/f1"] for t in other) + 0.05, out
    assert out["test/avg_f1"] == pytest.approx(sum(out[f"test/{t}/f1"] for t in tasks) / 4)
    assert all(out[f"C/{t}"] in (0.01, 0.1, 1.0, 10.0, 100.0) for t in tasks)


def test_bag_of_words_floor_on_the_real_text():
    from conftest import REAL_DATA
    from mtl_core.bow import bag_of_words_floor

    if not REAL_DATA.is_dir():
        pytest.skip("the real Comic Mischief text is not beside the repository")
    out = bag_of_words_floor(REAL_DATA, ("mature", "gory", "slapstick", "sarcasm"), derive_binary=True)
    assert 0.57 < out["test/avg_f1"] < 0.67, out  # 0.62 here; about 0.61 was measured with a model of this kind


def test_bow_cli_bad_folder_and_bad_data_are_one_line(tmp_path):
    import os
    import subprocess
    import sys

    missing = subprocess.run([sys.executable, "-m", "mtl_core.bow", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: dataset folder not found"
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.json").write_text("{")
    bad = subprocess.run([sys.executable, "-m", "mtl_core.bow", str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "MTL_CACHE_DIR": str(tmp_path / "cache")})
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "unreadable JSON" in bad.stderr
