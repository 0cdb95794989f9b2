"""From a validated Config to training-ready splits: resolve the data, build caches, tokenise."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mtl_core.config import Config
from mtl_core.data.arrays import default_cache_dir, load_split
from mtl_core.data.dataset import SplitData, token_rows
from mtl_core.data.folds import resplit
from mtl_core.data.layout import DataError
from mtl_core.data.synth import default_synthetic_dir
from mtl_core.data.text_cache import cached_hidden
from mtl_core.model.text_encoder import TextEncoder, load_text_encoder

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    root: Path
    encoder: TextEncoder
    splits: dict[str, SplitData]


def cache_root(cfg: Config) -> Path:
    return Path(cfg.data.cache_dir).expanduser() if cfg.data.cache_dir else default_cache_dir()


def data_root(cfg: Config) -> Path:
    """The dataset folder: the configured one, or the embedded synthetic default (written once)."""
    if cfg.data.root is not None:
        return Path(cfg.data.root).expanduser()
    s = cfg.data.synthetic
    return default_synthetic_dir(cache_root(cfg), s.seed, s.n_train, s.n_val, s.n_test)


def _check_disjoint(root: Path, splits: dict[str, SplitData]) -> None:
    """No clip in two splits: its test score would be of a clip it trained on (under data.cv, pooled train and
    test put it in a training fold and a test fold). One line naming the clip and both splits."""
    seen: dict[str, str] = {}
    for split, data in splits.items():
        for cid in data.arrays.clip_ids:
            if seen.setdefault(cid, split) != split:
                raise DataError(f"{root}: clip {cid} is in split {seen[cid]!r} and in split {split!r}; a clip may be "
                                f"in one split only")


def prepare(cfg: Config, device: torch.device, splits: tuple[str, ...] = ("train", "val", "test"),
            encoder: TextEncoder | None = None) -> Prepared:
    root = data_root(cfg)
    encoder = encoder or load_text_encoder(cfg.model.text_encoder)
    files = {"train": cfg.data.train_file, "val": cfg.data.val_file, "test": cfg.data.test_file}
    cv = cfg.data.cv
    wanted, splits = splits, (("train", "val", "test") if cv.folds else splits)  # a fold draws on every split
    out = {}
    for split in splits:
        arrays = load_split(root, split, use_cache=cfg.data.use_cache, cache_dir=cache_root(cfg),
                            derive_binary=cfg.data.derive_binary, video_len=cfg.data.video_len,
                            audio_len=cfg.data.audio_len, files=files)
        tokenizer = encoder.tokenizer if cfg.data.retokenize else None  # loaded only when needed
        rows = token_rows(arrays, tokenizer, cfg.data.retokenize, cfg.data.text_max_len)
        vocab = encoder.vocab_size
        if any(len(r) and (r.max() >= vocab or r.min() < 0) for r in rows):
            raise DataError(f"{root}: split {split!r} has token ids outside the {cfg.model.text_encoder} "
                            f"vocabulary ({vocab}); set data.retokenize: true")
        hidden = None
        if cfg.model.freeze_text:
            hidden = cached_hidden(encoder, rows, cache_root(cfg), device)
        out[split] = SplitData(arrays, rows, cfg.tasks, hidden)
        log.info("%s: %d clips, %d without video, %d without audio", split, len(arrays),
                 arrays.missing_video, arrays.missing_audio)
    _check_disjoint(root, out)
    if cv.folds:
        out = resplit(out, cv.folds, cv.fold, cv.shuffle)
        out = {split: out[split] for split in wanted}
        log.info("fold %d of %d (shuffle %d): %s", cv.fold, cv.folds, cv.shuffle,
                 ", ".join(f"{k} {len(v)} clips" for k, v in out.items()))
    return Prepared(root, encoder, out)
