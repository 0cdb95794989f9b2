import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext, check_space


class ExcessMTL(LossCombiner):
    """ExcessMTL (He et al. 2024; docs/methods.md#combiner-excess_mtl): robust weighting by excess risk.

    Each task's excess risk is estimated as g_tᵀ H_t⁻¹ g_t with the diagonal Adagrad approximation
    H_t = sqrt(Σ_steps g_t² + 1e-7) of its curvature, and divided by the task's first estimate (scale
    processing). The weights take an exponentiated-gradient step, w_t ∝ w_t·exp(robust_step_size·excess_t),
    normalised to sum to A over the A active tasks (LibMTL's scale), and weigh the shared gradients.

    Written here with per-task state: torchjd's `ExcessMTL` keeps one state for a fixed set of rows,
    while schedulers, and batches without a task's labels, change the active set. On a fixed set the
    direction is torchjd's with `n_warmup_steps=1` times A (a task's first step sets its baseline and
    moves no weight, as in LibMTL and the authors' code). The T x d sums of squares are checkpointed."""

    name = "excess_mtl"
    uses_gradients = True
    _state_keys = ("sq_sum", "baseline", "log_w")

    def __init__(self, ctx: StrategyContext, *, robust_step_size: float = 0.01, space: str = "parameters"):
        super().__init__(ctx)
        self.space = check_space(space)
        if robust_step_size <= 0:
            raise ValueError(f"robust_step_size must be > 0, got {robust_step_size}")
        self.robust_step_size = robust_step_size
        self.sq_sum: torch.Tensor | None = None  # Σ g_t² per task and shared parameter [T, d]
        self.baseline = torch.full((ctx.num_tasks,), float("nan"), dtype=torch.float64)  # first estimate
        self.log_w = torch.zeros(ctx.num_tasks, dtype=torch.float64)  # log-weights (a constant apart)

    def excess(self, jacobian, idx) -> torch.Tensor:
        """This step's excess-risk estimates [A] of the active tasks (after adding their squares)."""
        if self.sq_sum is None or self.sq_sum.device != jacobian.device:
            self.sq_sum = (torch.zeros(self.ctx.num_tasks, jacobian.shape[1], device=jacobian.device)
                           if self.sq_sum is None else self.sq_sum.to(jacobian.device))
        sq = jacobian.detach().float() ** 2
        self.sq_sum[idx] += sq
        return (sq / torch.sqrt(self.sq_sum[idx] + 1e-7)).sum(1).double().cpu()

    def aggregate(self, jacobian, losses, idx):
        w = self.weights(jacobian, idx)
        return w.to(jacobian) @ jacobian

    def aggregate_representation(self, dz, losses, idx):
        # The sums of squares are kept per feature of z, of the batch-summed z-gradient [A, D]: a sum per
        # position of z would mix different clips (batches are shuffled). The weights apply per clip.
        w = self.weights(dz.sum(1), idx)
        return torch.einsum("a,abd->bd", w.to(dz), dz)

    def weights(self, jacobian, idx) -> torch.Tensor:
        """This step's weights [A] of the active tasks' gradients (rows of `jacobian`, [A, k])."""
        rows = idx.cpu()
        excess = self.excess(jacobian, idx)
        base = self.baseline[rows]
        first = torch.isnan(base)
        self.baseline[rows[first]] = excess[first]
        scaled = torch.where(first, torch.zeros_like(excess), excess / (base + 1e-7))
        self.log_w[rows] += self.robust_step_size * scaled
        self.log_w -= self.log_w.max()  # only differences matter; keeps the values small
        w = len(rows) * torch.softmax(self.log_w[rows], 0)
        self.record_weights(idx, w)
        return w
