"""One split as flat arrays, read either from the source files or from the columnar cache.

The cache is one Arrow IPC file per split (uncompressed, so it can be memory-mapped and read
zero-copy): video and audio padded to fixed lengths, tokens as a list column, labels.
It is rebuilt when the source files change (fingerprint of names, sizes and mtimes).
"""
from __future__ import annotations

import hashlib
import json
import os
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtl_core import TASKS
from mtl_core.data.layout import (
    AUDIO_DIM, SPLITS, VIDEO_DIM, find_split_file, load_audio, load_video, read_split, words_to_text,
)

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when the cache layout changes


@dataclass
class SplitArrays:
    clip_ids: list[str]
    token_values: np.ndarray  # int32, all clips' token ids concatenated
    token_offsets: np.ndarray  # int32 [N+1]
    texts: list[str]  # detokenised words, for re-tokenisation
    labels: np.ndarray  # int8 [N, len(TASKS)], -1 = missing
    video: np.ndarray  # float32 [N, video_len, 1024], zero-padded
    video_lens: np.ndarray  # int32 [N]; 0 = no video for that clip
    audio: np.ndarray  # float32 [N, audio_len, 128]
    audio_lens: np.ndarray  # int32 [N]; 0 = no audio

    def __len__(self) -> int:
        return len(self.clip_ids)

    def tokens(self, i: int) -> np.ndarray:
        return self.token_values[self.token_offsets[i]:self.token_offsets[i + 1]]

    @property
    def missing_video(self) -> int:
        return int((self.video_lens == 0).sum())

    @property
    def missing_audio(self) -> int:
        return int((self.audio_lens == 0).sum())


def _pad(seq: np.ndarray | None, length: int, dim: int) -> tuple[np.ndarray, int]:
    out = np.zeros((length, dim), np.float32)
    if seq is None or len(seq) == 0:
        return out, 0
    n = min(len(seq), length)
    out[:n] = seq[:n]
    return out, n


def read_source(root: Path, split: str, *, file_name: str | None = None, derive_binary: bool = False,
                video_len: int = 36, audio_len: int = 63) -> SplitArrays:
    """Read one split from the JSON file and the per-clip .npy features (the slow path)."""
    recs = read_split(find_split_file(root, split, file_name), derive_binary)
    n = len(recs.clip_ids)
    video = np.zeros((n, video_len, VIDEO_DIM), np.float32)
    audio = np.zeros((n, audio_len, AUDIO_DIM), np.float32)
    video_lens = np.zeros(n, np.int32)
    audio_lens = np.zeros(n, np.int32)
    for i, clip_id in enumerate(recs.clip_ids):
        video[i], video_lens[i] = _pad(load_video(root, clip_id), video_len, VIDEO_DIM)
        audio[i], audio_lens[i] = _pad(load_audio(root, clip_id), audio_len, AUDIO_DIM)
    lengths = np.array([len(t) for t in recs.token_ids], np.int32)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((t for ids in recs.token_ids for t in ids), np.int32, count=int(offsets[-1]))
    return SplitArrays(recs.clip_ids, values, offsets, [words_to_text(w) for w in recs.words],
                       recs.labels, video, video_lens, audio, audio_lens)


# ---------------------------------------------------------------------------------------------
# columnar cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("MTL_CACHE_DIR", Path.home() / ".cache" / "mtl_core"))


def source_fingerprint(root: Path, **params) -> str:
    """Hash of every source file's name, size and mtime plus the parameters that shape the cache."""
    h = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **params}, sort_keys=True).encode())
    for sub in ("", "i3d", "vggish"):
        folder = root / sub
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            entries = sorted((e.name, e.stat()) for e in it if e.is_file() and e.name.endswith((".json", ".npy")))
        for name, st in entries:
            h.update(f"{sub}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


def feature_cache_dir(root: Path, cache_dir: Path | None) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return (cache_dir or default_cache_dir()) / "features" / key


def _to_table(arr: SplitArrays) -> pa.Table:
    n, vl, _ = arr.video.shape
    al = arr.audio.shape[1]
    tokens = pa.ListArray.from_arrays(pa.array(arr.token_offsets, pa.int32()), pa.array(arr.token_values, pa.int32()))
    return pa.table({
        "clip_id": pa.array(arr.clip_ids, pa.string()),
        "tokens": tokens,
        "text": pa.array(arr.texts, pa.string()),
        "labels": pa.FixedSizeListArray.from_arrays(pa.array(arr.labels.reshape(-1), pa.int8()), len(TASKS)),
        "video": pa.FixedSizeListArray.from_arrays(pa.array(arr.video.reshape(-1)), vl * VIDEO_DIM),
        "video_len": pa.array(arr.video_lens, pa.int32()),
        "audio": pa.FixedSizeListArray.from_arrays(pa.array(arr.audio.reshape(-1)), al * AUDIO_DIM),
        "audio_len": pa.array(arr.audio_lens, pa.int32()),
    })


def write_arrow(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # per-process: concurrent builders never collide
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, table.num_rows))  # one chunk: zero-copy reads
    tmp.replace(path)  # atomic: a reader never sees half a file


def read_arrow(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _flat(col: pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _from_table(table: pa.Table, video_len: int, audio_len: int) -> SplitArrays:
    n = table.num_rows
    tokens = _flat(table["tokens"])
    # .values of a fixed-size list column is a zero-copy view of the memory-mapped file.
    video = _flat(table["video"]).values.to_numpy(zero_copy_only=True).reshape(n, video_len, VIDEO_DIM)
    audio = _flat(table["audio"]).values.to_numpy(zero_copy_only=True).reshape(n, audio_len, AUDIO_DIM)
    return SplitArrays(
        clip_ids=table["clip_id"].to_pylist(),
        token_values=tokens.values.to_numpy(zero_copy_only=True),
        token_offsets=(tokens.offsets.to_numpy() - tokens.offsets[0].as_py()).astype(np.int32),
        texts=table["text"].to_pylist(),
        labels=_flat(table["labels"]).values.to_numpy(zero_copy_only=True).reshape(n, len(TASKS)),
        video=video, video_lens=table["video_len"].to_numpy(),
        audio=audio, audio_lens=table["audio_len"].to_numpy(),
    )


def _stamped(stamp: Path) -> str | None:
    """The fingerprint a cache folder was built for; None when there is none or it is unreadable (a build
    cut short, a stranger's file): the cache is then rebuilt."""
    try:
        if stamp.stat().st_size > 2**16:
            return None
        recorded = json.loads(stamp.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return recorded.get("fingerprint") if isinstance(recorded, dict) else None


def build_cache(root: Path, *, cache_dir: Path | None = None, derive_binary: bool = False, video_len: int = 36,
                audio_len: int = 63, files: dict[str, str | None] | None = None, force: bool = False) -> Path:
    """Write the columnar cache of every split unless an up-to-date one exists; return its folder."""
    files = files or {}
    params = dict(derive_binary=derive_binary, video_len=video_len, audio_len=audio_len,
                  files={s: files.get(s) for s in SPLITS})
    folder = feature_cache_dir(root, cache_dir)
    fingerprint = source_fingerprint(root, **params)
    stamp = folder / "fingerprint.json"
    if not force and _stamped(stamp) == fingerprint:
        return folder
    log.info("building the columnar feature cache of %s in %s", root, folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for split in SPLITS:
        arr = read_source(root, split, file_name=files.get(split), derive_binary=derive_binary,
                          video_len=video_len, audio_len=audio_len)
        write_arrow(_to_table(arr), folder / f"{split}.arrow")
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "root": str(root.resolve()), **params}))
    return folder


def load_split(root: Path, split: str, *, use_cache: bool = True, cache_dir: Path | None = None,
               derive_binary: bool = False, video_len: int = 36, audio_len: int = 63,
               files: dict[str, str | None] | None = None) -> SplitArrays:
    """One split's arrays: from the (re)built columnar cache by default, else from the source."""
    if not use_cache:
        return read_source(root, split, file_name=(files or {}).get(split), derive_binary=derive_binary,
                           video_len=video_len, audio_len=audio_len)
    folder = build_cache(root, cache_dir=cache_dir, derive_binary=derive_binary, video_len=video_len,
                         audio_len=audio_len, files=files)
    return _from_table(read_arrow(folder / f"{split}.arrow"), video_len, audio_len)
