import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.analysis.pareto import pareto_front
from search.analysis.stats import delta_m, paired_difference


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


def _runs():
    """Two seeds of: the best configuration, equal sum, single-task models (two tasks)."""
    rows = []
    for seed, (best, equal, single) in enumerate([((0.8, 0.6), (0.7, 0.5), (0.5, 0.5)), ((0.9, 0.7), (0.7, 0.6), (0.5, 0.5))]):
        for name, role, (a, b) in (("rank 1", "final", best), ("equal_sum", "baseline", equal),
                                   ("single_task", "baseline", single)):
            rows.append({"name": name, "role": role, "seed": seed, "trial_id": "t1" if role == "final" else None,
                         "error": "", "test/a/f1": a, "test/b/f1": b, "test/avg_f1": (a + b) / 2})
    return pd.DataFrame(rows)


def test_final_table_means_stds_and_delta_m_against_single_task():
    from search.analysis.stats import final_table

    table = final_table(_runs(), ["a", "b"]).set_index("name")
    assert list(table.index) == ["rank 1", "equal_sum", "single_task"]  # in training order
    assert table.loc["rank 1", "final/test/a/f1/mean"] == pytest.approx(0.85)
    assert table.loc["rank 1", "final/test/a/f1/std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert table.loc["rank 1", "final/seeds"] == 2 and table.loc["rank 1", "trial_id"] == "t1"
    # Δm% = 100 * mean((0.85 - 0.5) / 0.5, (0.65 - 0.5) / 0.5) = 50
    assert table.loc["rank 1", "final/delta_m"] == pytest.approx(50.0)
    assert table.loc["single_task", "final/delta_m"] == 0


def test_per_axis_comparisons_use_one_budget_the_last_rung_every_trial_reached():
    from search.analysis.stats import matched_budget

    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "epochs": [4, 2, 2], "status": ["finished", "stopped", "failed"]})
    history = pd.DataFrame({"trial_id": ["a"] * 4 + ["b"] * 2 + ["c"],
                            "training_iteration": [1, 2, 3, 4, 1, 2, 1],
                            "val/avg_f1": [0.1, 0.2, 0.9, 0.95, 0.3, 0.25, 0.99]})
    budget, scores = matched_budget(history, trials, "val/avg_f1", "max")
    assert budget == 2  # b stopped at 2 (the failed c does not count)
    assert scores.to_dict() == {"a": 0.2, "b": 0.3}  # a's later, better epochs are not compared with b


def test_axis_effects_against_the_baseline_value_with_welch_intervals():
    from search.analysis.stats import axis_effects

    values = pd.Series([0.5, 0.6, 0.7, 0.8, 0.4])
    labels = pd.Series(["equal", "equal", "pcgrad", "pcgrad", "rlw"])
    effects = {e.value: e for e in axis_effects(values, labels, "equal")}
    assert effects["pcgrad"].diff == pytest.approx(0.2) and effects["pcgrad"].low < 0.2 < effects["pcgrad"].high
    ref = stats.ttest_ind([0.7, 0.8], [0.5, 0.6], equal_var=False).confidence_interval(0.95)
    assert (effects["pcgrad"].low, effects["pcgrad"].high) == pytest.approx((ref.low, ref.high))
    assert np.isnan(effects["rlw"].low)  # one trial: no interval
    assert effects["equal"].diff == 0


def test_leaderboard_names_the_baselines_and_marks_the_fronts():
    from search.run.finish import with_final
    from search.analysis.stats import final_table

    board = pd.DataFrame({"rank": [1, 2], "trial_id": ["t1", "t2"], "status": ["finished", "stopped"],
                          "val/a/f1": [0.8, 0.7], "val/b/f1": [0.5, 0.6]})
    out = with_final(board, final_table(_runs(), ["a", "b"]), ["a", "b"], {"rank 1": [], "equal_sum": ["rank 1"]})
    assert out.set_index("trial_id")["role"].to_dict() == {"t1": "final", "t2": "search", "equal_sum": "baseline",
                                                           "single_task": "baseline"}
    assert out["pareto"].iloc[:2].tolist() == [True, True]  # neither dominates the other on validation
    by = out.set_index("trial_id")["final/dominated_by"]
    assert by["t1"] == "" and by["equal_sum"] == "rank 1" and pd.isna(by["single_task"]) and pd.isna(by["t2"])
    # the CSV keeps the search ranks as integers and leaves the baselines' empty (not 1.0, 2.0, NaN)
    assert out.to_csv(index=False, columns=["rank", "trial_id"]).splitlines()[1:] == \
        ["1,t1", "2,t2", ",equal_sum", ",single_task"]


def test_rungs_follow_ashas_milestones():
    from search.space.rungs import rungs

    assert rungs(1, 3, 6) == [1, 3, 6]
    assert rungs(2, 2, 6) == [2, 4, 6]
    assert rungs(1, 3, 9) == [1, 3, 9]


def test_scores_at_a_rung_count_failed_trials_at_the_worst_score():
    from search.analysis.stats import scores_at

    trials = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "epochs": [3, 1, 1, 3],
                           "status": ["finished", "stopped", "failed", "finished"]})
    history = pd.DataFrame({"trial_id": ["a"] * 3 + ["b", "c"] + ["d"] * 3,
                            "training_iteration": [1, 2, 3, 1, 1, 1, 2, 3],
                            "val/avg_f1": [0.5, 0.6, 0.7, 0.4, 0.99, 0.3, 0.8, 0.9]})
    first, failed = scores_at(history, trials, "val/avg_f1", "max", 1)
    assert failed == 1 and first.to_dict() == {"a": 0.5, "b": 0.4, "d": 0.3, "c": 0.3}  # c failed: the worst, not its 0.99
    third, _ = scores_at(history, trials, "val/avg_f1", "max", 3)
    assert third.to_dict() == {"a": 0.7, "d": 0.9, "c": 0.7}  # b never reached epoch 3


def test_strategies_say_when_they_first_act():
    from mtl_core.strategies import REGISTRIES

    assert REGISTRIES["combiner"]["dwa"].acts_from({}) == 2
    assert REGISTRIES["combiner"]["uncertainty"].acts_from({}) == 0
    assert REGISTRIES["scheduler"]["curriculum"].acts_from({"mode": "assessed", "assessment_epochs": 3}) == 3
    assert REGISTRIES["scheduler"]["curriculum"].acts_from({}) == 0  # fixed stages act from the start
    assert REGISTRIES["scheduler"]["dsg"].acts_from({}) is None  # from its first stop: read from the run


def test_report_gives_a_table_per_rung_and_marks_strategies_that_had_not_acted(tmp_path):
    """DWA's weights are 1 for two epochs and a DSG that never stopped a task trained like `all_tasks`: at those
    budgets their rows are marked, later they are not; a failed trial is counted."""
    import yaml

    from search.report.sections import _axes_section

    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train": {"epochs": 3}, "search": {"grace_period": 1,
                                                                                            "reduction_factor": 3}}))
    rows, hist = [], []
    for i, (sched, comb, status) in enumerate([("all_tasks", "equal", "finished"), ("all_tasks", "dwa", "finished"),
                                               ("dsg", "equal", "finished"), ("dsg", "dwa", "finished"),
                                               ("all_tasks", "equal", "failed")]):
        tid = f"t{i}"
        rows.append({"trial_id": tid, "epochs": 3 if status == "finished" else 1, "status": status,
                     "config/strategy.scheduler.name": sched, "config/strategy.combiner.name": comb})
        for e in range(1, 4 if status == "finished" else 2):
            active = 0.5 if (tid == "t3" and e == 3) else 1.0  # one DSG trial stops a task in epoch 3
            hist.append({"trial_id": tid, "training_iteration": e, "val/avg_f1": 0.1 * e + 0.01 * i,
                         "strategy/gory/active": active})
    trials, history = pd.DataFrame(rows), pd.DataFrame(hist)
    lines = _axes_section(tmp_path, history, trials, "val/avg_f1", "max", [1, 3])
    text = "\n".join(lines)
    assert text.count("At epoch 1:") == 2 and text.count("At epoch 3:") == 2  # two axes, two rungs each
    assert "1 failed" in text
    first, third = text.split("### combiner")[1].split("At epoch 3:")
    assert "| dwa † |" in first and "| dwa |" in third  # DWA acts from its third epoch
    sched = text.split("### scheduler")[1].split("### combiner")[0]
    at1, at3 = sched.split("At epoch 3:")
    assert "| dsg † |" in at1 and "| dsg |" in at3  # acted once t3 stopped a task


def test_delta_m_leaves_a_derived_binary_out():
    from search.analysis.stats import final_table

    rows = []
    for name, role, f1 in (("best", "final", {"binary": 0.9, "gory": 0.6}), ("single_task", "baseline",
                                                                              {"binary": 0.5, "gory": 0.6})):
        rows.append({"name": name, "role": role, "seed": 1, "trial_id": "t", "error": "",
                     "test/avg_f1": 0.6, **{f"test/{t}/f1": v for t, v in f1.items()}})
    table = final_table(pd.DataFrame(rows), ["binary", "gory"], headline=["gory"]).set_index("name")
    assert table.loc["best", "final/delta_m"] == pytest.approx(0.0)  # gory alone: no change
    both = final_table(pd.DataFrame(rows), ["binary", "gory"]).set_index("name")
    assert both.loc["best", "final/delta_m"] == pytest.approx(40.0)  # (0.8 + 0) / 2 * 100
