"""A synthetic Comic Mischief dataset in exactly the real on-disk layout, with planted task structure.

Every clip draws independent standard-normal latent factors; each task's logit mixes a few of them,
and each factor is visible only in certain modalities:

| factor      | seen in             | drives                                   |
|-------------|---------------------|------------------------------------------|
| `violence`  | video + text words  | mature and gory (the shared latent pair)  |
| `gore_vis`  | video               | gory                                     |
| `lewd`      | text words          | mature                                   |
| `motion`    | video               | slapstick                                |
| `bang`      | audio               | slapstick                                |
| `irony`     | text words          | sarcasm                                  |
| `tone`      | audio               | sarcasm                                  |
| `antics`    | video + audio       | slapstick (+) and sarcasm (-): the conflicting pair |

So gory is mostly video, mature mostly text, slapstick video+audio, sarcasm text+audio; `binary` is the
OR of the four. Thresholds give positive rates near the real data's (mature 22%, gory 8%, slapstick 17%,
sarcasm 37%); Gaussian logit noise and 3% label flips keep every task from being separable.
About 4% of clips lack audio files and 3% lack video files. Same seed, same bytes.

Every clip also has a few `style` factors of its own that no label depends on, seen in all three
modalities (a direction in video and in audio, pairs of cue words in the text): a per-clip signal the
modalities share, so that pretraining can learn which video, audio and text belong to the same clip
(docs/methods.md#pretraining). They are drawn from a generator of their own (seeded from `seed`) and only
added to what the task factors produce, so labels and every other draw are those of version 1.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from mtl_core.data.layout import AUDIO_DIM, VIDEO_DIM

FACTORS = ("violence", "gore_vis", "lewd", "motion", "bang", "irony", "tone", "antics")
# task -> {factor: weight}; the logit is this mix plus noise.
TASK_MIX = {
    "mature": {"violence": 1.2, "lewd": 1.6},
    "gory": {"violence": 1.2, "gore_vis": 1.6},
    "slapstick": {"motion": 1.2, "bang": 1.2, "antics": 1.0},
    "sarcasm": {"irony": 1.5, "tone": 1.0, "antics": -1.0},
}
POSITIVE_RATE = {"mature": 0.22, "gory": 0.08, "slapstick": 0.17, "sarcasm": 0.37}
VIDEO_FACTORS = ("violence", "gore_vis", "motion", "antics")
AUDIO_FACTORS = ("bang", "tone", "antics")
# Words whose frequency in a clip's text follows a factor; all are single WordPiece tokens.
TEXT_WORDS = {
    "violence": ["fight", "hit", "punch", "kill", "gun", "attack"],
    "lewd": ["drunk", "beer", "damn", "sexy", "naked", "kiss"],
    "irony": ["yeah", "sure", "totally", "obviously", "great", "wow"],
}
FILLER = (
    "the a and to of i you it that is was he she we they this what in on for with my your me his her "
    "not be have do go get know like just can will there here now then so well oh okay come look want "
    "think see right time good day man people house car door room home little big back down up out "
    "over let say said tell talk thing something nothing way where when why how who all one two new old "
    "very really maybe please thanks work night morning water food dog cat friend family mother father "
    "boy girl guy school town street game play run walk stop wait hold turn open close find lose try"
).split()
NOISE, LABEL_FLIP, MISSING_AUDIO, MISSING_VIDEO = 0.8, 0.03, 0.04, 0.03
VIDEO_AMP, AUDIO_AMP, TEXT_RATE = 0.4, 0.5, 2.0
STYLE_FACTORS, STYLE_AMP, STYLE_RATE = 6, 0.4, 3.0
# style factor k: its positive side brings the first words, its negative side the second
STYLE_WORDS = (("red", "green"), ("music", "song"), ("rain", "snow"), ("king", "queen"),
               ("train", "ship"), ("money", "gold"))
GENERATOR_VERSION = 2  # bump when the generator changes: the cached default is keyed by it (2: style factors)
CLS, SEP = 101, 102


def _vocab() -> dict[str, int]:
    from mtl_core.model.text_encoder import tokenizer_dir

    lines = (tokenizer_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {tok: i for i, tok in enumerate(lines)}


def _labels(z: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(next(iter(z.values())))
    labels = {}
    for task, mix in TASK_MIX.items():
        logit = sum(w * z[f] for f, w in mix.items()) + NOISE * rng.standard_normal(n)
        y = logit > np.quantile(logit, 1.0 - POSITIVE_RATE[task])
        y ^= rng.random(n) < LABEL_FLIP
        labels[task] = y.astype(int)
    labels["binary"] = np.max(np.stack(list(labels.values())), axis=0)
    return labels


def _sequence(rng, factors, z_i, patterns, t_range, dim, amp) -> np.ndarray:
    t = int(rng.integers(*t_range))
    x = rng.standard_normal((t, dim)).astype(np.float32)
    signal = sum(z_i[f] * patterns[f] for f in factors)  # [dim]
    on = rng.random(t) < 0.7  # the cue shows in most, not all, time steps
    x[on] += (amp * signal).astype(np.float32)
    return x


def _text(rng, z_i, vocab) -> tuple[list[str], list[int]]:
    n = int(rng.integers(20, 120))
    words = list(rng.choice(FILLER, size=n))
    for factor, cue_words in TEXT_WORDS.items():
        for _ in range(rng.poisson(max(0.0, TEXT_RATE * z_i[factor]))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue_words)))
    return words, [CLS] + [vocab[w] for w in words] + [SEP]


def _with_style(rng: np.random.Generator, words: list[str], style: np.ndarray, vocab) -> tuple[list[str], list[int]]:
    """The clip's words plus its style cue words at random places, and the ids ([CLS] ... [SEP])."""
    words = list(words)
    for k, value in enumerate(style):
        cue = STYLE_WORDS[k][0 if value > 0 else 1]
        for _ in range(rng.poisson(STYLE_RATE * abs(value))):
            words.insert(int(rng.integers(0, len(words) + 1)), cue)
    return words, [CLS] + [vocab[w] for w in words] + [SEP]


def write_synthetic(out_dir: str | Path, seed: int = 0, n_train: int = 400, n_val: int = 120,
                    n_test: int = 120) -> Path:
    out = Path(out_dir)
    (out / "i3d").mkdir(parents=True, exist_ok=True)
    (out / "vggish").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _vocab()
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    n = sum(sizes.values())
    z = {f: rng.standard_normal(n) for f in FACTORS}
    labels = _labels(z, rng)
    video_pat = {f: rng.standard_normal(VIDEO_DIM) for f in VIDEO_FACTORS}
    audio_pat = {f: rng.standard_normal(AUDIO_DIM) for f in AUDIO_FACTORS}
    # the style factors' own generator: the draws above and below stay those of version 1
    style_rng = np.random.default_rng([seed, 2])
    style = style_rng.standard_normal((n, STYLE_FACTORS))
    video_style = style_rng.standard_normal((STYLE_FACTORS, VIDEO_DIM)) / np.sqrt(STYLE_FACTORS)
    audio_style = style_rng.standard_normal((STYLE_FACTORS, AUDIO_DIM)) / np.sqrt(STYLE_FACTORS)
    i = 0
    for split, size in sizes.items():
        records = {}
        for _ in range(size):
            clip_id = f"synth{i:05d}.{i % 7:02d}"
            z_i = {f: z[f][i] for f in FACTORS}
            words, _ = _text(rng, z_i, vocab)
            words, ids = _with_style(style_rng, words, style[i], vocab)
            rec = {"id": i, "IMDBid": clip_id, "indexes": ids, "words": words}
            for task in ("mature", "gory", "slapstick", "sarcasm"):
                rec[task] = [1 - int(labels[task][i]), int(labels[task][i])]
            rec["y"] = [1 - int(labels["binary"][i]), int(labels["binary"][i])]
            rec["label"] = "".join(str(int(labels[t][i])) for t in ("mature", "slapstick", "gory", "sarcasm"))
            records[clip_id] = rec
            video = _sequence(rng, VIDEO_FACTORS, z_i, video_pat, (6, 20), VIDEO_DIM, VIDEO_AMP)
            audio = _sequence(rng, AUDIO_FACTORS, z_i, audio_pat, (8, 40), AUDIO_DIM, AUDIO_AMP)
            video += (STYLE_AMP * style[i] @ video_style).astype(np.float32)  # every step: a clip-wide trait
            audio += (STYLE_AMP * style[i] @ audio_style).astype(np.float32)
            if rng.random() >= MISSING_VIDEO:
                # the model input is rgb + flow: split the clip between the two streams
                share = rng.random(VIDEO_DIM).astype(np.float32)
                np.save(out / "i3d" / f"{clip_id}_rgb.npy", video * share)
                np.save(out / "i3d" / f"{clip_id}_flow.npy", video * (1 - share))
            if rng.random() >= MISSING_AUDIO:
                np.save(out / "vggish" / f"{clip_id}_vggish.npy", audio)
            i += 1
        (out / f"{split}.json").write_text(json.dumps(records))
    return out


def default_synthetic_dir(cache_dir: Path, seed: int, n_train: int, n_val: int, n_test: int) -> Path:
    """Where the embedded default lives; written once, on first use."""
    folder = cache_dir / "synthetic" / f"v{GENERATOR_VERSION}_seed{seed}_{n_train}_{n_val}_{n_test}"
    if not folder.is_dir():
        # Write beside it and rename: parallel trials never see (or clash on) a half-written set.
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        write_synthetic(tmp, seed, n_train, n_val, n_test)
        try:
            tmp.rename(folder)
        except OSError:  # another process won the race; its copy is byte-identical
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
