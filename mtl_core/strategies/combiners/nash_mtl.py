import numpy as np

from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class NashMTL(TorchjdWeighting):
    """Nash-MTL (Navon et al. 2022; docs/methods.md#combiner-nash_mtl): the bargaining solution
    (Kα)_t = 1/α_t, solved with cvxpy/ECOS every `update_weights_every` steps; the update norm is clipped
    to `max_norm`."""

    name = "nash_mtl"

    def __init__(self, ctx: StrategyContext, *, update_weights_every: int = 1, optim_niter: int = 20,
                 max_norm: float = 1.0, space: str = "parameters"):
        super().__init__(ctx, space=space)
        try:
            import cvxpy  # noqa: F401
            import ecos  # noqa: F401
        except ImportError:
            raise ValueError("nash_mtl needs its solver: pip install 'torchjd[nash-mtl]'") from None
        if update_weights_every < 1 or optim_niter < 1:
            raise ValueError("update_weights_every and optim_niter must be >= 1")
        self.update_weights_every, self.optim_niter, self.max_norm = update_weights_every, optim_niter, max_norm

    def make(self, n_active):
        return torchjd_aggregation().NashMTL(n_tasks=n_active, max_norm=self.max_norm,
                                             update_weights_every=self.update_weights_every,
                                             optim_niter=self.optim_niter)

    @staticmethod
    def _solver(agg):
        # the weighting object that holds Nash-MTL's state (previous α, step count)
        return next(m for m in agg.modules() if hasattr(m, "prvs_alpha"))

    def state_dict(self):
        out = {}
        for active, agg in self._cache.items():
            s = self._solver(agg)
            out[active] = {"step": s.step, "prvs_alpha": np.array(s.prvs_alpha),
                           "normalization_factor": np.array(s.normalization_factor)}
        return out

    def load_state_dict(self, state):
        for active, st in state.items():
            s = self._solver(self.aggregator(tuple(active)))
            s.prvs_alpha, s.normalization_factor = st["prvs_alpha"], st["normalization_factor"]
            s.step = st["step"]
            if s.step > 0:
                s._init_optim_problem()  # rebuild the cvxpy problem around the restored α
