import torch

from mtl_core import keys
from mtl_core.strategies.base import LossCombiner, StrategyContext, check_space
from mtl_core.strategies.combiners.torchjd_weighting import torchjd_aggregation


class IMTL(LossCombiner):
    """IMTL (Liu et al. 2021, docs/methods.md#combiner-imtl): IMTL-L on the losses, IMTL-G on the gradients.

    IMTL-L: every task trains on the scaled loss e^{s_t}·L_t - s_t with a learned scale s_t (its own
    learning rate `scale_lr`, Adam, no weight decay). Its gradient in s_t is e^{s_t}·L_t - 1, so s
    drives every scaled loss towards 1; the heads and the shared Jacobian both see the scaled losses
    (as in the paper and LibMTL). IMTL-G (torchjd's weighting) then finds the combination of the scaled
    shared gradients with equal projections onto every task's unit gradient. `loss_balance: false`
    gives IMTL-G alone on the raw losses."""

    name = "imtl"
    uses_gradients = True
    _state_keys = ("s",)

    def __init__(self, ctx: StrategyContext, *, loss_balance: bool = True, scale_lr: float = 0.01,
                 space: str = "parameters"):
        super().__init__(ctx)
        self.space = check_space(space)
        if scale_lr <= 0:
            raise ValueError(f"scale_lr must be > 0, got {scale_lr}")
        self.loss_balance, self.param_lr = loss_balance, scale_lr
        self.s = torch.nn.Parameter(torch.zeros(ctx.num_tasks))
        self._weighting = torchjd_aggregation().IMTLG().weighting

    def parameters(self):
        return [self.s] if self.loss_balance else []

    def transform_losses(self, losses, active):
        if not self.loss_balance:
            return losses
        s = self.s.to(losses.device)
        return torch.where(active, s.exp() * losses - s, losses)

    def aggregate(self, jacobian, losses, idx):
        w = jacobian.new_ones(1) if len(idx) == 1 else self._weighting(jacobian)
        scale = self.s.detach()[idx.cpu()].exp() if self.loss_balance else torch.ones(len(idx))
        self.record_weights(idx, w.cpu() * scale)  # the weights of the raw task gradients
        return w.to(jacobian) @ jacobian

    def log(self):
        out = super().log()
        if self.loss_balance:
            out.update({keys.strategy("scale", t): float(self.s.detach()[j].exp()) for j, t in enumerate(self.ctx.tasks)})
        return out
