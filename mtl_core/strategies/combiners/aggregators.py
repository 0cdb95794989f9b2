"""Gradient aggregators from torchjd (the maintained implementations; docs/methods.md#gradient-methods).

Each acts on the [A, d] Jacobian of the active tasks' losses w.r.t. the shared parameters and returns
the update direction. Every torchjd aggregator used here is a weighting of the Jacobian's rows: the
weights are computed, recorded (logged per task, see `LossCombiner.record_weights`) and applied, so
the direction is exactly torchjd's. torchjd's conventions are kept: PCGrad sums the projected
gradients, MGDA and IMTL-G return a combination whose weights sum to 1, so learning rates differ
from `equal` (tune them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext

if TYPE_CHECKING:
    from torchjd import aggregation as jd


def torchjd_aggregation():
    """torchjd.aggregation, imported on first use: it brings cvxpy (over a second in every process),
    which only the gradient methods need."""
    from torchjd import aggregation

    return aggregation


class _Aggregator(LossCombiner):
    uses_gradients = True

    def __init__(self, ctx: StrategyContext):
        super().__init__(ctx)
        self._cache: dict[tuple[int, ...], jd.WeightedAggregator] = {}

    def make(self, n_active: int) -> jd.WeightedAggregator:
        raise NotImplementedError

    def aggregator(self, active: tuple[int, ...]) -> jd.WeightedAggregator:
        # Schedulers may activate a subset. Stateful aggregators (Nash-MTL keeps its last weights)
        # must never carry one subset's state over to another: one instance per active subset.
        if active not in self._cache:
            self._cache[active] = self.make(len(active))
        return self._cache[active]

    def weights(self, jacobian, idx) -> torch.Tensor:
        """The weights [A] torchjd gives the active tasks' gradient rows."""
        if len(idx) == 1:
            return jacobian.new_ones(1)  # one task: every aggregator reduces to its gradient
        return self.aggregator(tuple(idx.tolist())).weighting(jacobian)

    def aggregate(self, jacobian, losses, idx):
        w = self.weights(jacobian, idx)
        self.record_weights(idx, w)
        return w.to(jacobian) @ jacobian


class PCGrad(_Aggregator):
    """PCGrad (Yu et al. 2020; docs/methods.md#combiner-pcgrad): each g_i is projected onto the normal
    plane of every conflicting g_j (random order per i, from torch's seeded RNG), then summed. Shared
    parameters only."""

    name = "pcgrad"

    def make(self, n_active):
        return torchjd_aggregation().PCGrad()


class MGDA(_Aggregator):
    """MGDA (Sener & Koltun 2018; docs/methods.md#combiner-mgda): the min-norm point of the convex hull
    of the task gradients (Frank-Wolfe on the simplex)."""

    name = "mgda"

    def __init__(self, ctx: StrategyContext, *, epsilon: float = 1e-3, max_iters: int = 100):
        super().__init__(ctx)
        self.epsilon, self.max_iters = epsilon, max_iters
        self._params = {"epsilon": epsilon, "max_iters": max_iters}

    def make(self, n_active):
        return torchjd_aggregation().MGDA(epsilon=self.epsilon, max_iters=self.max_iters)


class CAGrad(_Aggregator):
    """CAGrad (Liu et al. 2021; docs/methods.md#combiner-cagrad): maximise the worst task's improvement
    within a ball of radius c·‖g_0‖ around the mean gradient g_0 (convex dual solved by torchjd with cvxpy)."""

    name = "cagrad"

    def __init__(self, ctx: StrategyContext, *, c: float = 0.4):
        super().__init__(ctx)
        if not 0 <= c < 1:
            raise ValueError(f"c must be in [0, 1), got {c}")
        self.c = c
        self._params = {"c": c}

    def make(self, n_active):
        return torchjd_aggregation().CAGrad(c=self.c)


class AlignedMTL(_Aggregator):
    """Aligned-MTL (Senushkin et al. 2023; docs/methods.md#combiner-aligned_mtl): condition the gradient
    system by setting all its singular values to one value (scale_mode `min`: the smallest), then average
    the aligned gradients (torchjd's default preference, 1/T each)."""

    name = "aligned_mtl"

    def __init__(self, ctx: StrategyContext, *, scale_mode: str = "min"):
        super().__init__(ctx)
        if scale_mode not in ("min", "median", "rmse"):
            raise ValueError(f"scale_mode must be min, median or rmse, got {scale_mode!r}")
        self.scale_mode = scale_mode
        self._params = {"scale_mode": scale_mode}

    def make(self, n_active):
        return torchjd_aggregation().AlignedMTL(scale_mode=self.scale_mode)


class NashMTL(_Aggregator):
    """Nash-MTL (Navon et al. 2022; docs/methods.md#combiner-nash_mtl): the bargaining solution
    (Kα)_t = 1/α_t, solved with cvxpy/ECOS every `update_weights_every` steps; the update norm is clipped
    to `max_norm`."""

    name = "nash_mtl"

    def __init__(self, ctx: StrategyContext, *, update_weights_every: int = 1, optim_niter: int = 20,
                 max_norm: float = 1.0):
        super().__init__(ctx)
        try:
            import cvxpy  # noqa: F401
            import ecos  # noqa: F401
        except ImportError:
            raise ValueError("nash_mtl needs its solver: pip install 'torchjd[nash-mtl]'") from None
        if update_weights_every < 1 or optim_niter < 1:
            raise ValueError("update_weights_every and optim_niter must be >= 1")
        self.update_weights_every, self.optim_niter, self.max_norm = update_weights_every, optim_niter, max_norm
        self._params = {"update_weights_every": update_weights_every, "optim_niter": optim_niter,
                        "max_norm": max_norm}

    def make(self, n_active):
        return torchjd_aggregation().NashMTL(n_tasks=n_active, max_norm=self.max_norm,
                                             update_weights_every=self.update_weights_every,
                                             optim_niter=self.optim_niter)

    @staticmethod
    def _solver(agg):
        # the weighting object that holds Nash-MTL's state (previous α, step count)
        return next(m for m in agg.modules() if hasattr(m, "prvs_alpha"))

    def state_dict(self):
        out = {}
        for active, agg in self._cache.items():
            s = self._solver(agg)
            out[active] = {"step": s.step, "prvs_alpha": np.array(s.prvs_alpha),
                           "normalization_factor": np.array(s.normalization_factor)}
        return out

    def load_state_dict(self, state):
        for active, st in state.items():
            s = self._solver(self.aggregator(tuple(active)))
            s.prvs_alpha, s.normalization_factor = st["prvs_alpha"], st["normalization_factor"]
            s.step = st["step"]
            if s.step > 0:
                s._init_optim_problem()  # rebuild the cvxpy problem around the restored α
