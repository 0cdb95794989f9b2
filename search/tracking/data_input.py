"""The experiment's data folder as an MLflow dataset: the runs' input, with a digest that changes when the data does.

The dataset is a table of the folder's files by what they are (each split's JSON file; the I3D and VGGish feature
files, counted): name and size, so its digest tells two runs on other data apart without reading the clips. It
travels in the tracker's queue as plain values (`Tracker` turns them into MLflow's entities when it writes them).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_core.config import Config
from mtl_core.data.layout import SPLITS, find_split_file
from mtl_core.prepare import data_root

log = logging.getLogger(__name__)
CONTEXT = "mlflow.data.context"  # the input tag MLflow's UI shows beside the dataset
FEATURES = {"i3d": "*.npy", "vggish": "*.npy"}  # the feature folders (mtl_core.data.layout)


def data_files(root: Path, files: dict[str, str | None]) -> pd.DataFrame:
    """One row per split file (its name and bytes) and per feature folder (how many files, their bytes)."""
    rows = []
    for split in SPLITS:
        path = find_split_file(root, split, files.get(split))
        rows.append({"part": split, "file": path.name, "files": 1, "bytes": path.stat().st_size})
    for folder, pattern in FEATURES.items():
        found = [p.stat().st_size for p in (root / folder).glob(pattern)] if (root / folder).is_dir() else []
        rows.append({"part": folder, "file": f"{folder}/{pattern}", "files": len(found), "bytes": sum(found)})
    return pd.DataFrame(rows)


def dataset(cfg: Config) -> dict[str, Any] | None:
    """The data folder of `cfg` as the plain fields of an MLflow dataset; None (and a log line) when it cannot be
    read here (a driver without the data: the runs are logged without it)."""
    import mlflow.data

    root = data_root(cfg)
    d = cfg.data
    try:
        table = data_files(root, {"train": d.train_file, "val": d.val_file, "test": d.test_file})
        with warnings.catch_warnings():  # MLflow warns that a table without targets has none
            warnings.simplefilter("ignore")
            entity = mlflow.data.from_pandas(table, source=str(root), name=root.name or "data")._to_mlflow_entity()
    except Exception as exc:  # the dataset is context: never a reason to stop a launch
        log.warning("the data folder is not logged as the runs' dataset: %s", exc)
        return None
    return {k: getattr(entity, k) for k in ("name", "digest", "source_type", "source", "schema", "profile")}


def inputs(fields: dict[str, Any] | None, context: str) -> list[dict[str, Any]]:
    """`log_inputs`' `datasets` for the queue: the dataset, tagged with what the run did with it."""
    return [{"dataset": fields, "tags": {CONTEXT: context}}] if fields else []


def entities(datasets: list[dict[str, Any]]) -> list:
    """The queue's datasets as MLflow's `DatasetInput`s (bounded: a spool is read back from disk)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for item in datasets[:10]:
        fields = {k: str(v)[:100_000] if v is not None else None for k, v in dict(item["dataset"]).items()
                  if k in ("name", "digest", "source_type", "source", "schema", "profile")}
        tags = [InputTag(str(k)[:250], str(v)[:500]) for k, v in dict(item.get("tags") or {}).items()]
        out.append(DatasetInput(Dataset(**fields), tags))
    return out
