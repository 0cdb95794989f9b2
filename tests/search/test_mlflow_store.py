"""A new experiment's MLflow store is a copy of a cached empty one: MLflow opens it as its own, each
experiment's runs stay its own, its Default experiment points into the experiment, and a cache that holds
anything else, or a copy that fails, falls back to MLflow making the store, leaving nothing half-made."""
import shutil
import sqlite3
from contextlib import closing

import pytest
from mlflow import MlflowClient

import search.tracking.store as mlflow_store
from search.tracking.store import _is_empty_store, start_store, template_path


def _uri(folder):
    return f"sqlite:///{folder / 'mlflow.db'}"


def test_a_new_store_is_a_copy_mlflow_accepts_and_each_experiment_keeps_its_own_runs(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        start_store(tmp_path / name)
        assert (tmp_path / name / "mlflow.db").is_file() and not list((tmp_path / name).glob(".*part"))
        client = MlflowClient(tracking_uri=_uri(tmp_path / name))
        exp = client.create_experiment(name, artifact_location=(tmp_path / name / "mlartifacts").as_uri())
        client.create_run(exp)
    assert _is_empty_store(template_path())  # the copies came from it, and it stayed empty
    for name in ("a", "b"):
        client = MlflowClient(tracking_uri=_uri(tmp_path / name))
        assert {e.name for e in client.search_experiments()} == {"Default", name}  # no other experiment's rows
        assert len(client.search_runs([client.get_experiment_by_name(name).experiment_id])) == 1
        default = client.get_experiment_by_name("Default")
        assert default.artifact_location == (tmp_path / name / "mlartifacts" / "0").as_uri()  # as if made here


def test_an_existing_store_is_kept(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"a resumed experiment's store")
    start_store(tmp_path)
    assert (tmp_path / "mlflow.db").read_bytes() == b"a resumed experiment's store"


def _plant(change: str, scratch):
    """A template that is not an empty store of this MLflow, made from a good one."""
    scratch.mkdir()
    start_store(scratch)  # makes the good template
    path = template_path()
    if change == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif change == "group-writable":
        path.chmod(0o664)
    else:
        with closing(sqlite3.connect(path)) as db, db:
            db.execute({"old schema": "UPDATE alembic_version SET version_num = 'an-old-one'",
                        "a planted experiment": "INSERT INTO experiments (experiment_id, name, artifact_location, "
                        "lifecycle_stage, creation_time, last_update_time) VALUES (7, 'theirs', '/x', 'active', 0, 0)",
                        }[change])


@pytest.mark.parametrize("change", ["truncated", "group-writable", "old schema", "a planted experiment"])
def test_a_cached_file_that_is_not_exactly_an_empty_store_is_never_copied(tmp_path, change):
    _plant(change, tmp_path / "first")
    start_store(tmp_path)
    assert _is_empty_store(template_path())  # made again
    client = MlflowClient(tracking_uri=_uri(tmp_path))
    assert [e.name for e in client.search_experiments()] == ["Default"]


def test_without_a_cache_folder_mlflow_makes_the_store(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "exp").mkdir()
    start_store(tmp_path / "exp")
    assert list((tmp_path / "exp").iterdir()) == []  # nothing copied, nothing half-made
    assert [e.name for e in MlflowClient(tracking_uri=_uri(tmp_path / "exp")).search_experiments()] == ["Default"]


def test_a_failed_copy_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(src, dst):
        with open(src, "rb") as f, open(dst, "wb") as g:
            shutil.copyfileobj(f, g, length=10)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(mlflow_store.shutil, "copyfile", disk_full)
    start_store(tmp_path)
    assert list(tmp_path.iterdir()) == []
