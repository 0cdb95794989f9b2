from mtl_core.strategies.base import StrategyContext
from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class AlignedMTL(TorchjdWeighting):
    """Aligned-MTL (Senushkin et al. 2023; docs/methods.md#combiner-aligned_mtl): condition the gradient
    system by setting all its singular values to one value (scale_mode `min`: the smallest), then average
    the aligned gradients (torchjd's default preference, 1/T each)."""

    name = "aligned_mtl"

    def __init__(self, ctx: StrategyContext, *, scale_mode: str = "min", space: str = "parameters"):
        super().__init__(ctx, space=space)
        if scale_mode not in ("min", "median", "rmse"):
            raise ValueError(f"scale_mode must be min, median or rmse, got {scale_mode!r}")
        self.scale_mode = scale_mode

    def make(self, n_active):
        return torchjd_aggregation().AlignedMTL(scale_mode=self.scale_mode)
