import itertools
import math
import random

import pytest

from mtl_core import TASKS
from mtl_core.grouping import (
    best_selection, canonical, check_partition, partitions, rank_partitions, score_partition, selection_value,
    subsets, tag_selection,
)


@pytest.mark.parametrize("n, bell", [(1, 1), (2, 2), (3, 5), (4, 15), (5, 52)])
def test_partition_counts_are_bell_numbers(n, bell):
    parts = partitions(TASKS[:n])
    assert len(parts) == bell
    assert len({canonical(p, TASKS[:n]) for p in parts}) == bell  # all distinct
    for p in parts:
        assert sorted(t for g in p for t in g) == sorted(TASKS[:n])


def test_subsets_and_group_counts():
    assert len(subsets(TASKS)) == 31
    by_k = {k: sum(len(p) == k for p in partitions(TASKS)) for k in range(1, 6)}
    assert by_k == {1: 1, 2: 15, 3: 25, 4: 10, 5: 1}  # Stirling numbers of the second kind


def test_check_partition():
    assert check_partition([["gory", "mature"], ["binary", "slapstick", "sarcasm"]], TASKS) == (
        ("binary", "slapstick", "sarcasm"), ("mature", "gory"))
    for bad, msg in (([["binary"]], "leaves out"), ([["binary", "binary"], list(TASKS[1:])], "two groups"),
                     ([list(TASKS), ["nope"]], "not configured"), ([list(TASKS), []], "empty")):
        with pytest.raises(ValueError, match=msg):
            check_partition(bad, TASKS)


def _table(seed, tasks=TASKS):
    rng = random.Random(seed)
    return {g: {t: rng.random() for t in g} for g in subsets(tasks)}


def test_partition_scores_from_a_hand_made_table():
    scores = {g: {t: 0.5 for t in g} for g in subsets(TASKS)}
    scores[("binary", "slapstick")] = {"binary": 0.9, "slapstick": 0.8}
    scores[("mature", "gory")] = {"mature": 0.7, "gory": 0.6}
    scores[("sarcasm",)] = {"sarcasm": 1.0}
    best = (("binary", "slapstick"), ("mature", "gory"), ("sarcasm",))
    assert score_partition(best, scores) == pytest.approx((0.9 + 0.8 + 0.7 + 0.6 + 1.0) / 5)
    ranked = rank_partitions(TASKS, scores)
    assert len(ranked) == 52
    assert canonical(ranked[0][1], TASKS) == canonical(best, TASKS)
    assert ranked[0][0] == pytest.approx(0.8)


def _brute_force(scores, tasks, budget):
    best = (-math.inf, ())
    for k in range(1, int(budget) + 1):
        for combo in itertools.combinations(scores, k):
            value = selection_value(combo, scores, tasks)
            if value > best[0] + 1e-12:
                best = (value, combo)
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_budgeted_selection_equals_brute_force(seed, budget):
    tasks = TASKS[:4] if budget == 3 else TASKS
    scores = _table(seed, tasks)
    value, groups = best_selection(scores, tasks, budget)
    expected, _ = _brute_force(scores, tasks, budget)
    assert value == pytest.approx(expected)
    assert len(groups) <= budget
    assert selection_value(groups, scores, tasks) == pytest.approx(value)


def test_budget_one_is_the_all_task_model_and_more_budget_never_hurts():
    scores = _table(3)
    v1, g1 = best_selection(scores, TASKS, 1)
    assert g1 == (TASKS,)
    values = [best_selection(scores, TASKS, b)[0] for b in range(1, 6)]
    assert values == sorted(values)


def test_tag_selection_groups_tasks_with_positive_affinity():
    # binary<->slapstick and mature<->gory help each other; everything else hurts
    aff = {(i, j): -0.2 for i in TASKS for j in TASKS if i != j}
    for a, b in (("binary", "slapstick"), ("mature", "gory")):
        aff[(a, b)] = aff[(b, a)] = 0.5
    aff[("sarcasm", "binary")] = aff[("binary", "sarcasm")] = 0.1
    value, groups = tag_selection(aff, TASKS, 2)
    assert {frozenset(g) for g in groups} == {frozenset({"mature", "gory"}),
                                               frozenset({"binary", "slapstick", "sarcasm"})}


def test_tag_partitions_one_per_group_count():
    aff = {(i, j): -0.1 for i in TASKS for j in TASKS if i != j}
    aff[("mature", "gory")] = aff[("gory", "mature")] = 0.4
    aff[("binary", "slapstick")] = aff[("slapstick", "binary")] = 0.3
    from mtl_core.grouping import tag_partitions

    best = tag_partitions(aff, TASKS)
    assert sorted(best) == [1, 2, 3, 4, 5]
    assert best[1][1] == (TASKS,)
    assert {frozenset(g) for g in best[3][1]} == {frozenset({"mature", "gory"}), frozenset({"binary", "slapstick"}),
                                                  frozenset({"sarcasm"})}  # (2,2,1): one singleton
    assert len(best[5][1]) == 5
