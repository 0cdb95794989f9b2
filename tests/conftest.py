import os
from pathlib import Path

import pytest
import torch
from torch import nn

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "comic_mischief"

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2` on two cores: one torch thread per worker, or they oversubscribe
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and in the processes a test starts


@pytest.fixture(autouse=True)
def one_ray_at_a_time(request, tmp_path_factory):
    """Tests marked `ray` start Ray and check what it left behind, which a second Ray beside them (the other
    xdist worker's) would break: they take turns on a lock file that every worker of the session shares,
    while the other tests run beside them. (xdist's `--dist loadgroup` would do this, but with pytest 9.2 its
    group suffix on the test ids has no effect.)"""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    import fcntl

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared  # the workers' common folder
    with open(shared / "ray-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # released when the file closes, also when the test fails


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


class Interrupt(Exception):
    """Raised from a report callback to stop a run after a given epoch, as a killed process would."""


def strip_time(history):
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in history]


def assert_resume_exact(cfg, root, stop_after: int = 1, prepared=None):
    """Training interrupted after `stop_after` and resumed gives exactly the uninterrupted metrics."""
    from mtl_core.train import train

    full = train(cfg, None, root / "full", prepared=prepared)

    def stop(epoch, metrics, ckpt):
        if epoch == stop_after:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(cfg, stop, root / "part", prepared=prepared)
    resumed = train(cfg, None, root / "part", resume=True, prepared=prepared)
    assert strip_time(resumed) == strip_time(full)


class Toy(nn.Module):
    """A shared layer and three heads; the interface the lookahead needs."""

    tasks = ("a", "b", "c")

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Dropout(0.2))
        head = nn.Linear(6, 2)
        self.heads = nn.ModuleDict({t: nn.Linear(6, 2) for t in self.tasks})
        for h in self.heads.values():  # identical heads: tasks differ only by their labels
            h.load_state_dict(head.state_dict())

    def shared_parameters(self):
        return list(self.shared.parameters())

    def encode(self, x):
        return torch.tanh(self.shared(x))

    def heads_forward(self, z, tasks=None):
        return {t: self.heads[t](z) for t in (tasks or self.tasks)}
