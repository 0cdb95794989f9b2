"""python -m search.replay EXPERIMENT_DIR: write the tracking data a sweep could not send to MLflow.

When the tracking server was still down at the end of a sweep, its queued operations were saved in
`EXPERIMENT_DIR/mlflow_pending.jsonl`. Once the server is back, this replays them in order (child runs
are found again by their `tune_trial_id` and `phase` tags, so nothing is logged twice) and renames the
file to `mlflow_pending.replayed.jsonl`. Exit codes: 0 done (or nothing to do), 1 the server is still
unreachable or refused an operation (what was not written stays in the file), 2 not an experiment.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtl_core.cli import OneLineParser, fail
from search.experiment import Files, read_state
from search.tracking import Tracker, TrackingUnavailable, check_tracking


def replay(exp_dir: Path, uri: str | None = None) -> int:
    """Write the pending operations; returns how many were written (raises on the first refusal)."""
    state = read_state(exp_dir)
    path = exp_dir / Files.PENDING
    ops = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tracker = Tracker(uri or state["tracking_uri"], exp_dir.name, state["parent_run_id"])
    done = 0
    try:
        for op in ops:
            tracker.apply(op)
            done += 1
    finally:  # what was not written stays, in order, for the next try
        rest = ops[done:]
        if rest:
            path.write_text("".join(json.dumps(op) + "\n" for op in rest))
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
    uri = args.mlflow_uri or state["tracking_uri"]
    if "***@" in uri:  # the state records the URI without its credentials
        return fail(f"--mlflow-uri: {exp_dir / Files.STATE} records {uri} without its credentials; "
                    f"pass the URI again with --mlflow-uri (or set MLFLOW_TRACKING_USERNAME/PASSWORD)")
    try:
        check_tracking(uri)
    except TrackingUnavailable as exc:
        return fail(f"{exc}; the operations stay in {exp_dir / Files.PENDING}", code=1)
    try:
        n = replay(exp_dir, uri)
    except Exception as exc:  # the server refused one: say which, keep the rest
        return fail(f"MLflow at {uri} refused an operation ({type(exc).__name__}: {exc}); "
                    f"what was not written stays in {exp_dir / Files.PENDING}", code=1)
    print(f"replayed {n} tracking operations to {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
