import logging

import torch

from mtl_core import MODALITIES, keys
from mtl_core.strategies.base import ModalitySchedule, StrategyContext

log = logging.getLogger(__name__)
DEFAULT_STAGES = (("text", "video"), ("text", "audio"), ("video", "audio"))


class OneAtATime(ModalitySchedule):
    """Modality-at-a-time training (docs/methods.md#modality-one_at_a_time): stage s uses only the
    modalities `stages[s]` for `epochs_per_stage` epochs; after the last stage every modality is used.
    HCA needs context from another modality, so the default stages are the three pairs; single
    modalities work too (the absent ones become the learned missing token). A stage none of whose
    modalities any training clip has is skipped (one warning), rather than trained for whole epochs on
    missing tokens only."""

    name = "one_at_a_time"

    def __init__(self, ctx: StrategyContext, *, stages: tuple[tuple[str, ...], ...] = DEFAULT_STAGES,
                 epochs_per_stage: int = 1):
        super().__init__(ctx)
        if epochs_per_stage < 1:
            raise ValueError(f"epochs_per_stage must be >= 1, got {epochs_per_stage}")
        for stage in stages:
            if not stage or any(m not in MODALITIES for m in stage):
                raise ValueError(f"every stage must be a non-empty list of {', '.join(MODALITIES)}, got {list(stage)}")
        stages = tuple(tuple(s) for s in stages)
        self.stages = tuple(s for s in stages if set(s) & set(ctx.modalities))
        skipped = [list(s) for s in stages if s not in self.stages]
        if skipped:
            log.warning("one_at_a_time: skipping stage(s) %s: no training clip has those modalities (has: %s)",
                        skipped, ", ".join(ctx.modalities))
        self.epochs_per_stage = epochs_per_stage
        self.current = MODALITIES

    def modalities(self, epoch: int) -> tuple[str, ...]:
        stage = epoch // self.epochs_per_stage
        return self.stages[stage] if stage < len(self.stages) else MODALITIES

    def start_epoch(self, epoch: int) -> None:
        self.current = self.modalities(epoch)

    def mask(self, present: torch.Tensor) -> torch.Tensor:
        row = torch.tensor([m in self.current for m in MODALITIES], device=present.device)
        return present & row

    def log(self):
        return {keys.modality(m): float(m in self.current) for m in MODALITIES}
