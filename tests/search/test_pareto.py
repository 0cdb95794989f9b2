"""Non-dominated sorting, crowding distance and hypervolume on sets small enough to check by hand."""
import itertools
import math

import numpy as np
import pytest

import search.analysis.pareto
from search.analysis.pareto import (ahead_counts, ahead_of, contribution_in_front, crowding_distance, epsilon_net_places,
                           hypervolume,
                           hypervolume_contributions, non_dominated_ranks, pareto_order, rank_and_crowding, spread)

NAN = math.nan
# two-objective set (higher is better): a front of three with a duplicate, one dominated row, the worst
# row, and a diverged trial (a NaN, even beside a huge value)
POINTS = [(3, 1), (1, 3), (2, 2), (1, 1), (2, 2), (NAN, 5), (0, 0)]


def test_fronts_with_ties_and_nan():
    assert non_dominated_ranks(POINTS).tolist() == [0, 0, 0, 1, 0, 3, 2]


def test_a_nan_row_is_dominated_by_everything_and_ties_with_other_nan_rows():
    assert non_dominated_ranks([(NAN, NAN), (-1e9, -1e9), (NAN, 0)]).tolist() == [1, 0, 1]
    assert non_dominated_ranks([(NAN, 1), (NAN, 2)]).tolist() == [0, 0]
    assert non_dominated_ranks([]).tolist() == []


def test_equal_rows_share_a_front_and_incomparable_rows_too():
    assert non_dominated_ranks([(1, 1), (1, 1), (1, 1)]).tolist() == [0, 0, 0]
    assert non_dominated_ranks([(1, 2, 3), (3, 2, 1), (1, 2, 2)]).tolist() == [0, 0, 1]


def test_crowding_distance_by_hand():
    # front [(3,1), (1,3), (2,2), (2,2)]: the ends are inf; (2,2)'s neighbours are 1 and 3 on both
    # objectives (distinct values, so the duplicate does not hide them): 2/2 + 2/2 = 2, for both copies
    assert crowding_distance([(3, 1), (1, 3), (2, 2), (2, 2)]).tolist() == [math.inf, math.inf, 2.0, 2.0]
    # five points on a line x + y = 4: inner distances (x_next - x_prev) / 4 on each objective
    line = [(0, 4), (1, 3), (2, 2), (4, 0), (3, 1)]
    assert crowding_distance(line).tolist() == [math.inf, 1.0, 1.0, math.inf, 1.0]
    uneven = [(0, 4), (0.5, 3.5), (2, 2), (4, 0)]
    np.testing.assert_allclose(crowding_distance(uneven), [math.inf, 1.0, 1.75, math.inf])


def test_crowding_small_fronts_constant_objectives_and_nan():
    assert crowding_distance([(1, 2), (2, 1)]).tolist() == [math.inf, math.inf]
    # the first objective is equal across the front and says nothing
    assert crowding_distance([(1, 0), (1, 1), (1, 3)]).tolist() == [math.inf, 1.0, math.inf]
    assert crowding_distance([(NAN, NAN), (NAN, 1)]).tolist() == [0.0, 0.0]


def test_order_and_how_many_rank_ahead():
    ranks, crowd = rank_and_crowding(POINTS)
    assert crowd[[0, 1]].tolist() == [math.inf, math.inf] and crowd[2] == crowd[4] == 2.0
    assert pareto_order(POINTS).tolist() == [0, 1, 2, 4, 3, 6, 5]
    assert ahead_counts(POINTS).tolist() == [0, 0, 2, 4, 2, 6, 5]


def test_hypervolume_2d_by_hand():
    # staircase: x in [0,1] up to 3, [1,2] up to 2, [2,3] up to 1 -> 3 + 2 + 1
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == 6.0
    # a dominated row, a row not better than the reference and a NaN row change nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (1, 1), (-1, 5), (NAN, 9)], (0, 0)) == 6.0
    # another reference: the boxes shrink to [0.5,1]x..., (3,1) sits on the reference's y and adds nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0.5, 1)) == pytest.approx(0.5 * 2 + 1 * 1)
    assert hypervolume([], (0, 0)) == 0.0
    assert hypervolume([(NAN, NAN)], (0, 0)) == 0.0


def test_hypervolume_3d_by_hand():
    assert hypervolume([(1, 1, 1)], (0, 0, 0)) == 1.0
    # three boxes of volume 2 that pairwise overlap in the unit cube: 3*2 - 3*1 + 1 = 4
    assert hypervolume([(2, 1, 1), (1, 2, 1), (1, 1, 2)], (0, 0, 0)) == 4.0
    # a 2x2x1 slab and a 1x1x3 column: 4 + 3 - 1
    assert hypervolume([(2, 2, 1), (1, 1, 3), (1, 1, 1)], (0, 0, 0)) == 6.0
    # macro-F1-like values against a majority-class reference
    assert hypervolume([(0.7, 0.6, 0.5)], (0.5, 0.4, 0.45)) == pytest.approx(0.2 * 0.2 * 0.05)


def _cells(points, ref):
    """Brute force for integer points: count the unit cells some point covers."""
    points = np.asarray(points)
    hi = points.max(axis=0)
    count = 0
    for cell in itertools.product(*(range(r, h) for r, h in zip(ref, hi))):
        count += bool(((points >= np.asarray(cell) + 1).all(axis=1)).any())
    return count


@pytest.fixture(params=["optuna_wfg", "slicing"])
def both_algorithms(request, monkeypatch):
    """Every hypervolume test runs on Optuna's WFG (the fast path) and on the slicing fallback."""
    if request.param == "slicing":
        monkeypatch.setattr(search.analysis.pareto, "_wfg", None)
    else:
        assert search.analysis.pareto._wfg is not None


pytestmark = pytest.mark.usefixtures("both_algorithms")


@pytest.mark.parametrize("dims", [3, 4, 5])
def test_hypervolume_matches_counting_cells(dims):
    rng = np.random.default_rng(dims)
    for _ in range(5):
        points = rng.integers(0, 5, size=(8, dims))
        assert hypervolume(points, np.zeros(dims)) == _cells(points, [0] * dims)


def test_contributions_are_each_rows_exclusive_volume():
    # each point of the staircase owns a unit square; a dominated point owns nothing
    np.testing.assert_allclose(hypervolume_contributions([(1, 3), (2, 2), (3, 1), (1, 1)], (0, 0)), [1, 1, 1, 0])
    # duplicates share their volume, so neither owns any of it
    np.testing.assert_allclose(hypervolume_contributions([(2, 2), (2, 2), (3, 1)], (0, 0)), [0, 0, 1])


def test_contribution_in_front_scales_objectives_and_ranks_fronts_apart():
    # objective scales differ by 100x; scaled to [0, 1], front 0 = the three first rows, front 1 = the fourth
    points = [(100, 0), (0, 1), (90, 0.9), (50, 0.5), (NAN, 1)]
    np.testing.assert_allclose(contribution_in_front(points), [0.01, 0.01, 0.81, 0.36, 0])
    assert ahead_counts(points, "hypervolume").tolist() == [1, 1, 0, 3, 4]
    assert ahead_counts(points, "crowding").tolist() == [0, 0, 2, 3, 4]
    with pytest.raises(ValueError):
        ahead_counts(points, "random")


def test_spread_picks_the_ends_of_the_front_after_the_first():
    # front 0: a line from (0, 1) to (1, 0); then one dominated row, one diverged
    points = [(0.5, 0.5), (0.0, 1.0), (0.45, 0.55), (1.0, 0.0), (0.55, 0.45), (0.3, 0.3), (NAN, 1)]
    assert spread(points, 3, first=2) == [2, 3, 1]  # from (0.45, 0.55) the farthest end, then the other end
    assert spread(points, 1, first=4) == [4]
    assert spread(points, 6, first=0) == [0, 1, 3, 2, 4, 5]  # both ends equally far: the lower row first;
    # front 0 before the dominated row
    assert spread(points, 7, first=0)[-1] == 6  # the diverged trial last
    # without `first`: front 0's largest hypervolume contribution (scaled, reference 0.1 below the worst)
    assert spread([(1.0, 0.0), (0.0, 1.0), (0.9, 0.9)], 1) == [2]
    assert spread([(NAN, NAN), (NAN, 1)], 3) == [0, 1]


def test_epsilon_net_places_by_hand():
    # front 0: rows 0-4 (4 equals 2); front 1: row 5; row 6 diverged. Scaled to [0, 1] the objectives are
    # unchanged; the best mean is row 3 (0.55), the farthest from it row 1 (1.20), then row 2 (0.50 from
    # row 3, 0.71 from row 1; row 0 is 0.22 from row 3), then row 0. Row 4 takes its twin's place.
    points = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.5, 0.5), (0.0, 0.0), (NAN, 1)]
    assert epsilon_net_places(points).tolist() == [3, 1, 2, 0, 2, 0, 7]
    assert epsilon_net_places(points, fronts=[1]).tolist() == [7, 7, 7, 7, 7, 0, 7]
    assert ahead_counts(points, "epsilon_net").tolist() == [4, 1, 2, 0, 2, 5, 6]
    assert epsilon_net_places([(NAN, 1)]).tolist() == [1]


def test_each_place_of_the_epsilon_net_is_the_farthest_from_the_places_before_it():
    """The defining property of a greedy ε-net: at every step the row placed is at least as far from the
    rows placed before it as any row placed after it (so any prefix covers the front as well as it can)."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        front = rng.random((9, 3))
        front /= np.linalg.norm(front, axis=1, keepdims=True)  # on a sphere: mutually non-dominated
        places = epsilon_net_places(front)
        scaled = (front - front.min(axis=0)) / (front.max(axis=0) - front.min(axis=0))
        assert sorted(places) == list(range(9)) and places[np.argmax(scaled.mean(axis=1))] == 0
        order = np.argsort(places)
        for k in range(1, 9):
            gap = lambda i: min(np.linalg.norm(scaled[i] - scaled[j]) for j in order[:k])  # noqa: E731
            assert gap(order[k]) >= max(gap(i) for i in order[k:]) - 1e-12


@pytest.mark.parametrize("tie_break", ["crowding", "hypervolume", "epsilon_net"])
def test_ahead_of_one_row_agrees_with_every_rows_count(tie_break):
    rng = np.random.default_rng(1)
    for points in (POINTS, [(100, 0), (0, 1), (90, 0.9), (50, 0.5), (NAN, 1)], rng.random((12, 4)).round(1)):
        counts = ahead_counts(points, tie_break)
        assert [ahead_of(points, i, tie_break) for i in range(len(points))] == counts.tolist()


def test_contributions_equal_what_the_front_loses_without_each_row():
    rng = np.random.default_rng(2)
    points = rng.random((10, 4))
    total = hypervolume(points, np.zeros(4))
    expected = [total - hypervolume(np.delete(points, i, axis=0), np.zeros(4)) for i in range(10)]
    np.testing.assert_allclose(hypervolume_contributions(points, np.zeros(4)), expected, atol=1e-12)
