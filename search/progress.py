"""A compact progress line for the console: trials running, finished, stopped early, errored; best so far."""
from __future__ import annotations

import math
import time

from ray import tune

from search.tracking import trial_error


class Progress(tune.Callback):
    def __init__(self, metric: str, mode: str, total: int, max_t: int, every_s: float = 15.0):
        self.metric, self.mode, self.total, self.max_t, self.every_s = metric, mode, total, max_t, every_s
        self.best: tuple[float, str] | None = None
        self.finished = self.stopped = self.errored = 0
        self._t0 = time.monotonic()
        self._last = 0.0

    def get_state(self) -> dict:
        return {"best": self.best, "finished": self.finished, "stopped": self.stopped, "errored": self.errored}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def line(self, trials) -> str:
        running = sum(t.status == "RUNNING" for t in trials)
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        return (f"[{time.monotonic() - self._t0:6.0f}s] {running} running, {self.finished} finished, "
                f"{self.stopped} stopped early, {self.errored} errored of {self.total}; {best}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(value):
            self.best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if int((trial.last_result or {}).get("training_iteration", 0)) >= self.max_t:
            self.finished += 1
        else:
            self.stopped += 1
        print(self.line(trials), flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.errored += 1
        print(f"trial {trial.trial_id} failed: {trial_error(trial)}", flush=True)  # its traceback: launch.log
        print(self.line(trials), flush=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"trial {trial.trial_id} failed, retrying from its last checkpoint: {trial_error(trial)}", flush=True)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(self.line(trials), flush=True)
