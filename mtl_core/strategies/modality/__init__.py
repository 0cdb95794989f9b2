"""Modality schedules: which modalities feed the encoder."""
from mtl_core.strategies.modality.all_modalities import AllModalities
from mtl_core.strategies.modality.dropout import ModalityDropout
from mtl_core.strategies.modality.one_at_a_time import OneAtATime

REGISTRY = {cls.name: cls for cls in (AllModalities, OneAtATime, ModalityDropout)}
