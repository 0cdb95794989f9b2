"""The multi-objective bench's own arithmetic (bench/bench_multiobjective.py): the arms' space files, the
paired comparison at the same epochs, the intervals and seed counts it prints, and its results file."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_multiobjective", ROOT / "bench" / "bench_multiobjective.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

BASE = {"search": {"metric": "val/avg_f1", "num_samples": 10, "grace_period": 1}, "space": {"train": {"lr": 0.1}}}


def test_each_arm_changes_only_its_search_settings():
    spaces = {arm: bench.arm_space(BASE, arm, max_t=16) for arm in bench.ARMS}
    assert BASE["search"] == {"metric": "val/avg_f1", "num_samples": 10, "grace_period": 1}  # the base is not touched
    for arm, data in spaces.items():
        assert data["space"] == BASE["space"] and data["search"]["final_k"] == 0
    assert spaces["scalar_asha"]["search"]["metric"] == "val/avg_f1" and "objectives" not in spaces["scalar_asha"]["search"]
    for arm in ("mo_asha", "mo_asha_epsnet", "mo_full"):
        assert "metric" not in spaces[arm]["search"] and spaces[arm]["search"]["objectives"] == "tasks"
    assert spaces["mo_full"]["search"]["grace_period"] == 16 and spaces["mo_asha"]["search"]["grace_period"] == 1
    assert spaces["mo_asha_epsnet"]["search"]["tie_break"] == "epsilon_net" and "tie_break" not in spaces["mo_asha"]["search"]


def test_the_paired_interval_is_students_t_and_its_verdict_follows_it():
    diff = pd.Series([0.3, 0.1, 0.2, 0.4, 0.0])
    half = stats.t.ppf(0.975, 4) * diff.std(ddof=1) / np.sqrt(5)
    text = bench.difference_summary(diff)
    assert f"[{0.2 - half:+.5f}, {0.2 + half:+.5f}]" in text and "above 0: met" in text
    assert "below 0: not met" in bench.difference_summary(-diff)
    assert "contains 0" in bench.difference_summary(diff - 0.2)


def test_the_seeds_it_would_take_are_the_fewest_that_clear_the_margin():
    diff = pd.Series([-0.3, 0.5, -0.4, 0.2, 0.0, -0.7])  # mean -0.117: 20% below a base of 1 is within reach, 10% not
    text = bench.difference_summary(diff, base=1.0)
    need = int(text.split("within 20%: about ")[1].split()[0])
    mean, sd = diff.mean(), diff.std(ddof=1)

    def clears(k):
        return mean - stats.t.ppf(0.95, k - 1) * sd / np.sqrt(k) > -0.2

    assert clears(need) and not clears(need - 1)
    assert "within 10%: no number of seeds at this mean" in text  # the mean itself is below -10%


def test_a_front_below_scalar_asha_beyond_noise_still_gets_its_margins():
    diff = pd.Series([-0.05, -0.06, -0.04, -0.05, -0.055])  # below 0 beyond noise, but within 10% of a base of 1
    text = bench.difference_summary(diff, base=1.0)
    assert "below 0: not met" in text and "within 10%: shown at these 5 seeds" in text
    assert bench.difference_summary(diff, base=0.0).endswith("below 0: not met")  # no margin of a zero front


def test_a_margin_the_seeds_already_clear_is_shown_not_costed():
    diff = pd.Series([0.3, -0.1, 0.2, 0.1, 0.0, 0.2])  # mean +0.117; its one-sided bound -0.004 clears -10% of 1
    lower = diff.mean() - stats.t.ppf(0.95, 5) * diff.std(ddof=1) / np.sqrt(6)
    text = bench.difference_summary(diff, base=1.0)
    assert f"one-sided 95% lower bound {lower:+.5f}" in text
    assert "within 10%: shown at these 6 seeds" in text and "within 20%: shown at these 6 seeds" in text


@pytest.mark.parametrize("shares, verdict", [([0.30, 0.32, 0.31, 0.29], ": met"),
                                             ([0.45, 0.50, 0.41, 0.47], "no number of seeds"),
                                             ([0.10, 0.60, 0.20, 0.50], "undecided")])
def test_the_share_target_verdicts(shares, verdict):
    text = bench.share_summary(pd.Series(shares), target=0.40)
    assert verdict in text
    if verdict == "undecided":
        need = int(text.split("about ")[1].split()[0])
        s = pd.Series(shares)
        bound = lambda k: s.mean() + stats.t.ppf(0.95, k - 1) * s.std(ddof=1) / np.sqrt(k)  # noqa: E731
        assert bound(need) <= 0.40 < bound(need - 1)


def _row(arm, seed, trace):
    trace = np.asarray(trace, dtype=float)
    return {"arm": arm, "seed": seed, "epochs": len(trace), "trace": trace, "hv": float(trace[-1])}


def test_each_mo_asha_arm_is_compared_with_scalar_asha_at_its_own_epochs():
    # scalar ASHA spends 6 epochs; the MO arms 2 and 4. Cut at 2 epochs scalar's front is 0.1 (seed 0), at 4
    # it is 0.5 (seed 0) and 0.2 (seed 1): the ε-net arm is ahead on neither seed, the default arm on both.
    runs = pd.DataFrame([
        _row("scalar_asha", 0, [0.0, 0.1, 0.3, 0.5, 0.6, 0.7]), _row("scalar_asha", 1, [0.0, 0.1, 0.1, 0.2, 0.3, 0.9]),
        _row("mo_asha", 0, [0.1, 0.2]), _row("mo_asha", 1, [0.1, 0.2]),
        _row("mo_asha_epsnet", 0, [0.0, 0.1, 0.2, 0.4]), _row("mo_asha_epsnet", 1, [0.0, 0.0, 0.1, 0.1]),
    ])
    text = bench.summarise(runs, full_epochs=20)
    assert "mo_asha's hypervolume >= scalar_asha's at the same epochs: 2 of 2 seeds (mean 0.20000 vs 0.10000)" in text
    assert "mo_asha_epsnet's hypervolume >= scalar_asha's at the same epochs: 0 of 2 seeds (mean 0.25000 vs 0.35000)" in text
    assert "mo_asha's epochs / the unpruned search's (20: trials x max_t): 10% on the mean" in text
    assert "mo_asha_epsnet's epochs / the unpruned search's (20: trials x max_t): 20% on the mean" in text


def _setting(tmp_path, text="search: {num_samples: 10}\n", overrides=("train.epochs=16",), trials=10):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    return bench.setting_of(space, list(overrides), trials)


def test_results_are_read_back_by_arm_and_seed_with_epochs_and_front_from_the_trace(tmp_path):
    setting, path = _setting(tmp_path), tmp_path / "runs.jsonl"
    bench.append_result(path, _row("mo_asha", 3, [0.0, 0.25]), setting)
    bench.append_result(path, _row("scalar_asha", 3, [0.5]), setting)
    rows = bench.read_results(path, setting)
    assert set(rows) == {("mo_asha", 3), ("scalar_asha", 3)}
    assert rows[("mo_asha", 3)]["epochs"] == 2 and rows[("mo_asha", 3)]["hv"] == 0.25
    assert list(rows[("mo_asha", 3)]["trace"]) == [0.0, 0.25]
    assert bench.read_results(tmp_path / "none.jsonl", setting) == {}


@pytest.mark.parametrize("change", [{"overrides": ["train.epochs=8"]}, {"trials": 12},
                                    {"text": "search: {num_samples: 12}\n"}])
def test_results_of_another_setting_are_refused_by_line(tmp_path, change):
    path = tmp_path / "runs.jsonl"
    bench.append_result(path, _row("mo_asha", 0, [0.1]), _setting(tmp_path))
    with pytest.raises(SystemExit, match=r"runs\.jsonl:1: a search of another setting"):
        bench.read_results(path, _setting(tmp_path, **change))


@pytest.mark.parametrize("line, says", [
    (json.dumps({"arm": "mo_asha"}), r"not a result line of this bench \(KeyError"),
    (json.dumps({"arm": "mo_asha", "seed": 0, "trace": 5, "setting": {}}), r"trace: not a list of finite numbers"),
    (json.dumps({"arm": "mo_asha", "seed": 0, "trace": [0.1, None], "setting": {}}), r"trace: not a list"),
    (json.dumps({"arm": "nsga", "seed": 0, "trace": [0.1], "setting": {}}), r"arm 'nsga'"),
    ("[1, 2]", r"not a result line of this bench \(TypeError"),
    ("{", r"not a result line of this bench \(JSONDecodeError"),
])
def test_a_broken_results_line_is_named(tmp_path, line, says):
    path = tmp_path / "runs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(SystemExit, match=r"runs\.jsonl:1: .*" + says):
        bench.read_results(path, _setting(tmp_path))


def test_a_second_line_for_one_arm_and_seed_is_refused(tmp_path):
    setting, path = _setting(tmp_path), tmp_path / "runs.jsonl"
    for trace in ([0.1], [0.2]):  # two machines' files joined together, say
        bench.append_result(path, _row("mo_asha", 4, trace), setting)
    with pytest.raises(SystemExit, match=r"runs\.jsonl:2: mo_asha seed 4 a second time"):
        bench.read_results(path, setting)


def test_a_results_file_that_cannot_be_read_is_one_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(SystemExit, match=r"runs\.jsonl: cannot be read \(UnicodeDecodeError\)"):
        bench.read_results(path, _setting(tmp_path))


def test_the_results_path_is_checked_before_any_search(tmp_path):
    bench.check_results_path(tmp_path / "new" / "folder" / "runs.jsonl")  # its folder is made
    assert (tmp_path / "new" / "folder" / "runs.jsonl").is_file()
    with pytest.raises(SystemExit, match="a folder, not a file"):
        bench.check_results_path(tmp_path / "new")


def test_recorded_searches_are_not_run_again(tmp_path, monkeypatch, capsys):
    space = ROOT / "spaces" / "strategies.yaml"
    argv = [str(space), "--seeds", "2", "--first-seed", "5", "--num-samples", "10", "--arms", "mo_asha,scalar_asha",
            "--results", str(tmp_path / "runs.jsonl")]
    setting = bench.setting_of(space, [], 10)
    for seed in (5, 6):
        bench.append_result(tmp_path / "runs.jsonl", _row("mo_asha", seed, [0.1, 0.2]), setting)
        bench.append_result(tmp_path / "runs.jsonl", _row("scalar_asha", seed, [0.0, 0.1, 0.3]), setting)
    monkeypatch.setattr(bench, "run_arm", lambda *a, **k: pytest.fail("a recorded search was run again"))
    monkeypatch.setattr(bench, "ideal_share", lambda *a, **k: 0.3)
    bench.main(argv)
    out = capsys.readouterr().out
    assert "seeds 5-6" in out and "| mo_asha | 2 | 2.0 ± 0.0 | 0.20000 ± 0.00000 |" in out
    assert "mo_asha's hypervolume >= scalar_asha's at the same epochs: 2 of 2 seeds (mean 0.20000 vs 0.10000)" in out


def test_a_bad_results_file_stops_the_bench_before_any_search(tmp_path, monkeypatch):
    (tmp_path / "runs.jsonl").write_text("{\n")
    monkeypatch.setattr(bench, "run_arm", lambda *a, **k: pytest.fail("a search ran before the file was read"))
    with pytest.raises(SystemExit, match="runs.jsonl:1"):
        bench.main([str(ROOT / "spaces" / "strategies.yaml"), "--seeds", "1", "--results", str(tmp_path / "runs.jsonl")])


def test_an_unknown_arm_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["spaces/strategies.yaml", "--arms", "mo_asha,nsga"])
    assert e.value.code == 2 and "--arms: unknown nsga" in capsys.readouterr().err
