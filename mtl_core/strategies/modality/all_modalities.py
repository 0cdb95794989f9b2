import torch

from mtl_core.strategies.base import ModalitySchedule


class AllModalities(ModalitySchedule):
    """Text, video and audio for every sample."""

    name = "all"

    def mask(self, batch_size: int) -> torch.Tensor:
        return torch.ones(batch_size, 3, dtype=torch.bool)
