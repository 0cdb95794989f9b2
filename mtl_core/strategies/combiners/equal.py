import torch

from mtl_core.strategies.base import LossCombiner


class Equal(LossCombiner):
    """Unweighted sum of the active task losses (unitary scalarization, METHODS.md 1.1).

    The sum, not the mean, is the one convention for every combiner, so learning rates compare."""

    name = "equal"

    def combine(self, losses: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return (losses * active).sum()

    def log(self) -> dict[str, float]:
        return {f"strategy/{t}/weight": 1.0 for t in self.ctx.tasks}
