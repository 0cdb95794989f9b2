import torch

from mtl_core import MODALITIES, keys
from mtl_core.strategies.base import ModalitySchedule


class AllModalities(ModalitySchedule):
    """Text, video and audio for every sample."""

    name = "all_modalities"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._used, self._n = torch.zeros(3), 0

    def mask(self, present: torch.Tensor) -> torch.Tensor:
        self._used += present.float().sum(0).cpu()
        self._n += len(present)
        return present.clone()

    def log(self):
        out = {keys.modality(m): float(self._used[j] / max(1, self._n)) for j, m in enumerate(MODALITIES)}
        self._used.zero_()
        self._n = 0
        return out
