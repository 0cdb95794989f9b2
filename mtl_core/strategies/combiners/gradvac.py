import torch

from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class GradVac(TorchjdWeighting):
    """Gradient Vaccine (Wang et al. 2021; docs/methods.md#combiner-gradvac), torchjd's `GradVac`: for each
    task i and each other task j (random order, torch's seeded generator), when the cosine φ_ij of the
    (already corrected) g_i with g_j is below its target φ̂_ij, g_i gains the multiple of g_j that brings
    the cosine to φ̂_ij exactly; then φ̂_ij ← (1 - beta)·φ̂_ij + beta·φ_ij. The corrected gradients are summed.

    The targets belong to pairs of tasks, so one T x T table is kept for the run: the active subset's
    entries are handed to torchjd's weighting before each step and read back after it (torchjd keeps
    them for one fixed set of rows)."""

    name = "gradvac"
    _state_keys = ("targets",)

    def __init__(self, ctx: StrategyContext, *, beta: float = 0.5, space: str = "parameters"):
        super().__init__(ctx, space=space)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.targets = torch.zeros(ctx.num_tasks, ctx.num_tasks, dtype=torch.float64)  # φ̂, starts at 0

    def make(self, n_active):
        return torchjd_aggregation().GradVac(beta=self.beta)

    def weights(self, jacobian, idx):
        if len(idx) == 1:
            return jacobian.new_ones(1)
        agg = self.aggregator(tuple(idx.tolist()))
        solver = agg.gramian_weighting
        rows = idx.cpu()
        sub = self.targets[rows][:, rows]
        # torchjd's state for this subset: its φ̂ (on the CPU, in the Gramian's dtype) and the key it checks
        solver._phi_t = sub.to(jacobian.dtype)
        solver._state_key = (len(rows), jacobian.dtype)
        w = agg.weighting(jacobian)
        self.targets[rows[:, None], rows] = solver._phi_t.to(torch.float64)
        return w
