"""A start or a resume that fails says so in one line and never leaves the MLflow parent run RUNNING: Ray that
does not start (a fresh start is undone, a resumed experiment's parent run ends FAILED), the experiment's own
mlflow.db damaged (exit 1 naming that file, not the tracking URI), and Tune's state cut short (named before the
parent run is reopened)."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import search.run.phases
import search.run.sweep
from search.run.launch import main
from test_interrupts import _parent_status, no_ray  # noqa: F401 (a fixture: Ray replaced by no-ops)

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"
ARGS = ["--name", "x", "--set", "search.final_k=0", "--set", "train.epochs=1"]
pytestmark = pytest.mark.slow  # each prepares the data and opens an MLflow store


def _no_tmpdir(*args, **kwargs):
    raise NotADirectoryError(20, "Not a directory", "/tmp/a-file/ray")  # what ray.init says of a TMPDIR that is a file


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture
def finished(tmp_path, capsys, no_ray) -> Path:
    """An experiment that ran to its end (with Ray and Tune replaced), its parent run FINISHED."""
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 0
    capsys.readouterr()
    assert _parent_status(tmp_path / "x") == "FINISHED"
    return tmp_path / "x"


def test_ray_that_does_not_start_undoes_a_fresh_start(tmp_path, capsys, monkeypatch, no_ray):
    monkeypatch.setattr(search.run.sweep.ray, "init", _no_tmpdir)
    assert main([str(SMOKE), "--storage", str(tmp_path), *ARGS]) == 1
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 1 and "Ray did not start (NotADirectoryError" in errors[0], err
    assert "run the same command again" in errors[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the same command runs again


def test_ray_that_does_not_start_on_resume_marks_the_parent_run_failed(finished, capsys, monkeypatch):
    monkeypatch.setattr(search.run.sweep.ray, "init", _no_tmpdir)
    assert main([str(SMOKE), "--storage", str(finished.parent), *ARGS, "--resume"]) == 1
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 1 and "Ray did not start" in errors[0] and "--resume" in errors[0], err
    assert _parent_status(finished) == "FAILED" and (finished / "launch_state.json").is_file()


def test_a_damaged_mlflow_db_on_resume_is_named_exit_1(finished):
    """An SQLite header and nothing usable after it: MLflow fails only when it opens the parent run (in a new
    launcher: this process keeps the store it opened)."""
    db = finished / "mlflow.db"
    with db.open("r+b") as f:
        f.seek(100)
        f.write(b"\x8b not SQLite pages " * 400)
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(SMOKE), "--storage", str(finished.parent), *ARGS,
                           "--resume"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    errors = _errors(proc.stderr)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(errors) == 1 and f"{db}: cannot open the experiment's MLflow store" in errors[0], proc.stderr
    assert "--mlflow-uri" not in proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_a_cut_short_tuner_state_on_resume_leaves_the_parent_run_as_it_was(finished, capsys, monkeypatch):
    """Tune unpickles tuner.pkl after the parent run is reopened: a file cut short is named before that."""
    from search.tune.tuner import build_tuner

    monkeypatch.setattr(search.run.phases, "build_tuner", build_tuner)  # the real one, which restores the phase
    (finished / "search").mkdir(exist_ok=True)
    (finished / "search" / "tuner.pkl").write_bytes(pickle.dumps({"state": list(range(2000))}, protocol=5)[:3000])
    assert main([str(SMOKE), "--storage", str(finished.parent), *ARGS, "--resume"]) == 1
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 1 and "search/tuner.pkl: not a whole pickle" in errors[0], err
    assert "Traceback" not in err and _parent_status(finished) == "FINISHED"


@pytest.mark.ray
def test_a_tmpdir_that_is_a_file_fails_the_start_in_one_line_and_keeps_nothing(tmp_path):
    """Ray keeps its session files under TMPDIR: a real launcher, whose ray.init fails on it."""
    (tmp_path / "a-file").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(SMOKE), "--storage", str(tmp_path / "store"),
                           *ARGS], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp_path / "a-file")})
    errors = _errors(proc.stderr)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(errors) == 1 and "Ray did not start" in errors[0] and str(tmp_path / "a-file") in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr and list((tmp_path / "store").iterdir()) == []
