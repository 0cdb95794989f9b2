"""The final phase under repeated k-fold cross-validation: pairing by (repeat, fold), Nadeau and Bengio's
corrected variance, and the race's error rate on a real learner whose folds share training clips."""
import numpy as np
import pandas as pd
import pytest

from mtl_core.data.folds import fold_of
from search.analysis.decision import RunScores, race
from search.run.phases import fold_overrides
from search.analysis.stats import SeedClipEstimate, cv_estimate, macro_f1

TASKS = ["binary", "gory"]


def _ridge_predict(x_train, y_train, x_test, lam=1.0):
    a, b = np.c_[x_train, np.ones(len(x_train))], np.c_[x_test, np.ones(len(x_test))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (2 * y_train - 1))
    return (b @ w > 0).astype(int)


def _cv_runs(rep: int, configs: dict[str, list[int]], n=160, folds=5, repeats=3) -> pd.DataFrame:
    """Each configuration a linear classifier on its own features, fitted on the training folds of one
    finite dataset drawn from a population in which features 0-3 and 4-7 carry the same information: the
    folds of a repeat share most of their training clips, which a naive t test over folds ignores."""
    rng = np.random.default_rng(rep)
    x = rng.normal(size=(n, 8))
    w = np.array([1, .5, .3, .2] * 2)[:, None] * np.ones((1, 2))
    y = ((x @ w + rng.normal(0, 1.2, (n, 2))) > 0).astype(int)
    rows = []
    for seed in range(1, repeats + 1):
        where = fold_of(y, folds, seed)
        for fold in range(folds):
            train, test = where != fold, where == fold
            for name, cols in configs.items():
                f1 = macro_f1(_ridge_predict(x[train][:, cols], y[train], x[test][:, cols]), y[test])
                rows.append({"name": name, "role": "final", "seed": seed, "fold": fold, "folds": folds, "error": "",
                             "test/avg_f1": f1.mean(), **{f"test/{t}/f1": f1[j] for j, t in enumerate(TASKS)},
                             **{f"label/{t}": y[test, j] for j, t in enumerate(TASKS)}})
    return pd.DataFrame(rows)


def test_equally_good_configurations_are_rarely_told_apart_and_the_correction_is_why():
    decided = naive = 0
    reps = 200
    for rep in range(reps):
        scores = RunScores(_cv_runs(rep, {"best": [0, 1, 2, 3], "equal_sum": [4, 5, 6, 7]}), TASKS)
        (c,) = race(scores, "best", ["equal_sum"], [1, 2, 3], [3], margin=0)
        decided += c.decided
        e = scores.difference("best", "equal_sum")
        naive += SeedClipEstimate(e.value, e.seed_sd, 0.0, e.n, folds=e.folds).p_value() < 0.05  # no correction
    assert decided / reps <= 0.05
    assert naive / reps > 0.15


def test_a_known_difference_is_decided():
    beats = 0
    for rep in range(20):
        scores = RunScores(_cv_runs(rep, {"best": [0, 1, 2, 3], "equal_sum": [2, 3]}), TASKS)
        (c,) = race(scores, "best", ["equal_sum"], [1, 2, 3], [3], margin=0)
        beats += c.status == "beats"
    assert beats >= 16


def test_runs_pair_by_repeat_and_fold_and_a_missing_fold_drops_out_of_both_sides():
    runs = _cv_runs(0, {"best": [0, 1, 2, 3], "equal_sum": [4, 5, 6, 7]}, repeats=2)
    scores = RunScores(runs, TASKS)
    assert scores.folds == 5 and scores.seeds("best") == [1, 2] and not scores.with_predictions
    e = scores.difference("best", "equal_sum")
    assert e.n == 10 and e.folds == 5 and e.df == 9 and "2 repeats of 5-fold CV" in e.count()
    a = runs[runs["name"] == "best"].set_index(["seed", "fold"])["test/avg_f1"]
    b = runs[runs["name"] == "equal_sum"].set_index(["seed", "fold"])["test/avg_f1"]
    assert e.value == pytest.approx((a - b).mean())
    assert e.se ** 2 == pytest.approx((1 / 10 + 1 / 4) * (a - b).var(ddof=1))  # Nadeau and Bengio
    dropped = runs.drop(runs[(runs["name"] == "equal_sum") & (runs["seed"] == 1) & (runs["fold"] == 3)].index)
    assert RunScores(dropped, TASKS).difference("best", "equal_sum").n == 9


def test_more_repeats_do_not_remove_the_overlap_term():
    e = cv_estimate(np.array([0.01, 0.03, -0.01, 0.02, 0.0]), folds=5)
    assert e.clip_term == pytest.approx(e.seed_sd ** 2 / 4)
    assert e.variance(n=10_000) > e.clip_term  # the floor: (n_test / n_train) s^2
    assert e.clips_needed(0.05) is None


def test_each_final_run_gets_its_fold_and_the_repeats_assignment():
    assert fold_overrides(0, 0, 7) == {}
    assert fold_overrides(5, 2, 7) == {"data.cv.folds": 5, "data.cv.fold": 2, "data.cv.shuffle": 7}
