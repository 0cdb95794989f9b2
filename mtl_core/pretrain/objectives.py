"""The pretraining tasks as a multi-task model: an encoder (HICCAP without heads) plus one head per task.

`PretrainModel` has the interface the training step uses for downstream tasks (`tasks`, `heads`,
`encode`, `task_losses`, `shared_parameters`, `last_shared_parameters`), so every scheduler, combiner
(gradient methods included) and modality schedule acts on pretraining tasks unchanged. `encode` returns
one tensor z [B, 3d] per batch holding everything the heads read:

    z = [u_text | u_video | u_audio]

u_m: masked mean of modality m's encoded sequence (before the HCA; a summary per clip). A contrastive task
compares the two summaries of its pair across the batch; a matching task over (a, b) reads u_a with the u_b of
the clip itself (positive) and of another clip (negative: a derangement of the batch, never the clip itself).
The losses depend on the encoder only through z, which the gradient combiners' Jacobian needs.

Matching reads the summaries, not the HCA's outputs for the pair: through the HCA, video-text and audio-text
matching stayed at chance on the synthetic default (the training loss at ln 2, at learning rates 0.001-0.01,
10 and 20 epochs, with or without dropout, a projection or a trained text projection), while the same heads
over the summaries learn all three (docs/methods.md#pretrain-matching).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_core import MODALITIES, keys
from mtl_core.metrics import binary_task_metrics
from mtl_core.model.hiccap import HICCAP, ModelInputs
from mtl_core.pretrain import is_matching, modalities_of
# Part of the pretrained-state cache key: bump when an objective or head changes, so that no entry trained by
# the old objectives is read as this version's (2: matching reads the clip summaries, not the HCA).
OBJECTIVES_VERSION = 2


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) of paired rows a[i] <-> b[i] [N, k]: cross-entropy of each row's
    cosine similarities / temperature against every row of the other side, the true partner the target."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature  # [N, N]
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def retrieval_accuracy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of rows whose nearest row on the other side (cosine) is their partner, both directions averaged."""
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    target = torch.arange(len(a), device=a.device)
    return float(((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()) / 2)


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of range(n) with no fixed point (n >= 2): a random cyclic order, each clip
    mapped to the next in it."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = torch.randperm(n, generator=gen)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def masked_mean(seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, d] over the True steps of [B, T] -> [B, d]."""
    m = mask.unsqueeze(-1).to(seq.dtype)
    return (seq * m).sum(1) / m.sum(1).clamp(min=1.0)


class ContrastHead(nn.Module):
    """One linear projection per modality into a shared space (CLIP's projections)."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.proj_a, self.proj_b = nn.Linear(width, dim), nn.Linear(width, dim)


class MatchHead(nn.Module):
    """The matching MLP over a pair of clip summaries (a, b) [B, d] each -> 2 logits (other clip, same clip).

    Each side is first projected into a shared space (the two summaries come from different encoders, and a
    frozen text encoder's coordinates never move towards the video's), then the MLP reads
    [a, b, a*b, |a-b|], the usual sentence-pair features: over the raw [a, b] it would have to learn the
    comparison itself, which a few hundred clips do not teach it."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.proj_a, self.proj_b = nn.Linear(width, dim), nn.Linear(width, dim)
        self.mlp = nn.Sequential(nn.Linear(4 * dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self.proj_a(a), self.proj_b(b)
        return self.mlp(torch.cat([a, b, a * b, (a - b).abs()], dim=1))


class PretrainModel(nn.Module):
    """The encoder (a HICCAP built without downstream heads) and one head per pretraining task.

    `encode` draws the batch's matching negatives (from the model's own generator, seeded from the run seed, or
    `gen`) and remembers which pairs of the batch are usable; `outputs` and `task_losses` read that record, so
    they take the z of the latest `encode`."""

    def __init__(self, encoder: HICCAP, tasks: tuple[str, ...], width: int, *, temperature: float = 0.1,
                 projection_dim: int = 64, seed: int = 0):
        super().__init__()
        self.encoder = encoder
        self.tasks = tuple(tasks)
        self.width = width
        self.temperature = temperature
        self.heads = nn.ModuleDict({t: MatchHead(width, projection_dim) if is_matching(t) else ContrastHead(width, projection_dim)
                                    for t in self.tasks})
        self.gen = torch.Generator().manual_seed(seed * 1_000_003 + 29)  # the training negatives
        self._batch: dict[str, tuple] = {}  # task -> usable pairs of the latest batch (and its derangement)

    def shared_parameters(self) -> list[nn.Parameter]:
        """What z depends on: the modality encoders (the text encoder when it trains) and the missing-modality
        tokens. Not the HCA and pools, which no pretraining task reads: a gradient combiner would give them a
        zero gradient, and AdamW's weight decay would then move them."""
        enc = self.encoder
        parts = [enc.video_enc, enc.audio_enc] + ([enc.text_encoder] if enc.text_encoder is not None else [])
        return [p for m in parts for p in m.parameters() if p.requires_grad] + [enc.missing]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's W: the video and audio encoders' output LayerNorms, which every pretraining task
        reaches (each pair has video or audio; no pretraining task reads the HCA)."""
        return [p for enc in (self.encoder.video_enc, self.encoder.audio_enc) for p in enc.proj[1].parameters()]

    def encode(self, x: ModelInputs, gen: torch.Generator | None = None) -> torch.Tensor:
        """z [B, 3d] (layout in the module docstring); remembers which pairs of the batch are usable."""
        seqs, masks = self.encoder.encode_modalities(x)
        present = x.available()
        self._batch = {}
        b = len(present)
        for t in self.tasks:
            ia, ib = (MODALITIES.index(m) for m in modalities_of(t))
            if not is_matching(t):
                self._batch[t] = (present[:, ia] & present[:, ib], None)
                continue
            if b >= 2:
                perm = derangement(b, gen or self.gen).to(present.device)
                neg_ok = present[:, ia] & present[perm, ib]
            else:  # one clip has no other clip to pair with: no negative
                perm = torch.zeros(1, dtype=torch.long, device=present.device)
                neg_ok = torch.zeros(1, dtype=torch.bool, device=present.device)
            self._batch[t] = (present[:, ia] & present[:, ib], neg_ok, perm)
        return torch.cat([masked_mean(s, m) for s, m in zip(seqs, masks)], dim=1)

    def outputs(self, z: torch.Tensor) -> dict[str, tuple]:
        """Per task: (projected a, projected b) over the usable rows for a contrastive task; (logits [P+N, 2],
        targets) over the usable positive then negative pairs for a matching task."""
        d = self.width
        units = [z[:, i * d:(i + 1) * d] for i in range(3)]  # text, video, audio
        out = {}
        for t in self.tasks:
            head = self.heads[t]
            ia, ib = (MODALITIES.index(m) for m in modalities_of(t))
            if not is_matching(t):
                ok = self._batch[t][0]
                out[t] = (head.proj_a(units[ia][ok]), head.proj_b(units[ib][ok]))
                continue
            pos_ok, neg_ok, perm = self._batch[t]
            ua, ub = units[ia], units[ib]
            logits = torch.cat([head(ua[pos_ok], ub[pos_ok]), head(ua[neg_ok], ub[perm][neg_ok])])
            target = torch.cat([torch.ones(int(pos_ok.sum()), dtype=torch.long),
                                torch.zeros(int(neg_ok.sum()), dtype=torch.long)]).to(z.device)
            out[t] = (logits, target)
        return out

    def task_losses(self, z: torch.Tensor, labels=None, class_weights=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task losses [T] and which tasks the batch could train [T] (a contrastive task needs 2 clips
        with both modalities, a matching task a usable positive and a usable negative pair). The downstream labels are not read."""
        losses, has = [], []
        for t, (a, b) in self.outputs(z).items():
            if is_matching(t):  # both classes: a batch of positives only can teach nothing but "same clip"
                ok = bool((b == 1).any() and (b == 0).any())
                losses.append(F.cross_entropy(a, b) if ok else z.sum() * 0.0)
            else:
                ok = len(a) >= 2
                losses.append(info_nce(a, b, self.temperature) if ok else z.sum() * 0.0)
            has.append(ok)
        return torch.stack(losses), torch.tensor(has, device=z.device)


@torch.no_grad()
def evaluate_pretraining(model: PretrainModel, split, batch_size: int, device: torch.device, prefix: str = "val",
                         amp=contextlib.nullcontext, seed: int = 0) -> dict[str, float]:
    """Each pretraining task on `split` (batches of `batch_size` in order, the same negatives every call):
    `<prefix>/<task>/loss` and `/acc` (matching: accuracy over positive and negative pairs; contrastive:
    in-batch top-1 retrieval accuracy, both directions) and `/f1` (matching: macro-F1 of same/other clip;
    contrastive: the retrieval accuracy again, which the strategies that read F1 then use). `amp`: a
    context factory for the forward pass (the run's mixed precision)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 31)
    sums = {t: [0.0, 0, 0.0, 0] for t in model.tasks}  # loss sum, batches, retrieval sum, rows
    preds = {t: ([], []) for t in model.tasks}
    for inputs, _ in split.batches(batch_size):
        with amp():
            z = model.encode(inputs.to(device), gen)
            losses, has = model.task_losses(z)
            outs = model.outputs(z)
        for j, t in enumerate(model.tasks):
            if not bool(has[j]):
                continue
            sums[t][0] += float(losses[j])
            sums[t][1] += 1
            a, b = outs[t]
            if is_matching(t):
                preds[t][0].append(b.cpu().numpy())
                preds[t][1].append(a.float().argmax(1).cpu().numpy())
            else:
                sums[t][2] += retrieval_accuracy(a.float(), b.float()) * len(a)
                sums[t][3] += len(a)
    out = {}
    for t in model.tasks:
        loss_sum, n, acc_sum, rows = sums[t]
        out[keys.task(prefix, t, "loss")] = loss_sum / n if n else float("nan")
        if is_matching(t):
            y = np.concatenate(preds[t][0]) if preds[t][0] else np.zeros(0, int)
            p = np.concatenate(preds[t][1]) if preds[t][1] else np.zeros(0, int)
            m = binary_task_metrics(y, p)
            out[keys.task(prefix, t, "acc")] = m["acc"]
            out[keys.task(prefix, t, "f1")] = m["f1"]
        else:
            acc = acc_sum / rows if rows else float("nan")
            out[keys.task(prefix, t, "acc")] = acc
            out[keys.task(prefix, t, "f1")] = acc
    return out
