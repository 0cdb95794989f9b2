import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


class Uncertainty(LossCombiner):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018, METHODS.md 2), classification form:
    Σ_t exp(-s_t)·L_t + s_t/2 with s_t = log σ_t², learned with the model (no weight decay).

    For a fixed loss L the optimum is exp(-s) = 1/(2L): the effective weight of L_t is 1/(2 L_t).
    `clamp` bounds |s_t| so an over-fitted task's weight cannot explode."""

    name = "uncertainty"
    _state_keys = ("log_var",)

    def __init__(self, ctx: StrategyContext, *, init: float = 0.0, clamp: float | None = None):
        super().__init__(ctx)
        if clamp is not None and clamp <= 0:
            raise ValueError(f"clamp must be > 0, got {clamp}")
        self.clamp = clamp
        self._params = {"init": init, "clamp": clamp}
        self.log_var = torch.nn.Parameter(torch.full((ctx.num_tasks,), float(init)))

    def parameters(self):
        return [self.log_var]

    def _s(self, device=None):
        s = self.log_var if device is None else self.log_var.to(device)
        return s.clamp(-self.clamp, self.clamp) if self.clamp else s

    def combine(self, losses, active, grad_norms=None):
        s = self._s(losses.device)
        return ((torch.exp(-s) * losses + 0.5 * s) * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log(torch.exp(-self._s()).detach())}
