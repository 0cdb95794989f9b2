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


def open_parent(uri: str, experiment: str, run_id: str | None, params: dict[str, Any], space_file: Path) -> str:
    """Create (or reopen, on --resume) the experiment's parent run; returns its id."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
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
    """Child run per trial: sampled parameters, per-epoch metrics (step = epoch), final status."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, max_t: int, phase: str = "search"):
        self.tracking_uri, self.experiment, self.parent_run_id = tracking_uri, experiment, parent_run_id
        self.max_t, self.phase = max_t, phase
        self._runs: dict[str, str] = {}
        self._client: MlflowClient | None = None
        self._exp_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self._exp_id = self._client.get_experiment_by_name(self.experiment).experiment_id
        return self._client

    def get_state(self) -> dict:
        return {"runs": dict(self._runs)}

    def set_state(self, state: dict) -> None:
        self._runs.update(state.get("runs", {}))

    def run_id(self, trial) -> str:
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        client = self.client
        found = client.search_runs(
            [self._exp_id], max_results=1,
            filter_string=f"tags.tune_trial_id = '{trial.trial_id}' and tags.phase = '{self.phase}'")
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            tags = {"mlflow.parentRunId": self.parent_run_id, "tune_trial_id": trial.trial_id, "phase": self.phase}
            run = client.create_run(self._exp_id, run_name=f"{self.phase}-{trial.trial_id}", tags=tags)
            run_id = run.info.run_id
            client.log_batch(run_id, params=flat_params(trial.config.get("overrides", {})))
        self._runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_id(trial)
        step = int(result.get("epoch", result.get("training_iteration", 1) - 1))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v if math.isfinite(v) else float("nan"), now, step)
                   for k, v in numeric_metrics(result).items()]
        tags = [RunTag("node", str(result.get("hostname", ""))), RunTag("epochs_run", str(step + 1))]
        for i in range(0, len(metrics), 900):  # MLflow caps a batch at 1000 entries
            self.client.log_batch(run_id, metrics=metrics[i:i + 900], tags=tags if i == 0 else [])

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        status = "FINISHED" if epochs >= self.max_t else "KILLED"  # KILLED: ASHA stopped it early
        self.client.set_tag(run_id, "stopped_early", str(status == "KILLED").lower())
        self.client.set_terminated(run_id, status=status)

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        self.client.set_tag(run_id, "error", trial_error(trial)[:5000])
        self.client.set_terminated(run_id, status="FAILED")


def trial_error(trial) -> str:
    """The last line of the trial's error (e.g. `TrainingDiverged: epoch 1 step 9: the loss ...`)."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    text = text or str(getattr(trial, "error_msg", "") or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "error"


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
