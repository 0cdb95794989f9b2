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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from ray import tune

from mtl_core import keys
from mtl_core.validation import ConfigError
from search.tracking.data_input import entities
from search.io.files import Files
from search.io.folder_write import append_text
from search.analysis.labels import run_name
from search.io.console import error_line
from search.space.trial import meta_of

RUN_NAME = "mlflow.runName"  # a trial's run name travels with its tags (search.analysis.labels.run_name)


class TrackingUnavailable(ConfigError):
    """The tracking store does not answer (one line; the launcher exits 2)."""


def mask_uri(uri: str) -> str:
    """The URI for the console, logs and files: the password of `user:password@host` (or a token in
    place of the user) replaced by ***. Only the user name is kept."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}" if user else f"***@{host}"))


def credentials_to_env(uri: str) -> str:
    """An http(s) URI with `user:password@` in it: the credentials move to MLFLOW_TRACKING_USERNAME /
    PASSWORD (which MLflow reads, unless they are set already) and the URI without them is returned, so
    no file or pickle of the experiment holds them. Other URIs come back unchanged."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(user))
    if password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(password))
    return urlunsplit(parts._replace(netloc=host))


# MLflow 3.17 reads these per request (its HTTP session is cached per value, so changing them costs nothing).
# Its defaults (7 retries, backoff factor 2, 120 s timeout) wait about 4 minutes on a server that is gone.
RETRIES, BACKOFF, TIMEOUT = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                             "MLFLOW_HTTP_REQUEST_TIMEOUT")
MLFLOW_DEFAULTS = {RETRIES: 7, BACKOFF: 2, TIMEOUT: 120}
# The sweep's own tracking calls: a passing blip is retried for a few seconds, a server that is gone is met
# in about 3 s (refused) or 30 s (no answer), and from then on only the quick probe runs until it answers.
DATA_CALLS = {RETRIES: 2, BACKOFF: 1, TIMEOUT: 10}


@contextmanager
def http_limits(limits: dict[str, int]) -> Iterator[None]:
    """MLflow's HTTP retries, backoff and timeout at most `limits` inside the block (a user's lower setting
    is kept); the environment as it was after it."""
    saved = {k: os.environ.get(k) for k in limits}
    for key, most in limits.items():
        try:
            own = int(saved[key]) if saved[key] is not None else MLFLOW_DEFAULTS[key]
        except ValueError:
            own = most
        os.environ[key] = str(max(0, min(own, most)) if key != TIMEOUT else max(1, min(own, most)))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API on `uri` inside the block; its tracking URI and MLFLOW_TRACKING_URI as they were after
    it (MLflow's own `_use_tracking_uri` unsets a user's MLFLOW_TRACKING_URI on the way out)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def quick_requests(timeout_s: float = 5.0):
    """MLflow's HTTP retries off and a short timeout, only inside the block: a reachability probe answers
    in seconds."""
    return http_limits({RETRIES: 0, TIMEOUT: max(1, int(timeout_s))})


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (before any training) when the tracking store cannot be reached."""
    try:
        probe(MlflowClient(tracking_uri=uri), timeout_s)
    except Exception as exc:  # any failure here means no tracking: say so in one line
        raise TrackingUnavailable(f"--mlflow-uri: cannot reach the MLflow tracking store at {mask_uri(uri)} "
                                  f"({type(exc).__name__})") from None


def probe(client: MlflowClient, timeout_s: float = 5.0) -> None:
    """One cheap request that answers in seconds, or raises (MLflow's retries off for it only)."""
    with quick_requests(timeout_s):
        client.search_experiments(max_results=1)


def flat_params(overrides: dict[str, Any]) -> list[Param]:
    out = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out.append(Param(key, text[:6000]))
    return out


def open_parent(uri: str, experiment: str, run_id: str | None, params: dict[str, Any], space_file: Path, kind: str,
                artifact_dir: Path | None = None, token: str = "") -> str:
    """Create (or reopen, on --resume) the experiment's parent run; returns its id. `kind`: its `sweep.kind`
    tag (`SearchSettings.kind`); `token`: its `sweep.token` tag, which the experiment folder also records, so
    that `search.tracking.replay` writes a spool only into the run of the folder that made it.

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
    tags = {"sweep.kind": kind, **({"sweep.token": token} if token else {})}
    if run_id is not None:
        before = client.get_run(run_id)
        if before.info.status == "RUNNING":  # the launch before could not end it (killed, or its store's disk full)
            print(f"note: MLflow parent run {run_id} was still RUNNING: the launch before this one could not end it "
                  f"(killed, or the store's disk was full); this launch continues it and ends it", flush=True)
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(exp_id, run_name=f"{experiment}-sweep", tags=tags)
    client.log_batch(run.info.run_id, params=flat_params(params))
    client.log_artifact(run.info.run_id, str(space_file))
    return run.info.run_id


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """A result's tracked metrics, and a copy of each F1 a user compares first under `f1/...`
    (`keys.headline`), so that those sort together in MLflow's runs table and compare view."""
    out = {}
    for key, value in result.items():
        if key.startswith(keys.TRACKED) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
            if keys.headline(key):
                out[keys.headline(key)] = float(value)
    return out


MAX_PRETRAIN_EPOCHS = 100_000


def pretrain_curve(result: dict[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """The pretraining epochs a result carries (`pretrain_curve`, a list of per-epoch dicts in a trial's first
    result): each epoch's numeric `pretrain/...` metrics, logged in the trial's run at step = pretraining epoch."""
    rows = result.get(keys.PRETRAIN_CURVE)
    if not isinstance(rows, list) or len(rows) > MAX_PRETRAIN_EPOCHS:
        return []
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            values = {k: float(v) for k, v in row.items() if isinstance(k, str) and k.startswith("pretrain/")
                      and isinstance(v, (int, float)) and not isinstance(v, bool)}
            epoch = row.get("epoch")
            out.append((epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else i, values))
    return out


def append_whole(path: Path, text: str) -> None:
    """`text` appended to the spool, or nothing: a write that fails (a full disk) cuts the file back to what it
    held, so the operations already there stay readable, and raises OSError naming the file (the queue is
    kept). Never through a link (`append_text`)."""
    try:
        before = os.lstat(path).st_size
    except FileNotFoundError:
        before = None
    try:
        append_text(path, text)
    except OSError as exc:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        except OSError:  # not there, or a link (refused before any write)
            pass
        else:
            try:
                if before is None:
                    os.unlink(path)  # made by this write: a part of it, or empty
                else:
                    os.ftruncate(fd, before)
            finally:
                os.close(fd)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


MAX_HELD = 100_000  # operations kept in memory when the spool cannot be written: the newest are kept


class Link:
    """What the trackers of one parent run share in this process: whether the server answers, so that an
    outage one tracker met is not waited out again by its forks (each phase's trials have one) or by the
    finish step's, and the experiment's id. Looked up by (uri, parent run, spool), so that copies Tune makes
    of a callback, and a callback restored by --resume, share it too."""

    _all: dict[tuple, "Link"] = {}

    def __init__(self):
        self.down = False
        self.retry_at = 0.0  # time.monotonic() of the next probe while down
        self.exp_id: str | None = None
        self.held: list[list] = []  # operations a tracker could neither send nor spool (e.g. a full disk)

    @classmethod
    def of(cls, uri: str, parent_run_id: str, spool: str | None) -> "Link":
        return cls._all.setdefault((uri, parent_run_id, spool), cls())

    @classmethod
    def reset(cls) -> None:
        """Forget every outage: a launch starts by asking the server afresh, not from an earlier launch's
        verdict in the same process (a --resume has the same run and spool)."""
        cls._all.clear()


class Tracker:
    """Every MLflow write of an experiment, in order, through one outage queue.

    When the tracking server goes away mid-sweep, training goes on: each call is made with MLflow's retries
    and timeout bounded (`DATA_CALLS`: a server that is gone is met in seconds, not MLflow's 4 minutes), the
    first failure marks the server down for this tracker and its forks (`Link`), and from then on operations
    are only queued, and replayed in order once the server answers again (a quick probe, at most every
    `retry_s`). Whatever is still queued at the end is appended to `spool` (JSON lines), which
    `python -m search.replay EXPERIMENT` writes once the server is back. Operations are plain lists:

        ["call", method, args, kwargs]          an MlflowClient call on the parent run (metrics, artifacts, status)
        ["start", phase, trial, params, tags]   a trial's child run
        ["metrics", phase, trial, step, values, tags, time_ms]
        ["end", phase, trial, status, tags]
        ["tags", phase, trial, tags]            tags on a trial's run, its status untouched
        ["inputs", phase, trial, datasets]      its dataset inputs (search.tracking.data_input)
    """

    def __init__(self, uri: str, experiment: str, parent_run_id: str, spool: str | None = None, retry_s: float = 30.0):
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.spool, self.retry_s = spool, retry_s
        self.pending: list[list] = []
        self.runs: dict[str, str] = {}  # "phase/trial" -> MLflow run id
        self._client: MlflowClient | None = None
        self._exp_id: str | None = None

    def fork(self) -> "Tracker":
        """A tracker of its own (empty queue, same run and spool) for one phase's trials; it shares whether
        the server answers (`Link`)."""
        return Tracker(self.uri, self.experiment, self.parent_run_id, self.spool, self.retry_s)

    def __getstate__(self) -> dict:  # Tune pickles callbacks: never a live client
        return {**self.__dict__, "_client": None}

    @property
    def link(self) -> "Link":
        return Link.of(self.uri, self.parent_run_id, self.spool)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        if self._exp_id is None:
            self._exp_id = self.link.exp_id or self._client.get_experiment_by_name(self.experiment).experiment_id
            self.link.exp_id = self._exp_id
        return self._client

    def experiment_id(self) -> str | None:
        """The experiment's id on the server, or None when it is not known and the server does not answer
        (for links: never a wait on a server that is down)."""
        if self._exp_id or self.link.exp_id:
            return self._exp_id or self.link.exp_id
        if self.link.down:
            return None
        try:
            with http_limits(DATA_CALLS):
                self.client
        except Exception:  # no answer: no link, and the next call finds the outage
            return None
        return self._exp_id

    # -- the parent run --------------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """An MlflowClient method on the parent run (its id is the first argument)."""
        self.push(["call", method, [self.parent_run_id, *args], kwargs])

    def log_metrics(self, values: dict[str, float]) -> None:
        stamp = int(time.time() * 1000)
        metrics = [[k, float(v), stamp, 0] for k, v in values.items() if math.isfinite(v)]
        for i in range(0, len(metrics), 900):  # MLflow caps a batch at 1000 entries
            self.call("log_batch", metrics=metrics[i:i + 900])

    # -- the queue -------------------------------------------------------------------------------

    def push(self, op: list) -> None:
        self.pending.append(op)
        self.flush()

    def flush(self, force: bool = False) -> None:
        link = self.link
        if link.held:  # what a tracker of this run could not spool (it may be gone): first, in order
            self.pending[:0], link.held = link.held, []
        if link.down and not force and time.monotonic() < link.retry_at:
            return
        if link.down and not self._answers():  # still down: a quick probe, not MLflow's retries
            link.retry_at = time.monotonic() + self.retry_s
            return
        while self.pending:
            try:
                with http_limits(DATA_CALLS):
                    self.apply(self.pending[0])
            except MlflowException as exc:
                if exc.error_code != "INVALID_PARAMETER_VALUE":
                    self._outage(exc)
                    return
                print(f"warning: MLflow refused a tracking operation (not retried): {error_line(exc)}", flush=True)
            except Exception as exc:  # unreachable store: keep the queue, try again later
                self._outage(exc)
                return
            self.pending.pop(0)
        if link.down:
            print(f"MLflow at {mask_uri(self.uri)} answers again; buffered tracking data written", flush=True)
        link.down = False

    def _outage(self, exc: Exception) -> None:
        """The first failure of an outage (for this tracker and its forks): one line, and from now on only
        the quick probe, every `retry_s`, until the server answers."""
        link = self.link
        if not link.down:
            where = self.spool or Files.PENDING
            print(f"warning: MLflow at {mask_uri(self.uri)} is not answering ({type(exc).__name__}); training goes "
                  f"on, buffering tracking data: sent when it answers (checked every {self.retry_s:.0f}s), or "
                  f"saved in {where} at the end (python -m search.replay {Path(where).parent})", flush=True)
        link.down, link.retry_at = True, time.monotonic() + self.retry_s

    def _answers(self) -> bool:
        try:
            probe(self._client or MlflowClient(tracking_uri=self.uri))  # no experiment lookup: only the probe
            return True
        except Exception:
            return False

    def direct(self, failed: str, write: Callable[[], Any]) -> Any:
        """`write()` now, outside the queue, for a write whose answer is needed at once (a logged model's id), with
        MLflow's fluent API on this tracker's URI and the queue's bounded retries. None and one warning line
        (`failed`, then why) when the server is down or the write fails; a server that stopped answering is marked
        down, as a queued call would."""
        self.flush()
        if self.link.down:
            print(f"warning: {failed} (MLflow at {mask_uri(self.uri)} is not answering)", flush=True)
            return None
        try:
            with http_limits(DATA_CALLS), fluent_uri(self.uri):
                return write()
        except Exception as exc:
            print(f"warning: {failed} ({type(exc).__name__}: {error_line(str(exc))[:200]})", flush=True)
            if not self._answers():
                self._outage(exc)
            return None

    def close(self) -> int:
        """Last flush; what is still queued goes to the spool file. Returns how many were spooled. A spool that
        cannot be written (a full disk) keeps what it held, and the queue is kept in memory, shared by this
        run's trackers (`Link.held`, the newest MAX_HELD): the next flush or close of any of them sends or
        spools it first (a phase's tracker is gone once its phase ends). One line says so, and what is lost."""
        self.flush(force=True)
        if not self.pending:
            return 0
        where = self.spool or Files.PENDING
        try:
            append_whole(Path(where), "".join(json.dumps(op) + "\n" for op in self.pending))
        except OSError as exc:
            n, dropped = len(self.pending), max(0, len(self.pending) - MAX_HELD)
            self.link.held, self.pending = self.pending[dropped:], []
            ended = [op[3].get("status") for op in self.link.held if op[:2] == ["call", "set_terminated"]
                     and op[2][:1] == [self.parent_run_id] and isinstance(op[3], dict)]
            print(f"warning: {where}: cannot write ({exc.strerror}); {n - dropped} tracking operations MLflow did "
                  f"not take are kept in memory until a later write succeeds, and lost if the launch ends first"
                  + (f"; {dropped} older ones are lost" if dropped else "")
                  + (f"; among them the parent run's end ({ended[-1]}): until then MLflow shows parent run "
                     f"{self.parent_run_id} RUNNING (--resume ends it)" if ended else ""), flush=True)
            return 0
        n, self.pending = len(self.pending), []
        print(f"WARNING: MLflow at {mask_uri(self.uri)} is still unreachable: {n} tracking operations were not logged; "
              f"they are saved in {where} (write them later with: python -m search.replay {Path(where).parent})",
              flush=True)
        return n

    def apply(self, op: list) -> None:
        kind = op[0]
        if kind == "call":
            _, method, args, kwargs = op
            if method == "log_batch":
                kwargs = {"metrics": [Metric(*m) for m in kwargs.get("metrics", [])]}
            elif method == "log_inputs":
                kwargs = {"datasets": entities(kwargs.get("datasets", []))}
            getattr(self.client, method)(*args, **kwargs)
        elif kind == "start":
            self._ensure_run(op[1], op[2], op[3], op[4])
        elif kind == "metrics":
            _, phase, tid, step, values, tags, stamp = op
            run_id = self._ensure_run(phase, tid)
            metrics = [Metric(k, v if math.isfinite(v) else float("nan"), stamp, step) for k, v in values.items()]
            run_tags = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, max(1, len(metrics)), 900):  # MLflow caps a batch at 1000 entries
                self.client.log_batch(run_id, metrics=metrics[i:i + 900], tags=run_tags if i == 0 else [])
        elif kind == "end":
            _, phase, tid, status, tags = op
            run_id = self._ensure_run(phase, tid)
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)
            self.client.set_terminated(run_id, status=status)
        elif kind == "tags":
            _, phase, tid, tags = op
            run_id = self._ensure_run(phase, tid, reopen=False)
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)
        elif kind == "inputs":
            _, phase, tid, datasets = op
            self.client.log_inputs(self._ensure_run(phase, tid, reopen=False), datasets=entities(datasets))
        else:
            raise ValueError(f"unknown tracking operation {kind!r}")

    def _ensure_run(self, phase: str, tid: str, params: dict | None = None, tags: dict | None = None,
                    reopen: bool = True) -> str:
        key = f"{phase}/{tid}"
        if key in self.runs:
            return self.runs[key]
        client = self.client
        found = client.search_runs([self._exp_id], max_results=1,
                                   filter_string=f"tags.tune_trial_id = '{tid}' and tags.phase = '{phase}'")
        if found:  # a resumed experiment: the trial's run already exists
            run_id = found[0].info.run_id
            if reopen:
                client.update_run(run_id, status="RUNNING")
        else:
            tags = {**(tags or {}), "mlflow.parentRunId": self.parent_run_id, "tune_trial_id": tid, "phase": phase}
            name = tags.pop(RUN_NAME, None) or f"{phase}-{tid}"  # an op without a name: Tune's id
            run_id = client.create_run(self._exp_id, run_name=name, tags=tags).info.run_id
            client.log_batch(run_id, params=flat_params(params or {}))
        self.runs[key] = run_id
        return run_id


class MLflowTrials(tune.Callback):
    """Child run per trial, named by `search.analysis.labels.run_name`: the sampled parameters, the trial's meta as
    tags (phase, role, name, seed, label), per-epoch metrics (step = epochs trained, from 1), final status. Restore-safe: the tracker's queue and run map are
    part of Tune's saved state, and a run is looked up by its `tune_trial_id` tag before one is made."""

    def __init__(self, tracker: Tracker, phase: str, max_t: int, datasets: list | None = None):
        self.tracker, self.phase, self.max_t = tracker, phase, max_t
        self.datasets = datasets or []  # the trials' dataset inputs (search.tracking.data_input.inputs)

    def get_state(self) -> dict:
        return {"runs": dict(self.tracker.runs), "pending": list(self.tracker.pending)}

    def set_state(self, state: dict) -> None:
        self.tracker.runs.update(state.get("runs", {}))
        self.tracker.pending = list(state.get("pending", [])) + self.tracker.pending

    def on_trial_start(self, iteration, trials, trial, **info):
        entry = trial.config.get("trial", {})
        tags = {**meta_of(entry).tags(), RUN_NAME: run_name(self.phase, trial.trial_id, entry)}
        self.tracker.push(["start", self.phase, trial.trial_id, entry.get("overrides", {}), tags])
        if self.datasets:
            self.tracker.push(["inputs", self.phase, trial.trial_id, self.datasets])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # step = epochs trained (1, 2, ...), the numbering of the report, ASHA's rungs and the console
        step = int(result["epoch"]) + 1 if "epoch" in result else int(result.get("training_iteration", 1))
        tags = {"node": str(result.get("hostname", "")), "epochs_run": str(step),
                "gpu_ids": str(result.get("gpu_ids", ""))}
        stamp = int(time.time() * 1000)
        for epoch, values in pretrain_curve(result):  # the pretraining epochs, before the first epoch's own
            self.tracker.push(["metrics", self.phase, trial.trial_id, epoch, values, {}, stamp])
        self.tracker.push(["metrics", self.phase, trial.trial_id, step, numeric_metrics(result), tags, stamp])

    def on_trial_complete(self, iteration, trials, trial, **info):
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        status = "FINISHED" if epochs >= self.max_t else "KILLED"  # KILLED: ASHA stopped it early
        self.tracker.push(["end", self.phase, trial.trial_id, status, {"stopped_early": str(status == "KILLED").lower()}])

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.push(["end", self.phase, trial.trial_id, "FAILED", {"error": trial_error(trial)[:5000]}])

    def on_experiment_end(self, trials, **info):
        self.tracker.close()


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


ML_VIEW = "workflowType=machine_learning"  # MLflow 3's UI opens on its GenAI pages without it


def page(experiment_id: str | None, run_id: str | None = None) -> str:
    """The UI's page of an experiment, or of one of its runs, in the training view: MLflow 3.17's UI opens on
    its GenAI pages unless the URL asks for it (the experiment's `mlflow.experimentKind` tag alone does not
    override the UI's toggle), and a run page it opens on the GenAI "Evaluations" tab. An experiment id not
    known (a server that was down all along): the list of experiments."""
    if experiment_id is None:
        return f"#/experiments?{ML_VIEW}"
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{path}?{ML_VIEW}"


def ui_link(uri: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """The URL of `page` on the tracking server (a local store: on `mlflow ui`'s default address)."""
    uri = mask_uri(uri)
    root = "http://127.0.0.1:5000" if uri.startswith("sqlite:") else uri.rstrip("/")
    return f"{root}/{page(experiment_id, run_id)}"


def ui_hint(uri: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """How to look at the runs: the link to the experiment (or the run), and for a local store the command
    that serves it."""
    link = ui_link(uri, experiment_id, run_id)
    if mask_uri(uri).startswith("sqlite:"):
        return (f"MLflow UI: mlflow ui --backend-store-uri {mask_uri(uri)} --host 127.0.0.1 --port 5000, "
                f"then open {link}")
    return f"MLflow UI: {link}"
