import torch

from mtl_core import keys
from mtl_core.strategies.base import StrategyContext, TaskScheduler, task_order

MODES = ("fixed", "assessed", "anti")


class Curriculum(TaskScheduler):
    """Task curricula (docs/methods.md#scheduler-curriculum): stage s trains an active set of tasks for
    `epochs_per_stage` epochs; the last stage runs to the end of training.

    `fixed`: the stages are `stages` (explicit task lists) or, without it, the cumulative prefixes of
    `order` ({t1}, {t1, t2}, ...). `assessed`: all tasks train for `assessment_epochs`; their validation
    macro-F1 summed over those epochs orders them easiest (highest) first, then tasks are added one per
    stage. `anti`: the same, hardest first. The active set really gates the losses (unlike a public
    implementation that computed it and back-propagated every head)."""

    name = "curriculum"
    _state_keys = ("scores", "order", "active")

    @classmethod
    def acts_from(cls, params):
        if params.get("mode", "fixed") == "fixed":
            return 0
        return int(params.get("assessment_epochs", 2))  # all tasks train until the assessment

    def __init__(self, ctx: StrategyContext, *, mode: str = "fixed", stages: tuple[tuple[str, ...], ...] | None = None,
                 order: tuple[str, ...] | None = None, epochs_per_stage: int = 1, assessment_epochs: int = 2):
        super().__init__(ctx)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if epochs_per_stage < 1 or assessment_epochs < 1:
            raise ValueError("epochs_per_stage and assessment_epochs must be >= 1")
        if stages is not None:
            if mode != "fixed":
                raise ValueError("stages is only for mode fixed")
            for stage in stages:
                if not stage or any(t not in ctx.tasks for t in stage):
                    raise ValueError(f"every stage must be a non-empty list of configured tasks, got {list(stage)}")
            self.stages = tuple(tuple(s) for s in stages)
        else:
            self.stages = None
        self.mode, self.epochs_per_stage, self.assessment_epochs = mode, epochs_per_stage, assessment_epochs
        self.order = list(task_order(order, ctx.tasks)) if mode == "fixed" else None
        self.scores = [0.0] * ctx.num_tasks
        self.active = list(ctx.tasks)

    def active_tasks(self, epoch: int) -> tuple[str, ...]:
        """The tasks that train during `epoch` (0-based)."""
        start = 0 if self.mode == "fixed" else self.assessment_epochs
        if epoch < start:
            return tuple(self.ctx.tasks)  # assessment phase
        stage = (epoch - start) // self.epochs_per_stage
        if self.stages is not None:
            return self.stages[min(stage, len(self.stages) - 1)]
        return tuple(self.order[:min(stage + 1, len(self.order))])

    def start_epoch(self, epoch: int) -> None:
        self.active = list(self.active_tasks(epoch))

    def step_mask(self, step: int) -> torch.Tensor:
        return self._one_hot(self.active)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.mode == "fixed" or epoch >= self.assessment_epochs:
            return
        for j, t in enumerate(self.ctx.tasks):
            self.scores[j] += metrics[keys.task("val", t)]
        if epoch == self.assessment_epochs - 1:  # easiest = highest summed F1 first; anti reverses
            ranked = sorted(range(self.ctx.num_tasks), key=lambda j: self.scores[j], reverse=self.mode == "assessed")
            self.order = [self.ctx.tasks[j] for j in ranked]
