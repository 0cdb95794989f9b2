import torch
from torchjd import aggregation as jd

from mtl_core.strategies.base import LossCombiner, StrategyContext


class IMTL(LossCombiner):
    """IMTL (Liu et al. 2021, METHODS.md 5.4): IMTL-L on the losses, IMTL-G on the gradients.

    IMTL-L scales each task by e^{s_t}, with s_t minimising e^{s_t}·L_t - s_t (one SGD step of size
    `scale_lr` per step, fixed point e^{s_t} = 1/L_t); IMTL-G (torchjd) then finds the combination of
    the scaled gradients with equal projections onto every task's unit gradient. `loss_balance: false`
    gives IMTL-G alone."""

    name = "imtl"
    uses_gradients = True
    _state_keys = ("s",)

    def __init__(self, ctx: StrategyContext, *, loss_balance: bool = True, scale_lr: float = 0.01):
        super().__init__(ctx)
        if scale_lr <= 0:
            raise ValueError(f"scale_lr must be > 0, got {scale_lr}")
        self.loss_balance, self.scale_lr = loss_balance, scale_lr
        self._params = {"loss_balance": loss_balance, "scale_lr": scale_lr}
        self.s = torch.zeros(ctx.num_tasks)
        self._imtlg = jd.IMTLG()

    def aggregate(self, jacobian, losses, idx):
        if self.loss_balance:
            i = idx.cpu()
            l = losses.detach().cpu().float()
            self.s[i] -= self.scale_lr * (self.s[i].exp() * l - 1.0)  # d/ds (e^s L - s)
            jacobian = jacobian * self.s[i].exp().to(jacobian)[:, None]
        return jacobian[0] if len(idx) == 1 else self._imtlg(jacobian)

    def log(self):
        return {**super().log(), **self._weights_log(self.s.exp())}
