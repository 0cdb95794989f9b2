"""The three strategy interfaces and the context they are built with.

A strategy takes inputs and returns outputs: it never reads trainer or model attributes. Its state
(weights, EMAs, flags, RNG) lives in the object and round-trips through state_dict/load_state_dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class StrategyContext:
    tasks: tuple[str, ...]
    epochs: int
    seed: int

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)


class Stateful:
    """Default state handling: tensors, numbers, lists and torch Generators in `_state_keys`."""

    _state_keys: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, Any]:
        out = {}
        for k in self._state_keys:
            v = getattr(self, k)
            out[k] = v.get_state() if isinstance(v, torch.Generator) else v
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._state_keys:
            cur = getattr(self, k)
            if isinstance(cur, torch.Generator):
                cur.set_state(state[k])
            else:
                setattr(self, k, state[k])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_params", {}).items())
        return f"{type(self).__name__}({params})"


class TaskScheduler(Stateful):
    """Which tasks contribute a loss at each step."""

    name: ClassVar[str]

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx

    def start_epoch(self, epoch: int) -> None:
        """Called before the first step of `epoch` (0-based)."""

    def step_mask(self, step: int) -> torch.Tensor:
        """[T] bool: tasks whose loss is back-propagated at global step `step`."""
        raise NotImplementedError

    def observe(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        """Detached per-task training losses [T] of the step just taken (for loss-driven schedules)."""

    def end_epoch(self, epoch: int, val_metrics: dict[str, float]) -> None:
        """Validation metrics of the epoch just finished (for DSG, sequential, curricula)."""

    def log(self) -> dict[str, float]:
        return {}


class LossCombiner(Stateful):
    """How active task losses (or their gradients) become one update.

    Loss methods implement `combine`; gradient methods set `uses_gradients` and implement
    `aggregate` on the [T_active, d] Jacobian of the shared parameters."""

    name: ClassVar[str]
    uses_gradients: ClassVar[bool] = False

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx
        self._cos_sum, self._cos_n = 0.0, 0

    def record_cosine(self, value: float) -> None:
        """Mean pairwise cosine of this step's task gradients (a free diagnostic of gradient methods)."""
        if value == value:  # skip NaN (a single active task)
            self._cos_sum += value
            self._cos_n += 1

    def grad_cosine_log(self) -> dict[str, float]:
        """The epoch's mean gradient cosine; resets the running mean (called once per epoch)."""
        if not self._cos_n:
            return {}
        out = {"strategy/grad_cosine": self._cos_sum / self._cos_n}
        self._cos_sum, self._cos_n = 0.0, 0
        return out

    def parameters(self) -> list[torch.nn.Parameter]:
        """Extra trainable parameters (learned weights); optimised without weight decay."""
        return []

    def combine(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        pass

    def end_epoch(self, epoch: int, train_losses: dict[str, float]) -> None:
        pass

    def log(self) -> dict[str, float]:
        return self.grad_cosine_log()


class ModalitySchedule(Stateful):
    """Which modalities (text, video, audio) feed the encoder, per sample."""

    name: ClassVar[str]

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx

    def start_epoch(self, epoch: int) -> None:
        pass

    def mask(self, batch_size: int) -> torch.Tensor:
        """[B, 3] bool: True where the modality is used for that sample."""
        raise NotImplementedError

    def log(self) -> dict[str, float]:
        return {}
