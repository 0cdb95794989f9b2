"""python -m mtl_core.train CONFIG.yaml [--set key.path=value ...] [--out DIR]: one configuration, trained
alone (no Ray); per-epoch rows on the terminal, metrics.jsonl and the checkpoint in the run folder."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from mtl_core import keys
from mtl_core.checkpoint import FOLDER as CHECKPOINT
from mtl_core.config import ConfigError


from mtl_core.train import TrainingDiverged, train


def _progress_bar(enabled: bool):
    from tqdm import tqdm

    def wrap(batches, total, epoch):
        return tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, disable=not enabled, dynamic_ncols=True)
    return wrap


def _print_row(metrics: dict, tasks, first: bool) -> None:
    cols = ["epoch", "train_loss", "val_loss", keys.DEFAULT_METRIC] + [f"{t}_f1" for t in tasks] + ["sec"]
    if first:
        print(" ".join(f"{c:>11}" for c in cols), flush=True)
    train_loss = float(np.mean([metrics[keys.task("train", t, "loss")] for t in tasks]))
    vals = [metrics["epoch"], train_loss, metrics[keys.average("val", "loss")], metrics[keys.DEFAULT_METRIC]]
    vals += [metrics[keys.task("val", t)] for t in tasks] + [metrics["time/epoch_s"]]
    print(f"{vals[0]:>11d} " + " ".join(f"{v:>11.4f}" for v in vals[1:]), flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import yaml

    from mtl_core.checkpoint import CheckpointError
    from mtl_core.cli import fail, setup_logging
    from mtl_core.config import load_config
    from mtl_core.data.layout import DataError
    from mtl_core.model.text_encoder import EncoderNotFound

    p = argparse.ArgumentParser(prog="python -m mtl_core.train", description="Train one configuration (no Ray).")
    p.add_argument("config", type=Path, nargs="?", help="YAML config; omitted = all defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config key (repeatable), e.g. --set train.epochs=3")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--eval-test", action="store_true", help="evaluate the best checkpoint on the test split")
    args = p.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        return fail(str(exc))
    if args.resume and (args.out is None or not (args.out / CHECKPOINT / "state.pt").is_file()):
        return fail("--resume: needs --out DIR holding a checkpoint (a run folder of python -m mtl_core.train)")
    out = args.out or Path("runs") / f"{args.config.stem if args.config else 'default'}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except OSError as exc:  # --out is a file, under a file, or not writable: one line, not a traceback
        return fail(f"--out: {out}: {exc.strerror or exc}")
    metrics_path = out / "metrics.jsonl"
    if not args.resume:
        metrics_path.unlink(missing_ok=True)
    first = [True]

    def report(epoch: int, metrics: dict, checkpoint_dir: Path) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        _print_row(metrics, cfg.tasks, first[0])
        first[0] = False

    try:
        history = train(cfg, report, out, resume=args.resume, eval_test=args.eval_test,
                        progress=_progress_bar(cfg.train.progress and sys.stderr.isatty()))
        if args.eval_test and history:
            test = {k: v for k, v in history[-1].items() if k.startswith("test/")}
            (out / "test_metrics.json").write_text(json.dumps(test, indent=2))
            print(f"test/avg_f1 {test[keys.average('test')]:.4f} (best checkpoint) -> {out / 'test_metrics.json'}")
    except (ConfigError, EncoderNotFound) as exc:
        return fail(str(exc))
    except (DataError, CheckpointError) as exc:
        return fail(str(exc), code=1)
    except TrainingDiverged as exc:
        return fail(f"training diverged: {exc}", code=1)
    except KeyboardInterrupt:
        print(f"interrupted; resume with: python -m mtl_core.train {args.config or ''} --out {out} --resume",
              file=sys.stderr)
        return 130
    if history:
        best = max(history, key=lambda m: m[keys.DEFAULT_METRIC] if math.isfinite(m[keys.DEFAULT_METRIC]) else -1)
        print(f"best val/avg_f1 {best[keys.DEFAULT_METRIC]:.4f} at epoch {best['epoch']}; run folder {out}")
    return 0
