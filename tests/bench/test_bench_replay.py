"""The replay bench's arithmetic (bench/bench_replay.py, bench/replay_sim.py): which trials Ray's ASHA stops on a
hand-made curve set, the share of epochs, the regret of the pick, the asynchronous workers' order, Syne Tune's
MOASHA cut against the project's, the matched-epoch fronts and the first target's decision rule."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_replay", ROOT / "bench" / "bench_replay.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
sim = bench.sim


def curve(val, seconds=None, test=math.nan, tasks=None):
    val = np.array(val, dtype=float)
    tasks = np.array(tasks, dtype=float) if tasks is not None else np.repeat(val[:, None], 2, axis=1)
    sec = np.array(seconds if seconds is not None else [1.0] * len(val), dtype=float)
    return sim.Curve("c", val, tasks, sec, test)


# A continues to the end; B passes rung 1 (0.6 >= the median of {0.5}) and stops at rung 2 (0.5 < 0.6);
# C stops at rung 1 (0.52 < the median of {0.5, 0.6}, 0.55) although its whole curve is the best.
THREE = [curve([0.5, 0.6, 0.7, 0.8], test=0.60), curve([0.6, 0.5, 0.4, 0.3], test=0.55),
         curve([0.52, 0.7, 0.8, 0.9], test=0.65)]


def test_ray_asha_stops_the_trials_its_rule_stops():
    replay = sim.simulate(THREE, [0, 1, 2], sim.RayASHA(max_t=4, grace=1, eta=2), max_t=4, workers=1)
    assert replay.last_epoch() == {0: 4, 1: 2, 2: 1}
    assert replay.stopped == {1, 2}
    assert replay.epochs() == 7 and sim.share_of_epochs(replay, 4) == pytest.approx(7 / 12)


def test_regret_is_of_the_best_drawn_configuration_against_the_pick():
    replay = sim.simulate(THREE, [0, 1, 2], sim.RayASHA(max_t=4, grace=1, eta=2), max_t=4, workers=1)
    assert sim.pick(THREE, replay) == 0  # A's 0.8 at epoch 4 is the best value the search saw
    r_val, r_test = sim.regret(THREE, replay)
    assert r_val == pytest.approx(0.9 - 0.8) and r_test == pytest.approx(0.65 - 0.60)
    unpruned = sim.simulate(THREE, [0, 1, 2], sim.NoStop(), max_t=4, workers=1)
    assert sim.share_of_epochs(unpruned, 4) == 1.0 and sim.regret(THREE, unpruned) == (0.0, 0.0)
    # regret counts only the configurations the seed drew
    assert sim.regret(THREE, sim.simulate(THREE, [0, 1], sim.NoStop(), max_t=4, workers=1))[0] == 0.0


def test_workers_take_trials_in_order_and_results_come_by_recorded_time():
    slow, fast, third = curve([0.1] * 3, seconds=[10, 10, 10]), curve([0.2] * 3, seconds=[1, 1, 1]), curve([0.3] * 3)
    replay = sim.simulate([slow, fast, third], [0, 1, 2], sim.NoStop(), max_t=3, workers=2)
    # the fast trial's 3 epochs end at 1, 2, 3 s; the third starts then on its worker (4, 5, 6 s); the slow at 10, 20, 30
    assert replay.results == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (0, 1), (0, 2), (0, 3)]
    assert sim.observed_vectors([slow, fast, third], replay, 4).tolist() == [[0.2, 0.2]] * 3 + [[0.3, 0.3]]


def test_a_diverged_curve_ends_at_its_last_recorded_epoch():
    short = curve([0.4, 0.5])
    replay = sim.simulate([short, THREE[0]], [0, 1], sim.NoStop(), max_t=4, workers=1)
    assert replay.last_epoch() == {0: 2, 1: 4} and not replay.stopped


def test_syne_tune_moasha_counts_the_new_vector_among_the_rung():
    # at rung 1 (eta 4): one earlier vector dominates the new one, two are dominated by it. Syne Tune ranks
    # the new vector 2nd of 4 (place 1, 1/4 <= 1/eta): it continues. The project's cut allows
    # (m - 1) / eta = 0.5 vectors ahead of m = 3: it stops.
    earlier = [[0.9, 0.9], [0.1, 0.2], [0.2, 0.1]]
    new = [0.5, 0.5]
    curves = [curve([np.mean(v)], tasks=[v]) for v in earlier + [new]]
    for scheduler, expected in ((sim.SyneMOASHA(max_t=4, grace=1, eta=4), "CONTINUE"),
                                (sim.ProjectMOASHA(max_t=4, grace=1, eta=4, tasks=2, tie_break="epsilon_net"), "STOP")):
        trials = [type("T", (), {"trial_id": f"t{i}"})() for i in range(4)]
        for t, c in zip(trials[:3], curves[:3]):
            scheduler.on_result(t, c, 0)
        assert scheduler.on_result(trials[3], curves[3], 0) == expected
    # three vectors ahead of it out of four: stop under Syne Tune's rule too
    syne = sim.SyneMOASHA(max_t=4, grace=1, eta=4)
    for i in range(3):
        syne.on_result(type("T", (), {"trial_id": f"a{i}"})(), curve([1.0], tasks=[[0.9 + i / 100, 0.9]]), 0)
    assert syne.on_result(type("T", (), {"trial_id": "b"})(), curve([0.0], tasks=[[0.1, 0.1]]), 0) == "STOP"


def test_syne_order_is_fronts_then_an_epsilon_net_from_the_best_first_objective():
    points = np.array([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.05, 0.05]])
    places = sim.syne_order(points)
    assert places[1] == 0 and places[3] == 3  # the first objective's best leads; the dominated row is last
    assert places[0] == 1  # the farthest of the front from the seed comes next


def test_matched_epochs_cut_the_longer_replay():
    a = sim.Replay([0, 1], results=[(0, 1), (1, 1)])
    b = sim.Replay([0, 1], results=[(0, 1), (0, 2), (1, 1)])
    curves = [curve([0.5, 0.6], tasks=[[0.6, 0.4], [0.7, 0.7]]), curve([0.5], tasks=[[0.4, 0.6]])]
    e, hv_a, hv_b = bench.matched(curves, a, b, [0.0, 0.0])
    assert e == 2
    assert hv_a == pytest.approx(0.6 * 0.4 + 0.4 * 0.6 - 0.4 * 0.4)  # a: both trials' epoch 1
    assert hv_b == pytest.approx(0.7 * 0.7)  # b: trial 0's epochs 1 and 2 only


@pytest.mark.parametrize("diff, verdict", [
    (np.full(50, 0.001) + np.linspace(-1e-4, 1e-4, 50), "met, and better"),
    (np.full(50, -0.0005) + np.linspace(-1e-4, 1e-4, 50), "met (within margin)"),
    (np.full(50, -0.005) + np.linspace(-1e-4, 1e-4, 50), "not met"),
    (np.linspace(-0.02, 0.02, 10), "undecided"),
])
def test_the_first_targets_decision_rule(diff, verdict):
    d = bench.decide(diff, base_mean=0.01)  # margin: 10% of 0.01
    assert d["margin"] == pytest.approx(0.001) and d["verdict"] == verdict
    assert d["lower"] <= d["mean"] <= d["upper"] and d["boot_lower"] <= d["mean"] <= d["boot_upper"]


def test_curves_file_lines_by_setting_and_a_broken_line_is_one_error(tmp_path):
    path = tmp_path / "curves.jsonl"
    rows = [{"index": 1, "val": [0.5], "setting": {"max_t": 1}}, {"index": 0, "val": [0.4], "setting": {"max_t": 1}},
            {"index": 0, "val": [0.4], "setting": {"max_t": 2}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["index"] for r in bench.replay_record.read_curves(path, {"max_t": 1})] == [0, 1]
    assert len(bench.replay_record.read_curves(path)) == 3
    with path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(SystemExit, match="^error: .*line 4"):
        bench.replay_record.read_curves(path)


def test_without_drops_the_curves_whose_strategies_are_named():
    names = ["dsg+equal+all_modalities | bin+sla+sar/mat+gor", "all_tasks+dwa+dropout", "all_tasks+equal+all_modalities | bin/mat/gor/sla/sar"]
    curves = [sim.Curve(n, np.zeros(1), np.zeros((1, 1)), np.ones(1)) for n in names]
    assert [c.label for c in bench.without(curves, {"dsg", "dwa"})] == [names[2]]
