from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class MGDA(TorchjdWeighting):
    """MGDA (Sener & Koltun 2018; docs/methods.md#combiner-mgda): the min-norm point of the convex hull
    of the task gradients (Frank-Wolfe on the simplex)."""

    name = "mgda"

    def __init__(self, ctx: StrategyContext, *, epsilon: float = 1e-3, max_iters: int = 100, space: str = "parameters"):
        super().__init__(ctx, space=space)
        self.epsilon, self.max_iters = epsilon, max_iters

    def make(self, n_active):
        return torchjd_aggregation().MGDA(epsilon=self.epsilon, max_iters=self.max_iters)
