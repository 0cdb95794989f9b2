"""python -m search.launch SPACE.yaml: run a strategy search on Ray Tune (Optuna TPE + ASHA), tracked in MLflow.

Exit codes: 0 done, 2 a user mistake (a bad space, option, name, storage or dataset, an unreachable
tracking store or cluster, an experiment another launcher holds: one line each, before anything is
written), 1 the sweep failed (or a file of the experiment folder is corrupt), 130 interrupted by Ctrl-C,
143 stopped by SIGTERM (resume either with --resume).
"""
from __future__ import annotations

if __name__ == "__main__":  # first: a signal while the heavy imports below load ends in one line, not a traceback
    from search.io.signals import exit_early

    exit_early()

import argparse
import glob
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path


from mtl_core.cli import OneLineParser, fail
from mtl_core.config import ConfigError, model_width
from mtl_core.model.text_encoder import EncoderNotFound, load_text_encoder
from mtl_core.validation import Problems
from search.io import signals
from search.io.cluster import ClusterUnavailable, address_source, auth_env, check_cluster
from search.io.console import close_log_file, log_to_file, route_third_party_logs, setup_console
from search.io.disk import drop_broken_error_pickles, is_no_space, no_space_line
from search.io.files import CorruptFile, Files
from search.io.state import read_state, resume_hint
from search.space.rungs import check_first_rung
from search.io.folder_read import (RESUME_RISK, check_journal, check_no_links, check_only_ours, check_sqlite, read_space,
                               check_tune_pickles, read_rungs)
from search.io.lock import ExperimentLock, Locked
from search.io.signals import catch_signals, terminated
from search.space.settings import SpaceSpec, corner_samples
from search.space.parse import as_written, check_name, load_space, resolved
from search.space.optuna import sample_configs
from search.space.settings import SEARCH_UPPER
from search.space.trial import trial_config

log = logging.getLogger("search.launch")


def parse_args(argv):
    p = OneLineParser(prog="python -m search.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", type=Path, help="search space YAML (see spaces/)")
    p.add_argument("--address", default=None, help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT; "
                   "local: a private local Ray (the default, unless RAY_ADDRESS is set)")
    p.add_argument("--storage", default="experiments", help="experiment storage folder (default ./experiments)")
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default: SQLite inside the experiment folder)")
    p.add_argument("--num-samples", type=int, default=None, help="override search.num_samples")
    p.add_argument("--max-concurrent", type=int, default=None, help="override search.max_concurrent")
    p.add_argument("--name", default=None, help="experiment name (default <space>-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any key of the space file, e.g. --set data.root=/data/cm (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--trust-folder", action="store_true",
                   help="--resume a folder that others could have written (storage that maps owners, e.g. NFS "
                        "all_squash): Tune's state in it is pickles, which run the code they name")
    p.add_argument("--dry-run", action="store_true", help="validate and print sampled configurations; no Ray")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Tune's, MLflow's and Optuna's own messages on the console too "
                        "(otherwise they go to <experiment>/launch.log)")
    args = p.parse_args(argv)
    args.address, args.address_source = address_source(args.address)
    return args


def _apply_cli(spec: SpaceSpec, args) -> SpaceSpec:
    from dataclasses import replace

    problems = Problems()
    for option, value in (("num_samples", args.num_samples), ("max_concurrent", args.max_concurrent)):
        if value is not None and not 1 <= value <= SEARCH_UPPER[option]:
            problems.add(f"--{option.replace('_', '-')}: must be >= 1 and at most {SEARCH_UPPER[option]}")
        elif value is not None:
            spec.search = replace(spec.search, **{option: value})
    problems.raise_if_any()
    return spec


def _experiment_dir(args, spec: SpaceSpec, storage: Path) -> Path:
    if args.name:
        return storage / args.name
    if args.resume:
        candidates = sorted((p for p in storage.glob(f"{glob.escape(spec.name)}-*") if (p / Files.STATE).is_file()),
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"--resume: no experiment of {spec.name!r} under {args.storage} (pass --name)")
        return candidates[-1]
    return storage / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _storage(arg: str) -> Path:
    """The storage folder, resolved; it need not exist yet, but the nearest existing folder on its path
    must be one we can write in (checked before anything is written)."""
    try:
        path = Path(arg).expanduser().resolve()
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"--storage: {arg}: not a usable path ({type(exc).__name__})") from None
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--storage: {arg}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--storage: {arg}: cannot write in {probe} (permission denied)")
    return path


def _has_experiment(exp_dir: Path) -> bool:
    """A folder that holds anything but a lock file (a stale one from a killed launcher does not count)."""
    if exp_dir.exists() and not exp_dir.is_dir():
        raise ConfigError(f"--name: {exp_dir} exists and is not a folder")
    try:
        return exp_dir.is_dir() and any(p.name != Files.LOCK for p in exp_dir.iterdir())
    except OSError as exc:
        raise ConfigError(f"--name: {exp_dir}: cannot read ({exc.strerror})") from None


def _check_folder(args, spec: SpaceSpec, exp_dir: Path, ours: bool = False) -> int:
    """A new experiment needs an empty folder; --resume one that holds an experiment of the same space.
    A folder another live launcher holds is refused as such first, naming it (`ours`: we hold it now).
    Returns how many bytes of Optuna's journal are whole lines (`check_journal`; 0 for a new experiment)."""
    if exp_dir.is_dir() and not ours:
        ExperimentLock(exp_dir).check_free()
    if not args.resume:
        if _has_experiment(exp_dir):
            raise ConfigError(f"--name: {exp_dir} already exists (use --resume to continue it)")
        return 0
    if not read_state(exp_dir):
        raise ConfigError(f"--resume: {exp_dir} holds no experiment to resume")
    _check_same_space(spec, exp_dir)
    check_no_links(exp_dir)  # --trust-folder too: a link is never written through
    if not args.trust_folder:
        check_only_ours(exp_dir, RESUME_RISK)
    whole = check_journal(exp_dir / Files.OPTUNA_JOURNAL)  # Optuna replays it inside Ray: a bad line is said here
    check_tune_pickles(exp_dir)  # unpickled once the parent run is reopened: a cut-short one is said here
    if args.mlflow_uri is None:
        check_sqlite(exp_dir / Files.MLFLOW_DB)
    if spec.search.multi.objectives:  # MO-ASHA reads its rungs back inside Ray: a corrupt file is said here
        read_rungs(exp_dir / Files.MO_ASHA_RUNGS, len(spec.search.multi.objectives))
    return whole


def _check_same_space(spec: SpaceSpec, exp_dir: Path) -> None:
    """--resume runs the space the experiment recorded: another space (or --set, --num-samples) would
    relabel its finished trials and mix two searches in one study."""
    recorded = exp_dir / Files.SPACE
    if not recorded.is_file():
        return
    key = _first_difference(read_space(recorded), resolved(spec))
    if key is not None:
        raise ConfigError(f"--resume: {spec.path} is not the space this experiment ran (they differ at "
                          f"{key}); resume with the recorded one: python -m search.launch {recorded} "
                          f"--name {exp_dir.name} --storage {exp_dir.parent} --resume")


def _first_difference(a, b, path: str = "") -> str | None:
    """The first key path where two YAML trees differ, or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
        return None
    return None if a == b else (path or "the top level")


def _check_data(spec: SpaceSpec) -> None:
    """The dataset check of `python -m mtl_core.data check`, before anything starts: each problem is one
    line naming its file, paths as the user wrote them. The synthetic default is ours and needs none."""
    root = spec.base.get("data", {}).get("root")
    if root is None:
        return
    from mtl_core.data.check import check_dataset

    d = spec.config.data
    _, _, problems = check_dataset(Path(root), files={"train": d.train_file, "val": d.val_file, "test": d.test_file})
    if problems:
        raise ConfigError(*(f"data.root: {as_written(spec, p)}" for p in problems))
    _check_pretraining_modalities(spec, Path(root))


def _check_pretraining_modalities(spec: SpaceSpec, root: Path) -> None:
    """Every pretraining task the space may pick needs its two modalities in the training clips (the real
    text release has no video or audio): one line naming the task and the missing modality."""
    from mtl_core.data.check import split_modalities
    from mtl_core.pretrain import PRETRAIN_TASKS, check_modalities

    tasks = set(spec.config.pretrain.tasks)
    node = (spec.space.get("pretrain") or {}).get("tasks")
    options = node["choice"] if isinstance(node, dict) and isinstance(node.get("choice"), list) else [node]
    tasks |= {t for o in options if isinstance(o, list) for t in o}
    if tasks:
        available = split_modalities(root, "train", spec.config.data.train_file)
        check_modalities([t for t in PRETRAIN_TASKS if t in tasks], available, as_written(spec, str(root)))


def _check_encoder(name: str) -> None:
    """An encoder that is not on this machine is a one-line mistake before anything starts (cheap: nothing
    is loaded but its config)."""
    try:
        load_text_encoder(name)
    except EncoderNotFound as exc:
        raise ConfigError(str(exc)) from None


def _check_encoders(spec: SpaceSpec) -> None:
    """Every text encoder the space offers is on this machine, and each configuration's attention heads divide
    its encoder's width (a trial would fail on it otherwise)."""
    _check_encoder(spec.config.model.text_encoder)
    widths: dict[str, int] = {}
    for sample in corner_samples(spec.space, spec.config.tasks):
        model = trial_config(spec.base, sample).model
        if model.text_encoder not in widths:
            try:
                widths[model.text_encoder] = load_text_encoder(model.text_encoder).hidden_size
            except EncoderNotFound as exc:
                raise ConfigError(f"space.{exc}") from None
        width = model_width(model, widths[model.text_encoder])
        if width % model.attention_heads:
            what = (f"model.width {width}" if model.width is not None
                    else f"the width {width} of text encoder {model.text_encoder!r}")
            raise ConfigError(f"space.model.attention_heads: {model.attention_heads} does not divide {what}")


def _checks(args) -> tuple[SpaceSpec, Path]:
    """Everything that can be checked without writing: space, options, name, storage, folder, data."""
    spec = _apply_cli(load_space(args.space, args.overrides), args)
    if not args.resume:  # an experiment already running keeps the rungs it started with
        check_first_rung(spec)
    if args.name is not None:
        check_name(args.name, "--name")
    _check_encoders(spec)
    exp_dir = _experiment_dir(args, spec, _storage(args.storage))
    _check_folder(args, spec, exp_dir)
    _check_data(spec)
    return spec, exp_dir


def _check_services(args) -> str:
    """The cluster and a tracking server given with --mlflow-uri (the default store is created in the
    experiment folder). Returns the tracking URI to use (credentials moved to the environment)."""
    if args.address is not None:
        check_cluster(args.address, args.address_source)
    if args.mlflow_uri is None:
        return ""
    from search.tracking.tracker import check_tracking, credentials_to_env

    uri = credentials_to_env(args.mlflow_uri)
    check_tracking(uri)
    return uri


def _dry_run(args, spec: SpaceSpec) -> int:
    print(f"space {args.space} is valid; {spec.search.num_samples} trials of up to "
          f"{spec.max_t} epochs, ASHA's first rung at epoch {spec.search.grace_period}; first configurations:")
    for i, cfg in enumerate(sample_configs(spec, min(spec.search.num_samples, 10))):
        print(f"  {i}: {json.dumps(cfg)}")
    return 0


def _trim_journal(path: Path, whole: int) -> None:
    """Cut off a last journal line the kill left half-written (with the lock held), keeping its first `whole`
    bytes (`check_journal`): Optuna would append its next operation to that line and break the study."""
    if path.is_file() and whole < path.stat().st_size:
        os.truncate(path, whole)
        print(f"{path}: dropped a last line the interrupted launch left half-written", flush=True)


def _launch(args, spec: SpaceSpec, exp_dir: Path, uri: str) -> int:
    """Create and lock the folder, then run. A fresh start that fails or is interrupted before the
    experiment exists (its state file) removes what it wrote: the same command can simply run again."""
    try:
        exp_dir.parent.mkdir(parents=True, exist_ok=True)
        exp_dir.mkdir()
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise ConfigError(f"--storage: {exp_dir}: cannot create ({exc.strerror})") from None
    lock = ExperimentLock(exp_dir)
    try:
        lock.acquire()
    except Locked:
        if created:
            _discard(exp_dir, created)
        raise
    rc = None
    try:
        whole = _check_folder(args, spec, exp_dir, ours=True)  # again, now that no other launcher can change it
        if args.resume:
            _trim_journal(exp_dir / Files.OPTUNA_JOURNAL, whole)
            drop_broken_error_pickles(exp_dir)  # Tune would unpickle them and fail
        log_to_file(exp_dir)
        route_third_party_logs()
        from search.run.sweep import run_experiment
        from search.tracking.store import default_tracking_uri

        rc = run_experiment(spec, exp_dir, uri or default_tracking_uri(exp_dir), address=args.address,
                            resume=args.resume, address_source=args.address_source)
        if signals.late() and rc not in (130, 143):  # say why the signal did not stop it
            print(f"note: {signal.Signals(signals.late()).name} came after the experiment had ended; it changed "
                  f"nothing", file=sys.stderr, flush=True)
        return rc
    finally:
        signals.settle()  # whatever ends the launch now is its outcome: the clean-up below runs whole
        fresh_failed = not args.resume and rc != 0 and not (exp_dir / Files.STATE).is_file()
        if fresh_failed:
            close_log_file()
            _discard(exp_dir, created)
        lock.release(remove=fresh_failed)


def _discard(exp_dir: Path, created: bool) -> None:
    """Remove what a failed fresh start wrote (the folder was empty, or held a stale lock, before it)."""
    for path in exp_dir.iterdir() if exp_dir.is_dir() else ():
        if path.name != Files.LOCK:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    if created:
        (exp_dir / Files.LOCK).unlink(missing_ok=True)
        exp_dir.rmdir()


def _interrupted(args, exp_dir: Path | None) -> int:
    how = "stopped by SIGTERM" if terminated() else "interrupted"
    if exp_dir is not None and (exp_dir / Files.STATE).is_file():
        print(f"{how}; {resume_hint(args.space, exp_dir)}", file=sys.stderr)
    else:
        print(f"{how} {signals.NOTHING_KEPT}", file=sys.stderr)
    return 143 if terminated() else 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth_env(args.address)  # before anything imports ray: Ray reads RAY_AUTH_MODE at import
    setup_console(args.verbose)
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signals.reset()
    catch_signals()  # from the first moment: Ctrl-C and SIGTERM end in 130/143, never a traceback
    exp_dir = None
    try:
        spec, exp_dir = _checks(args)
        if args.dry_run:
            return _dry_run(args, spec)
        uri = _check_services(args)
        return _launch(args, spec, exp_dir, uri)
    except (ConfigError, Locked, ClusterUnavailable) as exc:  # TrackingUnavailable is a ConfigError
        signals.settle()
        return fail(str(exc))
    except CorruptFile as exc:
        signals.settle()
        return fail(str(exc), code=1)
    except Exception as exc:  # a full disk (an OSError, or Tune's TuneError naming one): one line, what was written kept
        if not is_no_space(exc) or exp_dir is None:
            raise
        kept = (exp_dir / Files.STATE).is_file()
        return fail(no_space_line(exc, exp_dir, resume_hint(args.space, exp_dir) if kept else None), code=1)
    except KeyboardInterrupt:
        return _interrupted(args, exp_dir)
    finally:
        signals.settle()  # a signal from here on changes nothing (the handlers restored below included)
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


if __name__ == "__main__":
    sys.exit(main())
