"""python -m search.launch SPACE.yaml: run a strategy search on Ray Tune (Optuna TPE + ASHA), tracked in MLflow.

Exit codes: 0 done, 2 bad space or options (one line, before Ray starts), 1 the sweep failed,
130 interrupted by Ctrl-C, 143 stopped by SIGTERM (resume either with --resume).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from mtl_core.cli import fail
from mtl_core.config import ConfigError
from mtl_core.model.text_encoder import EncoderNotFound, load_text_encoder
from mtl_core.validation import Problems
from search.cluster import ClusterUnavailable, auth_env, check_cluster
from search.console import log_to_file, route_third_party_logs, setup_console
from search.space import SpaceSpec, load_space, sample_configs
from search.experiment import STATE_FILE, resume_hint

log = logging.getLogger("search.launch")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", type=Path, help="search space YAML (see spaces/)")
    p.add_argument("--address", default=None, help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--storage", default="experiments", help="experiment storage folder (default ./experiments)")
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default: SQLite inside the experiment folder)")
    p.add_argument("--num-samples", type=int, default=None, help="override search.num_samples")
    p.add_argument("--max-concurrent", type=int, default=None, help="override search.max_concurrent")
    p.add_argument("--name", default=None, help="experiment name (default <space>-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any key of the space file, e.g. --set data.root=/data/cm (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--dry-run", action="store_true", help="validate and print sampled configurations; no Ray")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Tune's, MLflow's and Optuna's own messages on the console too "
                        "(otherwise they go to <experiment>/launch.log)")
    return p.parse_args(argv)


def _apply_cli(spec: SpaceSpec, args) -> SpaceSpec:
    from dataclasses import replace

    problems = Problems()
    for option, value in (("num_samples", args.num_samples), ("max_concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            problems.add(f"--{option.replace('_', '-')}: must be >= 1")
        elif value is not None:
            spec.search = replace(spec.search, **{option: value})
    problems.raise_if_any()
    return spec


def _experiment_dir(args, spec: SpaceSpec) -> Path:
    storage = Path(args.storage).expanduser().resolve()
    if args.name:
        return storage / args.name
    if args.resume:
        candidates = sorted((p for p in storage.glob(f"{spec.name}-*") if (p / STATE_FILE).is_file()),
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"--resume: no experiment of {spec.name!r} under {storage} (pass --name)")
        return candidates[-1]
    return storage / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_encoder(name: str) -> None:
    """An encoder that is not on this machine is a one-line mistake before anything starts (cheap: nothing
    is loaded but its config)."""
    try:
        load_text_encoder(name)
    except EncoderNotFound as exc:
        raise ConfigError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth_env(args.address)  # before anything imports ray: Ray reads RAY_AUTH_MODE at import
    setup_console(args.verbose)
    try:
        spec = _apply_cli(load_space(args.space, args.overrides), args)
        _check_encoder(spec.config.model.text_encoder)
        exp_dir = _experiment_dir(args, spec)
        if args.resume and not (exp_dir / STATE_FILE).is_file():
            raise ConfigError(f"--resume: {exp_dir} holds no experiment to resume")
        if not args.resume and exp_dir.exists() and any(exp_dir.iterdir()):
            raise ConfigError(f"--name: {exp_dir} already exists (use --resume to continue it)")
    except ConfigError as exc:
        return fail(str(exc))
    if args.dry_run:
        print(f"space {args.space} is valid; {spec.search.num_samples} trials of up to "
              f"{spec.max_t} epochs; first configurations:")
        for i, cfg in enumerate(sample_configs(spec, min(spec.search.num_samples, 10))):
            print(f"  {i}: {json.dumps(cfg)}")
        return 0

    if args.address is not None:
        try:
            check_cluster(args.address)
        except ClusterUnavailable as exc:
            return fail(str(exc))
    from search.tracking import TrackingUnavailable, check_tracking, default_tracking_uri

    exp_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(exp_dir)
    route_third_party_logs()
    uri = args.mlflow_uri or default_tracking_uri(exp_dir)
    try:
        check_tracking(uri)
    except TrackingUnavailable as exc:
        return fail(str(exc))
    from search.sweep import run_experiment

    try:
        return run_experiment(spec, exp_dir, uri, address=args.address, resume=args.resume)
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) outside a Tune phase: the state saved so far stands
        from search.signals import terminated

        print(f"{'stopped by SIGTERM' if terminated() else 'interrupted'}; {resume_hint(args.space, exp_dir)}",
              file=sys.stderr)
        return 143 if terminated() else 130


if __name__ == "__main__":
    sys.exit(main())
