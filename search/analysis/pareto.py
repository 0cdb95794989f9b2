"""Pareto logic, all of it: non-dominated sorting, crowding distance, the tie-breaks inside a front, exact
hypervolume and its trace, the front of a table, and which configurations a multi-objective search retrains.

Every function here maximises every column (negate a column to minimise it). A row with a NaN (a trial
that diverged) is dominated by every row without one, so it always lands in the last front. Pure numpy,
sized for a search's fronts (dozens of points, up to five objectives).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from mtl_core import keys

try:  # Optuna's WFG (what its multi-objective samplers use): the same exact value, 10-40x faster on
    # 40-80 points in 5-D than the slicing below, which stays as the fallback if the private name moves
    from optuna._hypervolume import compute_hypervolume as _wfg
except ImportError:  # pragma: no cover
    _wfg = None


TIE_BREAKS = ("crowding", "hypervolume", "epsilon_net")  # how rows of one front are ordered


def as_points(points) -> np.ndarray:
    """An (n, m) float array; rows with a NaN become -inf everywhere (dominated by every finite row)."""
    p = np.array(points, dtype=float, ndmin=2)
    if p.size == 0:
        return p.reshape(0, p.shape[-1] if p.ndim == 2 else 0)
    p[np.isnan(p).any(axis=1)] = -np.inf
    return p


def _dominance(p: np.ndarray) -> np.ndarray:
    """d[i, j]: row i dominates row j (at least as good everywhere, better somewhere)."""
    ge = (p[:, None, :] >= p[None, :, :]).all(axis=2)
    gt = (p[:, None, :] > p[None, :, :]).any(axis=2)
    return ge & gt


def non_dominated_ranks(points) -> np.ndarray:
    """Each row's front: 0 for the rows nothing dominates, 1 for those only front 0 dominates, ...
    Equal rows share a front."""
    p = as_points(points)
    ranks = np.full(len(p), -1, dtype=int)
    if not len(p):
        return ranks
    dom = _dominance(p)
    remaining = np.ones(len(p), dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & ~dom[remaining].any(axis=0)
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    return ranks


def crowding_distance(points) -> np.ndarray:
    """NSGA-II's crowding distance of the rows of one front (larger = more isolated, kept first).

    Per objective, a row's neighbours are the next distinct values below and above it (so equal rows get
    equal distances, whatever their order); the rows at either end get inf. An objective on which the
    whole front is equal says nothing and adds nothing. Rows with a NaN get 0."""
    p = np.array(points, dtype=float, ndmin=2)
    n = len(p)
    dist = np.zeros(n)
    finite = np.isfinite(p).all(axis=1)
    if finite.sum() <= 2:
        dist[finite] = np.inf
        return dist
    q = p[finite]
    d = np.zeros(len(q))
    for col in q.T:
        distinct = np.unique(col)
        if len(distinct) < 2:
            continue
        at = np.searchsorted(distinct, col)
        edge = (at == 0) | (at == len(distinct) - 1)
        d[edge] = np.inf
        inner = ~edge
        d[inner] += (distinct[at[inner] + 1] - distinct[at[inner] - 1]) / (distinct[-1] - distinct[0])
    dist[finite] = d
    return dist


def rank_and_crowding(points) -> tuple[np.ndarray, np.ndarray]:
    """(front of each row, its crowding distance within its own front)."""
    ranks = non_dominated_ranks(points)
    p = np.array(points, dtype=float, ndmin=2)
    crowd = np.zeros(len(ranks))
    for r in np.unique(ranks):
        members = ranks == r
        crowd[members] = crowding_distance(p[members])
    return ranks, crowd


def pareto_order(points) -> np.ndarray:
    """Row indices best first: by front, then by crowding distance (larger first), then by row order."""
    ranks, crowd = rank_and_crowding(points)
    return np.lexsort((np.arange(len(ranks)), -crowd, ranks))


def _scaled(p: np.ndarray) -> np.ndarray:
    """Each objective scaled to [0, 1] over the finite rows (a constant objective to 0)."""
    finite = np.isfinite(p).all(axis=1)
    lo, hi = p[finite].min(axis=0), p[finite].max(axis=0)
    return np.where(hi > lo, (p - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)


def contribution_in_front(points, margin: float = 0.1, fronts=None, ranks=None) -> np.ndarray:
    """Each row's hypervolume contribution within its own front, the objectives scaled to [0, 1] over the
    finite rows and the reference `margin` below the worst of each (as SMS-EMOA: the ends of a front keep
    a finite, comparable share); equal rows get the same contribution, that of one of them. Rows with a NaN
    get 0. `fronts`: only these (others get 0); `ranks`: the
    rows' `non_dominated_ranks`, when the caller has them."""
    p = np.array(points, dtype=float, ndmin=2)
    out = np.zeros(len(p))
    scaled, members_of = _per_front(p, fronts, ranks)
    for members in members_of:
        # equal rows share the contribution of one of them: each alone adds nothing the other does not, so
        # an exact copy of a front member (macro-F1 on a hundred clips ties often) would otherwise rank
        # behind the whole front, and be stopped while a variant 1e-4 away continued
        distinct, twin_of = np.unique(scaled[members], axis=0, return_inverse=True)
        out[members] = hypervolume_contributions(distinct, np.full(p.shape[1], -margin))[twin_of.ravel()]
    return out


def _per_front(p: np.ndarray, fronts=None, ranks=None) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The objectives scaled to [0, 1] over the finite rows (`_scaled`), and for each front asked for
    (default: every front a finite row is on) the indices of its finite rows; (None, []) without a finite row."""
    ranks = non_dominated_ranks(p) if ranks is None else ranks
    finite = np.isfinite(p).all(axis=1)
    if not finite.any():
        return None, []
    wanted = np.unique(ranks[finite]) if fronts is None else fronts
    return _scaled(p), [m for r in wanted if len(m := np.flatnonzero((ranks == r) & finite))]


def ahead_of(points, row: int, tie_break: str = "crowding") -> int:
    """How many rows rank strictly ahead of `row` (as `ahead_counts`), computing the tie-break inside
    its own front only: what a scheduler deciding on one trial needs."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break: {tie_break!r}; valid: {', '.join(TIE_BREAKS)}")
    p = np.array(points, dtype=float, ndmin=2)
    ranks = non_dominated_ranks(p)
    front = ranks == ranks[row]
    if tie_break == "crowding":
        key = np.zeros(len(p))
        key[front] = crowding_distance(p[front])
    elif tie_break == "epsilon_net":
        key = -epsilon_net_places(p, fronts=[ranks[row]], ranks=ranks)
    else:
        key = contribution_in_front(p, fronts=[ranks[row]], ranks=ranks)
    return int((ranks < ranks[row]).sum() + (front & (key > key[row])).sum())


def ahead_counts(points, tie_break: str = "crowding") -> np.ndarray:
    """For each row, how many rows rank strictly ahead of it: a better front, or the same front and a
    larger tie-break value (crowding distance, hypervolume contribution: `contribution_in_front`, or an
    earlier place in the front's ε-net: `epsilon_net_places`).
    Equal rows never rank ahead of each other."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break: {tie_break!r}; valid: {', '.join(TIE_BREAKS)}")
    ranks = non_dominated_ranks(points)
    if tie_break == "crowding":
        key = rank_and_crowding(points)[1]
    elif tie_break == "epsilon_net":
        key = -epsilon_net_places(points, ranks=ranks)
    else:
        key = contribution_in_front(points, ranks=ranks)
    better_front = ranks[None, :] < ranks[:, None]
    same_front_wider = (ranks[None, :] == ranks[:, None]) & (key[None, :] > key[:, None])
    return (better_front | same_front_wider).sum(axis=1)


def spread(points, k: int, first: int | None = None) -> list[int]:
    """k row indices spread along the front, for retraining: `first` (e.g. the best trial by the search
    metric; default the row of front 0 with the largest scaled hypervolume contribution), then each time
    the front's row farthest (objectives scaled to [0, 1], Euclidean) from every row picked so far; when
    front 0 runs out, front 1 the same way, and so on. Rows with a NaN come last, in row order."""
    p = np.array(points, dtype=float, ndmin=2)
    ranks = non_dominated_ranks(p)
    finite = np.isfinite(p).all(axis=1)
    if not finite.any():
        return list(range(min(k, len(p))))
    scaled = _scaled(p)
    if first is None:
        first = int(np.argmax(np.where((ranks == 0) & finite, contribution_in_front(p, ranks=ranks), -np.inf)))
    picks = [first]
    for r in np.unique(ranks[finite]):
        _farthest_first(scaled, [i for i in np.flatnonzero((ranks == r) & finite) if i not in picks], picks, k)
    picks += [i for i in np.flatnonzero(~finite) if len(picks) < k]
    return [int(i) for i in picks[:k]]


def _farthest_first(scaled: np.ndarray, pool: list[int], picks: list[int], k: int | None = None) -> None:
    """Move rows from `pool` to `picks` (which must not be empty), each time the one farthest (Euclidean)
    from every row picked so far, the first such row on a tie, until the pool is empty or `k` are picked."""
    pool = list(pool)
    while pool and (k is None or len(picks) < k):
        gaps = [min(np.linalg.norm(scaled[i] - scaled[j]) for j in picks) for i in pool]
        picks.append(pool.pop(int(np.argmax(gaps))))


def epsilon_net_places(points, fronts=None, ranks=None) -> np.ndarray:
    """Each row's place (0 first) in the ε-net of its own front: MO-ASHA's best promotion rule in Schmucker
    et al. 2021 (the ε-net sort of Salinas et al. 2021). Per front, the row with the best mean objective
    first, then each time the row farthest from every row placed so far (objectives scaled to [0, 1] over
    the finite rows, Euclidean), so the first places spread along the whole front. The reference seeds the
    net at the best row of the first objective; with five tasks of equal standing the best mean is the
    neutral seed. Equal rows share the place of the first of them. Rows with a NaN, and rows outside
    `fronts` (default: all), get the last place, len(points). `ranks`: as in `contribution_in_front`."""
    p = np.array(points, dtype=float, ndmin=2)
    places = np.full(len(p), len(p), dtype=int)
    scaled, members_of = _per_front(p, fronts, ranks)
    for members in members_of:
        picks = [int(members[np.argmax(scaled[members].mean(axis=1))])]
        _farthest_first(scaled, [i for i in members if i != picks[0]], picks)
        for place, i in enumerate(picks):
            twins = members[(p[members] == p[i]).all(axis=1)]
            places[i] = min(place, places[twins].min())
    return places


def hypervolume(points, reference) -> float:
    """The volume dominated by the rows and bounded below by `reference` (exact; rows not strictly
    better than the reference in every objective add nothing)."""
    p = as_points(points)
    ref = np.asarray(reference, dtype=float)
    if not len(p):
        return 0.0
    p = p[(p > ref).all(axis=1)] - ref
    if not len(p):
        return 0.0
    if _wfg is not None:
        return float(_wfg(-p, np.zeros(p.shape[1])))  # Optuna minimises: the boxes [-row, 0]
    return float(_volume(p))


def hypervolume_contributions(points, reference) -> np.ndarray:
    """Each row's exclusive share of the hypervolume: what the front loses without it. Computed as its own
    box less the other rows clipped to that box (a small set once dominated rows drop out): 0.3 s for 40
    rows in 5-D where total-minus-the-rest took 2.7 s."""
    p = as_points(points)
    ref = np.asarray(reference, dtype=float)
    out = np.zeros(len(p))
    for i in np.flatnonzero((p > ref).all(axis=1)):
        others = np.delete(p, i, axis=0)
        out[i] = np.prod(p[i] - ref) - hypervolume(np.minimum(others, p[i]), ref)
    return out


def _volume(p: np.ndarray) -> float:
    """The union of boxes [0, row] (all rows > 0): slices along the last objective (HSO), each slice the
    volume of the rows above it in one dimension fewer; dominated rows are dropped at every level."""
    p = np.unique(p, axis=0)
    p = p[~_dominance(p).any(axis=0)]
    if p.shape[1] == 1:
        return float(p.max())
    order = np.argsort(-p[:, -1], kind="stable")
    p = p[order]
    heights = p[:, -1] - np.append(p[1:, -1], 0.0)
    if p.shape[1] == 2:  # the base case in closed form: a staircase
        return float((heights * np.maximum.accumulate(p[:, 0])).sum())
    return float(sum(_volume(p[: i + 1, :-1]) * h for i, h in enumerate(heights) if h > 0))


def pareto_front(table: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """True for rows no other row dominates (at least as good on every column, better on one); higher
    is better. Rows with a missing value are never on the front."""
    values = table[list(columns)].to_numpy(float)
    ok = ~np.isnan(values).any(axis=1)
    front = np.zeros(len(table), dtype=bool)
    front[ok] = non_dominated_ranks(values[ok]) == 0
    return pd.Series(front, index=table.index)


def hypervolume_trace(values: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """trace[e - 1]: the hypervolume of the front of the first e vectors (higher is better everywhere)."""
    front, trace = np.empty((0, len(reference))), []
    for vec in np.asarray(values, dtype=float):
        points = np.vstack([front, vec])
        keep = (non_dominated_ranks(points) == 0) & ~np.isnan(points).any(axis=1)
        front = points[keep]
        trace.append(hypervolume(front, reference) if len(front) else 0.0)
    return np.array(trace)


# ---------------------------------------------------------------------------------------------
# the final phase of a multi-objective search: up to final_k configurations spread along the front. The
# best by the metric comes first (the verdict against equal sum is about it), then each time the front
# member farthest from those picked; a single-metric search's top k would crowd one corner of the front.


def front_picks(candidates: Sequence, trials: pd.DataFrame, objectives: Sequence[str], k: int, mode: str) -> list:
    """Up to k of `candidates` (objects with `trial_id` and `score`, the search metric), spread along the
    front of their best-epoch objective vectors in `trials` (one row per trial, as `search.analysis.results.collect`)."""
    rows = trials.set_index("trial_id") if not trials.empty else pd.DataFrame()
    known = [c for c in candidates if c.trial_id in rows.index and not _nan(c.score)]
    if not known or k < 1:
        return []
    signs = np.array([1.0 if keys.direction(o) == "max" else -1.0 for o in objectives])
    values = np.array([[float(rows.at[c.trial_id, o]) if o in rows else math.nan for o in objectives]
                       for c in known]) * signs
    scores = np.array([c.score for c in known]) * (1.0 if mode == "max" else -1.0)
    return [known[i] for i in spread(values, k, first=int(np.argmax(scores)))]


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
