import torch

from mtl_core.strategies.base import StrategyContext, TaskScheduler


class AllTasks(TaskScheduler):
    """Every task contributes at every step (plain multi-task learning)."""

    name = "all_tasks"

    def __init__(self, ctx: StrategyContext):
        super().__init__(ctx)
        self._mask = torch.ones(ctx.num_tasks, dtype=torch.bool)

    def step_mask(self, step: int) -> torch.Tensor:
        return self._mask
