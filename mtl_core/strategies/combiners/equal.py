from mtl_core.strategies.base import LossCombiner


class Equal(LossCombiner):
    """Unweighted sum of the active task losses (unitary scalarization, docs/methods.md#combiner-equal).

    The sum, not the mean, is the one convention for every combiner, so learning rates compare."""

    name = "equal"

    def combine(self, losses, active, grad_norms=None):
        return (losses * active).sum()

    def log(self):
        return {**super().log(), **self._weights_log([1.0] * self.ctx.num_tasks)}
