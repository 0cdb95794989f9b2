"""Per-task gradients of the shared parameters, aggregated by a gradient combiner, written to `.grad`.

One batched backward computes the Jacobian: first dL_t/dz for every active task (through the heads
only, cheap), then one vector-Jacobian product through the encoder with the T rows batched
(`is_grads_batched`, i.e. vmap). Where vmap has no rule for an op (cuDNN LSTM backward, some CPU
kernels) we fall back to one retained backward per task and remember the choice per model class. Where both
run, the batched one is the faster on the CPU models measured, if only by 13-25%: `is_grads_batched` uses
torch's legacy vmap, which runs the LSTMs' tanh_backward, the norms' and softmax's backward once per row, and
the rest is GEMM-bound (docs/results.md#combiner-cost).
Heads receive their own task's gradient; aggregation acts on shared parameters only.

A combiner with `space: representation` stops at dL_t/dz: its rule runs on those rows, and one backward of
the aggregated z-gradient through the encoder fills the shared parameters (docs/methods.md#gradient-space).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
_BATCHED_OK: dict[type, bool] = {}


def _vjp_rows(outputs: torch.Tensor, inputs: list[torch.Tensor], rows: torch.Tensor, key: type
              ) -> list[torch.Tensor]:
    """[A, *p.shape] for each input: the VJP of `outputs` with each of the A cotangent rows."""
    if _BATCHED_OK.get(key, True):
        try:
            grads = torch.autograd.grad(outputs, inputs, grad_outputs=rows, is_grads_batched=True,
                                        retain_graph=True, allow_unused=True, materialize_grads=True)
            _BATCHED_OK[key] = True
            return list(grads)
        except RuntimeError as exc:  # no batching rule for some op in the graph
            log.info("batched per-task backward unavailable (%s); using one backward per task",
                     str(exc).splitlines()[0][:120])
            _BATCHED_OK[key] = False
    per_row = [torch.autograd.grad(outputs, inputs, grad_outputs=r, retain_graph=True, allow_unused=True,
                                   materialize_grads=True) for r in rows]
    return [torch.stack(g) for g in zip(*per_row)]


def shared_jacobian(model, z: torch.Tensor, losses: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The Jacobian [A, d] of the losses `idx` w.r.t. the model's shared parameters (flattened)."""
    shared = model.shared_parameters()
    eye = torch.eye(len(idx), device=z.device, dtype=losses.dtype)
    dz = _vjp_rows(losses[idx], [z], eye, type(model.heads))[0]  # [A, B, D] through heads only
    rows = _vjp_rows(z, shared, dz, type(model))  # one batched backward through the encoder
    a = len(idx)
    # A parameter this batch never reached (the missing-modality token when all are present) comes
    # back unbatched from materialize_grads: its rows are zero.
    rows = [r if r.dim() == p.dim() + 1 else r.new_zeros(a, *p.shape) for r, p in zip(rows, shared)]
    return torch.cat([r.reshape(a, -1) for r in rows], dim=1), shared


def mean_pairwise_cosine(jac: torch.Tensor) -> float:
    if len(jac) < 2:
        return float("nan")
    unit = jac / jac.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cos = unit @ unit.T
    a = len(jac)
    return float((cos.sum() - cos.diagonal().sum()) / (a * (a - 1)))


def backward_aggregated(model, z: torch.Tensor, losses: torch.Tensor, active: torch.Tensor, combiner) -> None:
    """Fill `.grad`: heads (and the combiner's own parameters) from their task's loss as the combiner
    transforms it, shared parameters from the aggregated Jacobian of those losses."""
    idx = active.nonzero().flatten()
    trained = combiner.transform_losses(losses, active)
    head_params = [p for t_i in idx.tolist() for p in model.heads[model.tasks[t_i]].parameters()]
    own = combiner.parameters()
    grads = torch.autograd.grad(trained[idx].sum(), head_params + own, retain_graph=True, allow_unused=True)
    for p, g in zip(head_params + own, grads):
        p.grad = g
    if combiner.space == "representation":
        _backward_representation(model, z, trained, losses, idx, combiner)
        return
    jac, shared = shared_jacobian(model, z, trained, idx)
    combiner.record_cosine(mean_pairwise_cosine(jac.detach()))
    direction = combiner.aggregate(jac, losses[idx].detach(), idx)  # [d]
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = direction[offset:offset + n].view_as(p).to(p.dtype)
        offset += n


def _backward_representation(model, z: torch.Tensor, trained: torch.Tensor, losses: torch.Tensor, idx: torch.Tensor,
                             combiner) -> None:
    """`space: representation`: the task gradients w.r.t. z [A, B, D] (through the heads only), the method's
    rule on them, and one backward of its z-gradient through the encoder: the shared parameters get a weighted
    sum of the task gradients, with the weights the rule finds in z's space."""
    eye = torch.eye(len(idx), device=z.device, dtype=trained.dtype)
    dz = _vjp_rows(trained[idx], [z], eye, type(model.heads))[0]
    dz = dz.detach().float()  # the rule in fp32, as on the parameters' gradients (z may be bf16 under autocast)
    combiner.record_cosine(mean_pairwise_cosine(dz.reshape(len(idx), -1)))
    direction = combiner.aggregate_representation(dz, losses[idx].detach(), idx)  # [B, D]
    shared = model.shared_parameters()
    grads = torch.autograd.grad(z, shared, grad_outputs=direction.to(z.dtype), allow_unused=True,
                                materialize_grads=True)
    for p, g in zip(shared, grads):
        p.grad = g.to(p.dtype)


def last_layer_grad_norms(model, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """‖∇_W L_t‖ at the model's last shared layer W for each active task (0 elsewhere), [T].

    Each backward stops at W, so it only runs through the heads and one layer."""
    params = model.last_shared_parameters()
    norms = torch.zeros(len(losses))
    for j in active.nonzero().flatten().tolist():
        grads = torch.autograd.grad(losses[j], params, retain_graph=True, allow_unused=True, materialize_grads=True)
        norms[j] = torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads)).cpu()
    return norms
