import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext

DISTRIBUTIONS = ("normal", "dirichlet")


class RLW(LossCombiner):
    """Random loss weighting (Lin et al. 2022, docs/methods.md#combiner-rlw), the litmus-test baseline.

    Each step draws λ = softmax(ε), ε ~ N(0, I) (`normal`) or λ ~ Dirichlet(1) (`dirichlet`) over the
    active tasks, scaled by their count so the weights average 1 like `equal`. Own seeded generator."""

    name = "rlw"
    _state_keys = ("gen", "last")

    def __init__(self, ctx: StrategyContext, *, distribution: str = "normal"):
        super().__init__(ctx)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.distribution = distribution
        self.gen = ctx.generator(salt=11)
        self.last = torch.ones(ctx.num_tasks)

    def sample(self, active: torch.Tensor) -> torch.Tensor:
        n = self.ctx.num_tasks
        if self.distribution == "normal":
            raw = torch.randn(n, generator=self.gen).exp()
        else:  # Dirichlet(1) = normalised Exp(1) draws
            raw = -torch.rand(n, generator=self.gen).clamp(min=1e-12).log()
        raw = raw * active.cpu()
        return int(active.sum()) * raw / raw.sum().clamp(min=1e-12)

    def combine(self, losses, active, grad_norms=None):
        self.last = self.sample(active)
        return (self.last.to(losses.device) * losses).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.last)}
