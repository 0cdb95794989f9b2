from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class FairGrad(TorchjdWeighting):
    """FairGrad (Ban & Ji 2024; docs/methods.md#combiner-fairgrad): α-fair resource allocation among tasks.
    The weights w ≥ 0 solve (G Gᵀ w)_i = w_i^(-1/alpha) (G: the task gradients as rows), by torchjd's
    `FairGrad` (scipy's bounded least squares from w = 1/A, as the authors' code and LibMTL); the update is
    Σ_i w_i g_i. alpha = 1 is proportional fairness, alpha → ∞ max-min fairness, alpha = 0 the mean."""

    name = "fairgrad"

    def __init__(self, ctx: StrategyContext, *, alpha: float = 1.0, max_iters: int | None = None,
                 space: str = "parameters"):
        super().__init__(ctx, space=space)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if max_iters is not None and max_iters < 1:
            raise ValueError(f"max_iters must be >= 1 (or null: scipy's default), got {max_iters}")
        self.alpha, self.max_iters = alpha, max_iters

    def make(self, n_active):
        return torchjd_aggregation().FairGrad(alpha=self.alpha, max_iters=self.max_iters)
