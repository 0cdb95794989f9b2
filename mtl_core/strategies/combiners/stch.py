import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext


class STCH(LossCombiner):
    """Smooth Tchebycheff scalarisation (Lin et al. 2024; docs/methods.md#combiner-stch), as the authors' MTL
    code and LibMTL apply it.

    Warm-up: a task's first `warmup_epochs` epochs in which it trains, it trains on log L_t; the mean of its
    losses in the last of them is its nadir n_t. Then the tasks S with a nadir train on
    |S|·mu·log Σ_{t∈S} exp(f_t / mu), f_t = log(L_t / n_t + 1e-20): the objectives are the log losses
    normalised by the nadir and the ideal point is 0 in that space (not estimated, as in that code). As
    mu → 0 it tends to |S|·max_t f_t (Tchebycheff), as mu grows the weights tend to equal (the softmax of
    f/mu flattens). Under `all_tasks` every task leaves the warm-up together, as in LibMTL (whose
    STCH_warmup_epoch: 4 is warmup_epochs: 5 here)."""

    name = "stch"
    _state_keys = ("nadir", "epochs_seen", "loss_sum", "loss_count")

    def __init__(self, ctx: StrategyContext, *, mu: float = 1.0, warmup_epochs: int = 1):
        super().__init__(ctx)
        if mu <= 0:
            raise ValueError(f"mu must be > 0, got {mu}")
        if warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be >= 1 (the nadir is measured in the last), got {warmup_epochs}")
        self.mu, self.warmup_epochs = mu, warmup_epochs
        n = ctx.num_tasks
        self.nadir = torch.full((n,), float("nan"), dtype=torch.float64)
        self.epochs_seen = torch.zeros(n, dtype=torch.long)  # epochs in which the task trained
        self.loss_sum = torch.zeros(n, dtype=torch.float64)  # this epoch's losses per task
        self.loss_count = torch.zeros(n, dtype=torch.long)

    def scalarize(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The objective: Σ log L_t over active tasks in their warm-up, plus the smooth Tchebycheff term of
        the active tasks past it."""
        nadir = self.nadir.to(losses)
        ready = active & ~torch.isnan(nadir)
        warm = active & ~ready
        out = torch.log(losses[warm] + 1e-20).sum()
        if ready.any():
            f = torch.log(losses[ready] / nadir[ready] + 1e-20)
            out = out + int(ready.sum()) * self.mu * torch.logsumexp(f / self.mu, 0)
        return out

    def combine(self, losses, active, grad_norms=None):
        act = active.cpu()
        self.loss_sum[act] += losses.detach().double().cpu()[act]
        self.loss_count[act] += 1
        out = self.scalarize(losses, active)
        # the weight of each active L_t's gradient in the objective (its derivative in L_t)
        probe = losses.detach().clone().requires_grad_(True)
        (w,) = torch.autograd.grad(self.scalarize(probe, active), probe)
        idx = act.nonzero().flatten()
        self.record_weights(idx, w.detach().cpu()[idx])
        return out

    def end_epoch(self, epoch, metrics):
        trained = self.loss_count > 0
        self.epochs_seen[trained] += 1
        done = trained & (self.epochs_seen == self.warmup_epochs) & torch.isnan(self.nadir)
        self.nadir[done] = self.loss_sum[done] / self.loss_count[done]
        self.loss_sum.zero_()
        self.loss_count.zero_()

    def log(self):
        out = super().log()
        out.update({keys.strategy("nadir", t): float(self.nadir[j]) for j, t in enumerate(self.ctx.tasks)
                    if not torch.isnan(self.nadir[j])})
        return out
