"""The experiment folder's own MLflow store (`mlflow.db`), made by copying an empty one.

A new SQLite store costs MLflow its whole chain of schema migrations, 2-7 s on a 2-core machine, on every
launch; the empty result depends only on the MLflow version. So the first launch makes one in the cache
folder ($MTL_CACHE_DIR, default ~/.cache/mtl_core) and every later new experiment starts from a copy of it,
its Default experiment then pointed at the experiment's own `mlartifacts/0` and stamped now, as MLflow would
have made it. Anything unexpected (no cache folder, a cached file that is not exactly such a store or is not
the user's own, a failed copy, an MLflow whose store or schema moved) falls back to MLflow creating the store
itself, as before.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
import time
from contextlib import closing
from pathlib import Path

import mlflow

from mtl_core.data.arrays import default_cache_dir
from search.io.files import Files


def default_tracking_uri(exp_dir: Path) -> str:
    """The experiment folder's own store, used without --mlflow-uri."""
    return f"sqlite:///{(exp_dir / Files.MLFLOW_DB).resolve()}"


def template_path() -> Path:
    return default_cache_dir() / "mlflow-store" / f"empty-{mlflow.__version__}.db"


def start_store(exp_dir: Path) -> None:
    """Put an empty MLflow store at exp_dir/mlflow.db unless one is there (a --resume keeps its own)."""
    target = exp_dir / Files.MLFLOW_DB
    if target.exists():
        return
    template = _template()
    if template is None:
        return  # MLflow creates it on first use
    part = exp_dir / f".{Files.MLFLOW_DB}.part"
    try:
        shutil.copyfile(template, part)
        now = int(time.time() * 1000)
        with closing(sqlite3.connect(part)) as db, db:
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                       "WHERE experiment_id = 0", ((exp_dir / "mlartifacts" / "0").resolve().as_uri(), now, now))
        os.replace(part, target)  # whole or absent, never half a store
    except (OSError, sqlite3.Error):
        part.unlink(missing_ok=True)  # and MLflow makes the store itself


def _template() -> Path | None:
    path = template_path()
    if _is_empty_store(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # two first launches at once each make their own
            made = Path(tmp) / "empty.db"
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            uri = f"sqlite:///{made}"
            store = SqlAlchemyStore(uri, str(path.parent / "mlruns"))
            store.engine.dispose()
            getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)  # MLflow's per-URI engine cache
            made.chmod(0o644)  # whatever the umask: a group-writable template would be refused below
            os.replace(made, path)
    except Exception:  # any failure: no template, and MLflow makes the store as it always did
        return None
    return path if _is_empty_store(path) else None


def _is_empty_store(path: Path) -> bool:
    """The user's own file, writable by nobody else, holding MLflow's current schema and nothing but the
    Default experiment: what a fresh store is, and all a copy may carry into an experiment."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            return False
        from mlflow.store.db.utils import _get_latest_schema_revision

        with closing(sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)) as db:
            versions = db.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = db.execute("SELECT experiment_id FROM experiments").fetchall()
            runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return versions == [(_get_latest_schema_revision(),)] and experiments == [(0,)] and runs == 0
    except Exception:  # missing, unreadable, not SQLite, another schema, an MLflow without that function
        return False
