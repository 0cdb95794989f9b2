"""Record every epoch of an unpruned search once, for bench/bench_replay.py to replay schedulers on.

The configurations are the ones the search would draw first (`search.space.optuna.sample_configs`: Optuna's random
sampler on the space's seed, TPE's start-up), each trained to max_t by `mtl_core.train` directly: no Ray and no
scheduler, one thread each, `--jobs` at a time. One JSON line per finished configuration is appended to the
curves file: its index in the draw, label, overrides, and per epoch the search metric, every task's val F1
and the epoch's seconds; the test split's scores of the configuration's best epoch (eval_test) at the end. A
rerun with the same setting skips the indices already in the file, so a killed recording loses only the
configurations that were training.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mtl_core import keys

ROOT = Path(__file__).resolve().parents[1]


def setting_of(space: Path, overrides: list[str], spec) -> dict:
    """What makes two curves comparable: the space file, the --set overrides, max_t and the draw's seed."""
    try:
        name = str(Path(space).resolve().relative_to(ROOT))
    except ValueError:
        name = str(space)
    return {"space": name, "overrides": sorted(overrides), "max_t": spec.max_t, "seed": spec.search.seed,
            "metric": spec.search.metric, "mode": spec.search.mode}


def read_curves(path: Path, setting: dict | None = None) -> list[dict]:
    """The lines of a curves file (of `setting` only, when given), in index order."""
    if not Path(path).is_file():
        return []
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise SystemExit(f"error: {path}: line {number} is not JSON")
            if not isinstance(row, dict) or not isinstance(row.get("val"), list):
                raise SystemExit(f"error: {path}: line {number} is not a recorded curve")
            if setting is None or row.get("setting") == setting:
                rows.append(row)
    return sorted(rows, key=lambda r: r["index"])


def _train_one(job: tuple) -> dict:
    index, base, overrides, metric, mode, tasks = job
    from mtl_core.train import TrainingDiverged, train
    from search.analysis.labels import config_label
    from search.space.trial import trial_config

    cfg = trial_config(base, overrides)
    cfg = replace(cfg, train=replace(cfg.train, num_threads=1, progress=False, select_metric=metric,
                                     select_mode=mode))
    epochs: list[dict] = []

    def report(epoch, metrics, checkpoint_dir):
        epochs.append(metrics)

    diverged = None
    with tempfile.TemporaryDirectory(prefix="curve-") as run_dir:
        try:
            train(cfg, report, run_dir, eval_test=True)
        except TrainingDiverged as exc:
            diverged = str(exc)
    last = epochs[-1] if epochs else {}
    return {
        "index": index, "label": config_label(overrides, base), "overrides": overrides,
        "val": [m.get(metric) for m in epochs],
        "tasks": {t: [m.get(keys.task("val", t)) for m in epochs] for t in tasks},
        "seconds": [m.get("time/epoch_s") for m in epochs],
        "test": last.get(keys.average("test")),
        "test_tasks": {t: last.get(keys.task("test", t)) for t in tasks},
        "diverged": diverged,
    }


def record(space: Path, overrides: list[str], n: int, out: Path, jobs: int = 2) -> int:
    import torch

    from mtl_core.prepare import prepare
    from search.space.parse import load_space
    from search.space.optuna import sample_configs

    spec = load_space(space, overrides)
    setting = setting_of(space, overrides, spec)
    done = {r["index"] for r in read_curves(out, setting)}
    todo = [i for i in range(n) if i not in done]
    print(f"{setting['space']}: {len(done)} of {n} configurations recorded, {len(todo)} to go", file=sys.stderr)
    if not todo:
        return 0
    prepare(spec.config, torch.device("cpu"), splits=("train", "val", "test"))  # the cache once, before the workers
    configs = sample_configs(spec, n)
    tasks = list(spec.config.tasks)
    work = [(i, spec.base, configs[i], spec.search.metric, spec.search.mode, tasks) for i in todo]
    out.parent.mkdir(parents=True, exist_ok=True)
    # a TERM (a `timeout` on the recording) ends it like Ctrl-C: the pool's workers are terminated with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        for row in pool.imap_unordered(_train_one, work):
            row["setting"] = setting
            with open(out, "a") as f:  # one whole line per configuration: a kill loses only those training
                f.write(json.dumps(row) + "\n")
            print(f"  [{time.perf_counter() - t0:6.0f}s] #{row['index']} {len(row['val'])} epochs "
                  f"{sum(s or 0 for s in row['seconds']):.0f}s val {row['val'][-1] if row['val'] else None} "
                  f"{row['label']}", file=sys.stderr, flush=True)
    return 0
