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
never depends on the absent features. `z` is [B, 3d] in each, so the heads are the same.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_core.model.hiccap import HICCAP, AttentionPool, ModelInputs, SequenceEncoder, task_head
from mtl_core.model.text_encoder import encode


class Fusion(nn.Module):
    """The parts every fusion here shares with HICCAP; a subclass defines `fuse`."""

    def __init__(self, tasks: tuple[str, ...], width: int, *, text_encoder: nn.Module | None = None,
                 freeze_text: bool = True, rnn_units: int = 512, attention_heads: int = 12,
                 dropout: float = 0.2, head_dropout: float = 0.3, head_dims: tuple[int, ...] = (200, 40, 20)):
        super().__init__()
        self.tasks = tuple(tasks)
        self.freeze_text = freeze_text
        self.text_encoder = text_encoder
        if text_encoder is not None and freeze_text:
            text_encoder.requires_grad_(False)
        self.video_enc = SequenceEncoder(1024, rnn_units, width, dropout)
        self.audio_enc = SequenceEncoder(128, rnn_units, width, dropout)
        self.missing = nn.Parameter(0.02 * torch.randn(3, width))  # text, video, audio
        self.pools = nn.ModuleList(AttentionPool(width, dropout) for _ in range(3))  # text, video, audio
        self.heads = nn.ModuleDict({t: task_head(3 * width, head_dims, head_dropout) for t in self.tasks})

    # the same contract as HICCAP's: train.py, gradients.py and affinity.py use only these
    def train(self, mode: bool = True):
        super().train(mode)
        if self.text_encoder is not None and self.freeze_text:
            self.text_encoder.eval()  # a frozen encoder is deterministic: no dropout
        return self

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task's loss reaches (everything but the heads)."""
        head_ids = {id(p) for p in self.heads.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]

    def heads_forward(self, z: torch.Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        return {t: self.heads[t](z) for t in (tasks or self.tasks)}

    def forward(self, x: ModelInputs) -> dict[str, torch.Tensor]:
        """Logits [B, 2] per task."""
        return self.heads_forward(self.encode(x))

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The pools' output LayerNorms (GradNorm's W), as in HICCAP."""
        return [p for pool in self.pools for p in pool.out[-1].parameters()]

    def _text_hidden(self, x: ModelInputs) -> torch.Tensor:
        if x.text_hidden is not None:
            return x.text_hidden
        if self.text_encoder is None:
            raise ValueError("no text encoder and no cached text features in the batch")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text):
            return encode(self.text_encoder, x.text_ids, x.text_mask)

    def _fill_missing(self, seq, mask, present, idx):
        # as HICCAP: an absent modality's step 0 becomes the learned token, every other step is masked
        if bool(present.all()):
            return seq, mask
        token_only = torch.zeros_like(mask)
        token_only[:, 0] = True
        filler = torch.zeros_like(seq)
        filler[:, 0] = self.missing[idx]
        keep = present[:, None]
        return torch.where(keep[..., None], seq, filler), torch.where(keep, mask, token_only)

    def sequences(self, x: ModelInputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(steps [B, T, d], mask [B, T]) of text, video and audio, absent modalities replaced."""
        present = x.present & torch.stack([x.text_mask.any(1), x.video_mask.any(1), x.audio_mask.any(1)], 1)
        return [self._fill_missing(self._text_hidden(x), x.text_mask, present[:, 0], 0),
                self._fill_missing(self.video_enc(x.video, x.video_mask), x.video_mask, present[:, 1], 1),
                self._fill_missing(self.audio_enc(x.audio, x.audio_mask), x.audio_mask, present[:, 2], 2)]

    def encode(self, x: ModelInputs) -> torch.Tensor:
        """The shared representation z [B, 3d] that every head reads."""
        return self.fuse(self.sequences(x))

    def fuse(self, seqs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        raise NotImplementedError


class LateFusion(Fusion):
    """Pool each modality alone, concatenate the summaries, mix them with a residual MLP."""

    def __init__(self, tasks, width, **kw):
        super().__init__(tasks, width, **kw)
        d, p = 3 * width, kw.get("dropout", 0.2)
        self.mix = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(p), nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)

    def last_shared_parameters(self):
        return list(self.norm.parameters())

    def fuse(self, seqs):
        z = torch.cat([pool(h, m) for pool, (h, m) in zip(self.pools, seqs)], dim=1)  # [B, 3d]
        return self.norm(z + self.mix(z))


class EarlyFusion(Fusion):
    """One transformer encoder over the three sequences concatenated, then each modality's part pooled."""

    def __init__(self, tasks, width, *, attention_heads: int = 12, layers: int = 2, **kw):
        super().__init__(tasks, width, attention_heads=attention_heads, **kw)
        self.kind = nn.Parameter(0.02 * torch.randn(3, width))  # which modality a step comes from
        layer = nn.TransformerEncoderLayer(width, attention_heads, 2 * width, kw.get("dropout", 0.2), batch_first=True)
        # no nested tensors: their fast path would change outputs between train and eval at padded steps
        self.joint = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def fuse(self, seqs):
        lengths = [h.shape[1] for h, _ in seqs]
        steps = torch.cat([h + self.kind[i] for i, (h, _) in enumerate(seqs)], dim=1)  # [B, L+Tv+Ta, d]
        mask = torch.cat([m for _, m in seqs], dim=1)
        out = self.joint(steps, src_key_padding_mask=~mask).split(lengths, dim=1)
        return torch.cat([pool(h, m) for pool, h, (_, m) in zip(self.pools, out, seqs)], dim=1)  # [B, 3d]


ARCHITECTURES: dict[str, type[nn.Module]] = {"hiccap": HICCAP, "late_fusion": LateFusion, "early_fusion": EarlyFusion}
