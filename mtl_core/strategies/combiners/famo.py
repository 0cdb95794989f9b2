import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext

_EPS = 1e-8  # keeps log L finite at a zero loss (the losses' lower bound is 0: cross-entropy)


class FAMO(LossCombiner):
    """FAMO, fast adaptive multitask optimisation (Liu et al. 2023; docs/methods.md#combiner-famo): one
    backward per step, no per-task gradients.

    With task logits ξ and z = softmax(ξ) over the A active tasks, the model trains on c·Σ_t z_t·log L_t,
    c = 1/Σ_t (z_t / L_t) (detached): the weight of L_t's gradient is w_t = c·z_t / L_t, here times A so the
    weights sum to A like `equal`'s. ξ then learns from how much each log loss fell, δ_t = log L_t(before) -
    log L_t(after): one Adam step (lr `weight_lr`) on ∇_ξ zᵀδ + gamma·ξ, which raises the logits of the tasks
    whose loss fell less than the z-weighted average.

    "After" is the next step's losses (the next batch, after the update), not a second forward pass on the
    same batch as the authors' code does: the trainer stays one forward per step, and the batch-to-batch
    noise in δ has mean zero. ξ updates only for tasks active in both steps; its Adam moments are per task.
    ξ is not a model parameter: the model's optimizer never sees it."""

    name = "famo"
    _state_keys = ("logits", "adam_m", "adam_v", "adam_t", "prev_losses", "prev_active")

    def __init__(self, ctx: StrategyContext, *, weight_lr: float = 0.025, gamma: float = 0.001):
        super().__init__(ctx)
        if weight_lr <= 0 or gamma < 0:
            raise ValueError("weight_lr must be > 0 and gamma >= 0")
        self.weight_lr, self.gamma = weight_lr, gamma
        n = ctx.num_tasks
        self.logits = torch.zeros(n, dtype=torch.float64)
        self.adam_m, self.adam_v = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        self.adam_t = torch.zeros(n, dtype=torch.float64)  # Adam's step count, per task
        self.prev_losses = torch.zeros(n, dtype=torch.float64)
        self.prev_active = torch.zeros(n, dtype=torch.bool)

    def weights(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """[T] the weights of the active tasks' loss gradients (0 elsewhere), summing to A."""
        idx = active.nonzero().flatten()
        z = torch.softmax(self.logits[idx], 0)
        inv = z / (losses[idx] + _EPS)
        w = torch.zeros(self.ctx.num_tasks, dtype=torch.float64)
        w[idx] = len(idx) * inv / inv.sum()
        return w

    def update(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        """One step of ξ from the change of the log losses since the last call (tasks active in both)."""
        both = (self.prev_active & active).nonzero().flatten()
        if len(both) < 2:  # the gradient of zᵀδ over one task is 0
            return
        delta = torch.log(self.prev_losses[both] + _EPS) - torch.log(losses[both] + _EPS)
        z = torch.softmax(self.logits[both], 0)
        grad = z * (delta - z @ delta) + self.gamma * self.logits[both]  # ∇_ξ zᵀδ: the softmax's Jacobian
        b1, b2 = 0.9, 0.999
        self.adam_t[both] += 1
        self.adam_m[both] = b1 * self.adam_m[both] + (1 - b1) * grad
        self.adam_v[both] = b2 * self.adam_v[both] + (1 - b2) * grad ** 2
        m_hat = self.adam_m[both] / (1 - b1 ** self.adam_t[both])
        v_hat = self.adam_v[both] / (1 - b2 ** self.adam_t[both])
        self.logits[both] -= self.weight_lr * m_hat / (v_hat.sqrt() + 1e-8)

    def combine(self, losses, active, grad_norms=None):
        lo, act = losses.detach().double().cpu(), active.cpu()
        self.update(lo, act)
        self.prev_losses, self.prev_active = lo.clone(), act.clone()
        w = self.weights(lo, act)
        idx = act.nonzero().flatten()
        self.record_weights(idx, w[idx])
        # Σ w_t L_t with w detached has the gradient of c·Σ z_t log L_t (times A)
        return (w.to(losses) * losses * active).sum()

    def log(self):
        z = torch.softmax(self.logits, 0)
        return {**super().log(), **{keys.strategy("z", t): float(z[j]) for j, t in enumerate(self.ctx.tasks)}}
