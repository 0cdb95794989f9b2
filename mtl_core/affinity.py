"""TAG inter-task affinity by lookahead (Fifty et al. 2021; docs/methods.md#tag).

Z(i -> j) = 1 - L_j(batch; θ_s - lr·∇_{θ_s} L_i, θ_j) / L_j(batch; θ_s, θ_j): how much one SGD step of
the shared parameters on task i alone changes task j's loss on the same batch. Z > 0: i helps j.

The lookahead runs in training mode with the same dropout masks as the reference forward (the CPU
and, on CUDA, the device's generator are replayed), moves only the shared parameters (heads untouched), and leaves the model exactly as
it was: parameters, BatchNorm statistics, gradients and the RNG state are all restored, so measuring
does not perturb training. The step is plain SGD with the current learning rate (TAG's patch also
uses SGD; Adam's first step would be ±lr per parameter whatever the gradient).
"""
from __future__ import annotations

import torch

from mtl_core.checkpoint import rng_states, set_rng_states
from mtl_core.losses import task_losses
from mtl_core.strategies.gradients import shared_jacobian


def lookahead_affinity(model, inputs, labels, tasks: tuple[str, ...], lr: float,
                       class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """[T, T] matrix Z[i, j] = Z(i -> j) on one batch (NaN where task j has no label in the batch),
    with the training loss (`class_weights` as in training)."""

    rng = rng_states()
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    shared = model.shared_parameters()
    saved = [p.detach().clone() for p in shared]
    grads = [p.grad for p in model.parameters()]
    try:
        # cuDNN's LSTM draws dropout from a state of its own that replaying torch's generators cannot
        # rewind (and that the lookahead would advance): the native LSTM uses the replayed generator
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            set_rng_states(rng)
            z = model.encode(inputs)
            losses, has = task_losses(model.heads_forward(z), labels, tasks, class_weights)
            jac, _ = shared_jacobian(model, z, losses, torch.arange(len(tasks), device=losses.device))
        base = losses.detach()
        out = torch.full((len(tasks), len(tasks)), float("nan"))
        with torch.no_grad():
            for i in range(len(tasks)):
                if not has[i]:
                    continue
                offset = 0
                for p, p0 in zip(shared, saved):
                    n = p.numel()
                    p.copy_(p0 - lr * jac[i, offset:offset + n].view_as(p))
                    offset += n
                set_rng_states(rng)  # the same dropout masks as the reference forward
                with torch.backends.cudnn.flags(enabled=False):
                    after = task_losses(model.heads_forward(model.encode(inputs)), labels, tasks, class_weights)[0]
                out[i] = (1 - after / base.clamp(min=1e-12)).cpu()
            out[:, ~has.cpu()] = float("nan")
    finally:
        with torch.no_grad():
            for p, p0 in zip(shared, saved):
                p.copy_(p0)
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        set_rng_states(rng)
    return out
