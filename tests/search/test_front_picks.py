"""The final phase's choice in a multi-objective search: the best by the metric, then along the front."""
import math
from types import SimpleNamespace

import pandas as pd

from search.analysis.pareto import front_picks

OBJECTIVES = ("val/gory/f1", "val/sarcasm/f1")
TRIALS = pd.DataFrame({
    "trial_id": ["knee", "gory_end", "sarcasm_end", "near_knee", "dominated", "diverged"],
    "val/gory/f1": [0.6, 0.9, 0.3, 0.61, 0.4, math.nan],
    "val/sarcasm/f1": [0.6, 0.3, 0.9, 0.59, 0.4, 0.8],
})


def _candidates(scores):
    return [SimpleNamespace(trial_id=t, score=s) for t, s in zip(TRIALS["trial_id"], scores)]


def test_the_best_by_the_metric_then_the_ends_of_the_front():
    candidates = _candidates([0.62, 0.6, 0.6, 0.61, 0.4, math.nan])
    picks = front_picks(candidates, TRIALS, OBJECTIVES, 3, "max")
    assert [c.trial_id for c in picks] == ["knee", "gory_end", "sarcasm_end"]  # not knee + near_knee
    assert [c.trial_id for c in front_picks(candidates, TRIALS, OBJECTIVES, 1, "max")] == ["knee"]
    # every member of front 0, then the dominated trial; the diverged trial (NaN metric) never
    assert [c.trial_id for c in front_picks(candidates, TRIALS, OBJECTIVES, 9, "max")][-1] == "dominated"
    assert len(front_picks(candidates, TRIALS, OBJECTIVES, 9, "max")) == 5


def test_a_candidate_that_was_no_trial_of_the_search_is_left_out_and_k_0_picks_nothing():
    candidates = _candidates([0.6] * 6) + [SimpleNamespace(trial_id=None, score=0.9)]
    assert all(c.trial_id is not None for c in front_picks(candidates, TRIALS, OBJECTIVES, 9, "max"))
    assert front_picks(candidates, TRIALS, OBJECTIVES, 0, "max") == []
    assert front_picks(candidates, pd.DataFrame(), OBJECTIVES, 2, "max") == []
