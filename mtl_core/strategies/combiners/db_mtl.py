import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext, check_space


class DBMTL(LossCombiner):
    """Dual-Balancing MTL (Lin et al. 2023; docs/methods.md#combiner-db_mtl), written by hand (torchjd
    lacks it).

    Loss scale: each task's gradient is that of log(L_t + eps), i.e. g_t / (L_t + eps). Gradient
    magnitude: a per-task EMA ĝ_t ← β_k ĝ_t + (1-β_k) ∇log(L_t+eps), β_k = β / k^β_σ (k = step), and the
    update Σ_t (max_j ‖ĝ_j‖ / ‖ĝ_t‖) ĝ_t scales every task up to the largest norm. The EMA buffer
    (T x shared parameters) is part of the checkpoint."""

    name = "db_mtl"
    uses_gradients = True
    _state_keys = ("ema", "step")

    def __init__(self, ctx: StrategyContext, *, beta: float = 0.9, beta_sigma: float = 0.0, eps: float = 1e-8,
                 space: str = "parameters"):
        super().__init__(ctx)
        self.space = check_space(space)
        if not 0 <= beta < 1 or beta_sigma < 0 or eps <= 0:
            raise ValueError("beta must be in [0, 1), beta_sigma >= 0, eps > 0")
        self.beta, self.beta_sigma, self.eps = beta, beta_sigma, eps
        self.ema: torch.Tensor | None = None
        self.step = 0

    def _balance(self, log_grads, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds [A, k] log-gradients to the EMA; returns its active rows and their balancing weights."""
        if self.ema is None or self.ema.device != log_grads.device:
            self.ema = (torch.zeros(self.ctx.num_tasks, log_grads.shape[1], device=log_grads.device)
                        if self.ema is None else self.ema.to(log_grads.device))
        self.step += 1
        beta_k = self.beta / self.step ** self.beta_sigma
        self.ema[idx] = beta_k * self.ema[idx] + (1 - beta_k) * log_grads
        rows = self.ema[idx]
        norms = rows.norm(dim=1).clamp(min=1e-12)
        alpha = norms.max() / norms
        self.record_weights(idx, alpha)  # the magnitude-balancing weights of the EMA'd log-gradients
        return rows, alpha

    def aggregate(self, jacobian, losses, idx):
        rows, alpha = self._balance(jacobian / (losses.detach().to(jacobian)[:, None] + self.eps), idx)
        return (alpha[:, None] * rows).sum(0)

    def aggregate_representation(self, dz, losses, idx):
        # Batches are shuffled, so an EMA per position of z would average different clips' gradients. The
        # EMA is kept of the batch-summed z-gradient [A, D] (one entry per feature of z, LibMTL's reduction
        # of representation gradients); its norms balance this step's per-clip log-gradients.
        log_dz = dz / (losses.detach().to(dz)[:, None, None] + self.eps)
        _, alpha = self._balance(log_dz.sum(1), idx)
        return torch.einsum("a,abd->bd", alpha.to(dz), log_dz)
