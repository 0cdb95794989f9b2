import torch

from mtl_core.strategies.base import StrategyContext, TaskScheduler, task_order


class RoundRobin(TaskScheduler):
    """One task per step, cycling through `order` (the deterministic single-task schedule;
    docs/methods.md#scheduler-round_robin).

    The cycle runs on the global step, so it carries on across epochs and resumes exactly."""

    name = "round_robin"

    def __init__(self, ctx: StrategyContext, *, order: tuple[str, ...] | None = None):
        super().__init__(ctx)
        self.order = task_order(order, ctx.tasks)
        self._masks = [self._one_hot([t]) for t in self.order]

    def step_mask(self, step: int) -> torch.Tensor:
        return self._masks[step % len(self._masks)]
