import torch

from mtl_core.strategies.base import LossCombiner, StrategyContext


class Learned(LossCombiner):
    """Plain learned weights, normalised so they cannot collapse (docs/methods.md#combiner-learned).

    Weights are w = T·softmax(φ), learned jointly with the model on Σ w_t L_t. The softmax keeps
    them positive and summing to T (raw weights would all fall below zero: ∂L/∂w_t = L_t ≥ 0). On the
    simplex alone the minimiser is still one-hot on the easiest task, so an entropy bonus
    `entropy`·H(softmax φ) is subtracted: the optimum becomes p_t ∝ exp(-T·L_t/entropy), never one-hot.
    `entropy: 0` gives the collapsing textbook version, for comparison. φ trains with Adam at its own
    learning rate `weight_lr`."""

    name = "learned"
    _state_keys = ("logits",)

    def __init__(self, ctx: StrategyContext, *, entropy: float = 1.0, weight_lr: float = 0.01):
        super().__init__(ctx)
        if entropy < 0:
            raise ValueError(f"entropy must be >= 0, got {entropy}")
        if weight_lr <= 0:
            raise ValueError(f"weight_lr must be > 0, got {weight_lr}")
        self.entropy, self.param_lr = entropy, weight_lr
        self.logits = torch.nn.Parameter(torch.zeros(ctx.num_tasks))

    def parameters(self):
        return [self.logits]

    def weights(self) -> torch.Tensor:
        return self.ctx.num_tasks * torch.softmax(self.logits, 0)

    def combine(self, losses, active, grad_norms=None):
        p = torch.softmax(self.logits.to(losses.device), 0)
        entropy = -(p * p.clamp(min=1e-12).log()).sum()
        return (self.ctx.num_tasks * p * losses * active).sum() - self.entropy * entropy

    def log(self):
        return {**super().log(), **self._weights_log(self.weights().detach())}
