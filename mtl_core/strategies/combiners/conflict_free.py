import torch

from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class ConFIG(TorchjdWeighting):
    """ConFIG, conflict-free inverse gradients (Liu et al. 2024; docs/methods.md#combiner-config): the unit
    direction u = normalize(pinv(U)·1) of the unit task gradients U, which has the same cosine with every
    task gradient (where they are linearly independent), scaled to Σ_i g_i·u (torchjd `ConFIG`).

    torchjd's ConFIG is not a weighting: its direction is returned as it is, and the weights recorded are
    the least-norm coefficients that give it from the task gradients (it lies in their span)."""

    name = "config"

    def make(self, n_active):
        return torchjd_aggregation().ConFIG()

    def aggregate(self, jacobian, losses, idx):
        if len(idx) == 1:
            w = jacobian.new_ones(1)
            self.record_weights(idx, w)
            return jacobian[0]
        d = self.aggregator(tuple(idx.tolist()))(jacobian)
        j = jacobian.detach().double()
        w = torch.linalg.pinv(j @ j.T, hermitian=True) @ (j @ d.detach().double())
        self.record_weights(idx, w)
        return d
