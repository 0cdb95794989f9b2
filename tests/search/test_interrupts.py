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

import search.finish
import search.launch
import search.phases
import search.sweep
from search.launch import main

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
    search.phases._fit(exp, "search")  # the launcher's own Tuner.fit path, with the Tune-like stand-in


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setattr(search.sweep.ray, "init", lambda *a, **k: None)
    monkeypatch.setattr(search.sweep.ray, "shutdown", lambda *a, **k: None)
    monkeypatch.setattr(search.phases, "build_tuner", lambda *a, **k: (_TuneLikeTuner(), 0))
    monkeypatch.setitem(search.phases.PHASES, "search", (_phase_without_trials,))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_checks_keeps_nothing(tmp_path, capsys, monkeypatch, sig, code):
    monkeypatch.setattr(search.launch, "_check_data", _send(sig))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == code
    err = capsys.readouterr().err
    assert err.strip().endswith("before the experiment started; nothing was kept (run the same command again)")
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_signal_while_the_data_is_prepared_removes_the_half_made_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search.sweep, "_prepare_data", _send(signal.SIGTERM))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 143
    assert "nothing was kept" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # a rerun of the same command is not blocked


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["ray start", "finish step"])
def test_a_sigterm_after_the_experiment_exists_is_143_with_the_resume_line(tmp_path, capsys, monkeypatch, no_ray,
                                                                            moment):
    """'finish step' comes after a (fake) Tune phase: Tune's SIGINT handler is still installed there, and
    swallowed the signal (exit 0, parent run FINISHED) until the launcher took SIGINT back after each fit."""
    if moment == "ray start":
        monkeypatch.setattr(search.sweep.ray, "init", _send(signal.SIGTERM))
    else:
        monkeypatch.setattr(search.finish, "_bow_floor", _send(signal.SIGTERM))
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 143
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM; continue with: python -m search.launch ")
    assert "--resume" in err and "Traceback" not in err
    assert _parent_status(tmp_path / "sig") == "KILLED"


def _launch(*args):
    return subprocess.Popen([sys.executable, "-u", "-m", "search.launch", str(SMOKE), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("delay_s", [0.5, 10.0], ids=["while Ray starts", "before the first result"])
def test_sigterm_early_in_a_real_launch(tmp_path, delay_s):
    """The issue's crash (a TypeError in phases: trials with no result have no config) and its exit 0."""
    proc = _launch("--storage", str(tmp_path), "--name", "early", "--set", "train.epochs=2", "--num-samples", "2",
                   "--set", "search.final_k=0")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("experiment "):
                time.sleep(delay_s)
                proc.send_signal(signal.SIGTERM)
                break
        out = "".join(lines) + proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, out
    assert "Traceback" not in out and re.search(r"stopped by SIGTERM.*--resume", out), out
    assert _parent_status(tmp_path / "early") == "KILLED"
