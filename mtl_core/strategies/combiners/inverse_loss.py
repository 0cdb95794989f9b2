import torch

from mtl_core.strategies.base import LossCombiner


class InverseLoss(LossCombiner):
    """w_t = T·(1/L_t) / Σ_j (1/L_j) over the active tasks, from **detached** losses.

    Detaching matters: with live weights Σ w_t L_t is T times the harmonic mean of the losses and its
    gradient is dominated by the *smallest* loss, the opposite of the intent (the bug of a public
    implementation on this dataset; docs/methods.md#combiner-inverse_loss)."""

    name = "inverse_loss"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.last = torch.ones(ctx.num_tasks)

    def weights(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        inv = active / losses.detach().clamp(min=1e-8)
        return int(active.sum()) * inv / inv.sum().clamp(min=1e-12)

    def combine(self, losses, active, grad_norms=None):
        w = self.weights(losses, active)
        self.last = w.cpu()
        return (w * losses).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.last)}
