import torch

from mtl_core import keys
from mtl_core.strategies.base import StrategyContext, TaskScheduler, task_order


class Sequential(TaskScheduler):
    """Finish one task, then the next (docs/methods.md#scheduler-sequential).

    A task trains alone for `epochs_per_task` epochs, or, when that is unset, until its validation
    macro-F1 has not improved for `patience` epochs (capped by `max_epochs_per_task`). With
    `final_joint`, all tasks train together once the last task is done ("one at a time, then all");
    otherwise the last task keeps training."""

    name = "sequential"
    _state_keys = ("stage", "stage_epochs", "stage_best", "stage_bad")

    def __init__(self, ctx: StrategyContext, *, order: tuple[str, ...] | None = None,
                 epochs_per_task: int | None = None, patience: int = 2, max_epochs_per_task: int | None = None,
                 final_joint: bool = False):
        super().__init__(ctx)
        if epochs_per_task is not None and epochs_per_task < 1:
            raise ValueError(f"epochs_per_task must be >= 1, got {epochs_per_task}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.order = task_order(order, ctx.tasks)
        self.epochs_per_task, self.patience = epochs_per_task, patience
        self.max_epochs_per_task, self.final_joint = max_epochs_per_task, final_joint
        self.stage, self.stage_epochs, self.stage_best, self.stage_bad = 0, 0, float("-inf"), 0

    @property
    def joint(self) -> bool:
        return self.stage >= len(self.order)

    def step_mask(self, step: int) -> torch.Tensor:
        return self._one_hot(self.ctx.tasks if self.joint else [self.order[self.stage]])

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.joint:
            return
        self.stage_epochs += 1
        if self.epochs_per_task is not None:
            done = self.stage_epochs >= self.epochs_per_task
        else:
            score = metrics[keys.task("val", self.order[self.stage])]
            if score > self.stage_best:
                self.stage_best, self.stage_bad = score, 0
            else:
                self.stage_bad += 1
            done = self.stage_bad >= self.patience or (
                self.max_epochs_per_task is not None and self.stage_epochs >= self.max_epochs_per_task)
        last = self.stage == len(self.order) - 1
        if done and (not last or self.final_joint):
            self.stage += 1
            self.stage_epochs, self.stage_best, self.stage_bad = 0, float("-inf"), 0

    def log(self) -> dict[str, float]:
        return {**super().log(), keys.strategy("stage"): float(self.stage)}
