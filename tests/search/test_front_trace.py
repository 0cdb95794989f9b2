"""The reference point (a majority-class predictor) and the multi-objective trace sent to MLflow."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from mtl_core import keys
from search.tracking.front_trace import HYPERVOLUME, FrontTrace
from search.analysis.reference import majority_scores, reference_point

OBJECTIVES = ["val/gory/f1", "val/sarcasm/f1"]
GORY, SARCASM = (keys.objective_score(o) for o in OBJECTIVES)


def test_the_majority_class_macro_f1_is_p_over_1_plus_p():
    labels = np.full((6, 5), -1, dtype=np.int8)  # columns: binary, mature, gory, slapstick, sarcasm
    labels[:, 2] = [0, 0, 0, 1, -1, -1]  # gory: 3 of 4 labelled clips negative
    labels[:, 4] = [1, 1, 1, 1, 1, 0]  # sarcasm: majority positive, 5 of 6
    scores = majority_scores(labels, ("gory", "sarcasm"))
    assert scores["val/gory/f1"] == pytest.approx(0.75 / 1.75)
    assert scores["val/sarcasm/f1"] == pytest.approx((5 / 6) / (1 + 5 / 6))
    assert scores["val/gory/acc"] == 0.75 and scores["val/gory/f1_pos"] == 0.0
    assert scores["val/avg_f1"] == pytest.approx((0.75 / 1.75 + (5 / 6) / (11 / 6)) / 2)
    assert reference_point(OBJECTIVES, scores) == [scores["val/gory/f1"], scores["val/sarcasm/f1"]]
    assert reference_point(["val/gory/f1", "val/gory/loss"], scores) is None  # no constant-predictor loss here


class _Tracker:
    def __init__(self):
        self.calls, self.ops = [], []

    def call(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))

    def push(self, op):
        self.ops.append(op)

    def close(self):
        pass


def _result(gory, sarcasm, score):
    return {GORY: gory, SARCASM: sarcasm, keys.SCORE: score}


def test_hypervolume_per_epoch_spent_and_front_ranks_at_the_end():
    tracker = _Tracker()
    trace = FrontTrace(tracker, "search", OBJECTIVES, "max", reference=[0.5, 0.5])
    a, b, c = (SimpleNamespace(trial_id=t) for t in "abc")
    trace.on_trial_result(0, [], a, _result(0.6, 0.6, 0.6))  # box 0.1 x 0.1
    trace.on_trial_result(0, [], b, _result(0.7, 0.55, 0.62))  # adds 0.1 x 0.05
    trace.on_trial_result(0, [], a, _result(0.65, 0.7, 0.675))  # a's second epoch, its best: covers its first
    trace.on_trial_result(0, [], c, _result(-keys.WORST, -keys.WORST, -keys.WORST))  # diverged
    logged = [(kw["step"], round(args[1], 6)) for m, args, kw in tracker.calls if args[0] == HYPERVOLUME]
    assert [m for m, _, _ in tracker.calls] == ["log_metric"] * 4
    assert logged == [(1, 0.01), (2, 0.015), (3, round(0.15 * 0.2 + 0.05 * 0.05, 6)), (4, round(0.0325, 6))]
    trace.on_experiment_end([])
    assert tracker.ops == [["tags", "search", "a", {"front_rank": "0"}], ["tags", "search", "b", {"front_rank": "0"}],
                           ["tags", "search", "c", {"front_rank": "1"}]]


def test_a_failed_trial_gets_no_rank_and_the_state_survives_a_restore():
    trace = FrontTrace(_Tracker(), "search", OBJECTIVES, "max", reference=None)
    trace.on_trial_result(0, [], SimpleNamespace(trial_id="a"), _result(0.6, 0.6, 0.6))
    trace.on_trial_result(0, [], SimpleNamespace(trial_id="b"), _result(0.7, 0.7, 0.7))
    trace.on_trial_error(0, [], SimpleNamespace(trial_id="b"))
    restored = FrontTrace(_Tracker(), "search", OBJECTIVES, "max", reference=None)
    restored.set_state(trace.get_state())
    assert restored.front_ranks() == {"a": 0} and restored.epochs == 2
    assert restored.tracker.calls == []  # no reference point: no hypervolume logged


def test_a_minimised_objective_is_turned_around():
    trace = FrontTrace(_Tracker(), "search", ["val/gory/f1", "val/gory/loss"], "max", reference=None)
    assert trace.vector({keys.objective_score("val/gory/f1"): 0.5, keys.objective_score("val/gory/loss"): 0.3}) \
        == [0.5, -0.3]
    assert math.isnan(trace.vector({keys.objective_score("val/gory/f1"): 0.5,
                                    keys.objective_score("val/gory/loss"): keys.WORST})[0])
