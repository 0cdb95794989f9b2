"""The experiment folder's own MLflow store (`mlflow.db`), made by copying an empty one.

A new SQLite store costs MLflow its whole chain of schema migrations, 2-7 s on a 2-core machine, on every
launch; the empty result depends only on the MLflow version. So the first launch makes one in the cache
folder ($MTL_CACHE_DIR, default ~/.cache/mtl_core) and every later new experiment starts from a copy of it.
Anything unexpected (no cache folder, a file there that is not such a store, an MLflow that moved its store
class) falls back to MLflow creating the store itself, as before.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import mlflow

from mtl_core.data.arrays import default_cache_dir

STORE = "mlflow.db"


def template_path() -> Path:
    return default_cache_dir() / "mlflow-store" / f"empty-{mlflow.__version__}.db"


def start_store(exp_dir: Path) -> None:
    """Put an empty MLflow store at exp_dir/mlflow.db unless one is there (a --resume keeps its own)."""
    target = exp_dir / STORE
    if target.exists():
        return
    template = _template()
    if template is None:
        return  # MLflow creates it on first use
    part = exp_dir / f".{STORE}.part"
    shutil.copyfile(template, part)
    os.replace(part, target)  # whole or absent, never half a store


def _template() -> Path | None:
    path = template_path()
    if _is_store(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # two first launches at once each make their own
            made = Path(tmp) / "empty.db"
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # the Default experiment (MLflow makes it; nothing here logs to it) points into the cache, not into
            # whatever folder the first launch ran from
            store = SqlAlchemyStore(f"sqlite:///{made}", str(path.parent / "mlruns"))
            store.engine.dispose()
            os.replace(made, path)
    except Exception:  # any failure: no template, and MLflow makes the store as it always did
        return None
    return path if _is_store(path) else None


def _is_store(path: Path) -> bool:
    """A SQLite file with MLflow's schema version recorded: what MLflow itself would accept to open."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return bool(db.execute("SELECT version_num FROM alembic_version").fetchone())
    except sqlite3.Error:
        return False
