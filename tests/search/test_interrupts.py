"""Ctrl-C and SIGTERM at every moment of a launch end in 130 / 143 with one line (the resume command once
the experiment exists, else 'nothing was kept'), the MLflow parent run KILLED, never a traceback, and exit 0
only when the launch truly finished.

In-process: the signal is sent to this process from inside a step of the launch (Ray itself replaced by a
stand-in that keeps the real signal-handler hand-overs: ray.init's no-op, and Tune's own SIGINT handler
installed by a fake Tuner.fit). The slow tests send it to a real launcher while Ray starts and while its
first trials run."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import search.run.finish
import search.run.launch
import search.run.phases
import search.io.signals
import search.run.sweep
import search.tracking.tracker
from search.run.launch import main

from conftest import kill_session

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"
ARGS = ["--name", "sig", "--set", "search.final_k=0", "--set", "train.epochs=1"]


def _send(sig):
    def step(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises here, at once
        raise AssertionError("the signal did not stop the launch")
    return step


def _parent_status(exp: Path) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(exp.name).experiment_id])
    return [r for r in runs if "phase" not in r.data.tags][0].info.status


class _Results(list):
    num_terminated = num_errors = 0


class _TuneLikeTuner:
    """Tuner.fit as far as signals go: Tune installs its SIGINT handler and leaves it there."""

    def fit(self):
        from ray.tune.tune import _setup_signal_catching

        _setup_signal_catching()
        return _Results()


def _phase_without_trials(exp, out):
    search.run.phases._fit(exp, "search")  # the launcher's own Tuner.fit path, with the Tune-like stand-in


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setattr(search.run.sweep.ray, "init", lambda *a, **k: None)
    monkeypatch.setattr(search.run.sweep.ray, "shutdown", lambda *a, **k: None)
    monkeypatch.setattr(search.run.phases, "build_tuner", lambda *a, **k: (_TuneLikeTuner(), 0))
    monkeypatch.setitem(search.run.phases.PHASES, "search", (_phase_without_trials,))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_checks_keeps_nothing(tmp_path, capsys, monkeypatch, sig, code):
    monkeypatch.setattr(search.run.launch, "_check_data", _send(sig))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == code
    err = capsys.readouterr().err
    assert err.strip().endswith("before the experiment started; nothing was kept (run the same command again)")
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_signal_while_the_data_is_prepared_removes_the_half_made_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search.run.sweep, "_prepare_data", _send(signal.SIGTERM))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 143
    assert "nothing was kept" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # a rerun of the same command is not blocked


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["ray start", "finish step"])
def test_a_sigterm_after_the_experiment_exists_is_143_with_the_resume_line(tmp_path, capsys, monkeypatch, no_ray,
                                                                            moment):
    """'finish step' comes after a (fake) Tune phase: Tune's SIGINT handler is still installed there, and
    swallowed the signal (exit 0, parent run FINISHED) until the launcher took SIGINT back after each fit."""
    if moment == "ray start":  # kept until ray.init returns (a Ray half started is harder to stop)
        monkeypatch.setattr(search.run.sweep.ray, "init", _signal_then(signal.SIGTERM, lambda *a, **k: None))
    else:
        monkeypatch.setattr(search.run.finish, "_bow_floor", _send(signal.SIGTERM))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 143
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM; continue with: python -m search.launch ")
    assert "--resume" in err and "Traceback" not in err
    assert _parent_status(tmp_path / "sig") == "KILLED"


def _signal_then(sig, step):
    """`step` with a signal sent to this process as it begins (for moments where the signal must not stop it)."""
    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return step(*args, **kwargs)
    return wrapped


class _SignalledTuner(_TuneLikeTuner):
    """A phase that gets the signals while Tune's SIGINT handler is installed (mid-search)."""

    def __init__(self, sigs):
        self.sigs = sigs

    def fit(self):
        from ray.tune.tune import _setup_signal_catching

        _setup_signal_catching()
        for sig in self.sigs:  # the first reaches Tune's handler (it stops the phase); a second, ours
            os.kill(os.getpid(), sig)
        return _Results()


def _signalled_phase(sigs):
    def phase(exp, out):
        search.run.phases._fit(exp, "search")  # (build_tuner is patched to give the _SignalledTuner)
        out.interrupted = True  # as the search phase says after an interrupted fit
    return phase


T, I = signal.SIGTERM, signal.SIGINT
# moment -> (where the first signal comes: "stop" raises there, "then" lets the step go on), what it must end in
MOMENTS = {
    "data preparation": ("search.run.sweep._prepare_data", "stop", 143, None),
    "opening the parent run": ("search.run.sweep.open_parent", "then", 143, "KILLED"),
    "ray start": ("search.run.sweep.ray.init", "then", 143, "KILLED"),
    "mid-search": ("tune", None, 143, "KILLED"),
    "between phases": ("phase", "stop", 143, "KILLED"),
    "finish step": ("search.run.finish._bow_floor", "stop", 143, "KILLED"),
    "answer printing": ("search.run.finish.ui_hint", "then", 0, "FINISHED"),
    "ray shutdown": ("search.run.sweep.ray.shutdown", "then", 0, "FINISHED"),
}
CASES = [(m, sigs) for m in MOMENTS for sigs in ((T,), (T, T))] + [
    ("ray start", (I,)), ("between phases", (I, T)), ("mid-search", (T, I)), ("answer printing", (I, I))]


@pytest.mark.slow
@pytest.mark.parametrize("moment, sigs", CASES,
                         ids=[f"{m}-{'+'.join(signal.Signals(s).name for s in sigs)}" for m, sigs in CASES])
def test_one_outcome_whatever_the_moment_and_the_number_of_signals(tmp_path, capsys, monkeypatch, no_ray, moment,
                                                                   sigs):
    """Stopped (130/143, the resume line or 'nothing was kept', the parent run KILLED) or finished (exit 0, the
    answer, the parent run FINISHED), never a mix, never a traceback. A second signal comes while the first
    one's clean-up runs (closing the parent run's tracker, or removing a fresh start's folder) or, in a phase,
    while Tune winds down; a signal after the parent run is FINISHED changes nothing."""
    where, how, code, status = MOMENTS[moment]
    first, rest = sigs[0], sigs[1:]
    if where == "tune":
        monkeypatch.setattr(search.run.phases, "build_tuner", lambda *a, **k: (_SignalledTuner(sigs), 0))
        monkeypatch.setitem(search.run.phases.PHASES, "search", (_signalled_phase(sigs),))
    elif where == "phase":
        monkeypatch.setitem(search.run.phases.PHASES, "search", (_phase_without_trials, _send(first)))
    else:
        module, _, name = where.rpartition(".")
        target = {"search.run.sweep": search.run.sweep, "search.run.finish": search.run.finish,
                  "search.run.sweep.ray": search.run.sweep.ray}[module]
        monkeypatch.setattr(target, name, _send(first) if how == "stop" else _signal_then(first, getattr(target, name)))
    if rest and where != "tune":  # the next ones while the first one's outcome is carried out
        monkeypatch.setattr(search.tracking.tracker.Tracker, "close", _signal_then(rest[0], search.tracking.tracker.Tracker.close))
        monkeypatch.setattr(search.run.launch, "_discard", _signal_then(rest[0], search.run.launch._discard))
    if code and first == signal.SIGINT:
        code = 130
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    how_stopped = "stopped by SIGTERM" if code == 143 else "interrupted"
    if status is None:
        assert err.strip().splitlines()[-1] == f"{how_stopped} {search.io.signals.NOTHING_KEPT}"
        assert list(tmp_path.iterdir()) == []
        return
    assert _parent_status(tmp_path / "sig") == status
    if code:
        said = [line for line in (out + err).splitlines() if line.startswith(how_stopped)]
        assert len(said) == 1 and "continue with: python -m search.launch " in said[0] and "--resume" in said[0]
        assert "answer:" not in out
    else:
        assert "answer:" in out and "--resume" not in err and "error:" not in err
        assert err.strip().splitlines()[-1].startswith("note: ") and "changed nothing" in err


@pytest.fixture
def our_handlers():
    """search.io.signals' handlers in this process for one test, then pytest's back."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    search.io.signals.reset()
    search.io.signals.catch_signals()
    yield search.io.signals
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])
    search.io.signals.reset()


def test_a_signal_while_a_step_is_held_stops_the_launch_when_it_ends(our_handlers):
    our_handlers.hold()
    os.kill(os.getpid(), signal.SIGTERM)  # kept
    with pytest.raises(KeyboardInterrupt):
        our_handlers.release()
    assert our_handlers.terminated()
    os.kill(os.getpid(), signal.SIGINT)  # the stop is under way: noted, not raised
    assert our_handlers.late() == signal.SIGINT and our_handlers.terminated()


def test_once_settled_signals_are_only_noted(our_handlers):
    our_handlers.settle()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        os.kill(os.getpid(), sig)
    assert our_handlers.late() == signal.SIGTERM and not our_handlers.terminated()


_TUNE_RUN = """
import threading

def run(step):
    experiment_interrupted_event = threading.Event()  # as ray.tune.tune.run names its stop event
    experiment_interrupted_event.set()  # Tune's SIGINT handler fired
    step()
"""


def test_a_second_signal_while_tune_stops_is_only_noted(our_handlers):
    """Tune's handler took the first Ctrl-C and put ours back; a KeyboardInterrupt now would cut short the
    experiment state Tune saves one last time."""
    tune = {"__name__": "ray.tune.tune"}
    exec(_TUNE_RUN, tune)
    tune["run"](lambda: os.kill(os.getpid(), signal.SIGTERM))  # no KeyboardInterrupt
    assert not our_handlers.terminated()  # the stop began with Ctrl-C: exit 130
    assert our_handlers.fit_interrupted()


# before the launcher's heavy imports: a signal as `import torch` begins (the first heavy import)
_AT_IMPORT = """
import os, runpy, signal, sys

class SignalAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{sig})
        return None

sys.meta_path.insert(0, SignalAtImport())
sys.argv[0] = "search.launch"
runpy.run_module("search.launch", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("sig, code, how", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")])
def test_a_signal_while_the_launcher_imports_is_one_line(tmp_path, sig, code, how):
    proc = subprocess.run([sys.executable, "-c", _AT_IMPORT.format(sig=sig), str(SMOKE), "--storage",
                           str(tmp_path / "store"), *ARGS], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(how) and "nothing was kept" in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "store").exists()


def _launch(*args, prelude=""):
    """A real launcher; `prelude`: Python run first in its process (a patch that sends signals at a moment)."""
    run = [sys.executable, "-u", "-c", prelude + _RUN_LAUNCHER] if prelude else [sys.executable, "-u", "-m", "search.launch"]
    return subprocess.Popen([*run, str(SMOKE), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=ROOT)


_RUN_LAUNCHER = """
import runpy, sys
sys.argv[0] = "search.launch"
runpy.run_module("search.launch", run_name="__main__", alter_sys=True)
"""
REAL = ["--set", "train.epochs=2", "--num-samples", "2", "--set", "search.final_k=0"]


def _signal_when(proc, first_line: str, delay_s: float, sigs) -> str:
    """Send `sigs` (0.3 s apart) `delay_s` after the launcher printed a line starting with `first_line`; the
    whole output once it has ended."""
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(first_line):
                time.sleep(delay_s)
                for i, sig in enumerate(sigs):
                    time.sleep(0.3 if i else 0)
                    proc.send_signal(sig)
                break
        return "".join(lines) + proc.communicate(timeout=180)[0]
    finally:
        kill_session(proc)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("first_line, delay_s, sigs", [
    ("experiment ", 0.5, (signal.SIGTERM,)),
    ("search: ", 0.0, (signal.SIGTERM,)),
    ("search: ", 0.0, (signal.SIGTERM, signal.SIGTERM)),
], ids=["while Ray starts", "before the first result", "twice, 0.3 s apart, mid-search"])
def test_sigterm_early_in_a_real_launch(tmp_path, first_line, delay_s, sigs):
    """Moments set by the launcher's own lines (the search's first progress line comes from inside Tune's
    loop, before any trial reports), so that a faster machine meets the same moment. Once a crash (a
    TypeError in phases: trials with no result have no config) and an exit 0; a second SIGTERM once ended it
    with exit 1, no line at all and the parent run RUNNING."""
    proc = _launch("--storage", str(tmp_path), "--name", "early", *REAL)
    out = _signal_when(proc, first_line, delay_s, sigs)
    assert proc.returncode == 143, out
    assert "Traceback" not in out and re.search(r"stopped by SIGTERM.*--resume", out), out
    assert _parent_status(tmp_path / "early") == "KILLED"


_SIGNALS_IN_SHUTDOWN = """
import os, signal, threading, time
import ray

shutdown = ray.shutdown

def signalled_shutdown(*args, **kwargs):  # SIGTERMs while Ray shuts down, after the answer
    def send():
        for delay in (0.05, 0.25, 0.5):
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=send, daemon=True).start()
    return shutdown(*args, **kwargs)

ray.shutdown = signalled_shutdown
"""


@pytest.mark.slow
@pytest.mark.ray
def test_sigterm_while_ray_shuts_down_after_the_answer_ends_finished(tmp_path):
    """The launch has finished (parent run FINISHED, the answer printed) when ray.shutdown runs, where Ray's
    crash handler puts SIGTERM back to its default unless the driver turns it off: a SIGTERM then must not
    kill the process (-15, no line). It ends with exit 0."""
    proc = _launch("--storage", str(tmp_path), "--name", "late", *REAL, prelude=_SIGNALS_IN_SHUTDOWN)
    out = _signal_when(proc, "\0never", 0.0, ())
    assert proc.returncode == 0, out
    assert "answer:" in out and "Traceback" not in out and "--resume" not in out, out
    assert _parent_status(tmp_path / "late") == "FINISHED"
