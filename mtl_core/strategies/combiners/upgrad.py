from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class UPGrad(TorchjdWeighting):
    """UPGrad (Quinton & Rey 2024; docs/methods.md#combiner-upgrad): each g_i is projected onto the dual cone
    of the task gradients (the closest vector with a non-negative inner product with every g_j), and the
    projections are averaged (torchjd `UPGrad`, quadprog). The update conflicts with no task."""

    name = "upgrad"

    def __init__(self, ctx: StrategyContext, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                 space: str = "parameters"):
        super().__init__(ctx, space=space)
        if norm_eps < 0 or reg_eps < 0:
            raise ValueError("norm_eps and reg_eps must be >= 0")
        try:
            import qpsolvers  # noqa: F401
            import quadprog  # noqa: F401
        except ImportError:
            raise ValueError("upgrad needs its solver: pip install 'torchjd[quadprog-projector]'") from None
        self.norm_eps, self.reg_eps = norm_eps, reg_eps

    def make(self, n_active):
        from torchjd.linalg import QuadprogProjector

        return torchjd_aggregation().UPGrad(projector=QuadprogProjector(norm_eps=self.norm_eps, reg_eps=self.reg_eps))
