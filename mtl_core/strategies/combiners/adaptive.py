import math

import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext


class Adaptive(LossCombiner):
    """Dynamic Task Prioritization (Guo et al., ECCV 2018; docs/methods.md#combiner-adaptive): harder
    tasks weigh more.

    κ_t is an EMA (rate `ema`) of the task's validation macro-F1, updated after every epoch; the weight
    is -(1-κ_t)^γ·log κ_t (focal-loss shape, γ = `gamma`), renormalised to sum to T. All weights are 1
    until the first validation."""

    name = "adaptive"
    _state_keys = ("kpi", "w")

    @classmethod
    def acts_from(cls, params):
        return 1  # w = 1 until the first validation

    def __init__(self, ctx: StrategyContext, *, gamma: float = 1.0, ema: float = 0.5):
        super().__init__(ctx)
        if gamma < 0 or not 0 <= ema < 1:
            raise ValueError("gamma must be >= 0 and ema in [0, 1)")
        self.gamma, self.ema = gamma, ema
        self.kpi: list[float | None] = [None] * ctx.num_tasks
        self.w = torch.ones(ctx.num_tasks)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        raw = []
        for j, t in enumerate(self.ctx.tasks):
            f1 = metrics.get(keys.task("val", t), float("nan"))
            if math.isfinite(f1):
                self.kpi[j] = f1 if self.kpi[j] is None else self.ema * self.kpi[j] + (1 - self.ema) * f1
            k = min(max(self.kpi[j] if self.kpi[j] is not None else 0.5, 1e-3), 1 - 1e-3)
            raw.append(-((1 - k) ** self.gamma) * math.log(k))
        w = torch.tensor(raw)
        self.w = self.ctx.num_tasks * w / w.sum()

    def combine(self, losses, active, grad_norms=None):
        return (self.w.to(losses.device) * losses * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.w)}
