"""Modality schedules: which modalities feed the encoder."""
from mtl_core.strategies.modality.all_modalities import AllModalities

REGISTRY = {cls.name: cls for cls in (AllModalities,)}
