import os
from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "comic_mischief"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test writes caches under a temporary folder, never the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("mtl_cache")
    old = os.environ.get("MTL_CACHE_DIR")
    os.environ["MTL_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("MTL_CACHE_DIR", None)
    else:
        os.environ["MTL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from mtl_core.data.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("tiny_data"), seed=1, n_train=48, n_val=24, n_test=24)


def tiny_raw(root, **sections):
    """A small, fast config as a plain dict; keyword sections are merged in."""
    raw = {
        "data": {"root": str(root)},
        "model": {"text_encoder": "tiny", "rnn_units": 16, "attention_heads": 4, "head_dims": [16, 8, 4]},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "seed": 0, "progress": False},
    }
    for key, value in sections.items():
        raw.setdefault(key, {})
        if isinstance(value, dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return raw


@pytest.fixture
def tiny_cfg(tiny_data):
    from mtl_core.config import build_config

    def make(**sections):
        return build_config(tiny_raw(tiny_data, **sections))
    return make
