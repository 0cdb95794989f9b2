"""run_experiment's own state, with the data, MLflow and Ray replaced: how the parent run ends whatever stops the
launch, what one launch leaves to the next in the same process, and Ray's settings scoped to the driver's start."""
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray._private import ray_constants

import search.run.sweep as sweep
from search.space.parse import load_space
from search.tracking.tracker import Tracker

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "spaces" / "smoke.yaml"


class _Calls(Tracker):
    """A tracker that records what it would send."""

    def __init__(self):
        super().__init__("sqlite:///nowhere.db", "x", "parent")
        self.sent: list = []

    def push(self, op):
        self.sent.append(op)

    def close(self):
        return 0


@pytest.mark.parametrize("code", [1, 3, None, "message"])
def test_a_sys_exit_inside_the_launch_ends_the_parent_run_failed(tmp_path, monkeypatch, code):
    """Any SystemExit but the one ray.init's SIGTERM handler raises (turned into a stop before it gets here) is
    a failure like any other: the parent run is not left RUNNING."""
    tracker = _Calls()
    monkeypatch.setattr(sweep, "_prepare_data", lambda spec: None)
    monkeypatch.setattr(sweep, "_open", lambda *a: SimpleNamespace(tracker=tracker))
    monkeypatch.setattr(sweep, "_start_ray", lambda *a: False)

    def phases(exp, started):
        raise SystemExit(code)
    monkeypatch.setattr(sweep, "_run_phases", phases)
    (tmp_path / "space.yaml").write_text("x")
    with pytest.raises(SystemExit):
        sweep.run_experiment(SimpleNamespace(), tmp_path, "sqlite:///x", None, False)
    assert tracker.sent == [["call", "set_terminated", ["parent"], {"status": "FAILED"}]]


def test_a_second_launch_in_the_same_process_does_not_inherit_the_first_s_outage(tmp_path, monkeypatch):
    """The outage state is shared by the trackers of one parent run and spool, which a --resume reuses: a second
    launch in the same process must ask the server afresh."""
    monkeypatch.setattr(sweep, "start_store", lambda exp_dir: None)
    monkeypatch.setattr(sweep, "open_parent", lambda *a, **k: "parent")
    spec = load_space(SMOKE)
    uri = "http://127.0.0.1:5000"
    first = sweep._open(spec, tmp_path, uri, False)
    outage = first.tracker.link
    outage.down, outage.retry_at = True, float("inf")  # the first launch met an outage
    second = sweep._open(spec, tmp_path, uri, True)
    assert second.tracker.link is not outage and not second.tracker.link.down
    assert second.tracker.fork().link is second.tracker.link  # within a launch it is still shared


@pytest.mark.parametrize("fails", [False, True], ids=["started", "failed"])
def test_ray_s_failure_signal_handler_is_off_only_while_the_driver_starts_ray(monkeypatch, fails):
    """The driver's core worker reads the setting in ray.init; set for longer, it would change what a later
    ray.init in the same process installs (and it is never in os.environ, which Ray's processes inherit)."""
    seen = []

    def init(**kwargs):
        seen.append(ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER)
        if fails:
            raise ConnectionError("no cluster")
    monkeypatch.setattr(sweep, "_ray_init", init)
    monkeypatch.setattr(ray_constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", False)
    monkeypatch.delenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", raising=False)
    if fails:
        with pytest.raises(ConnectionError):
            sweep._start_ray(None)
    else:
        assert sweep._start_ray(None) is True
    assert seen == [True]
    assert ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER is False
    assert "RAY_DISABLE_FAILURE_SIGNAL_HANDLER" not in sweep.os.environ
