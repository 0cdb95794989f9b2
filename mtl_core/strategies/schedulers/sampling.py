import torch

from mtl_core import keys
from mtl_core.strategies.base import StrategyContext, TaskScheduler

SIGNALS = ("loss", "difficulty", "annealed", "uniform")


class Sampling(TaskScheduler):
    """Draw the task(s) that train at each step from probabilities p (docs/methods.md#scheduler-sampling).

    signal `loss`: p ∝ D^(1/temperature) with D the EMA of each task's training loss (harder = more);
    `difficulty`: D = 1 - validation macro-F1, refreshed each epoch; `annealed` (BERT and PALs):
    p ∝ N^α with N the task's positive training labels and α = 1 - anneal_span·(e-1)/(E-1);
    `uniform`: equal. Then p ← (1-floor)·p + floor/T so that no task starves, and `tasks_per_step`
    tasks are drawn without replacement from the strategy's own seeded generator."""

    name = "sampling"
    _state_keys = ("ema", "difficulty", "epoch", "gen")

    def __init__(self, ctx: StrategyContext, *, signal: str = "loss", temperature: float = 1.0, floor: float = 0.1,
                 ema: float = 0.9, tasks_per_step: int = 1, anneal_span: float = 0.8):
        super().__init__(ctx)
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= floor <= 1 or not 0 <= ema < 1:
            raise ValueError("floor must be in [0, 1] and ema in [0, 1)")
        if not 1 <= tasks_per_step <= ctx.num_tasks:
            raise ValueError(f"tasks_per_step must be in [1, {ctx.num_tasks}], got {tasks_per_step}")
        self.signal, self.temperature, self.floor = signal, temperature, floor
        self.ema_rate, self.tasks_per_step, self.anneal_span = ema, tasks_per_step, anneal_span
        n = ctx.num_tasks
        self.ema = torch.ones(n)
        self.difficulty = torch.ones(n)
        self.epoch = 0
        self.gen = ctx.generator(salt=7)

    def probabilities(self) -> torch.Tensor:
        n = self.ctx.num_tasks
        if self.signal == "uniform":
            p = torch.ones(n)
        elif self.signal == "annealed":
            sizes = torch.tensor(self.ctx.positives or [1] * n, dtype=torch.float).clamp(min=1)
            span = self.anneal_span * self.epoch / max(1, self.ctx.epochs - 1)  # epoch is 0-based: (e-1) in 1-based
            p = sizes ** (1.0 - span)
        else:
            signal = self.ema if self.signal == "loss" else self.difficulty
            p = signal.clamp(min=1e-8) ** (1.0 / self.temperature)
        p = p / p.sum()
        return (1 - self.floor) * p + self.floor / n

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step_mask(self, step: int) -> torch.Tensor:
        picks = torch.multinomial(self.probabilities(), self.tasks_per_step, replacement=False, generator=self.gen)
        mask = torch.zeros(self.ctx.num_tasks, dtype=torch.bool)
        mask[picks] = True
        return mask

    def observe(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        super().observe(losses, active)
        finite = torch.isfinite(losses)
        self.ema = torch.where(finite, self.ema_rate * self.ema + (1 - self.ema_rate) * losses, self.ema)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        f1 = torch.tensor([metrics[keys.task("val", t)] for t in self.ctx.tasks])
        self.difficulty = torch.where(torch.isfinite(f1), (1 - f1).clamp(min=1e-3), self.difficulty)

    def log(self) -> dict[str, float]:
        out = super().log()
        p = self.probabilities()
        out.update({keys.strategy("prob", t): float(p[j]) for j, t in enumerate(self.ctx.tasks)})
        return out


