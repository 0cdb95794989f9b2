import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


class Fixed(LossCombiner):
    """Constant manual weights (docs/methods.md#combiner-fixed); a task left out of `weights` keeps weight 1."""

    name = "fixed"

    def __init__(self, ctx: StrategyContext, *, weights: dict[str, float] | None = None):
        super().__init__(ctx)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(ctx.tasks))
        if unknown:
            raise ValueError(f"weights names tasks that are not configured: {', '.join(unknown)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must be >= 0")
        self.weights = torch.tensor([float(weights.get(t, 1.0)) for t in ctx.tasks])

    def combine(self, losses, active, grad_norms=None):
        return (self.weights.to(losses.device) * losses * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.weights)}
