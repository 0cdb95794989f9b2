"""Credentials in a tracking URI are never echoed: not in the error line, on the console or in
launch_state.json; http(s) credentials reach MLflow through its environment variables instead."""
import json

import pytest

import search.run.sweep
from search.space.parse import load_space
from search.tracking.tracker import credentials_to_env, mask_uri, ui_hint
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("uri, shown", [
    ("http://alice:s3cret@mlflow.example:5000/x", "http://alice:***@mlflow.example:5000/x"),
    ("https://tok3n@mlflow.example", "https://***@mlflow.example"),
    ("postgresql://bob:p%40ss@db:5432/mlflow", "postgresql://bob:***@db:5432/mlflow"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
])
def test_mask_uri(uri, shown):
    assert mask_uri(uri) == shown


def test_http_credentials_move_to_mlflow_s_environment(monkeypatch):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert credentials_to_env("http://alice:p%40ss@host:5000/") == "http://host:5000/"
    import os

    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    assert credentials_to_env("postgresql://bob:pw@db/m") == "postgresql://bob:pw@db/m"  # SQLAlchemy needs them inline


def test_the_state_file_and_the_console_never_hold_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(search.run.sweep, "open_parent", lambda *a, **k: "run123")
    spec = load_space(ROOT / "spaces" / "smoke.yaml")
    uri = "postgresql://bob:s3cret@db:5432/mlflow"
    (tmp_path / "space.yaml").write_text("x: 1")
    search.run.sweep._open(spec, tmp_path, uri, resume=False)
    state = json.loads((tmp_path / "launch_state.json").read_text())
    assert state["tracking_uri"] == "postgresql://bob:***@db:5432/mlflow"
    assert "s3cret" not in ui_hint(uri, "1")
