import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext, check_space

_RTOL = 1e-10  # eigenvalues of the unit Gramian below this share of the largest count as 0 (σ below 1e-5·σ_max)


class ConFIG(LossCombiner):
    """ConFIG, conflict-free inverse gradients (Liu et al. 2024; docs/methods.md#combiner-config): the unit
    direction u = normalize(pinv(U)·1) of the unit task gradients U, which has the same cosine with every
    task gradient (where they are linearly independent), scaled to Σ_i g_i·u.

    Computed from the A x A Gramian in float64 (pinv(U)·1 = Uᵀ·pinv(U Uᵀ)·1), which also gives the weights
    of the rows. torchjd's `ConFIG` takes the pseudo-inverse of the [A, d] matrix with torch's default cutoff,
    max(A, d)·eps: with millions of float32 parameters that drops singular values below about 0.3·σ_max, and
    correlated gradients lose the equal cosines (measured: 0.85, 0.90, 0.87 instead of 0.867 each, d = 2.4 M).
    Where that cutoff does not bite, the two directions agree."""

    name = "config"
    uses_gradients = True

    def __init__(self, ctx: StrategyContext, *, space: str = "parameters"):
        super().__init__(ctx)
        self.space = check_space(space)

    def weights(self, jacobian, idx) -> torch.Tensor:
        """The weights [A] of the task gradients whose sum is ConFIG's direction."""
        if len(idx) == 1:
            return jacobian.new_ones(1)
        j = jacobian.detach().double()
        gram = j @ j.T
        norms = gram.diagonal().clamp(min=0).sqrt()
        inv = torch.where(norms > 0, 1 / norms.clamp(min=1e-300), torch.zeros_like(norms))  # a zero row stays 0
        unit_gram = gram * inv[:, None] * inv[None, :]
        c = torch.linalg.pinv(unit_gram, rtol=_RTOL, hermitian=True) @ torch.ones_like(norms)
        u_norm = (c @ unit_gram @ c).clamp(min=0).sqrt()
        if u_norm == 0:
            return torch.zeros_like(norms)
        coef = c * inv / u_norm  # u = Σ_i coef_i g_i, a unit vector
        return (gram @ coef).sum() * coef  # times Σ_i g_i·u

    def aggregate(self, jacobian, losses, idx):
        w = self.weights(jacobian, idx)
        self.record_weights(idx, w)
        return w.to(jacobian) @ jacobian
