"""A new experiment's MLflow store is a copy of a cached empty one: MLflow opens it as its own, each
experiment's runs stay its own, and a cache that holds something else is never copied."""
import sqlite3
from contextlib import closing

from mlflow import MlflowClient

from search.mlflow_store import start_store, template_path


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
    assert template_path().is_file()
    for name in ("a", "b"):
        client = MlflowClient(tracking_uri=_uri(tmp_path / name))
        names = {e.name for e in client.search_experiments()}
        assert names == {"Default", name}  # the copy carried no other experiment's rows
        assert len(client.search_runs([client.get_experiment_by_name(name).experiment_id])) == 1
        default = client.get_experiment_by_name("Default")
        assert str(template_path().parent) in default.artifact_location  # not wherever the launcher ran


def test_an_existing_store_is_kept(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"a resumed experiment's store")
    start_store(tmp_path)
    assert (tmp_path / "mlflow.db").read_bytes() == b"a resumed experiment's store"


def test_a_cached_file_that_is_not_a_store_is_made_again(tmp_path):
    template_path().parent.mkdir(parents=True, exist_ok=True)
    template_path().write_bytes(b"SQLite format 3\0 but truncated")  # a disk that filled up, say
    start_store(tmp_path)
    with closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
    MlflowClient(tracking_uri=_uri(tmp_path)).search_experiments()
