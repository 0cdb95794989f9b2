import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


class GradNorm(LossCombiner):
    """GradNorm (Chen et al. 2018, docs/methods.md#combiner-gradnorm) at the last shared layer.

    The network trains on Σ w_t L_t (w constant in that backward). Separately, with n_t the norm of
    ∇_W L_t at the last shared layer W, G_t = w_t·n_t, r_t = (L_t/L_t(0)) / mean_k(L_k/L_k(0)), and the
    constant target c_t = mean_k(G_k)·r_t^α, each weight takes one SGD step of size `weight_lr` on
    |G_t - c_t| (closed form: sign(G_t - c_t)·n_t), is kept above 1e-3 (and below `max_weight`), and all
    weights are renormalised to sum to T. L_t(0) is the task's loss on its first active step."""

    name = "gradnorm"
    needs_grad_norms = True
    _state_keys = ("w", "initial")

    def __init__(self, ctx: StrategyContext, *, alpha: float = 1.5, weight_lr: float = 0.025,
                 max_weight: float | None = None):
        super().__init__(ctx)
        if alpha < 0 or weight_lr <= 0:
            raise ValueError("alpha must be >= 0 and weight_lr > 0")
        self.alpha, self.weight_lr, self.max_weight = alpha, weight_lr, max_weight
        self.w = torch.ones(ctx.num_tasks)
        self.initial = torch.full((ctx.num_tasks,), float("nan"))

    def update(self, losses: torch.Tensor, active: torch.Tensor, grad_norms: torch.Tensor) -> None:
        """One GradNorm weight step from detached losses [T], the active mask [T] and norms n_t [T]."""
        losses, grad_norms = losses.detach().cpu().float(), grad_norms.detach().cpu().float()
        active = active.cpu()
        first = active & torch.isnan(self.initial)
        self.initial[first] = losses[first].clamp(min=1e-8)
        if active.sum() < 2:
            return  # balancing needs two tasks
        a = active
        g = self.w[a] * grad_norms[a]
        ratio = losses[a] / self.initial[a]
        r = ratio / ratio.mean()
        target = g.mean() * r ** self.alpha
        self.w[a] = (self.w[a] - self.weight_lr * torch.sign(g - target) * grad_norms[a]).clamp(min=1e-3)
        if self.max_weight is not None:
            self.w.clamp_(max=self.max_weight)
        self.w *= self.ctx.num_tasks / self.w.sum()

    def combine(self, losses, active, grad_norms=None):
        loss = (self.w.clone().to(losses.device) * losses * active).sum()  # this step's weights; then update
        if grad_norms is not None:
            self.update(losses, active, grad_norms)
        return loss

    def log(self):
        return {**super().log(), **self._weights_log(self.w)}
