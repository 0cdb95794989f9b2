"""The MLflow outage queue: child and parent runs go through it, leftovers are spooled, and
`python -m search.replay` writes them later; MLflow's own retries are off only inside the probe."""
import json
import shutil
import os
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from search.io.state import FORMAT
from search.tracking.replay import main as replay_main
from search.tracking.tracker import MLflowTrials, Tracker, check_tracking, quick_requests
from search.space.trial import TrialMeta, trial_entry


class _FlakyClient:
    """An MLflow client that is down for the first `down` calls, and records what it received."""

    def __init__(self, down: int):
        self.down, self.calls, self.metrics, self.status = down, 0, [], {}

    def _call(self):
        self.calls += 1
        if self.calls <= self.down:
            raise ConnectionError("server gone")

    def search_experiments(self, *a, **k):  # the tracker's reachability probe
        self._call()
        return []

    def log_metric(self, run_id, key, value):
        self._call()
        self.metrics.append((run_id, key, 0))

    def search_runs(self, *a, **k):
        self._call()
        return []

    def create_run(self, exp_id, run_name, tags):
        self._call()
        return SimpleNamespace(info=SimpleNamespace(run_id=f"run-{tags['tune_trial_id']}"))

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self._call()
        self.metrics += [(run_id, m.key, m.step) for m in metrics]

    def set_tag(self, *a):
        self._call()

    def set_terminated(self, run_id, status):
        self._call()
        self.status[run_id] = status


def test_tracking_outage_buffers_and_replays_in_order(tmp_path, capsys):
    cb, client = _callback(tmp_path, down=3, max_t=2)
    trial = SimpleNamespace(trial_id="t1", config={"trial": trial_entry({"train.lr": 0.1}, TrialMeta("search"))},
                            last_result={"training_iteration": 2})
    cb.on_trial_start(0, [], trial)
    for epoch in range(2):
        cb.on_trial_result(0, [], trial, {"epoch": epoch, "val/avg_f1": 0.5 + epoch})
    assert "buffering tracking data" in capsys.readouterr().out
    cb.on_trial_complete(0, [], trial)
    assert not cb.tracker.pending  # replayed once the server answered
    # step = epochs trained (the report's numbering); the average F1 also under the headline name
    assert [(k, s) for _, k, s in client.metrics] == [("val/avg_f1", 1), ("f1/val/avg", 1), ("val/avg_f1", 2),
                                                      ("f1/val/avg", 2)]
    assert client.status == {"run-t1": "FINISHED"}


def test_tracking_still_down_at_the_end_is_saved_and_reported(tmp_path, capsys):
    cb, _ = _callback(tmp_path, down=10 ** 6, max_t=1)
    trial = SimpleNamespace(trial_id="t1", config={"trial": trial_entry({}, TrialMeta("search"))},
                            last_result={"training_iteration": 1})
    cb.on_trial_start(0, [], trial)
    cb.on_trial_result(0, [], trial, {"epoch": 0, "val/avg_f1": 0.5})
    cb.on_experiment_end([])
    assert "still unreachable: 2 tracking operations" in capsys.readouterr().out
    assert len((tmp_path / "spool").read_text().splitlines()) == 2


def _callback(tmp_path, down: int, max_t: int):
    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=0.0)
    client = _FlakyClient(down=down)
    tracker._client, tracker._exp_id = client, "1"
    return MLflowTrials(tracker, "search", max_t), client


def test_parent_run_calls_go_through_the_same_queue(tmp_path):
    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=0.0)
    client = _FlakyClient(down=2)
    tracker._client, tracker._exp_id = client, "1"
    tracker.call("log_metric", "best/val/avg_f1", 0.7)  # fails: queued
    tracker.call("set_terminated", status="FINISHED")  # probe fails: still queued, in order
    assert len(tracker.pending) == 2 and client.status == {}
    tracker.flush(force=True)
    assert not tracker.pending
    assert client.metrics == [("parent", "best/val/avg_f1", 0)] and client.status == {"parent": "FINISHED"}


def test_mlflow_retries_are_off_only_inside_the_probe(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with quick_requests():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    try:
        check_tracking("http://127.0.0.1:9", timeout_s=1)
    except Exception:
        pass
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the sweep keeps MLflow's retries


def test_replay_writes_the_spooled_operations_once_the_store_answers(tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("exp")
    parent = client.create_run(exp_id, tags={"sweep.kind": "optuna-tpe+asha"}).info.run_id
    (exp / "launch_state.json").write_text(json.dumps({"tracking_uri": uri, "parent_run_id": parent, "format": FORMAT}))
    ops = [["start", "final", "t1", {"train.lr": 0.1}, {"role": "baseline", "name": "equal_sum"}],
           ["metrics", "final", "t1", 0, {"val/avg_f1": 0.5}, {"node": "n"}, 1000],
           ["end", "final", "t1", "FINISHED", {"stopped_early": "false"}],
           ["call", "log_batch", [parent], {"metrics": [["best/val/avg_f1", 0.5, 1000, 0]]}],
           ["call", "set_terminated", [parent], {"status": "FINISHED"}]]
    (exp / "mlflow_pending.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops))
    assert replay_main([str(exp)]) == 0
    assert "replayed 5 tracking operations" in capsys.readouterr().out
    child = client.search_runs([exp_id], filter_string="tags.phase = 'final'")
    assert len(child) == 1 and child[0].data.params == {"train.lr": "0.1"}
    assert child[0].data.tags["role"] == "baseline" and child[0].data.tags["mlflow.parentRunId"] == parent
    assert child[0].info.status == "FINISHED" and child[0].data.metrics == {"val/avg_f1": 0.5}
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.metrics == {"best/val/avg_f1": 0.5}
    assert not (exp / "mlflow_pending.jsonl").exists() and (exp / "mlflow_pending.replayed.jsonl").is_file()
    assert replay_main([str(exp)]) == 0 and "nothing to replay" in capsys.readouterr().out


def test_replay_keeps_the_file_while_the_store_is_down(tmp_path, capsys):
    (tmp_path / "launch_state.json").write_text(json.dumps({"tracking_uri": "http://127.0.0.1:9", "parent_run_id": "p", "format": FORMAT}))
    (tmp_path / "mlflow_pending.jsonl").write_text(json.dumps(["call", "set_terminated", ["p"], {}]) + "\n")
    assert replay_main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot reach" in err and (tmp_path / "mlflow_pending.jsonl").is_file()
    assert replay_main([str(tmp_path / "nothing")]) == 2 and "not an experiment folder" in capsys.readouterr().err


def test_a_refused_operation_is_dropped_with_a_warning_not_retried_forever(tmp_path, capsys):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    class Refusing(_FlakyClient):
        def log_metric(self, run_id, key, value):
            if "|" in key:
                raise MlflowException("Invalid metric name", error_code=INVALID_PARAMETER_VALUE)
            super().log_metric(run_id, key, value)

    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=0.0)
    tracker._client, tracker._exp_id = Refusing(down=0), "1"
    tracker.call("log_metric", "a|b", 1.0)
    tracker.call("log_metric", "ok", 2.0)
    assert not tracker.pending and tracker._client.metrics == [("parent", "ok", 0)]
    assert "refused a tracking operation" in capsys.readouterr().out


def test_metric_names_are_ones_mlflow_accepts():
    from search.run.finish import metric_name

    assert metric_name("config 0: binary+gory|mature") == "config_0_binary_gory/mature"
    assert metric_name("rank 1") == "rank_1" and metric_name("equal_sum") == "equal_sum"


def test_a_tag_on_an_ended_run_leaves_its_status(tmp_path):
    """The front ranks are tagged by another callback's tracker once the runs have ended: the lookup must
    not reopen them (a resumed trial's lookup does)."""
    from search.tracking.tracker import open_parent

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "space.yaml").write_text("name: x\n")
    parent = open_parent(uri, "tags", None, {}, tmp_path / "space.yaml", "optuna-tpe+asha", tmp_path / "artifacts")
    trials, front = Tracker(uri, "tags", parent), Tracker(uri, "tags", parent)
    trials.push(["start", "search", "t1", {"train.lr": 0.1}, {}])
    trials.push(["end", "search", "t1", "KILLED", {}])
    front.push(["tags", "search", "t1", {"front_rank": "2"}])
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tags").experiment_id], "tags.tune_trial_id = 't1'")
    assert run.info.status == "KILLED" and run.data.tags["front_rank"] == "2"


def test_links_open_the_training_view_and_f1_scores_sort_together():
    from mtl_core import keys
    from search.tracking.tracker import numeric_metrics, ui_hint, ui_link

    assert ui_link("http://host:5000/", "7", "abc") == "http://host:5000/#/experiments/7/runs/abc?workflowType=machine_learning"
    assert ui_hint("sqlite:////x/mlflow.db", "1").endswith("http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning")
    assert [keys.headline(k) for k in ("val/avg_f1", "test/gory/f1", "val/gory/loss", "val/avg_loss")] == \
        ["f1/val/avg", "f1/test/gory", None, None]
    assert numeric_metrics({"val/avg_f1": 0.5, "val/gory/acc": 0.9, "epoch": 1}) == \
        {"val/avg_f1": 0.5, "f1/val/avg": 0.5, "val/gory/acc": 0.9}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the spool cases (making one costs seconds of migrations): (URI, client, experiment)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return uri, client, client.create_experiment("exp")


def _stranger_spool(tmp_path, store, ops):
    """An experiment folder whose spool a stranger wrote, with a parent run of its own in the store."""
    uri, client, exp_id = store
    exp = tmp_path / "exp"
    exp.mkdir()
    parent = client.create_run(exp_id, tags={"sweep.kind": "optuna-tpe+asha"}).info.run_id
    (exp / "launch_state.json").write_text(json.dumps({"tracking_uri": uri, "parent_run_id": parent, "format": FORMAT}))
    (exp / "mlflow_pending.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops(parent)))
    return exp, client, parent


@pytest.mark.parametrize("ops, says", [
    (lambda p: [["call", "log_artifact", [p, "{secret}"], {}]], "is outside"),
    (lambda p: [["call", "log_artifacts", [p, "{exp}/inside", "inside"], {}]], "is outside"),  # a link in it leads out
    (lambda p: [["call", "log_artifact", [p], {"local_path": "{secret}"}]], "is not a call a sweep makes"),
    (lambda p: [["call", "log_artifact", [p, "secret.txt"], {}]], "is not a path the sweep wrote"),
    (lambda p: [["call", "delete_run", [p], {}]], "is not a call a sweep makes on its parent run"),
    (lambda p: [["call", "set_tag", ["another-run", "k", "v"], {}]], "is not a call a sweep makes on its parent run"),
    (lambda p: [["end", "search", "t1", "FINISHED"]], "is not a tracking operation a sweep writes"),
    (lambda p: [{"call": "set_tag"}], "is not a tracking operation a sweep writes"),
], ids=["artifact-outside", "artifact-dir-links-out", "artifact-as-keyword", "artifact-relative", "other-method", "other-run", "short-op", "not-a-list"])
def test_a_stranger_s_spool_sends_nothing_of_yours(tmp_path, capsys, store, ops, says):
    """Before replay checked the spool, the first case uploaded a file from outside the experiment folder
    (any file the user can read) to the server the folder names, and the third deleted the parent run."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    exp, client, parent = _stranger_spool(tmp_path, store, lambda p: json.loads(
        json.dumps(ops(p)).replace("{secret}", str(secret)).replace("{exp}", str(tmp_path / "exp"))))
    (exp / "inside").mkdir()
    (exp / "inside" / "link").symlink_to(secret)
    assert replay_main([str(exp)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and "nothing was replayed" in errors[0]
    run = client.get_run(parent)
    assert run.info.lifecycle_stage == "active" and run.data.tags.get("k") is None
    assert client.list_artifacts(parent) == []
    assert (exp / "mlflow_pending.jsonl").is_file()  # kept as it was


def test_replay_trusts_the_recorded_server_only_in_a_folder_nobody_else_can_write(tmp_path, capsys, store):
    exp, client, parent = _stranger_spool(tmp_path, store, lambda p: [["call", "set_tag", [p, "k", "v"], {}]])
    (exp / "launch_state.json").chmod(0o666)
    assert replay_main([str(exp)]) == 2
    err = capsys.readouterr().err
    assert "launch_state.json is writable by others" in err and "--mlflow-uri" in err
    assert client.get_run(parent).data.tags.get("k") is None
    uri = json.loads((exp / "launch_state.json").read_text())["tracking_uri"]
    assert replay_main([str(exp), "--mlflow-uri", uri]) == 0  # the server named by the user: replayed
    assert client.get_run(parent).data.tags["k"] == "v"


def test_replay_logs_only_into_the_sweeps_own_parent_run(tmp_path, capsys, store, monkeypatch):
    """Before check_parent, a folder could name any run on the server (one of yours, with --mlflow-uri) and
    have its spool logged into it: a run of another experiment, one without the sweep's tag, a deleted one,
    or your own sweep's parent run, named by a folder that only borrows your experiment's name."""
    uri, client, exp_id = store
    kind = {"sweep.kind": "optuna-tpe+asha"}
    other = client.create_run(client.create_experiment("another"), tags=kind).info.run_id
    untagged = client.create_run(exp_id).info.run_id
    deleted = client.create_run(exp_id, tags=kind).info.run_id
    client.delete_run(deleted)
    yours = client.create_run(exp_id, tags={**kind, "sweep.token": "yours"}).info.run_id
    for victim, token, says in ((other, None, "it is in experiment 'another', not 'exp'"),
                                (untagged, None, "it has no sweep.kind tag"), (deleted, None, "it is deleted"),
                                (yours, None, "its sweep.token tag is not the one launch_state.json records"),
                                (yours, "guessed", "its sweep.token tag is not the one"), ("0" * 32, None, "is not on")):
        exp, _, _ = _stranger_spool(tmp_path, store, lambda p: [["call", "set_tag", [victim, "k", "v"], {}]])
        state = json.loads((exp / "launch_state.json").read_text())
        state.update({"parent_run_id": victim, **({"sweep_token": token} if token else {})})
        (exp / "launch_state.json").write_text(json.dumps(state))
        assert replay_main([str(exp), "--mlflow-uri", uri]) == 2
        err = capsys.readouterr().err
        assert says in err and "nothing was replayed" in err and len(err.splitlines()) == 1, err
        assert (exp / "mlflow_pending.jsonl").is_file()
        shutil.rmtree(exp)
    assert all(client.get_run(r).data.tags.get("k") is None for r in (other, untagged, deleted, yours))
    # the folder that made the run presents its token: replayed
    exp, _, _ = _stranger_spool(tmp_path, store, lambda p: [["call", "set_tag", [yours, "k", "v"], {}]])
    state = json.loads((exp / "launch_state.json").read_text())
    (exp / "launch_state.json").write_text(json.dumps({**state, "parent_run_id": yours, "sweep_token": "yours"}))
    assert replay_main([str(exp)]) == 0 and client.get_run(yours).data.tags["k"] == "v"
    # a server that fails to answer is not a wrong run: exit 1, the spool kept
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    def down(self, run_id):
        raise MlflowException("503 Service Unavailable", error_code=INTERNAL_ERROR)
    monkeypatch.setattr(MlflowClient, "get_run", down)
    (exp / "mlflow_pending.replayed.jsonl").rename(exp / "mlflow_pending.jsonl")
    assert replay_main([str(exp)]) == 1
    assert "refused to show the parent run (MlflowException: 503" in capsys.readouterr().err
    assert (exp / "mlflow_pending.jsonl").is_file()


def test_a_parent_run_carries_its_kind_and_token_and_a_resume_keeps_them(tmp_path, store):
    from search.tracking.tracker import open_parent

    uri, client, exp_id = store
    (tmp_path / "space.yaml").write_text("search: {}\n")
    new = open_parent(uri, "exp", None, {}, tmp_path / "space.yaml", "optuna-tpe+asha", token="u")
    tags = lambda run: {k: v for k, v in client.get_run(run).data.tags.items() if k.startswith("sweep.")}  # noqa: E731
    assert tags(new) == {"sweep.kind": "optuna-tpe+asha", "sweep.token": "u"}
    assert open_parent(uri, "exp", new, {}, tmp_path / "space.yaml", "optuna-tpe+asha", token="u") == new
    assert tags(new) == {"sweep.kind": "optuna-tpe+asha", "sweep.token": "u"}


def test_the_spool_a_sweep_writes_is_replayed_with_its_artifacts(tmp_path, capsys, store):
    """What finish.py queues when the store is down at the end: the report folder and the tables, by their
    absolute paths inside the experiment folder."""
    exp, client, parent = _stranger_spool(tmp_path, store, lambda p: [
        ["call", "log_artifacts", [p, str(tmp_path / "exp" / "report"), "report"], {}],
        ["call", "log_artifact", [p, str(tmp_path / "exp" / "leaderboard.csv")], {}],
        ["call", "log_metric", [p, "search/hypervolume", 0.5], {"step": 3}],
        ["call", "set_terminated", [p], {"status": "FINISHED"}]])
    (exp / "report").mkdir()
    (exp / "report" / "summary.md").write_text("# Sweep report")
    (exp / "leaderboard.csv").write_text("rank\n1\n")
    assert replay_main([str(exp)]) == 0, capsys.readouterr().err
    assert {a.path for a in client.list_artifacts(parent)} == {"report", "leaderboard.csv"}
    assert client.get_run(parent).info.status == "FINISHED"


class _DownClient(_FlakyClient):
    """A server that is gone: every call fails; each records MLflow's HTTP settings it was made under."""

    def __init__(self):
        super().__init__(down=10 ** 6)
        self.settings = []

    def _call(self):
        self.settings.append((os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"),
                              os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")))
        super()._call()

    def get_experiment_by_name(self, name):
        self._call()


def test_an_outage_is_met_once_with_short_timeouts_and_shared_with_forks(tmp_path, capsys, monkeypatch):
    """MLflow's own retries wait about 4 minutes on a server that is gone: the data calls bound them, and the
    first failure marks the server down for the tracker and its forks, which then only queue (no call at all
    until the next probe), so neither a phase's trials nor the finish step waits the outage out again."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    root = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=3600)
    fork = root.fork()
    client = _DownClient()
    for tracker in (root, fork):
        tracker._client, tracker._exp_id = client, "1"
    fork.push(["start", "search", "t1", {}, {}])  # the first failure: one data call, bounded
    assert client.calls == 1
    retries, timeout = client.settings[0]
    assert int(retries) <= 2 and int(timeout) <= 10
    fork.push(["end", "search", "t1", "FINISHED", {}])
    root.call("set_terminated", status="FINISHED")  # another tracker of the same run: it knows already
    assert client.calls == 1 and len(fork.pending) == 2 and len(root.pending) == 1
    assert fork.close() == 2 and root.close() == 1  # one quick probe each (retries off), then the spool
    assert [s[0] for s in client.settings[1:]] == ["0", "0"]
    assert len((tmp_path / "spool").read_text().splitlines()) == 3
    out = capsys.readouterr().out
    assert out.count("is not answering") == 1 and str(tmp_path / "spool") in out
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # only inside the calls
    assert root.experiment_id() == "1"


def test_the_experiment_id_for_links_never_waits_on_a_server_that_is_down(tmp_path):
    from search.tracking.tracker import ui_link

    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=3600)
    client = _DownClient()
    tracker._client = client
    tracker.call("log_metric", "k", 1.0)  # the experiment lookup fails: the server is down
    assert tracker.experiment_id() is None and client.calls == 1
    assert ui_link(tracker.uri, None) == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"


def test_mlflow_limits_keep_a_user_s_lower_setting(monkeypatch):
    from search.tracking.tracker import DATA_CALLS, http_limits

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    with http_limits(DATA_CALLS):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
        assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300" and "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" not in os.environ


@pytest.mark.parametrize("held", ["", '["call", "set_tag", ["parent", "k", "v"], {}]\n'], ids=["new", "appended"])
def test_a_spool_write_that_fails_keeps_what_the_spool_held(tmp_path, capsys, monkeypatch, held):
    """A full disk mid-append: the spool is cut back to what it held (no half line that would make it
    unreadable, no empty file), the queue is kept and one line says so."""
    import errno
    import search.tracking.tracker as tracking

    spool = tmp_path / "spool"
    if held:
        spool.write_text(held)

    def half_then_full(path, text):
        with open(path, "a") as f:
            f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tracking, "append_text", half_then_full)
    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(spool), retry_s=3600)
    tracker._client, tracker._exp_id = _DownClient(), "1"
    tracker.call("set_terminated", status="FINISHED")
    assert tracker.close() == 0 and len(tracker.link.held) == 1  # kept for the run's next write
    assert (spool.read_text() == held) if held else not spool.exists()
    warning = [line for line in capsys.readouterr().out.splitlines() if str(spool) in line and "cannot write" in line]
    assert len(warning) == 1 and "No space left on device" in warning[0]


def test_what_a_phase_s_tracker_could_not_spool_is_written_by_a_later_close(tmp_path, capsys, monkeypatch):
    """A phase's tracker is gone when its phase ends: what it could neither send nor spool (a full disk) is kept
    for this run's next write, and the finish step's close spools it once there is space again."""
    import errno
    import search.tracking.tracker as tracking

    spool, append = tmp_path / "spool", tracking.append_text

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    root = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(spool), retry_s=3600)
    fork = root.fork()
    for tracker in (root, fork):
        tracker._client, tracker._exp_id = _DownClient(), "1"
    monkeypatch.setattr(tracking, "append_text", full)
    fork.push(["start", "search", "t1", {}, {}])
    fork.push(["end", "search", "t1", "FINISHED", {}])
    assert fork.close() == 0 and not spool.exists()
    assert "2 tracking operations MLflow did not take are kept in memory" in capsys.readouterr().out
    del fork
    monkeypatch.setattr(tracking, "append_text", append)  # space again
    root.call("set_terminated", status="FINISHED")
    assert root.close() == 3
    assert [json.loads(line)[0] for line in spool.read_text().splitlines()] == ["start", "end", "call"]


def test_a_parent_run_end_the_full_disk_did_not_take_is_said_and_resume_says_it_was_left_running(
        tmp_path, capsys, monkeypatch):
    """A local SQLite store on the full disk cannot end the parent run, nor can the spool keep the end: the line
    says MLflow shows the run RUNNING until --resume, and --resume says it found the run still RUNNING."""
    import errno
    import search.tracking.tracker as tracking
    from search.tracking.store import default_tracking_uri, start_store
    from search.tracking.tracker import open_parent

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tracking, "append_text", full)
    tracker = Tracker("http://127.0.0.1:5000", "exp", "parent", spool=str(tmp_path / "spool"), retry_s=3600)
    tracker._client, tracker._exp_id = _DownClient(), "1"
    tracker.call("set_terminated", status="FAILED")
    assert tracker.close() == 0
    line = capsys.readouterr().out
    assert "parent run's end (FAILED)" in line and "RUNNING" in line and "--resume" in line

    start_store(tmp_path)
    uri = default_tracking_uri(tmp_path)
    (tmp_path / "space.yaml").write_text("name: x\n")
    parent = open_parent(uri, "exp", None, {}, tmp_path / "space.yaml", "optuna-tpe+asha", tmp_path / "artifacts")
    capsys.readouterr()
    assert open_parent(uri, "exp", parent, {}, tmp_path / "space.yaml", "optuna-tpe+asha") == parent  # never ended
    assert f"parent run {parent} was still RUNNING" in capsys.readouterr().out
    MlflowClient(tracking_uri=uri).set_terminated(parent, status="KILLED")  # a launch that ended it: no note
    open_parent(uri, "exp", parent, {}, tmp_path / "space.yaml", "optuna-tpe+asha")
    assert "still RUNNING" not in capsys.readouterr().out
