"""HICCAP: modality encoders, Hierarchical Cross-Attention (HCA), masked attention pooling, task heads.

Follows the reference (raosukruth/IRES-Comic-Mischief `HCA.py`, `FeatureEncoding.py`) with three
deliberate fixes: the text encoder and every attention call use the padding masks, the LSTMs run on
packed sequences (so padded steps never reach the backward direction), and pooling masks padding. A
modality that is absent for a clip (missing file, or switched off by a modality schedule) is replaced
by one learned "missing" token and its real steps are masked: every attention call keeps one valid
key (no softmax over all -inf, no NaN) and the output does not depend on the absent features.
Deviation: the heads have ReLU between layers (the reference stacks linear layers with no
non-linearity, which collapses to one linear map at eval time).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtl_core.losses import task_losses
from mtl_core.model.text_encoder import encode


@dataclass
class ModelInputs:
    """One padded batch. Masks are True on real steps; `present` is [B, 3] (text, video, audio)."""

    text_ids: torch.Tensor  # [B, L] long
    text_mask: torch.Tensor  # [B, L] bool
    video: torch.Tensor  # [B, Tv, 1024]
    video_mask: torch.Tensor  # [B, Tv] bool
    audio: torch.Tensor  # [B, Ta, 128]
    audio_mask: torch.Tensor  # [B, Ta] bool
    present: torch.Tensor  # [B, 3] bool
    text_hidden: torch.Tensor | None = None  # [B, L, d] cached frozen-encoder outputs

    def available(self) -> torch.Tensor:
        """[B, 3] bool: the modalities a clip has, marked present and with at least one real step."""
        return self.present & torch.stack([self.text_mask.any(1), self.video_mask.any(1), self.audio_mask.any(1)], 1)

    def to(self, device: torch.device) -> "ModelInputs":
        # to a GPU: through pinned host memory, so the copies are asynchronous
        pin = torch.device(device).type == "cuda"
        return ModelInputs(**{k: ((v.pin_memory() if pin else v).to(device, non_blocking=True) if v is not None else None)
                              for k, v in self.__dict__.items()})


def recurrence_precision(device_type: str):
    """The LSTMs run at fp32 under bf16 autocast. On CUDA, autocast's cuDNN RNN wrapper casts to fp16 whatever
    the autocast dtype (PyTorch's aten/src/ATen/cudnn/AutocastRNN.cpp, re-flattening the weights on every
    call), and an fp16 recurrence trained without a loss scale can underflow its gradients. fp16 autocast
    keeps cuDNN's fp16 path: its GradScaler scales those gradients."""
    bf16 = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16
    return torch.autocast(device_type, enabled=False) if bf16 else contextlib.nullcontext()


class SequenceEncoder(nn.Module):
    """Two-layer bidirectional LSTM with dropout and LayerNorm, projected to the HCA width."""

    def __init__(self, in_dim: int, units: int, width: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, units, num_layers=2, bidirectional=True, batch_first=True, dropout=dropout)
        self.norm = nn.Sequential(nn.Dropout(dropout), nn.LayerNorm(2 * units))
        self.proj = nn.Sequential(nn.Linear(2 * units, width), nn.LayerNorm(width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()  # absent clips get one (zero) step; replaced later
        with recurrence_precision(x.device.type):
            packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # [B, T, 2u]
        return self.proj(self.norm(out))  # [B, T, d]


class HCABranch(nn.Module):
    """Query modality attends to a first, then a second context; dropout, LayerNorm, residual.

    As in the reference, one attention module serves both hops of a branch."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=0.1, batch_first=True)
        self.norm1 = nn.Sequential(nn.Dropout(dropout), nn.LayerNorm(width))
        self.norm2 = nn.Sequential(nn.Dropout(dropout), nn.LayerNorm(width))

    def forward(self, query, first, first_mask, second, second_mask):
        x = self.norm1(self.attn(query, first, first, key_padding_mask=~first_mask, need_weights=False)[0])
        x = self.norm2(self.attn(x, second, second, key_padding_mask=~second_mask, need_weights=False)[0])
        return x + query


class AttentionPool(nn.Module):
    """score_i = v . tanh(U h_i), softmax over real steps only, weighted sum."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.u = nn.Linear(width, width)
        self.v = nn.Parameter(torch.rand(width))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.LayerNorm(width))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.u(h)) @ self.v  # [B, T]
        alpha = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)
        return self.out((alpha.unsqueeze(-1) * h).sum(1))  # [B, d]


def task_head(in_dim: int, dims: tuple[int, ...], dropout: float) -> nn.Sequential:
    """3d -> 200 -> 40 -> 20 -> 2: BatchNorm and dropout after the first layers, as in the reference."""
    layers: list[nn.Module] = []
    prev = in_dim
    for i, dim in enumerate(dims):
        layers.append(nn.Linear(prev, dim))
        if i < len(dims) - 1:
            layers += [nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(dropout)]
        else:
            layers.append(nn.ReLU())
        prev = dim
    layers.append(nn.Linear(prev, 2))
    return nn.Sequential(*layers)


class FusionModel(nn.Module):
    """What every architecture (`model.arch`) shares: the text encoder's hidden states (or their cache), the
    BiLSTM encoders of video and audio, one learned "missing" token per modality, masked attention pools and
    the task heads. A subclass says where the modalities meet: `_fusion_layers` builds its layers and `fuse`
    maps the three encoded sequences to z [B, 3d], the pooled (text, audio, video) parts in that order."""

    def __init__(self, tasks: tuple[str, ...], width: int, *, text_encoder: nn.Module | None = None,
                 text_width: int | None = None, freeze_text: bool = True, rnn_units: int = 512,
                 attention_heads: int = 12, dropout: float = 0.2, head_dropout: float = 0.3, head_dims: tuple[int, ...] = (200, 40, 20)):
        super().__init__()
        self.tasks = tuple(tasks)
        self.freeze_text = freeze_text
        self.text_encoder = text_encoder
        if text_encoder is not None and freeze_text:
            text_encoder.requires_grad_(False)
        self.video_enc = SequenceEncoder(1024, rnn_units, width, dropout)
        self.audio_enc = SequenceEncoder(128, rnn_units, width, dropout)
        self.missing = nn.Parameter(0.02 * torch.randn(3, width))  # text, video, audio
        self._fusion_layers(width, attention_heads, dropout)  # before the pools: HICCAP's initialisation order
        self.pools = nn.ModuleList(AttentionPool(width, dropout) for _ in range(3))
        self.heads = nn.ModuleDict({t: task_head(3 * width, head_dims, head_dropout) for t in self.tasks})
        self.width = width
        # text states narrower than the encoder's (`model.width`): a learned map, as video and audio have;
        # built last so a model at the encoder's width initialises exactly as without it
        self.text_proj = (nn.Sequential(nn.Linear(text_width, width), nn.LayerNorm(width))
                          if text_width is not None and text_width != width else None)

    def _fusion_layers(self, width: int, attention_heads: int, dropout: float) -> None:
        raise NotImplementedError

    def fuse(self, seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True):
        super().train(mode)
        if self.text_encoder is not None and self.freeze_text:
            self.text_encoder.eval()  # a frozen encoder is deterministic: no dropout
        return self

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task's loss reaches (everything but the heads)."""
        head_ids = {id(p) for p in self.heads.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layer before the heads (the pools' output LayerNorms): GradNorm's W."""
        return [p for pool in self.pools for p in pool.out[-1].parameters()]

    def _text_hidden(self, x: ModelInputs) -> torch.Tensor:
        if x.text_hidden is not None:
            return x.text_hidden
        if self.text_encoder is None:
            raise ValueError("no text encoder and no cached text features in the batch")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text):
            return encode(self.text_encoder, x.text_ids, x.text_mask)

    def _fill_missing(self, seq, mask, present, idx):
        # Absent modality: step 0 becomes the learned token, every other step is masked.
        if bool(present.all()):
            return seq, mask  # the common case costs nothing
        token_only = torch.zeros_like(mask)
        token_only[:, 0] = True
        filler = torch.zeros_like(seq)
        filler[:, 0] = self.missing[idx]
        keep = present[:, None]
        return torch.where(keep[..., None], seq, filler), torch.where(keep, mask, token_only)

    def encode_modalities(self, x: ModelInputs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each modality's encoded sequence [B, T, d] and mask (text, video, audio), an absent modality
        already replaced by its missing token: what the HCA reads (and what pretraining pools)."""
        present = x.available()
        hidden = self._text_hidden(x)
        if self.text_proj is not None:
            hidden = self.text_proj(hidden)
        text, t_mask = self._fill_missing(hidden, x.text_mask, present[:, 0], 0)
        video, v_mask = self._fill_missing(self.video_enc(x.video, x.video_mask), x.video_mask, present[:, 1], 1)
        audio, a_mask = self._fill_missing(self.audio_enc(x.audio, x.audio_mask), x.audio_mask, present[:, 2], 2)
        return [text, video, audio], [t_mask, v_mask, a_mask]

    def encode(self, x: ModelInputs) -> torch.Tensor:
        """The shared representation z [B, 3d] that every head reads."""
        return self.fuse(*self.encode_modalities(x))

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """Everything but the task heads (text encoder when trained, BiLSTMs, missing tokens, HCA, pools):
        what pretraining produces and fine-tuning starts from."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("heads.")}

    def load_encoder_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load `encoder_state()` of a model of the same shapes; the heads keep their fresh weights. Raises
        ValueError naming a missing, extra or mis-shaped key."""
        own = self.encoder_state()
        if set(state) != set(own):
            diff = sorted(set(state) ^ set(own))
            raise ValueError(f"pretrained encoder state does not match this model (key {diff[0]!r})")
        for k, v in state.items():
            if v.shape != own[k].shape:
                raise ValueError(f"pretrained encoder state does not match this model ({k}: {list(v.shape)} "
                                 f"vs {list(own[k].shape)})")
        self.load_state_dict(state, strict=False)

    def task_losses(self, z: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task losses [T] of the batch whose representation is `z`, and which tasks had a label [T]."""
        return task_losses(self.heads_forward(z), labels, self.tasks, class_weights)

    def heads_forward(self, z: torch.Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        return {t: self.heads[t](z) for t in (tasks or self.tasks)}

    def forward(self, x: ModelInputs) -> dict[str, torch.Tensor]:
        """Logits [B, 2] per task."""
        return self.heads_forward(self.encode(x))


class HICCAP(FusionModel):
    """Hierarchical Cross-Attention: three branches, each a modality attending to the other two in turn."""

    def _fusion_layers(self, width: int, attention_heads: int, dropout: float) -> None:
        self.text_branch = HCABranch(width, attention_heads, dropout)  # text -> video -> audio
        self.audio_branch = HCABranch(width, attention_heads, dropout)  # audio -> video -> text
        self.video_branch = HCABranch(width, attention_heads, dropout)  # video -> text -> audio

    def fuse(self, seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        """HCA over the three sequences, then masked pooling: [B, 3d] (pooled text, audio, video branches)."""
        (text, video, audio), (t_mask, v_mask, a_mask) = seqs, masks
        out_text = self.text_branch(text, video, v_mask, audio, a_mask)
        out_audio = self.audio_branch(audio, video, v_mask, text, t_mask)
        out_video = self.video_branch(video, text, t_mask, audio, a_mask)
        pooled = [pool(h, m) for pool, h, m in zip(self.pools, (out_text, out_audio, out_video),
                                                       (t_mask, a_mask, v_mask))]
        return torch.cat(pooled, dim=1)
