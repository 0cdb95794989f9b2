"""Hybrid pretraining (HICCAP's figure): contrastive pairs and matching tasks over unlabelled training clips.

The six pretraining tasks, each over one pair of modalities (docs/methods.md#pretraining):

    contrast_tv, contrast_ta, contrast_av   InfoNCE between two modalities' clip summaries, in-batch negatives
    vtm, vam, atm                           matching: does this (video, text) / (video, audio) / (audio, text)
                                            pair come from one clip? negatives pair a clip with another clip

They train under the same strategy axes as the downstream tasks (`pretrain.scheduler`, `.combiner`,
`.modality`); fine-tuning then starts from the pretrained encoders with new heads.
"""
from __future__ import annotations

# task -> (its two modalities, kind)
PRETRAIN_TASKS: dict[str, tuple[tuple[str, str], str]] = {
    "contrast_tv": (("text", "video"), "contrastive"),
    "contrast_ta": (("text", "audio"), "contrastive"),
    "contrast_av": (("audio", "video"), "contrastive"),
    "vtm": (("video", "text"), "matching"),
    "vam": (("video", "audio"), "matching"),
    "atm": (("audio", "text"), "matching"),
}


def modalities_of(task: str) -> tuple[str, str]:
    return PRETRAIN_TASKS[task][0]


def is_matching(task: str) -> bool:
    return PRETRAIN_TASKS[task][1] == "matching"


def check_modalities(tasks, available: tuple[str, ...], where: str) -> None:
    """Refuse a pretraining task whose pair includes a modality no training clip has: one line naming both
    (a text-only release cannot pretrain `vtm`; checked by the launcher before Ray starts, and here)."""
    from mtl_core.validation import ConfigError

    for t in tasks:
        for m in modalities_of(t):
            if m not in available:
                raise ConfigError(f"pretrain.tasks: {t} needs {m}, which no training clip of {where} has "
                                  f"(it has {', '.join(available) or 'nothing'})")
