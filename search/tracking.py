"""MLflow tracking on the driver: one parent run per experiment, one nested child run per trial.

Only the driver talks to MLflow, so the default SQLite store inside the experiment folder works on a
cluster too (workers never need to reach it). The callback is restore-safe: its trial -> run map is
part of Tune's experiment state, and before creating a child run it looks one up by the
`tune_trial_id` tag, so a resumed experiment never logs a trial twice.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray import tune

from search.results import error_line

METRIC_PREFIXES = ("train/", "val/", "test/", "strategy/", "affinity/")


class TrackingUnavailable(RuntimeError):
    pass


def default_tracking_uri(exp_dir: Path) -> str:
    return f"sqlite:///{(exp_dir / 'mlflow.db').resolve()}"


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (before any training) when the tracking store cannot be reached."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout_s)))
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # any failure here means no tracking: say so in one line
        raise TrackingUnavailable(f"--mlflow-uri: cannot reach the MLflow tracking store at {uri} "
                                  f"({type(exc).__name__})") from None


def flat_params(overrides: dict[str, Any]) -> list[Param]:
    out = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out.append(Param(key, text[:6000]))
    return out


def open_parent(uri: str, experiment: str, run_id: str | None, params: dict[str, Any], space_file: Path,
                artifact_dir: Path | None = None) -> str:
    """Create (or reopen, on --resume) the experiment's parent run; returns its id.

    `artifact_dir`: where artifacts go (the default store keeps them in the experiment folder; without
    it MLflow would write them to ./mlruns of whatever directory the launcher runs in). With a
    tracking server it is None and the server decides."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = artifact_dir.resolve().as_uri() if artifact_dir is not None else None
        exp_id = client.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    # MLflow 3 opens an experiment on its GenAI overview unless told it holds training runs
    client.set_experiment_tag(exp_id, "mlflow.experimentKind", "custom_model_development")
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(exp_id, run_name=f"{experiment}-sweep", tags={"sweep.kind": "optuna-tpe+asha"})
    client.log_batch(run.info.run_id, params=flat_params(params))
    client.log_artifact(run.info.run_id, str(space_file))
    return run.info.run_id


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class MLflowTrials(tune.Callback):
    """Child run per trial: sampled parameters, per-epoch metrics (step = epoch), final status.

    When the tracking server goes away mid-sweep, training goes on: every MLflow operation is queued
    and replayed in order once the server answers again (retried at most every `retry_s`; the queue is
    part of the callback's saved state). Whatever is still queued when the experiment ends is written
    to `spool` (JSON lines) and reported loudly, never dropped silently."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, max_t: int, phase: str = "search",
                 spool: str | None = None, retry_s: float = 30.0):
        self.tracking_uri, self.experiment, self.parent_run_id = tracking_uri, experiment, parent_run_id
        self.max_t, self.phase, self.spool, self.retry_s = max_t, phase, spool, retry_s
        self._runs: dict[str, str] = {}
        self._pending: list[tuple] = []
        self._retry_at = 0.0
        self._client: MlflowClient | None = None
        self._exp_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        if self._exp_id is None:
            self._exp_id = self._client.get_experiment_by_name(self.experiment).experiment_id
        return self._client

    def get_state(self) -> dict:
        return {"runs": dict(self._runs), "pending": list(self._pending)}

    def set_state(self, state: dict) -> None:
        self._runs.update(state.get("runs", {}))
        self._pending = list(state.get("pending", [])) + self._pending

    # -- queue -----------------------------------------------------------------------------------

    def _queue(self, op: tuple) -> None:
        self._pending.append(op)
        self.flush()

    def flush(self, force: bool = False) -> None:
        if not force and time.monotonic() < self._retry_at:
            return
        while self._pending:
            try:
                self._apply(self._pending[0])
            except Exception as exc:  # unreachable store: keep the queue, try again later
                if not self._retry_at:
                    print(f"warning: MLflow at {self.tracking_uri} is not answering ({type(exc).__name__}); "
                          f"buffering tracking data and retrying every {self.retry_s:.0f}s", flush=True)
                self._retry_at = time.monotonic() + self.retry_s
                return
            self._pending.pop(0)
        if self._retry_at:
            print(f"MLflow at {self.tracking_uri} answers again; buffered tracking data written", flush=True)
        self._retry_at = 0.0

    def _apply(self, op: tuple) -> None:
        kind, tid = op[0], op[1]
        if kind == "start":
            self._ensure_run(tid, op[2])
        elif kind == "metrics":
            _, _, step, values, tags, stamp = op
            run_id = self._ensure_run(tid, None)
            metrics = [Metric(k, v if math.isfinite(v) else float("nan"), stamp, step) for k, v in values.items()]
            run_tags = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, max(1, len(metrics)), 900):  # MLflow caps a batch at 1000 entries
                self.client.log_batch(run_id, metrics=metrics[i:i + 900], tags=run_tags if i == 0 else [])
        elif kind == "end":
            _, _, status, tags = op
            run_id = self._ensure_run(tid, None)
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)
            self.client.set_terminated(run_id, status=status)

    def _ensure_run(self, tid: str, overrides: dict | None) -> str:
        if tid in self._runs:
            return self._runs[tid]
        client = self.client
        found = client.search_runs([self._exp_id], max_results=1,
                                   filter_string=f"tags.tune_trial_id = '{tid}' and tags.phase = '{self.phase}'")
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            tags = {"mlflow.parentRunId": self.parent_run_id, "tune_trial_id": tid, "phase": self.phase}
            run_id = client.create_run(self._exp_id, run_name=f"{self.phase}-{tid}", tags=tags).info.run_id
            client.log_batch(run_id, params=flat_params(overrides or {}))
        self._runs[tid] = run_id
        return run_id

    # -- Tune hooks ------------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        self._queue(("start", trial.trial_id, trial.config.get("overrides", {})))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = int(result.get("epoch", result.get("training_iteration", 1) - 1))
        tags = {"node": str(result.get("hostname", "")), "epochs_run": str(step + 1),
                "gpu_ids": str(result.get("gpu_ids", ""))}
        self._queue(("metrics", trial.trial_id, step, numeric_metrics(result), tags, int(time.time() * 1000)))

    def on_trial_complete(self, iteration, trials, trial, **info):
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        status = "FINISHED" if epochs >= self.max_t else "KILLED"  # KILLED: ASHA stopped it early
        self._queue(("end", trial.trial_id, status, {"stopped_early": str(status == "KILLED").lower()}))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._queue(("end", trial.trial_id, "FAILED", {"error": trial_error(trial)[:5000]}))

    def on_experiment_end(self, trials, **info):
        self.flush(force=True)
        if self._pending:
            where = self.spool or "mlflow_pending.jsonl"
            with open(where, "a") as f:
                for op in self._pending:
                    f.write(json.dumps(op) + "\n")
            print(f"WARNING: MLflow at {self.tracking_uri} is still unreachable: {len(self._pending)} tracking "
                  f"operations were not logged; they are saved in {where}", flush=True)


def trial_error(trial) -> str:
    """The last line of the trial's error file (or message)."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    return error_line(text or str(getattr(trial, "error_msg", "") or ""))


def close_orphans(uri: str, experiment: str, parent_run_id: str, phase: str, known_trials: set[str]) -> int:
    """Child runs of trials the experiment no longer knows (started just before a killed launcher's
    last saved state, then proposed afresh on --resume): tagged `orphaned` and ended KILLED."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000,
                              filter_string=f"tags.phase = '{phase}' and tags.`mlflow.parentRunId` = '{parent_run_id}'")
    closed = 0
    for run in runs:
        if run.data.tags.get("tune_trial_id") not in known_trials and run.data.tags.get("orphaned") != "true":
            client.set_tag(run.info.run_id, "orphaned", "true")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
    return closed
