"""Transferred loss weights: fixed per-task weights taken from a learned weighting's result.

The research plan's "precompute loss weights for round robin or DSG based methods": learned weightings need
every task in every step to balance them, which round robin and DSG do not give. So the weights are learned
first, with all tasks, and then held fixed under any scheduler.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext

SOURCES = ("uncertainty", "learned", "gradnorm", "dwa")  # the learned weightings whose weights can transfer
MAX_JSON_BYTES = 16 * 2**20  # a run's metrics.jsonl or Ray's result.json
MAX_CHECKPOINT_BYTES = 4 * 2**30  # a checkpoint's state.pt (model and optimizer included)
# where a run folder keeps its per-epoch metrics: mtl_core.train's, a Ray trial's, a checkpoint folder's
RUN_FILES = ("metrics.jsonl", "result.json", "state.pt", "checkpoint/state.pt", "run/checkpoint/state.pt")


class Transferred(LossCombiner):
    """Fixed weights from a learned weighting (docs/methods.md#combiner-transferred): Σ_t w_t·L_t over the
    active tasks, w constant for the whole run.

    w comes from `from_run` (a run folder, checkpoint folder or metrics file of an earlier run: the last
    epoch's logged `strategy/<task>/weight`), or else from a pilot the trainer runs first (`pilot()`): a fresh
    model of the same group trained `pilot_epochs` epochs with `source`, all tasks, all modalities and the
    run's seed, whose last epoch's weights are taken. For `dwa` the weights are its mean over the epochs (its
    weights change every epoch and are 1 for the first two, so its pilot runs at least 3 epochs). The weights
    are the source's own (uncertainty's exp(-s_t) are not renormalised). Before the transfer they are 1."""

    name = "transferred"
    _state_keys = ("weights", "ready")

    def __init__(self, ctx: StrategyContext, *, source: str = "uncertainty", pilot_epochs: int = 2,
                 from_run: str | None = None):
        super().__init__(ctx)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        if not 1 <= pilot_epochs <= 1000:
            raise ValueError(f"pilot_epochs must be in [1, 1000], got {pilot_epochs}")
        self.source, self.pilot_epochs = source, pilot_epochs
        self.weights = torch.ones(ctx.num_tasks)
        self.ready = False
        if from_run is not None:
            self.transfer(read_history(Path(from_run).expanduser()), f"from_run: {from_run}")

    def pilot(self) -> tuple[str, int] | None:
        if self.ready:
            return None
        return self.source, max(self.pilot_epochs, 3) if self.source == "dwa" else self.pilot_epochs

    def transfer(self, history: list[dict], where: str = "the pilot") -> None:
        """Take the weights `source` logged in `history` (per-epoch metrics): the last epoch's, DWA's mean."""
        names = [keys.strategy("weight", t) for t in self.ctx.tasks]
        rows = [m for m in history if isinstance(m, dict) and all(k in m for k in names)]
        if not rows:
            raise ValueError(f"{where}: no epoch logged a weight for every task "
                             f"({', '.join(names)}); was it trained with a learned weighting?")
        rows = rows if self.source == "dwa" else rows[-1:]
        w = torch.tensor([[float(m[k]) for k in names] for m in rows]).mean(0)
        if not all(math.isfinite(v) and v >= 0 for v in w.tolist()):
            raise ValueError(f"{where}: the logged weights are not finite non-negative numbers")
        self.weights, self.ready = w, True

    def combine(self, losses, active, grad_norms=None):
        return (self.weights.to(losses.device) * losses * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log(self.weights)}


def read_history(path: Path) -> list[dict]:
    """The per-epoch metrics of an earlier run: JSON lines or a JSON list (size-bounded), or a checkpoint's
    history read without unpickling code. Errors are one line naming the file."""
    if path.is_dir():
        found = [path / name for name in RUN_FILES if (path / name).is_file()]
        if not found:
            raise ValueError(f"from_run: {path}: no {', '.join(RUN_FILES)} in this folder")
        path = found[0]
    if not path.is_file():
        raise ValueError(f"from_run: {path}: no such file or folder")
    stat = path.stat()
    return _read(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)  # validation builds the combiner once per corner of a space and per group
def _read(path: Path, size: int, mtime_ns: int) -> list[dict]:
    if path.suffix == ".pt":
        if size > MAX_CHECKPOINT_BYTES:
            raise ValueError(f"from_run: {path}: {size} bytes, more than a checkpoint's limit {MAX_CHECKPOINT_BYTES}")
        from mtl_core.checkpoint import CheckpointError, safe_load

        try:
            return json.loads(safe_load(path)["history_json"])
        except CheckpointError as exc:
            raise ValueError(f"from_run: {exc}") from None
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"from_run: {path}: a checkpoint without a metric history") from None
    if size > MAX_JSON_BYTES:
        raise ValueError(f"from_run: {path}: {size} bytes, more than the limit {MAX_JSON_BYTES} for a metrics file")
    try:
        text = path.read_text()
        data = json.loads(text) if text.lstrip().startswith("[") else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"from_run: {path}: not JSON or JSON lines ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, list):
        raise ValueError(f"from_run: {path}: expected per-epoch metrics (JSON lines or a list of objects)")
    return data
