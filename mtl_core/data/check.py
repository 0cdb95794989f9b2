"""`python -m mtl_core.data check DATA_DIR`: is this dataset usable, and what does it hold?"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtl_core import TASKS
from mtl_core.data.layout import (
    AUDIO_DIM, SPLITS, VIDEO_DIM, DataError, audio_path, find_split_file, read_split, video_paths,
)


def _check_array(path: Path, dim: int, problems: list[str]) -> bool:
    """True when the file exists; records a problem for a bad width or non-finite values."""
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable .npy ({exc})")
        return True
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] == 0:
        problems.append(f"{path}: expected shape [T, {dim}] with T >= 1, got {list(arr.shape)}")
    elif not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        problems.append(f"{path}: expected real numbers, got dtype {arr.dtype}")
    elif not np.isfinite(arr).all():
        problems.append(f"{path}: contains NaN or inf")
    return True


def check_dataset(root: Path, tokenizer=None, encoder_name: str = "minilm",
                  files: dict[str, str | None] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(summary lines, warnings, problems). Problems make the dataset unusable. `files`: split file names
    as configured (data.train_file, ...; None = found as training finds them)."""
    summary, warnings, problems = [], [], []
    seen: dict[str, str] = {}
    vocab_size = len(tokenizer) if tokenizer is not None else None
    for split in SPLITS:
        try:
            recs = read_split(find_split_file(root, split, (files or {}).get(split)))
        except DataError as exc:
            problems.append(str(exc))
            continue
        n = len(recs.clip_ids)
        if n == 0:
            problems.append(f"{recs.path}: split {split!r} is empty")
            continue
        for cid in recs.clip_ids:
            if cid in seen:
                problems.append(f"{recs.path}: clip {cid} is also in split {seen[cid]!r}")
            seen.setdefault(cid, split)
        no_video = no_audio = 0
        for cid in recs.clip_ids:
            rgb, flow = video_paths(root, cid)
            has_v = _check_array(rgb, VIDEO_DIM, problems) & _check_array(flow, VIDEO_DIM, problems)
            no_video += not has_v
            no_audio += not _check_array(audio_path(root, cid), AUDIO_DIM, problems)
        lens = np.array([len(t) for t in recs.token_ids])
        pos = ", ".join(
            f"{t} {int((recs.labels[:, j] == 1).sum())}" + ("" if (recs.labels[:, j] >= 0).all()
                                                              else f" ({int((recs.labels[:, j] < 0).sum())} unlabelled)")
            for j, t in enumerate(TASKS))
        summary.append(f"{split}: {n} clips ({recs.path.name}); positives: {pos}")
        summary.append(f"{split}: missing video {no_video}, missing audio {no_audio}; "
                       f"tokens min/median/max {lens.min()}/{int(np.median(lens))}/{lens.max()}")
        if tokenizer is not None:
            outside = sum(int(any(i >= vocab_size or i < 0 for i in ids)) for ids in recs.token_ids)
            summary.append(f"{split}: clips with ids outside the {encoder_name} vocabulary ({vocab_size}): {outside}")
            if outside:
                warnings.append(f"{split}: {outside} clips have token ids outside the {encoder_name} vocabulary; "
                                f"train with data.retokenize: true")
            agree = [_agreement(tokenizer, ids, words) for ids, words in zip(recs.token_ids, recs.words) if words]
            if agree and float(np.mean(agree)) < 0.5:
                warnings.append(f"{split}: the ids do not spell the `words` in the {encoder_name} vocabulary "
                                f"(agreement {np.mean(agree):.0%}); they look like another BERT vocabulary "
                                f"(e.g. cased ids with an uncased encoder): train with data.retokenize: true")
    return summary, warnings, problems


def _agreement(tokenizer, ids: list[int], words: list[str]) -> float:
    size = len(tokenizer)
    tokens = set(tokenizer.convert_ids_to_tokens([i for i in ids if 0 <= i < size]))
    return len(set(words) & tokens) / len(set(words))


def split_modalities(root: Path, split: str = "train", file_name: str | None = None) -> tuple[str, ...]:
    """The modalities at least one clip of `split` has (text always; video and audio by their files), without
    reading any array: what a pretraining task can be checked against before anything starts."""
    from mtl_core import MODALITIES

    recs = read_split(find_split_file(root, split, file_name))
    has_video = any(all(p.is_file() for p in video_paths(root, cid)) for cid in recs.clip_ids)
    has_audio = any(audio_path(root, cid).is_file() for cid in recs.clip_ids)
    return tuple(m for m, h in zip(MODALITIES, (True, has_video, has_audio)) if h)
