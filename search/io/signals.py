"""Ctrl-C and SIGTERM (what Slurm, Kubernetes, `ray job stop` and `timeout` send), at any moment of a launch.

A launch ends in one of two ways, however many signals come and whenever they come:
- stopped: exit 130 (Ctrl-C) or 143 (SIGTERM), the MLflow parent run KILLED, one line (how to resume once the
  experiment exists, else that nothing was kept);
- ended: its own exit code (0 when it finished), the parent run FINISHED (or FAILED), the answer printed.

The first signal decides, unless the outcome is decided already (`settle`): from the moment the finish step
marks the parent run FINISHED, a start failure marks it FAILED, or a stop is under way, a signal is only noted
(`late`), so that no clean-up is cut short and no launch ends half one way and half the other. A step that must
not be cut in two (opening the parent run) keeps a signal for its end (`hold`, `release`).

Outside a Tune phase the deciding signal raises KeyboardInterrupt: the launcher closes the parent run as
KILLED, prints how to resume and exits. Inside a phase Tune's own SIGINT handler stops the trials at their
last checkpoint and saves the experiment; SIGTERM reaches it as a SIGINT, and a second signal while Tune
winds down is only noted.

Libraries install handlers of their own, so ours are (re)installed at each hand-over:
- before the launcher's heavy imports (`exit_early`: until the launcher starts, a signal ends the process at
  once with one line, nothing having been written), then at the launcher's start (`catch_signals`);
- around ray.init, which would install SIGTERM handlers that exit (search.run.sweep._ray_init leaves them out and
  keeps a signal for ray.init's end);
- after each Tuner.fit: Tune's SIGINT handler stays installed when no signal came, and a later signal
  (in the finish step, say) would only set a flag nobody reads;
- after ray.shutdown (search.run.sweep), which may leave SIGTERM at its default (the process killed outright).
"""
from __future__ import annotations

import os
import signal

NOTHING_KEPT = "before the experiment started; nothing was kept (run the same command again)"

_terminated = False  # the signal that stops the launch is SIGTERM
_decided = False  # the outcome is decided: a signal now is only noted
_deferring = False  # between `hold` and `release`
_pending: int | None = None  # the signal kept meanwhile
_late: int | None = None  # the first signal that came after the outcome was decided


def _on_signal(signum, frame) -> None:
    global _pending, _late
    if _decided:
        _late = _late or signum
        return
    if _deferring:
        _pending = _pending or signum
        return
    if _tune_stopping(frame):  # Tune took a first Ctrl-C and put ours back: its stop is under way
        _stop(signal.SIGINT)
        return
    tune = signal.getsignal(signal.SIGINT)
    if signum == signal.SIGTERM and callable(tune) and tune not in (_on_signal, signal.default_int_handler):
        _stop(signum)
        signal.raise_signal(signal.SIGINT)  # Tune's, in a phase: it stops the trials and saves the experiment
        return
    _stop(signum)
    raise KeyboardInterrupt


def _stop(signum: int) -> None:
    global _decided, _terminated
    _decided, _terminated = True, signum == signal.SIGTERM


def _tune_stopping(frame) -> bool:
    """Tune's run loop is on the stack and its stop event is set: Tune's SIGINT handler fired (and put ours
    back) and Tune is stopping the trials and saving the experiment, which a KeyboardInterrupt would cut short."""
    while frame is not None:
        if frame.f_globals.get("__name__") == "ray.tune.tune":
            event = frame.f_locals.get("experiment_interrupted_event")
            return bool(getattr(event, "is_set", lambda: False)())
        frame = frame.f_back
    return False


def _on_early(signum, frame) -> None:
    """Before the launcher has started (its heavy imports): nothing was written, so end the process now, with
    the line the launcher would print (raw writes: a signal handler must not print)."""
    global _late
    if _decided:
        _late = _late or signum
        return
    how = "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"
    os.write(2, f"{how} {NOTHING_KEPT}\n".encode())
    os._exit(143 if signum == signal.SIGTERM else 130)


def exit_early() -> None:
    """Handlers for the moments before the launcher's own (from the main thread, before heavy imports)."""
    signal.signal(signal.SIGTERM, _on_early)
    signal.signal(signal.SIGINT, _on_early)


def catch_signals() -> None:
    """Our handlers for SIGINT and SIGTERM (from the main thread only, as Python requires)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def fit_interrupted() -> bool:
    """Right after Tuner.fit(): whether Ctrl-C or SIGTERM reached the phase; our handlers are back either
    way. Tune's handler puts the previous one (ours) back when it fires, and stays installed otherwise."""
    caught = signal.getsignal(signal.SIGINT) is _on_signal
    catch_signals()
    if caught and not _decided:
        _stop(signal.SIGINT)
    return caught or _decided


def sigterm_received() -> None:
    """A SIGTERM that another library's handler took (ray.init's exits with 15): count it as ours."""
    _stop(signal.SIGTERM)


def hold() -> None:
    """Until `release`, a signal is kept, not raised: for a step that must not be cut in two."""
    global _deferring, _pending
    _deferring, _pending = True, None


def release(stop: bool = True) -> None:
    """End `hold`: a signal kept meanwhile stops the launch now (KeyboardInterrupt); with `stop` False (the
    step failed, and its failure is the outcome) it is dropped."""
    global _deferring, _pending
    signum, _deferring, _pending = _pending, False, None
    if stop and signum is not None and not _decided:
        _stop(signum)
        raise KeyboardInterrupt


def settle() -> None:
    """The launch's outcome is decided (finished, failed, or a stop under way): from now on a signal is noted,
    never raised, so the outcome is carried out whole."""
    global _decided
    _decided = True


def late() -> int | None:
    """The first signal that came after the outcome was decided (it changed nothing), if any."""
    return _late


def terminated() -> bool:
    return _terminated


def reset() -> None:
    """A launch that has not decided anything yet (tests run several launches in one process)."""
    global _terminated, _decided, _deferring, _pending, _late
    _terminated = _decided = _deferring = False
    _pending = _late = None
