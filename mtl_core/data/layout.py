"""Where things are in a dataset folder, and how one clip's record and features are read.

Layout (the format users already have)::

    DATA_DIR/train.json, val.json, test.json       {clip_id: record}
    DATA_DIR/i3d/{clip_id}_rgb.npy, _flow.npy      [T, 1024] each; the model input is their sum
    DATA_DIR/vggish/{clip_id}_vggish.npy           [T, 128]
"""
from __future__ import annotations

import json
import unicodedata
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


# A clip id names its feature files (`{id}_vggish.npy`, the longest suffix): the name must fit in 255 bytes.
MAX_CLIP_ID_BYTES = 255 - len("_vggish.npy")


def clip_id_problem(clip_id: Any) -> str | None:
    """Why a clip id cannot name files in the dataset folder (a path, `.`/`..`, a control character, too
    long), or None: ids are read from the split files and must never lead outside the feature folders."""
    text = clip_id if isinstance(clip_id, str) else ""
    if not text or text in (".", "..") or "/" in text or "\\" in text or \
            any(unicodedata.category(c) in ("Cc", "Cs") for c in text) or \
            len(text.encode("utf-8")) > MAX_CLIP_ID_BYTES:
        shown = repr(text) if len(text) <= 60 else f"{text[:40]!r}... ({len(text)} characters)"
        return (f"clip id {shown} is not a plain file name (no /, \\, . or .., no control characters, at most "
                f"{MAX_CLIP_ID_BYTES} bytes in UTF-8)")
    return None


def _plain(clip_id: str) -> str:
    if (why := clip_id_problem(clip_id)) is not None:
        raise DataError(why)
    return clip_id


def video_paths(root: Path, clip_id: str) -> tuple[Path, Path]:
    clip_id = _plain(clip_id)
    return root / "i3d" / f"{clip_id}_rgb.npy", root / "i3d" / f"{clip_id}_flow.npy"


def audio_path(root: Path, clip_id: str) -> Path:
    return root / "vggish" / f"{_plain(clip_id)}_vggish.npy"


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json would read NaN, Infinity and -Infinity


def loads(text: str | bytes) -> Any:
    """JSON as the standard has it: NaN and Infinity refused, and nesting bounded (RecursionError, at the
    interpreter's recursion limit) said as a ValueError, as any other malformed text."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def parse_label(value: Any) -> int:
    """A one-hot pair ([1,0] absent, [0,1] present) or a 0/1 int; raises ValueError otherwise."""
    if isinstance(value, str):
        try:
            value = loads(value)
        except ValueError as exc:
            raise ValueError(f"not a one-hot pair or 0/1 ({exc})") from None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(v in (0, 1) for v in value) and sum(value) == 1:
        return int(value[1] == 1)
    raise ValueError(f"not a one-hot pair or 0/1: {_short(value)}")


def _as_list(value: Any) -> list:
    return loads(value) if isinstance(value, str) else list(value)


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
        raw = loads(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: unreadable JSON ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    except ValueError as exc:  # not UTF-8, not JSON, NaN/Infinity, nested too deeply
        raise DataError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping clip ids to records")
    clip_ids, token_ids, words = [], [], []
    labels = np.full((len(raw), len(TASKS)), -1, dtype=np.int8)
    for i, (clip_id, rec) in enumerate(raw.items()):
        if (why := clip_id_problem(clip_id)) is not None:
            raise DataError(f"{path}: {why}")
        where = f"{path}: clip {clip_id}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: record is not an object")
        try:
            ids = [int(t) for t in _as_list(rec.get("indexes", []))]
            toks = [str(w) for w in _as_list(rec.get("words", []))]
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise DataError(f"{where}: `indexes`/`words` are not lists") from None
        if any(not 0 <= t < 2**31 for t in ids):  # stored as int32
            raise DataError(f"{where}: `indexes` holds {_short(next(t for t in ids if not 0 <= t < 2**31))}, "
                            f"not a token id")
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
