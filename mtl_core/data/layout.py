"""Where things are in a dataset folder, and how one clip's record and features are read.

Layout (the format users already have)::

    DATA_DIR/train.json, val.json, test.json       {clip_id: record}
    DATA_DIR/i3d/{clip_id}_rgb.npy, _flow.npy      [T, 1024] each; the model input is their sum
    DATA_DIR/vggish/{clip_id}_vggish.npy           [T, 128]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_core import TASKS

SPLITS = ("train", "val", "test")
VIDEO_DIM = 1024
AUDIO_DIM = 128
# Label fields of a record, in TASKS order; `y` is the binary task.
LABEL_FIELDS = {"binary": "y", "mature": "mature", "gory": "gory", "slapstick": "slapstick", "sarcasm": "sarcasm"}


class DataError(ValueError):
    """A problem with a dataset on disk: one line naming the file (and clip)."""


def find_split_file(root: Path, split: str, name: str | None = None) -> Path:
    """The JSON file of a split: the configured name, `{split}.json`, or the one file naming the split."""
    if name is not None:
        path = root / name
        if not path.is_file():
            raise DataError(f"{path}: split file for {split!r} not found")
        return path
    exact = root / f"{split}.json"
    if exact.is_file():
        return exact
    # Real releases use names such as training_features_multi_task_2.json.
    matches = sorted(p for p in root.glob("*.json") if split in p.stem.lower())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DataError(f"{root}: no JSON file for split {split!r} (expected {split}.json)")
    raise DataError(f"{root}: several JSON files match split {split!r}: {', '.join(p.name for p in matches)}")


def video_paths(root: Path, clip_id: str) -> tuple[Path, Path]:
    return root / "i3d" / f"{clip_id}_rgb.npy", root / "i3d" / f"{clip_id}_flow.npy"


def audio_path(root: Path, clip_id: str) -> Path:
    return root / "vggish" / f"{clip_id}_vggish.npy"


def parse_label(value: Any) -> int:
    """A one-hot pair ([1,0] absent, [0,1] present) or a 0/1 int; raises ValueError otherwise."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(v in (0, 1) for v in value) and sum(value) == 1:
        return int(value[1] == 1)
    raise ValueError(f"not a one-hot pair or 0/1: {value!r}")


def _as_list(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value)


MAX_SPLIT_BYTES = 2**30  # bounded like every file we load: json.loads of a larger one could take the machine's memory


@dataclass
class SplitRecords:
    """The text and labels of one split, read from its JSON file."""

    path: Path
    clip_ids: list[str]
    token_ids: list[list[int]]
    words: list[list[str]]
    labels: np.ndarray  # [N, len(TASKS)] int8; -1 = missing label (masked, never read as 0)


def read_split(path: Path, derive_binary: bool = False) -> SplitRecords:
    """Read one split file; raise DataError (file and clip named) on the first bad record."""
    try:
        if (size := path.stat().st_size) > MAX_SPLIT_BYTES:
            raise DataError(f"{path}: {size} bytes, more than a split file may hold ({MAX_SPLIT_BYTES}; the real "
                            f"training split's text and labels are about 3 MB)")
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping clip ids to records")
    clip_ids, token_ids, words = [], [], []
    labels = np.full((len(raw), len(TASKS)), -1, dtype=np.int8)
    for i, (clip_id, rec) in enumerate(raw.items()):
        where = f"{path}: clip {clip_id}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: record is not an object")
        try:
            ids = [int(t) for t in _as_list(rec.get("indexes", []))]
            toks = [str(w) for w in _as_list(rec.get("words", []))]
        except (ValueError, TypeError):
            raise DataError(f"{where}: `indexes`/`words` are not lists") from None
        for j, task in enumerate(TASKS):
            field = LABEL_FIELDS[task]
            if field in rec:
                try:
                    labels[i, j] = parse_label(rec[field])
                except (ValueError, TypeError) as exc:
                    raise DataError(f"{where}: label `{field}` {exc}") from None
        if derive_binary and labels[i, 0] < 0 and (labels[i, 1:] >= 0).all():
            labels[i, 0] = int(labels[i, 1:].max())
        clip_ids.append(str(clip_id))
        token_ids.append(ids)
        words.append(toks)
    return SplitRecords(path, clip_ids, token_ids, words, labels)


def load_video(root: Path, clip_id: str) -> np.ndarray | None:
    """rgb + flow as float32 [T, 1024], or None when either file is missing."""
    rgb_path, flow_path = video_paths(root, clip_id)
    if not (rgb_path.is_file() and flow_path.is_file()):
        return None
    rgb, flow = np.load(rgb_path), np.load(flow_path)
    t = min(len(rgb), len(flow))
    return (rgb[:t].astype(np.float32) + flow[:t].astype(np.float32)).reshape(t, -1)


def load_audio(root: Path, clip_id: str) -> np.ndarray | None:
    path = audio_path(root, clip_id)
    if not path.is_file():
        return None
    return np.load(path).astype(np.float32).reshape(-1, AUDIO_DIM)


def words_to_text(words: list[str]) -> str:
    """Undo WordPiece splitting so the encoder's own tokenizer can re-tokenise the clip."""
    return " ".join(words).replace(" ##", "")
