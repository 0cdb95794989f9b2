"""The console's progress of a phase: trials done (finished, stopped early, failed) and running, epochs spent
of the phase's budget, the best so far by its configuration's label, the time so far and an estimate of what
is left. On a terminal one line updated in place; in a log file or CI a line on each change (a trial ended)
and otherwise one a minute. The final phase shows no score: test scores are for the end (`search.run.finish`).
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any, Callable

from ray import tune

from search.analysis.labels import run_name, trial_number
from search.space.trial import meta_of
from search.tracking.tracker import trial_error


def duration(seconds: float) -> str:
    """`1h 02m 03s`, `7m 04s`, `12s`."""
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


class Progress(tune.Callback):
    """`phase`: the name shown; `budget`: the epochs the phase is expected to spend; `show_best`: False in
    the final phase; `live`: a line updated in place (None: when stdout is a terminal); `cost`: a trial's
    cost per epoch (the models it trains) and `work`: the phase's total of epochs x cost, for an ETA that
    does not take an epoch of five single-task models for one of a single model."""

    def __init__(self, phase: str, metric: str, mode: str, total: int, max_t: int, budget: int | None = None,
                 show_best: bool = True, live: bool | None = None, every_s: float = 60.0,
                 cost: Callable[[Any], int] | None = None, work: int | None = None):
        self.phase, self.metric, self.mode, self.total, self.max_t = phase, metric, mode, total, max_t
        self.budget = budget or total * max_t
        self.cost, self.work_budget, self.work = cost or (lambda trial: 1), work or self.budget, 0
        self.show_best, self.every_s = show_best, every_s
        self.live = sys.stdout.isatty() if live is None else live
        self.best: tuple[float, str] | None = None
        self.finished = self.stopped = self.errored = self.epochs = 0
        self.ended: list[str] = []  # trials counted as done (Tune marks them TERMINATED after the callbacks)
        self._t0 = time.monotonic()
        self._last, self._shown = 0.0, ""

    def get_state(self) -> dict:
        return {"best": self.best, "finished": self.finished, "stopped": self.stopped, "errored": self.errored,
                "epochs": self.epochs, "work": self.work, "ended": list(self.ended)}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def line(self, trials) -> str:
        running = sum(t.status == "RUNNING" and t.trial_id not in self.ended for t in trials)
        done = self.finished + self.stopped + self.errored
        elapsed = time.monotonic() - self._t0
        parts = [f"{self.phase}: {done}/{self.total} trials done ({self.finished} finished, {self.stopped} stopped "
                 f"early, {self.errored} failed), {running} running",
                 f"{self.epochs}/{self.budget} epochs" if self.epochs <= self.budget
                 else f"{self.epochs} epochs (about {self.budget} expected)"]  # asynchronous ASHA promotes more
        if self.show_best:
            parts.append(f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "no score yet")
        eta = ""
        if 0 < self.work < self.work_budget and done < self.total:
            eta = f", about {duration(elapsed * (self.work_budget - self.work) / self.work)} left"
        elif 0 < done < self.total:  # past the expected epochs: go by the trials still to end
            eta = f", about {duration(elapsed * (self.total - done) / done)} left"
        parts.append(f"{duration(elapsed)}{eta}")
        return "; ".join(parts)

    def _show(self, trials, changed: bool = False) -> None:
        """The line again: on a terminal in place, elsewhere on a change or once every `every_s`."""
        now = time.monotonic()
        if self.live:
            if changed or now - self._last >= 1.0:
                width = shutil.get_terminal_size((120, 20)).columns - 1
                sys.stdout.write("\r\x1b[K" + self.line(trials)[:width])
                sys.stdout.flush()
                self._last, self._shown = now, "live"
        elif changed or now - self._last >= self.every_s:
            print(self.line(trials), flush=True)
            self._last = now

    def _say(self, text: str) -> None:
        """A line of its own, above the live line."""
        if self.live and self._shown:
            sys.stdout.write("\r\x1b[K")
        print(text, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs += 1
        self.work += self.cost(trial)
        value = result.get(self.metric)
        first = self.best is None
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(value):
            self.best = (float(value), label_of(trial))
        self._show(trials, changed=first and self.best is not None and self.show_best)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if int((trial.last_result or {}).get("training_iteration", 0)) >= self.max_t:
            self.finished += 1
        else:
            self.stopped += 1
        self.ended.append(trial.trial_id)
        self._show(trials, changed=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.errored += 1
        self.ended.append(trial.trial_id)
        self._say(f"{who(self.phase, trial)} failed: {trial_error(trial)}")  # its traceback: launch.log
        self._show(trials, changed=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say(f"{who(self.phase, trial)} failed, retrying from its last checkpoint: {trial_error(trial)}")

    def on_step_end(self, iteration, trials, **info):
        self._show(trials)

    def on_experiment_end(self, trials, **info):
        if self.live and self._shown:
            self._show(trials, changed=True)
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._shown = ""


def label_of(trial) -> str:
    return meta_of((trial.config or {}).get("trial") or {}).label


def who(phase: str, trial) -> str:
    """A trial as the console names it: `trial 3 dsg+equal+all_modalities` in a search, its run's name in the final phase."""
    entry = (trial.config or {}).get("trial") or {}
    if (entry.get("meta") or {}).get("name"):
        return run_name(phase, trial.trial_id, entry)
    return f"trial {trial_number(trial.trial_id, (entry.get('meta') or {}).get('number'))} {label_of(trial)}"
