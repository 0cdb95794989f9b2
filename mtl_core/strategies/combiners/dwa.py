import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext


class DWA(LossCombiner):
    """Dynamic Weight Average (Liu et al. 2019, docs/methods.md#combiner-dwa).

    w_t(e) = T·exp(r_t/τ) / Σ_k exp(r_k/τ), r_t = L̄_t(e-1)/L̄_t(e-2) from epoch-average training
    losses; w = 1 for the first two epochs. Weights are fixed within an epoch."""

    name = "dwa"
    _state_keys = ("history", "w")

    def __init__(self, ctx: StrategyContext, *, temperature: float = 2.0):
        super().__init__(ctx)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.history: list[list[float]] = []  # epoch-average training loss per task, last two epochs
        self.w = torch.ones(ctx.num_tasks)

    @classmethod
    def acts_from(cls, params):
        return 2  # w = 1 until two epochs of losses exist

    def start_epoch(self, epoch: int) -> None:
        if len(self.history) < 2:
            self.w = torch.ones(self.ctx.num_tasks)
            return
        prev, prev2 = torch.tensor(self.history[-1]), torch.tensor(self.history[-2])
        r = prev / prev2.clamp(min=1e-8)
        self.w = self.ctx.num_tasks * torch.softmax(r / self.temperature, 0)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history = (self.history + [[metrics[keys.task("train", t, "loss")] for t in self.ctx.tasks]])[-2:]

    def combine(self, losses, active, grad_norms=None):
        return (self.w.to(losses.device) * losses * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.w)}
