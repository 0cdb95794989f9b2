"""python -m search.replay EXPERIMENT_DIR: write the tracking data a sweep could not send to MLflow.

When the tracking server was still down at the end of a sweep, its queued operations were saved in
`EXPERIMENT_DIR/mlflow_pending.jsonl`. Once the server is back, this replays them in order (child runs
are found again by their `tune_trial_id` and `phase` tags, so nothing is logged twice) and renames the
file to `mlflow_pending.replayed.jsonl`. The spool is checked whole before anything is sent (it may come from
someone else: see `read_ops`), and the server `launch_state.json` names is used only in a folder nobody else
can write (`search.io.folder_read.check_only_ours`; --mlflow-uri names one instead). Exit codes: 0 done (or nothing
to do), 1 the server is still unreachable or refused an operation, or the spool is not one a sweep writes
(what was not written stays in the file), 2 not an experiment, a folder others can write, or a parent run
that is not this sweep's on the server (`check_parent`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtl_core.cli import OneLineParser, fail
from mtl_core.validation import ConfigError
from search.io.files import CorruptFile, Files
from search.io.state import read_state
from search.io.folder_read import REPLAY_RISK, check_only_ours, read_json_lines
from search.io.folder_write import write_text
from search.tracking.tracker import Tracker, TrackingUnavailable, check_tracking


# The parent run's MlflowClient calls a sweep queues (Tracker.call), each with its positional arguments (the run
# first) and the keywords it passes; a spool naming any other call, or other arguments, is not ours.
PARENT_CALLS = {"log_batch": (1, {"metrics"}), "log_metric": (3, {"step"}), "set_tag": (3, set()),
                "set_terminated": (1, {"status"}), "log_artifact": (2, set()), "log_artifacts": (3, set()),
                "log_inputs": (1, {"datasets"})}
OP_SHAPES = {"call": (str, list, dict), "start": (str, str, dict, dict), "metrics": (str, str, int, dict, dict, int),
             "end": (str, str, str, dict), "tags": (str, str, dict),
             "inputs": (str, str, list)}  # Tracker's operations, after their kind


def read_ops(exp_dir: Path, parent_run_id: str) -> list[list]:
    """The spool's operations, each checked against what a sweep writes (CorruptFile on the first that is
    not): the spool may come from a stranger, and replaying it runs MlflowClient calls. A parent-run call
    must be one the Tracker makes, on this experiment's parent run, and an artifact must lie inside the
    experiment folder: otherwise a spool could upload any file of yours to the server."""
    path, root = exp_dir / Files.PENDING, exp_dir.resolve()
    ops = read_json_lines(path)
    for number, op in enumerate(ops, start=1):
        where = f"{path}: operation {number}"
        shape = OP_SHAPES.get(op[0]) if isinstance(op, list) and op and isinstance(op[0], str) else None
        if shape is None or len(op) != len(shape) + 1 or not all(
                isinstance(v, t) and not isinstance(v, bool) for v, t in zip(op[1:], shape)):
            raise CorruptFile(f"{where} is not a tracking operation a sweep writes")
        if op[0] != "call":
            continue
        _, method, args, kwargs = op
        positional, keywords = PARENT_CALLS.get(method, (-1, set()))
        if len(args) != positional or args[0] != parent_run_id or not set(kwargs) <= keywords:
            raise CorruptFile(f"{where}: {method!r} on run {args[:1]} with keywords {sorted(kwargs)} is not a call "
                              f"a sweep makes on its parent run")
        if method.startswith("log_artifact"):
            local = args[1]
            if not isinstance(local, str) or not Path(local).is_absolute():
                raise CorruptFile(f"{where}: the artifact {local!r} is not a path the sweep wrote (absolute)")
            local = Path(local).resolve()
            files = [local, *local.rglob("*")] if local.is_dir() else [local]
            if any(not f.resolve().is_relative_to(root) for f in files):
                raise CorruptFile(f"{where}: the artifact {args[1]} is outside {exp_dir} (a spool sends only the "
                                  f"folder's own files; a folder moved since its sweep keeps its old paths)")
    return ops


def check_parent(uri: str, experiment: str, run_id: str, token: str | None) -> None:
    """ConfigError unless `run_id` is this folder's sweep parent run on the server at `uri`: a live run tagged
    `sweep.kind` in the experiment named `experiment`, whose `sweep.token` tag (when it has one) is the
    folder's `token`. Otherwise a folder could name any run of yours (on the server you pass with
    --mlflow-uri, or one named after your experiment) and have its spool logged into it. Raises what MLflow
    raises when the server fails to answer."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise ConfigError(f"the parent run {run_id} that {Files.STATE} names is not on {uri}") from None
    named, tags = client.get_experiment(run.info.experiment_id).name, run.data.tags
    why = ("it is deleted" if run.info.lifecycle_stage != "active"
           else f"it is in experiment {named!r}, not {experiment!r}" if named != experiment
           else "it has no sweep.kind tag" if "sweep.kind" not in tags
           else f"its sweep.token tag is not the one {Files.STATE} records"
           if "sweep.token" in tags and tags["sweep.token"] != token else None)
    if why:
        raise ConfigError(f"run {run_id} that {Files.STATE} names is not this folder's sweep parent run on {uri}: {why}")


def replay(exp_dir: Path, ops: list[list], uri: str, parent_run_id: str) -> int:
    """Write the pending operations (`read_ops`, checked); returns how many were written (raises on the first
    refusal)."""
    path = exp_dir / Files.PENDING
    tracker = Tracker(uri, exp_dir.resolve().name, parent_run_id)  # resolved: "." has no name
    done = 0
    try:
        for op in ops:
            tracker.apply(op)
            done += 1
    finally:  # what was not written stays, in order, for the next try
        rest = ops[done:]
        if rest:
            write_text(path, "".join(json.dumps(op) + "\n" for op in rest))
        else:
            path.rename(path.with_name(Files.REPLAYED))
    return done


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment_dir", type=Path)
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default: the one the sweep used)")
    args = p.parse_args(argv)
    exp_dir = args.experiment_dir
    try:
        state = read_state(exp_dir)
    except (OSError, ValueError):
        state = {}
    if "tracking_uri" not in state or "parent_run_id" not in state:
        return fail(f"{exp_dir}: not an experiment folder (no readable {Files.STATE})")
    if not (exp_dir / Files.PENDING).is_file():
        print(f"nothing to replay: {exp_dir / Files.PENDING} does not exist")
        return 0
    try:  # all checked before anything is sent
        if args.mlflow_uri is None:
            check_only_ours(exp_dir, REPLAY_RISK)
        ops = read_ops(exp_dir, state["parent_run_id"])
    except ConfigError as exc:
        return fail(str(exc))
    except CorruptFile as exc:
        return fail(f"{exc}; nothing was replayed", code=1)
    uri = args.mlflow_uri or state["tracking_uri"]
    if "***@" in uri:  # the state records the URI without its credentials
        return fail(f"--mlflow-uri: {exp_dir / Files.STATE} records {uri} without its credentials; "
                    f"pass the URI again with --mlflow-uri (or set MLFLOW_TRACKING_USERNAME/PASSWORD)")
    try:
        check_tracking(uri)
    except TrackingUnavailable as exc:
        return fail(f"{exc}; the operations stay in {exp_dir / Files.PENDING}", code=1)
    try:
        check_parent(uri, exp_dir.resolve().name, state["parent_run_id"], state.get("sweep_token"))
    except ConfigError as exc:
        return fail(f"{exc}; nothing was replayed")
    except Exception as exc:  # the server failed to answer
        return fail(f"MLflow at {uri} refused to show the parent run ({type(exc).__name__}: {exc}); "
                    f"the operations stay in {exp_dir / Files.PENDING}", code=1)
    try:
        n = replay(exp_dir, ops, uri, state["parent_run_id"])
    except Exception as exc:  # the server refused one: say which, keep the rest
        return fail(f"MLflow at {uri} refused an operation ({type(exc).__name__}: {exc}); "
                    f"what was not written stays in {exp_dir / Files.PENDING}", code=1)
    print(f"replayed {n} tracking operations to {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
