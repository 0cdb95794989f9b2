from mtl_core.strategies.combiners.torchjd_weighting import TorchjdWeighting, torchjd_aggregation


class PCGrad(TorchjdWeighting):
    """PCGrad (Yu et al. 2020; docs/methods.md#combiner-pcgrad): each g_i is projected onto the normal
    plane of every conflicting g_j (random order per i, from torch's seeded RNG), then summed. Shared
    parameters only."""

    name = "pcgrad"

    def make(self, n_active):
        return torchjd_aggregation().PCGrad()
