"""Task groupings (docs/methods.md#task-grouping): enumerate groups and partitions, score them, choose
networks.

Pure functions on task names and score tables; no training here.
- `subsets`: the 2^T - 1 non-empty groups (31 for five tasks).
- `partitions`: every partition of the tasks (Bell number: 52 for five), by restricted-growth strings.
- `score_partition`: a partition's value from per-group, per-task validation scores.
- `best_selection`: Standley et al.'s selection of at most `budget` networks, overlap allowed, each
  task served by the best chosen network that contains it (exact branch and bound).
- `tag_selection`: TAG's choice of groups from an inter-task affinity matrix.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

Group = tuple[str, ...]
Partition = tuple[Group, ...]


def subsets(tasks: Sequence[str]) -> list[Group]:
    """Non-empty subsets in task order, smallest first."""
    return [tuple(c) for r in range(1, len(tasks) + 1) for c in itertools.combinations(tasks, r)]


def partitions(tasks: Sequence[str]) -> list[Partition]:
    """All set partitions: a_1 = 0 and a_i <= 1 + max(a_1..a_{i-1}) (a_i = group index of task i)."""
    tasks = tuple(tasks)
    if not tasks:
        return []
    out: list[Partition] = []

    def grow(codes: list[int]) -> None:
        if len(codes) == len(tasks):
            groups: dict[int, list[str]] = {}
            for t, c in zip(tasks, codes):
                groups.setdefault(c, []).append(t)
            out.append(tuple(tuple(g) for _, g in sorted(groups.items())))
            return
        for c in range(max(codes) + 2):
            grow(codes + [c])

    grow([0])
    return out


def canonical(partition: Sequence[Sequence[str]], tasks: Sequence[str]) -> Partition:
    """A partition with tasks and groups in configured order (so equal partitions compare equal)."""
    order = {t: i for i, t in enumerate(tasks)}
    groups = [tuple(sorted(g, key=order.__getitem__)) for g in partition]
    return tuple(sorted(groups, key=lambda g: order[g[0]]))


def check_partition(partition: Sequence[Sequence[str]], tasks: Sequence[str]) -> Partition:
    """Raise ValueError unless every task is in exactly one non-empty group."""
    seen = [t for g in partition for t in g]
    if any(not g for g in partition):
        raise ValueError("a group is empty")
    unknown = sorted(set(seen) - set(tasks))
    if unknown:
        raise ValueError(f"names tasks that are not configured: {', '.join(unknown)}")
    if len(seen) != len(set(seen)):
        raise ValueError("a task is in two groups")
    missing = [t for t in tasks if t not in seen]
    if missing:
        raise ValueError(f"leaves out {', '.join(missing)}")
    return canonical(partition, tasks)


Scores = Mapping[Group, Mapping[str, float]]  # group -> task -> validation score (higher is better)


def score_partition(partition: Partition, scores: Scores) -> float:
    """Mean over tasks of each task's score in the model of its group."""
    values = [scores[tuple(g)][t] for g in partition for t in g]
    return sum(values) / len(values)


def rank_partitions(tasks: Sequence[str], scores: Scores) -> list[tuple[float, Partition]]:
    """Every partition with its score, best first (only partitions whose groups all have scores)."""
    ranked = [(score_partition(p, scores), p) for p in partitions(tasks) if all(tuple(g) in scores for g in p)]
    return sorted(ranked, key=lambda x: -x[0])


def selection_value(groups: Sequence[Group], scores: Scores, tasks: Sequence[str]) -> float:
    """Mean over tasks of the best score among the chosen groups containing it (-inf if uncovered)."""
    best = [max((scores[g][t] for g in groups if t in g), default=-math.inf) for t in tasks]
    return sum(best) / len(best)


def best_selection(scores: Scores, tasks: Sequence[str], budget: float,
                   cost: Callable[[Group], float] = lambda g: 1.0) -> tuple[float, tuple[Group, ...]]:
    """The best set of networks with total cost <= budget that covers every task (overlap allowed).

    Exact: depth-first over candidates with an optimistic bound (each task at its best remaining
    score) and pruning of candidates that improve no task (Standley et al.'s branch and bound)."""
    tasks = tuple(tasks)
    cands = sorted(scores, key=lambda g: -max(scores[g][t] for t in g))
    best_value, best_groups = -math.inf, ()
    # suffix_best[i][t]: the best score for t among candidates i.. (the bound for the remaining search)
    suffix_best = [dict.fromkeys(tasks, -math.inf) for _ in range(len(cands) + 1)]
    for i in range(len(cands) - 1, -1, -1):
        suffix_best[i] = dict(suffix_best[i + 1])
        for t in cands[i]:
            suffix_best[i][t] = max(suffix_best[i][t], scores[cands[i]][t])

    def search(start: int, chosen: list[Group], current: dict[str, float], left: float) -> None:
        nonlocal best_value, best_groups
        if all(current[t] > -math.inf for t in tasks):
            value = sum(current.values()) / len(tasks)
            if value > best_value + 1e-12:
                best_value, best_groups = value, tuple(chosen)
        bound = sum(max(current[t], suffix_best[start][t]) for t in tasks) / len(tasks)
        if bound <= best_value + 1e-12:
            return
        for i in range(start, len(cands)):
            g = cands[i]
            if cost(g) > left + 1e-9 or all(scores[g][t] <= current[t] for t in g):
                continue  # too expensive, or dominated: improves no task
            new = dict(current)
            for t in g:
                new[t] = max(new[t], scores[g][t])
            search(i + 1, chosen + [g], new, left - cost(g))

    search(0, [], dict.fromkeys(tasks, -math.inf), budget)
    return best_value, best_groups


def affinity_scores(affinity: Mapping[tuple[str, str], float], tasks: Sequence[str]) -> dict[Group, dict[str, float]]:
    """TAG group scores: S_j(G) = mean over i in G, i != j of Z(i -> j); singletons get -1e6 (as released)."""
    out = {}
    for g in subsets(tasks):
        if len(g) == 1:
            out[g] = {g[0]: -1e6}
        else:
            out[g] = {j: sum(affinity[(i, j)] for i in g if i != j) / (len(g) - 1) for j in g}
    return out


def tag_selection(affinity: Mapping[tuple[str, str], float], tasks: Sequence[str], k: int
                  ) -> tuple[float, tuple[Group, ...]]:
    """TAG: the best collection of at most k groups (overlap allowed) under the affinity scores."""
    return best_selection(affinity_scores(affinity, tasks), tasks, budget=k)


def tag_partitions(affinity: Mapping[tuple[str, str], float], tasks: Sequence[str]) -> dict[int, tuple[float, Partition]]:
    """For k = 1..T groups, the partition (disjoint groups) with the best TAG score (docs/methods.md#tag:
    restricting TAG's covers to partitions when every task must be served by one model)."""
    scores = affinity_scores(affinity, tasks)
    best: dict[int, tuple[float, Partition]] = {}
    for p in partitions(tasks):
        value = score_partition(p, scores)
        if len(p) not in best or value > best[len(p)][0]:
            best[len(p)] = (value, p)
    return dict(sorted(best.items()))
