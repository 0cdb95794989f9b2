"""SIGTERM (what Slurm, Kubernetes, `ray job stop` and `timeout` send) is handled like Ctrl-C.

Ray's driver installs a native SIGTERM handler that prints a stack trace of several hundred lines and
exits. We replace it, after ray.init, with one that raises SIGINT: Tune then stops the trials at their
last checkpoint, saves the experiment state and returns, and the launcher closes the MLflow parent run
as KILLED, prints how to resume and exits 143 instead of 130.
"""
from __future__ import annotations

import signal

_terminated = False


def _on_sigterm(signum, frame) -> None:
    global _terminated
    if _terminated:  # a second SIGTERM: stop now, as a second Ctrl-C does
        raise SystemExit(143)
    _terminated = True
    signal.raise_signal(signal.SIGINT)


def terminate_like_interrupt() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def terminated() -> bool:
    return _terminated
