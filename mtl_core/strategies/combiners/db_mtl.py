import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


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

    def __init__(self, ctx: StrategyContext, *, beta: float = 0.9, beta_sigma: float = 0.0, eps: float = 1e-8):
        super().__init__(ctx)
        if not 0 <= beta < 1 or beta_sigma < 0 or eps <= 0:
            raise ValueError("beta must be in [0, 1), beta_sigma >= 0, eps > 0")
        self.beta, self.beta_sigma, self.eps = beta, beta_sigma, eps
        self.ema: torch.Tensor | None = None
        self.step = 0

    def aggregate(self, jacobian, losses, idx):
        if self.ema is None or self.ema.device != jacobian.device:
            self.ema = (torch.zeros(self.ctx.num_tasks, jacobian.shape[1], device=jacobian.device)
                        if self.ema is None else self.ema.to(jacobian.device))
        self.step += 1
        beta_k = self.beta / self.step ** self.beta_sigma
        log_grads = jacobian / (losses.detach().to(jacobian)[:, None] + self.eps)
        self.ema[idx] = beta_k * self.ema[idx] + (1 - beta_k) * log_grads
        rows = self.ema[idx]
        norms = rows.norm(dim=1).clamp(min=1e-12)
        alpha = norms.max() / norms
        self.record_weights(idx, alpha)  # the magnitude-balancing weights of the EMA'd log-gradients
        return (alpha[:, None] * rows).sum(0)
