"""Other fusions over HICCAP's encoders (`model.arch`): late fusion and early fusion.

Both keep what HICCAP has up to the point where the modalities meet: the text encoder's hidden states (or
their cache), the two BiLSTM encoders, the learned "missing" token per modality, and after the fusion the
masked attention pools and the task heads (same attribute names, so the encoders' weights are interchangeable
with HICCAP's). Only the meeting differs:

- `late_fusion`: each modality is pooled on its own; the three summaries are concatenated and mixed by an
  MLP (residual, LayerNorm). No modality sees another before the MLP.
- `early_fusion`: one transformer encoder over the concatenated sequences (text, video, audio, each step
  tagged with a learned modality embedding), every step attending to every real step of every modality;
  then each modality's part is pooled.

A modality that is absent for a clip is replaced by its missing token exactly as in HICCAP, so the output
never depends on the absent features. `z` is [B, 3d] in each, its parts in HICCAP's order (text, audio,
video), so the heads and pretraining's pair heads read every architecture alike.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_core.model.hiccap import HICCAP, FusionModel


def _in_z_order(seqs: list[torch.Tensor], masks: list[torch.Tensor]):
    """(text, audio, video): the order of z's parts in every architecture (HICCAP's pooled branches)."""
    (text, video, audio), (t_mask, v_mask, a_mask) = seqs, masks
    return [(text, t_mask), (audio, a_mask), (video, v_mask)]


class LateFusion(FusionModel):
    """Pool each modality alone, concatenate the summaries, mix them with a residual MLP."""

    def _fusion_layers(self, width: int, attention_heads: int, dropout: float) -> None:
        d = 3 * width
        self.mix = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)

    def last_shared_parameters(self):
        return list(self.norm.parameters())

    def fuse(self, seqs, masks):
        z = torch.cat([pool(h, m) for pool, (h, m) in zip(self.pools, _in_z_order(seqs, masks))], dim=1)  # [B, 3d]
        return self.norm(z + self.mix(z))


class EarlyFusion(FusionModel):
    """One transformer encoder over the three sequences concatenated, then each modality's part pooled."""

    layers = 2

    def _fusion_layers(self, width: int, attention_heads: int, dropout: float) -> None:
        self.kind = nn.Parameter(0.02 * torch.randn(3, width))  # which modality a step comes from
        layer = nn.TransformerEncoderLayer(width, attention_heads, 2 * width, dropout, batch_first=True)
        # no nested tensors: their fast path would change outputs between train and eval at padded steps
        self.joint = nn.TransformerEncoder(layer, self.layers, enable_nested_tensor=False)

    def fuse(self, seqs, masks):
        parts = _in_z_order(seqs, masks)
        lengths = [h.shape[1] for h, _ in parts]
        steps = torch.cat([h + self.kind[i] for i, (h, _) in enumerate(parts)], dim=1)  # [B, L+Ta+Tv, d]
        mask = torch.cat([m for _, m in parts], dim=1)
        out = self.joint(steps, src_key_padding_mask=~mask).split(lengths, dim=1)
        return torch.cat([pool(h, m) for pool, h, (_, m) in zip(self.pools, out, parts)], dim=1)  # [B, 3d]


ARCHITECTURES: dict[str, type[FusionModel]] = {"hiccap": HICCAP, "late_fusion": LateFusion, "early_fusion": EarlyFusion}
