"""The pretraining tasks as a multi-task model: an encoder (HICCAP without heads) plus one head per task.

`PretrainModel` has the interface the training step uses for downstream tasks (`tasks`, `heads`,
`encode`, `task_losses`, `shared_parameters`, `last_shared_parameters`), so every scheduler, combiner
(gradient methods included) and modality schedule acts on pretraining tasks unchanged. `encode` returns
one tensor z [B, D] per batch holding everything the heads read:

    z = [u_text | u_video | u_audio | (pos_a | pos_b | neg_a | neg_b) per matching task]

u_m: masked mean of modality m's encoded sequence (before the HCA; a pooled summary per clip). For a
matching task over (a, b), pos_* are the HCA's pooled a and b outputs for the clip's own pair and neg_*
for a with b taken from another clip (a derangement of the batch: never the clip itself); the third
modality's slot holds b again (`_pair_parts` says why), so the HCA sees the pair only. The losses depend on
the encoder only through z, which the gradient combiners' Jacobian needs.
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

# fuse() pools its branches in this order
POOL_ORDER = ("text", "audio", "video")


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
    """The matching MLP over a pair of pooled representations (a, b) [B, d] each -> 2 logits (other clip,
    same clip). It reads [a, b, a*b, |a-b|] (the usual sentence-pair features): a plain MLP over [a, b]
    would have to learn the comparison itself, which a few hundred clips do not teach it."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * width, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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
        self.heads = nn.ModuleDict({t: MatchHead(width) if is_matching(t) else ContrastHead(width, projection_dim)
                                    for t in self.tasks})
        self.gen = torch.Generator().manual_seed(seed * 1_000_003 + 29)  # the training negatives
        self._batch: dict[str, tuple] = {}  # task -> usable pairs of the latest batch (and its derangement)

    def shared_parameters(self) -> list[nn.Parameter]:
        head_ids = {id(p) for p in self.heads.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's W: the video and audio encoders' output LayerNorms, which every pretraining task
        reaches (each pair has video or audio; the HCA's pools are not reached by the contrastive tasks)."""
        return [p for enc in (self.encoder.video_enc, self.encoder.audio_enc) for p in enc.proj[1].parameters()]

    def encode(self, x: ModelInputs, gen: torch.Generator | None = None) -> torch.Tensor:
        """z [B, D] (layout in the module docstring); remembers which pairs of the batch are usable."""
        seqs, masks = self.encoder.encode_modalities(x)
        present = x.present & torch.stack([x.text_mask.any(1), x.video_mask.any(1), x.audio_mask.any(1)], 1)
        parts = [masked_mean(s, m) for s, m in zip(seqs, masks)]  # 3 x [B, d]
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
            pos_ok = present[:, ia] & present[:, ib]
            self._batch[t] = (pos_ok, neg_ok, perm)
            parts += self._pair_parts(seqs, masks, ia, ib, perm)
        return torch.cat(parts, dim=1)

    def _pair_parts(self, seqs, masks, ia: int, ib: int, perm: torch.Tensor) -> list[torch.Tensor]:
        """The HCA's pooled a and b outputs for [the clip's own pair; a with b of clip perm[i]] ([B, d] x 4).

        The third modality's slot holds b as well, not the missing token: each HCA branch ends with a hop to
        its second context, and a hop to the missing token alone returns one constant whatever the query, which
        would erase the cross-attention of the hop before it (the text branch of (video, text) would never see
        the video). With b in both other slots every hop of every branch attends to a modality of the pair."""
        b = len(perm)
        pair_seqs, pair_masks = [], []
        for j in range(3):
            if j == ia:
                s, m = torch.cat([seqs[j], seqs[j]]), torch.cat([masks[j], masks[j]])
            elif j == ib:
                s, m = torch.cat([seqs[j], seqs[j][perm]]), torch.cat([masks[j], masks[j][perm]])
            else:  # the third modality's slot holds b again (see _pair_parts)
                s, m = torch.cat([seqs[ib], seqs[ib][perm]]), torch.cat([masks[ib], masks[ib][perm]])
            pair_seqs.append(s)
            pair_masks.append(m)
        pooled = self.encoder.fuse(pair_seqs, pair_masks)  # [2B, 3d]
        d = self.width
        pa = pooled[:, POOL_ORDER.index(MODALITIES[ia]) * d:][:, :d]
        pb = pooled[:, POOL_ORDER.index(MODALITIES[ib]) * d:][:, :d]
        return [pa[:b], pb[:b], pa[b:], pb[b:]]

    def _split(self, z: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        d = self.width
        units = [z[:, i * d:(i + 1) * d] for i in range(3)]
        pairs, offset = {}, 3 * d
        for t in self.tasks:
            if is_matching(t):
                pairs[t] = z[:, offset:offset + 4 * d]
                offset += 4 * d
        return units, pairs

    def outputs(self, z: torch.Tensor) -> dict[str, tuple]:
        """Per task: (projected a, projected b, usable rows) for a contrastive task; (logits [2B', 2], targets)
        over the usable positive and negative pairs for a matching task."""
        units, pairs = self._split(z)
        out = {}
        d = self.width
        for t in self.tasks:
            head = self.heads[t]
            ia, ib = (MODALITIES.index(m) for m in modalities_of(t))
            if not is_matching(t):
                ok = self._batch[t][0]
                out[t] = (head.proj_a(units[ia][ok]), head.proj_b(units[ib][ok]))
                continue
            pos_ok, neg_ok, _ = self._batch[t]
            p = pairs[t]
            pos, neg = p[pos_ok], p[neg_ok]  # [pos_a | pos_b | neg_a | neg_b] rows of the usable pairs
            logits = torch.cat([head(pos[:, :d], pos[:, d:2 * d]), head(neg[:, 2 * d:3 * d], neg[:, 3 * d:])])
            target = torch.cat([torch.ones(int(pos_ok.sum()), dtype=torch.long),
                                torch.zeros(int(neg_ok.sum()), dtype=torch.long)]).to(z.device)
            out[t] = (logits, target)
        return out

    def task_losses(self, z: torch.Tensor, labels=None, class_weights=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task losses [T] and which tasks the batch could train [T] (a contrastive task needs 2 clips
        with both modalities, a matching task one usable pair). The downstream labels are not read."""
        losses, has = [], []
        for t, (a, b) in self.outputs(z).items():
            if is_matching(t):
                ok = len(b) > 0
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
