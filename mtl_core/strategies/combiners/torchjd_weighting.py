"""The shared base of the gradient combiners that torchjd implements (the maintained implementations;
docs/methods.md#gradient-methods).

Each acts on the [A, d] Jacobian of the active tasks' losses w.r.t. the shared parameters and returns
the update direction. Every torchjd aggregator used here is a weighting of the Jacobian's rows: the
weights are computed, recorded (logged per task, see `LossCombiner.record_weights`) and applied, so
the direction is exactly torchjd's. torchjd's conventions are kept: PCGrad sums the projected
gradients, MGDA and IMTL-G return a combination whose weights sum to 1, so learning rates differ
from `equal` (tune them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext, check_space

if TYPE_CHECKING:
    from torchjd import aggregation as jd


def torchjd_aggregation():
    """torchjd.aggregation, imported on first use: it brings cvxpy (over a second in every process),
    which only the gradient methods need."""
    from torchjd import aggregation

    return aggregation


class TorchjdWeighting(LossCombiner):
    """A gradient combiner whose weights of the Jacobian's rows come from a torchjd aggregator (`make`)."""

    uses_gradients = True

    def __init__(self, ctx: StrategyContext, *, space: str = "parameters"):
        super().__init__(ctx)
        self.space = check_space(space)
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
