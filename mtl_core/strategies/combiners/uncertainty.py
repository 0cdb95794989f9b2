import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


class Uncertainty(LossCombiner):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018; docs/methods.md#combiner-uncertainty),
    classification form: Σ_t exp(-s_t)·L_t + s_t/2 with s_t = log σ_t², learned with the model (no weight
    decay).

    For a fixed loss L the optimum is exp(-s) = 1/(2L): the effective weight of L_t is 1/(2 L_t).
    s trains with Adam at its own learning rate `weight_lr` (at the model's 1e-4 it would barely move).
    `clamp` bounds |s_t| by projection: s is put back into [-clamp, clamp] before each step, so its
    gradient never vanishes at the bound and s comes back when the loss changes (a clamp in the
    forward pass would zero the gradient and freeze s for good)."""

    name = "uncertainty"
    _state_keys = ("log_var",)

    def __init__(self, ctx: StrategyContext, *, init: float = 0.0, clamp: float | None = None,
                 weight_lr: float = 0.01):
        super().__init__(ctx)
        if clamp is not None and clamp <= 0:
            raise ValueError(f"clamp must be > 0, got {clamp}")
        if weight_lr <= 0:
            raise ValueError(f"weight_lr must be > 0, got {weight_lr}")
        self.clamp, self.param_lr = clamp, weight_lr
        self.log_var = torch.nn.Parameter(torch.full((ctx.num_tasks,), float(init)))

    def parameters(self):
        return [self.log_var]

    def _project(self) -> None:
        if self.clamp:
            with torch.no_grad():
                self.log_var.clamp_(-self.clamp, self.clamp)

    def combine(self, losses, active, grad_norms=None):
        self._project()
        s = self.log_var.to(losses.device)
        return ((torch.exp(-s) * losses + 0.5 * s) * active).sum()

    def log(self):
        self._project()
        return {**super().log(), **self._weights_log(torch.exp(-self.log_var).detach())}
