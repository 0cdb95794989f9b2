"""Which retrained configurations another one beats on every task, beyond the noise of seeds and test
clips: equally good ones stay on the front, one worse on every task leaves it."""
import numpy as np
import pandas as pd

from search.analysis.decision import RunScores, dominated_by
from search.analysis.stats import macro_f1

TASKS = ["binary", "mature", "gory", "slapstick", "sarcasm"]


def _runs(acc: dict[str, float], seeds, n_clips=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n_clips, len(TASKS)))
    rows = []
    for name, p in acc.items():
        for s in seeds:
            pred = np.where(rng.random(y.shape) < p, y, 1 - y)
            f1 = macro_f1(pred, y)
            rows.append({"name": name, "role": "final", "seed": s, "error": "", "test/avg_f1": f1.mean(),
                         **{f"test/{t}/f1": f1[j] for j, t in enumerate(TASKS)},
                         **{f"pred/{t}": pred[:, j] for j, t in enumerate(TASKS)},
                         **{f"label/{t}": y[:, j] for j, t in enumerate(TASKS)}})
    return pd.DataFrame(rows)


def test_equally_good_configurations_are_not_shown_dominated():
    """Three equally good configurations on five tasks: none is shown dominated in at least 90% of runs
    (a share of resamples on the front of the means would put one "on the front beyond noise" in most runs)."""
    names = ["a", "b", "c"]
    clean = sum(not any(dominated_by(RunScores(_runs(dict.fromkeys(names, 0.75), [1, 2, 3], seed=rep), TASKS,
                                                resamples=200, seed=rep), names).values())
                for rep in range(20))
    assert clean >= 18


def test_a_configuration_worse_on_every_task_is_shown_dominated_by_the_better_one():
    names = ["good", "bad"]
    hits = 0
    for rep in range(10):
        scores = RunScores(_runs({"good": 0.85, "bad": 0.7}, [1, 2, 3, 4, 5], n_clips=300, seed=rep), TASKS,
                           resamples=200, seed=rep)
        result = dominated_by(scores, names)
        assert result["good"] == []  # never the other way round
        hits += result["bad"] == ["good"]
    assert hits >= 8


def test_one_sided_p_values_are_probabilities_and_an_equal_pair_dominates_neither():
    scores = RunScores(_runs({"x": 0.8, "y": 0.8}, [1, 2, 3, 4], n_clips=300), TASKS, resamples=100)
    x = scores.difference("x", "y", task=0)
    assert np.isfinite(x.p_greater()) and 0 < x.p_greater() < 1
    assert dominated_by(scores, ["x", "y"]) == {"x": [], "y": []}
