from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class CAGrad(TorchjdWeighting):
    """CAGrad (Liu et al. 2021; docs/methods.md#combiner-cagrad): maximise the worst task's improvement
    within a ball of radius c·‖g_0‖ around the mean gradient g_0 (convex dual solved by torchjd with cvxpy)."""

    name = "cagrad"

    def __init__(self, ctx: StrategyContext, *, c: float = 0.4, space: str = "parameters"):
        super().__init__(ctx, space=space)
        if not 0 <= c < 1:
            raise ValueError(f"c must be in [0, 1), got {c}")
        self.c = c

    def make(self, n_active):
        return torchjd_aggregation().CAGrad(c=self.c)
