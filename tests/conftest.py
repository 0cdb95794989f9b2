import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "comic_mischief"

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2` on two cores: one torch thread per worker, or they oversubscribe
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and in the processes a test starts


# Tests marked `ray` start Ray and check what it left behind, which a second Ray beside them would break, so
# they run one at a time. With `-n 2` they all go to one xdist worker, in turn, while the other worker runs
# everything else: waiting on a lock instead left a worker idle for about 11 of the slow tier's 16 minutes.
# xdist's own `--dist loadgroup` would do this, but with pytest 9.2 its group suffix on the test ids has no
# effect, so the controller gets its own scheduler. Only a worker collects, so each worker writes the ids of
# its `ray` tests to a folder the controller made, before it reports its collection.
RAY_IDS = "MTL_TEST_RAY_IDS"


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None) \
            and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[RAY_IDS] = tempfile.mkdtemp(prefix="mtl-ray-ids-")  # the workers inherit it


def pytest_unconfigure(config):
    if not os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(RAY_IDS):
        shutil.rmtree(os.environ.pop(RAY_IDS), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reports the collection to the controller
def pytest_collection_finish(session):
    worker, folder = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(RAY_IDS)
    if worker and folder:
        ids = [item.nodeid for item in session.items if item.get_closest_marker("ray")]
        Path(folder, worker).write_text("\n".join(ids))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # `-n 2` alone means load; any other choice is the user's
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RayTestsOnOneWorker(LoadScopeScheduling):
        """xdist's per-scope scheduling with every test its own scope, except that all `ray` tests form
        one scope, which goes out first (the largest scope does) and so to one worker."""

        ray_ids: frozenset = frozenset()

        def schedule(self):
            if self.collection is None and os.environ.get(RAY_IDS):
                folder = Path(os.environ[RAY_IDS])
                self.ray_ids = frozenset(line for f in folder.iterdir() for line in f.read_text().splitlines())
            super().schedule()

        def _split_scope(self, nodeid):
            return "ray" if nodeid in self.ray_ids else nodeid

    return RayTestsOnOneWorker(config, log)


@pytest.fixture(autouse=True)
def one_ray_at_a_time(request, tmp_path_factory):
    """The `ray` tests also take turns on a lock file that every worker of the session shares, so they never
    overlap under another scheduling (`-p xdist --dist load`, say)."""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    import fcntl

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared  # the workers' common folder
    with open(shared / "ray-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # released when the file closes, also when the test fails


@pytest.fixture(autouse=True)
def root_logging():
    """A launcher or CLI run in-process points the root logger at the console it had (in a test: that test's
    captured stderr, closed once it ends); a later test on the same worker that logs must not write there
    (it printed a `--- Logging error ---` traceback into a hostile case's output, depending on which tests
    xdist had given that worker before it)."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


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
    """The metrics without their timings and the precision a run resolved (not results of the training)."""
    return [{k: v for k, v in m.items() if not k.startswith("time/") and k != "precision"} for m in history]


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


def kill_session(proc) -> None:
    """`proc` (started with `start_new_session`) and everything it started, killed if it still runs: a test
    never leaves a launcher, its Ray or a fake Slurm job behind."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
