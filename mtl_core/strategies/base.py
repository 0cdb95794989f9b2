"""The three strategy interfaces and the context they are built with.

A strategy takes inputs and returns outputs: it never reads trainer or model attributes. Its state
(weights, EMAs, flags, RNG) lives in the object and round-trips through state_dict/load_state_dict.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mtl_core import MODALITIES, keys


@dataclass(frozen=True)
class StrategyContext:
    tasks: tuple[str, ...]
    epochs: int
    seed: int
    positives: tuple[int, ...] | None = None  # positive training labels per task (size-based sampling)
    modalities: tuple[str, ...] = MODALITIES  # modalities at least one training clip has

    def generator(self, salt: int) -> torch.Generator:
        """A generator owned by one strategy; `salt` keeps strategies' streams apart."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)


def strategy_params(cls: type) -> dict[str, inspect.Parameter]:
    """The user-settable parameters of a strategy: its keyword-only constructor arguments."""
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


class Stateful:
    """Default state handling for the attributes named in `_state_keys`: tensors, numbers, lists,
    torch Generators (their RNG state) and learned Parameters (copied in place, so the optimizer
    keeps pointing at them). Every strategy records the parameters it was built with (`params`)."""

    _state_keys: ClassVar[tuple[str, ...]] = ()
    _params: dict[str, Any]

    def __new__(cls, *args, **kwargs):
        # Recorded here, before any __init__ runs, so no strategy writes (or forgets) its own record.
        obj = super().__new__(cls)
        obj._params = {}
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:  # a bad call (__init__ raises the usual error), or a copy (its state brings the record)
            return obj
        bound.apply_defaults()
        obj._params = {k: bound.arguments[k] for k in strategy_params(cls)}
        return obj

    @property
    def params(self) -> dict[str, Any]:
        """The keyword arguments this strategy was constructed with, defaults filled in."""
        return dict(self._params)

    @classmethod
    def acts_from(cls, params: dict[str, Any]) -> int | None:
        """The first epoch (0-based) in which this method trains differently from its axis's plain value
        (`all_tasks`, `equal`, `all_modalities`), given its parameters; None when that depends on the run (DSG: its first
        stop, read from `strategy/<task>/active`). A comparison at a smaller budget has not seen it act."""
        return 0

    @classmethod
    def earliest_act(cls, params: dict[str, Any]) -> int:
        """The first epoch (0-based) in which this method can train differently from its axis's plain value,
        however the run goes: `acts_from` where that is known in advance, else a lower bound."""
        first = cls.acts_from(params)
        return 0 if first is None else first

    def state_dict(self) -> dict[str, Any]:
        out = {}
        for k in self._state_keys:
            v = getattr(self, k)
            if isinstance(v, torch.Generator):
                v = v.get_state()
            elif isinstance(v, torch.nn.Parameter):
                v = v.detach().clone()
            out[k] = v
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._state_keys:
            cur = getattr(self, k)
            if isinstance(cur, torch.Generator):
                cur.set_state(state[k])
            elif isinstance(cur, torch.nn.Parameter):
                with torch.no_grad():
                    cur.copy_(state[k])
            else:
                setattr(self, k, state[k])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({params})"


class TaskScheduler(Stateful):
    """Which tasks contribute a loss at each step."""

    name: ClassVar[str]

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx
        self._active_steps = torch.zeros(ctx.num_tasks)
        self._steps = 0

    def start_epoch(self, epoch: int) -> None:
        """Called before the first step of `epoch` (0-based)."""

    def step_mask(self, step: int) -> torch.Tensor:
        """[T] bool: tasks whose loss is back-propagated at global step `step`."""
        raise NotImplementedError

    def observe(self, losses: torch.Tensor, active: torch.Tensor) -> None:
        """Detached per-task training losses [T] and the mask that was applied, after each step."""
        self._active_steps += active.float()
        self._steps += 1

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's metrics (`val/<task>/f1`, ...) once it is finished (DSG, sequential, curricula)."""

    def log(self) -> dict[str, float]:
        """Fraction of the epoch's steps each task was active; resets the count (once per epoch)."""
        frac = self._active_steps / max(1, self._steps)
        self._active_steps.zero_()
        self._steps = 0
        return {keys.strategy("active", t): float(frac[j]) for j, t in enumerate(self.ctx.tasks)}

    def _one_hot(self, tasks) -> torch.Tensor:
        mask = torch.zeros(self.ctx.num_tasks, dtype=torch.bool)
        for t in tasks:
            mask[self.ctx.tasks.index(t)] = True
        return mask


def task_order(order, tasks: tuple[str, ...], what: str = "order") -> tuple[str, ...]:
    """A permutation of the configured tasks (default: their configured order)."""
    if order is None:
        return tuple(tasks)
    order = tuple(order)
    if sorted(order) != sorted(tasks):
        raise ValueError(f"{what} must list each configured task once ({', '.join(tasks)}), got {list(order)}")
    return order


GRADIENT_SPACES = ("parameters", "representation")


def check_space(space: str) -> str:
    """A gradient method's `space`: `parameters` (the task gradients of the shared parameters, the methods'
    own rule) or `representation` (of the shared representation z, one backward through the encoder)."""
    if space not in GRADIENT_SPACES:
        raise ValueError(f"space must be one of {', '.join(GRADIENT_SPACES)}, got {space!r}")
    return space


class LossCombiner(Stateful):
    """How active task losses (or their gradients) become one update.

    Loss methods implement `combine`; gradient methods set `uses_gradients` and implement
    `aggregate` on the [T_active, d] Jacobian of the shared parameters (and may rescale the losses
    first with `transform_losses`). Learned parameters (`parameters()`) train with the model's
    optimizer at their own learning rate `param_lr` (None: the model's)."""

    name: ClassVar[str]
    uses_gradients: ClassVar[bool] = False
    needs_grad_norms: ClassVar[bool] = False
    param_lr: float | None = None
    space: str = "parameters"  # gradient methods: where the task gradients are taken (GRADIENT_SPACES)

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx
        self._cos_sum, self._cos_n = 0.0, 0
        self._w_sum, self._w_n = torch.zeros(ctx.num_tasks), torch.zeros(ctx.num_tasks)
        self._w_total, self._w_steps = 0.0, 0

    def record_cosine(self, value: float) -> None:
        """Mean pairwise cosine of this step's task gradients (a free diagnostic of gradient methods)."""
        if value == value:  # skip NaN (a single active task)
            self._cos_sum += value
            self._cos_n += 1

    def grad_cosine_log(self) -> dict[str, float]:
        """The epoch's mean gradient cosine; resets the running mean (called once per epoch)."""
        if not self._cos_n:
            return {}
        out = {keys.strategy("grad_cosine"): self._cos_sum / self._cos_n}
        self._cos_sum, self._cos_n = 0.0, 0
        return out

    def parameters(self) -> list[torch.nn.Parameter]:
        """Extra trainable parameters (learned weights); optimised without weight decay."""
        return []

    def pilot(self) -> tuple[str, int] | None:
        """(combiner name, epochs) of a pilot run the trainer makes first and hands to `transfer` (its per-epoch
        metrics); None for every combiner but `transferred`."""
        return None

    def transfer(self, history: list[dict]) -> None:
        raise NotImplementedError

    def combine(self, losses: torch.Tensor, active: torch.Tensor, grad_norms: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Scalar loss to back-propagate from the per-task losses [T] (inactive tasks must not count).

        `grad_norms` [T] (norms of each task's gradient at the last shared layer) is passed to
        combiners that set `needs_grad_norms`."""
        raise NotImplementedError

    def transform_losses(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Gradient methods: the (differentiable) per-task losses whose gradients are aggregated and
        which the heads (and `parameters()`) train on. Identity unless a method rescales them."""
        return losses

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Shared-parameter update direction [d] from the Jacobian [A, d] of the active tasks `idx`
        (`losses`: their detached raw losses)."""
        raise NotImplementedError

    def aggregate_representation(self, dz: torch.Tensor, losses: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """`space: representation`: the gradient [B, D] to back-propagate into the encoder from the active
        tasks' gradients dz [A, B, D] w.r.t. the shared representation z. Default: the method's rule on the
        flattened rows [A, B·D]. A method whose state has one entry per parameter overrides it."""
        return self.aggregate(dz.reshape(len(dz), -1), losses, idx).view_as(dz[0])

    def _weights_log(self, weights) -> dict[str, float]:
        return {keys.strategy("weight", t): float(weights[j]) for j, t in enumerate(self.ctx.tasks)}

    def record_weights(self, idx: torch.Tensor, weights: torch.Tensor) -> None:
        """Weights a gradient method applied to the active tasks' gradients this step. Logged as the
        epoch's mean, rescaled to average 1 over the active tasks (the scale of the loss methods'
        weights, `equal` = 1 each); their raw sum (a step-length factor) as `strategy/weight_sum`."""
        w = weights.detach().float().cpu()
        total = float(w.sum())
        scaled = w * len(w) / total if total > 0 else w
        self._w_sum[idx.cpu()] += scaled
        self._w_n[idx.cpu()] += 1
        self._w_total += total
        self._w_steps += 1

    def applied_weights_log(self) -> dict[str, float]:
        """The epoch's mean recorded weights per task (tasks never active are left out); resets."""
        if not self._w_steps:
            return {}
        out = {keys.strategy("weight", t): float(self._w_sum[j] / self._w_n[j])
               for j, t in enumerate(self.ctx.tasks) if self._w_n[j] > 0}
        out[keys.strategy("weight_sum")] = self._w_total / self._w_steps
        self._w_sum.zero_()
        self._w_n.zero_()
        self._w_total, self._w_steps = 0.0, 0
        return out

    def start_epoch(self, epoch: int) -> None:
        pass

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's metrics (`train/<task>/loss`, `val/<task>/f1`, ...) once it is finished."""

    def log(self) -> dict[str, float]:
        """The epoch's gradient cosine and applied weights (gradient methods; empty otherwise)."""
        return {**self.grad_cosine_log(), **self.applied_weights_log()}


class ModalitySchedule(Stateful):
    """Which modalities (text, video, audio) feed the encoder, per sample."""

    name: ClassVar[str]

    def __init__(self, ctx: StrategyContext):
        self.ctx = ctx

    def start_epoch(self, epoch: int) -> None:
        pass

    def mask(self, present: torch.Tensor) -> torch.Tensor:
        """[B, 3] bool: the modalities each sample uses, a subset of `present` ([B, 3], what each
        clip has)."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def log(self) -> dict[str, float]:
        return {}
