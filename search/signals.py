"""Ctrl-C and SIGTERM (what Slurm, Kubernetes, `ray job stop` and `timeout` send), at any moment of a launch.

Outside a Tune phase both raise KeyboardInterrupt: the launcher closes the MLflow parent run as KILLED,
prints how to resume and exits 130 (Ctrl-C) or 143 (SIGTERM). Inside a phase Tune's own SIGINT handler
stops the trials at their last checkpoint and saves the experiment; SIGTERM reaches it as a SIGINT.

Three libraries install handlers of their own, so ours are (re)installed at each hand-over:
- at the launcher's start (before that, SIGTERM killed the process with no resume line);
- around ray.init, which installs a SIGTERM handler that exits with `sys.exit(15)` and then Ray's native
  one (SIGTERM is held back until ours are back: search.sweep._ray_init);
- after each Tuner.fit: Tune's SIGINT handler stays installed when no signal came, and a later signal
  (in the finish step, say) would only set a flag nobody reads, and the launch would end with exit 0.
"""
from __future__ import annotations

import signal

_terminated = False


def _on_sigterm(signum, frame) -> None:
    global _terminated
    if _terminated:  # a second SIGTERM: stop now, as a second Ctrl-C does
        raise SystemExit(143)
    _terminated = True
    signal.raise_signal(signal.SIGINT)  # whoever handles SIGINT now (ours, or Tune's in a phase)


def _on_sigint(signum, frame) -> None:
    raise KeyboardInterrupt


def catch_signals() -> None:
    """Our handlers for SIGINT and SIGTERM (from the main thread only, as Python requires)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)


def fit_interrupted() -> bool:
    """Right after Tuner.fit(): whether Ctrl-C or SIGTERM reached the phase; our handlers are back either
    way. Tune's handler puts the previous one (ours) back when it fires, and stays installed otherwise."""
    caught = signal.getsignal(signal.SIGINT) is _on_sigint
    catch_signals()
    return caught or _terminated


def sigterm_received() -> None:
    """A SIGTERM that another library's handler took (ray.init's exits with 15): count it as ours."""
    global _terminated
    _terminated = True


def terminated() -> bool:
    return _terminated


def reset() -> None:
    """Forget an earlier SIGTERM (tests run several launches in one process)."""
    global _terminated
    _terminated = False
