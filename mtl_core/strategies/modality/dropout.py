import torch

from mtl_core import MODALITIES, keys
from mtl_core.strategies.base import ModalitySchedule, StrategyContext


class ModalityDropout(ModalitySchedule):
    """ModDrop (Neverova et al.; docs/methods.md#modality-dropout): per sample and modality, drop with
    probability p_text / p_video / p_audio (each defaults to `p`), among the modalities the clip has. A clip whose
    draw drops everything it has keeps one of its own modalities chosen uniformly at random (a text-only
    clip always keeps its text), so no clip ever trains on nothing. Dropped modalities are masked (the
    model's learned missing token), never zero-filled. Training only; evaluation sees every modality."""

    name = "dropout"
    _state_keys = ("gen",)

    def __init__(self, ctx: StrategyContext, *, p: float = 0.2, p_text: float | None = None,
                 p_video: float | None = None, p_audio: float | None = None):
        super().__init__(ctx)
        probs = [p if q is None else q for q in (p_text, p_video, p_audio)]
        if not all(0.0 <= q < 1.0 for q in probs):
            raise ValueError(f"drop probabilities must be in [0, 1), got {probs}")
        self.drop = torch.tensor(probs)
        self.gen = ctx.generator(salt=13)
        self._kept = torch.zeros(3)
        self._n = 0

    def mask(self, present: torch.Tensor) -> torch.Tensor:
        present = present.cpu()
        keep = (torch.rand(present.shape, generator=self.gen) >= self.drop) & present  # [B, 3]
        lost = ~keep.any(1) & present.any(1)
        if lost.any():  # re-keep one of the clip's own modalities, uniformly
            scores = torch.rand(int(lost.sum()), 3, generator=self.gen).masked_fill(~present[lost], -1.0)
            rows = lost.nonzero().flatten()
            keep[rows, scores.argmax(1)] = True
        self._kept += keep.float().sum(0)
        self._n += len(present)
        return keep

    def log(self):
        out = {keys.modality(m): float(self._kept[j] / max(1, self._n)) for j, m in enumerate(MODALITIES)}
        self._kept.zero_()
        self._n = 0
        return out
