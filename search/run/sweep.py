"""The Ray side of a launch: prepare the data once, open the MLflow parent run, start or join Ray, run the
grouping mode's phases (`search.run.phases.PHASES`), then the common finish step (`search.run.finish`)."""
from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

import ray
import torch
from ray._private import ray_constants
from ray._private import utils as ray_utils

from mtl_core.data.layout import DataError
from mtl_core.model.text_encoder import EncoderNotFound
from mtl_core.prepare import prepare
from search.io.console import is_quiet, route_third_party_logs
from search.tune.experiment import Experiment
from search.io.files import Files
from search.io.state import read_state, write_state
from search.run.finish import finish
from search.io.folder_write import write_text
from search.run.phases import PHASES, Outcome
from search.io.cluster import joined_cluster
from search.io.signals import catch_signals, hold, release, settle, sigterm_received
from search.space.settings import SpaceSpec
from search.space.parse import as_written, dump_resolved
from search.tracking.store import default_tracking_uri, start_store
from search.tracking.tracker import Link, Tracker, mask_uri, open_parent


def run_experiment(spec: SpaceSpec, exp_dir: Path, uri: str, address: str | None, resume: bool,
                   address_source: str | None = None) -> int:
    """The launch once every check has passed and the folder is locked. Returns the exit code; raises
    KeyboardInterrupt when Ctrl-C or SIGTERM came outside a Tune phase (the parent run closed as KILLED)."""
    started = time.time()
    if not (exp_dir / Files.SPACE).is_file():  # never rewritten: --resume runs the recorded space
        write_text(exp_dir / Files.SPACE, dump_resolved(spec))
    try:
        _prepare_data(spec)
    except (DataError, EncoderNotFound) as exc:  # what the launcher's checks cannot see (e.g. weights that fail to load)
        settle()
        print(f"error: {as_written(spec, str(exc))}", file=sys.stderr, flush=True)
        return 2
    hold()  # the parent run is opened and recorded whole: a signal meanwhile stops the launch right after
    try:
        exp = _open(spec, exp_dir, uri, resume)
    except Exception as exc:  # the store answered the probe but refuses the experiment (permissions, schema)
        return _store_refused(exc, exp_dir, uri)
    print(f"experiment {exp_dir} (MLflow: {mask_uri(uri)}, parent run {exp.tracker.parent_run_id})", flush=True)
    ours = False
    try:
        release()
        try:
            ours = _start_ray(address, address_source)
        except (RuntimeError, ConnectionError, OSError) as exc:
            return _ray_failed(exp, exc)
        return _run_phases(exp, started)
    except KeyboardInterrupt:
        exp.tracker.call("set_terminated", status="KILLED")
        exp.tracker.close()
        raise
    except (Exception, SystemExit):  # a fault of ours (or a library's sys.exit): the parent run is not left RUNNING
        exp.tracker.call("set_terminated", status="FAILED")
        exp.tracker.close()
        raise
    finally:
        if ours or (address is None and ray.is_initialized()):  # ours, even if ray.init was cut short
            ray.shutdown()
            catch_signals()  # ray.shutdown may leave SIGTERM at its default, which kills the process outright


def _store_refused(exc: Exception, exp_dir: Path, uri: str) -> int:
    """One line for a store that will not open the experiment's parent run: the experiment's own mlflow.db (a
    file of the folder: exit 1, named) or the server at --mlflow-uri (exit 2)."""
    settle()
    if uri != default_tracking_uri(exp_dir):
        print(f"error: --mlflow-uri: {mask_uri(uri)}: cannot open the experiment's parent run "
              f"({type(exc).__name__})", file=sys.stderr, flush=True)
        return 2
    said = (str(exc).strip().splitlines() or [""])[0][:160]  # e.g. "(sqlite3.DatabaseError) ... malformed"
    print(f"error: {exp_dir / Files.MLFLOW_DB}: cannot open the experiment's MLflow store and its parent run "
          f"({type(exc).__name__}: {said})", file=sys.stderr, flush=True)
    return 1


def _ray_failed(exp: Experiment, exc: Exception) -> int:
    """Ray did not start: the parent run ends FAILED; a fresh start is undone (without its state the launcher
    removes the folder, the default store with it), a resumed experiment is kept as it was."""
    settle()
    exp.tracker.call("set_terminated", status="FAILED")
    exp.tracker.close()
    why = f"Ray did not start ({type(exc).__name__}: {str(exc).strip()[:200]})"
    if exp.resume:
        print(f"error: {why}; the experiment is kept: once that is fixed, {exp.resume_hint()}", file=sys.stderr,
              flush=True)
    else:
        (exp.dir / Files.STATE).unlink(missing_ok=True)
        print(f"error: {why}; the start was undone (parent run FAILED): once that is fixed, run the same command "
              f"again", file=sys.stderr, flush=True)
    return 1


def _run_phases(exp: Experiment, started: float) -> int:
    out = Outcome(started=started)
    for phase in PHASES[exp.spec.search.grouping_mode]:
        phase(exp, out)
        if out.interrupted:
            settle()  # a stop is under way: a further signal must not cut its clean-up short
            break
    return finish(exp, out)


def _open(spec: SpaceSpec, exp_dir: Path, uri: str, resume: bool) -> Experiment:
    """The experiment's context: its MLflow parent run (reopened on --resume) and the state file."""
    state = read_state(exp_dir)
    params = {"space_file": str(spec.path), **{f"search.{k}": v for k, v in spec.search.as_keys().items()}}
    artifacts = exp_dir / "mlartifacts" if uri == default_tracking_uri(exp_dir) else None
    if artifacts is not None:
        start_store(exp_dir)  # a copy of a cached empty store: no schema migrations per launch
    token = state.get("sweep_token") or secrets.token_hex(16)  # proves to search.tracking.replay which run is ours
    parent = open_parent(uri, exp_dir.name, state.get("parent_run_id"), params, exp_dir / Files.SPACE,
                         spec.search.kind, artifacts, token=token)
    state.update({"parent_run_id": parent, "space": str(spec.path.resolve()), "tracking_uri": mask_uri(uri),
                  "sweep_token": token})
    write_state(exp_dir, state)
    Link.reset()  # this launch's trackers share an outage state of their own
    return Experiment(spec, exp_dir, Tracker(uri, exp_dir.name, parent, spool=str(exp_dir / Files.PENDING)), resume)


def _prepare_data(spec: SpaceSpec) -> None:
    """Build the synthetic default, the columnar cache and the frozen text features once, before
    any trial: trials then only memory-map them."""
    # frozen text features on this machine's GPU when it has one (trials then only read the cache)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prepare(spec.config, device, splits=("train", "val", "test"))


def _start_ray(address: str | None, source: str | None = None) -> bool:
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # per-epoch checkpoints are the point
    quiet = {"configure_logging": False} if is_quiet() else {}  # Ray's own console logging off
    route_third_party_logs()  # ray's import-time console handler: its start-up notices (token auth) go to the log
    # Ray's native crash handler takes SIGTERM too, and ray.shutdown resets SIGTERM to the default, which
    # kills the launcher outright mid-shutdown: the driver keeps Python's handlers (workers keep Ray's). The
    # driver's core worker reads the setting once, in ray.init: it is set for that call only, never in
    # os.environ (which the node and its workers would inherit)
    saved = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        if address is not None:  # token authentication was set up by the launcher, before ray's import
            _ray_init(address=address, log_to_driver=False, **quiet)
            started = False
        else:
            # "local": a Ray of our own, even where `ray start` left a cluster in /tmp/ray/ray_current_cluster
            # (ray.init's default would join that one, and refuse num_cpus); a cluster is joined only by address
            _ray_init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
                      log_to_driver=False, **quiet)
            started = True
    finally:
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = saved
    route_third_party_logs()
    if address is not None:
        print(joined_cluster(address, source), flush=True)
    return started


def _ray_init(**kwargs) -> None:
    """ray.init, with a signal during it kept for its end, then handled like any other (the caller shuts a Ray
    it started down). ray.init would install SIGTERM handlers that end the launcher without a line (exit 15;
    the local node's kills its processes, then exit 1): they are left out and ours stay. Should one be
    installed all the same, SIGTERM is held back on this thread and an exit 15 taken for what it is."""
    hold()
    installs = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    started = False
    try:
        ray.init(**kwargs)
        started = True
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        sigterm_received()
        raise KeyboardInterrupt from None
    finally:
        ray_utils.set_sigterm_handler = installs
        catch_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)  # a SIGTERM held back reaches ours now, and is kept
        release(stop=started)  # the signal kept stops the launch now (when ray.init itself failed: its line)
