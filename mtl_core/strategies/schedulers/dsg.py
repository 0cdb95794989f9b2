import torch

from mtl_core import keys
from mtl_core.strategies.base import StrategyContext, TaskScheduler


class DynamicStopAndGo(TaskScheduler):
    """Dynamic Stop-and-Go (12-in-1, Lu et al. 2020), the rule of the official code
    (docs/methods.md#scheduler-dsg).

    Per task, on every validation macro-F1 score s (mode max, relative thresholds):
      1. s > best*(1+threshold): best = s, bad = 0; else bad += 1
      2. if cooldown > 0: cooldown -= 1, bad = 0
      3. if bad > patience: stop; cooldown = `cooldown`; bad = 0
      4. elif stopped and s < best*(1-continue_threshold): go; cooldown = `cooldown`; bad = 0
    A stopped task is trained only on steps divisible by `iter_gap` (the summed-loss variant).
    Every task is reset (go, best = -inf) at the start of the epochs in `reset_epochs`."""

    name = "dsg"
    _state_keys = ("best", "bad", "stopped", "cooldown_left")

    @classmethod
    def acts_from(cls, params):
        return None  # from its first stop, which depends on the validation curve

    @classmethod
    def earliest_act(cls, params):
        # the first epoch sets each task's best; a stop needs `patience` + 1 epochs without improvement after
        # it, and takes effect in the epoch after that; a reset at or before that epoch starts the count again
        patience = int(params.get("patience", 1))
        first = patience + 2
        for epoch in sorted(params.get("reset_epochs", ()) or ()):
            if epoch <= first:
                first = int(epoch) + patience + 2
        return first

    def __init__(self, ctx: StrategyContext, *, iter_gap: int = 4, threshold: float = 0.001,
                 continue_threshold: float = 0.005, patience: int = 1, cooldown: int = 1,
                 reset_epochs: tuple[int, ...] = ()):
        super().__init__(ctx)
        if iter_gap < 1:
            raise ValueError(f"iter_gap must be >= 1, got {iter_gap}")
        if threshold < 0 or continue_threshold < 0 or patience < 0 or cooldown < 0:
            raise ValueError("threshold, continue_threshold, patience and cooldown must be >= 0")
        self.iter_gap, self.threshold, self.continue_threshold = iter_gap, threshold, continue_threshold
        self.patience, self.cooldown, self.reset_epochs = patience, cooldown, tuple(reset_epochs)
        self._reset()

    def _reset(self) -> None:
        n = self.ctx.num_tasks
        self.best = [float("-inf")] * n
        self.bad = [0] * n
        self.stopped = [False] * n
        self.cooldown_left = [0] * n

    def start_epoch(self, epoch: int) -> None:
        if epoch in self.reset_epochs:
            self._reset()

    def step_mask(self, step: int) -> torch.Tensor:
        gap_step = step % self.iter_gap == 0
        return torch.tensor([not s or gap_step for s in self.stopped], dtype=torch.bool)

    def update(self, j: int, score: float) -> None:
        """One controller step for task j (MultiTaskStopOnPlateau.step)."""
        if score > self.best[j] * (1 + self.threshold):
            self.best[j], self.bad[j] = score, 0
        else:
            self.bad[j] += 1
        if self.cooldown_left[j] > 0:
            self.cooldown_left[j] -= 1
            self.bad[j] = 0
        if self.bad[j] > self.patience:
            self.stopped[j], self.cooldown_left[j], self.bad[j] = True, self.cooldown, 0
        elif self.stopped[j] and score < self.best[j] * (1 - self.continue_threshold):
            self.stopped[j], self.cooldown_left[j], self.bad[j] = False, self.cooldown, 0

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for j, t in enumerate(self.ctx.tasks):
            self.update(j, metrics[keys.task("val", t)])

    def log(self) -> dict[str, float]:
        out = super().log()
        out.update({keys.strategy("stopped", t): float(s) for t, s in zip(self.ctx.tasks, self.stopped)})
        return out
