"""`transferred`: fixed weights taken from a learned weighting, by a pilot inside the run or from an earlier run."""
import json

import pytest
import torch

from mtl_core import TASKS
from mtl_core.checkpoint import safe_load
from mtl_core.config import ConfigError, build_config
from mtl_core.data.synth import write_synthetic
from mtl_core.prepare import prepare
from mtl_core.strategies import StrategyContext
from mtl_core.strategies.combiners import transferred
from mtl_core.strategies.combiners.transferred import Transferred
from mtl_core.train import train

from conftest import assert_resume_exact, tiny_raw

CTX = StrategyContext(TASKS, epochs=4, seed=0)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("micro_tw"), seed=5, n_train=16, n_val=8, n_test=8)
    return root, prepare(build_config(tiny_raw(root)), torch.device("cpu"), splits=("train", "val"))


def _cfg(root, combiner, scheduler="all_tasks", epochs=2):
    return build_config(tiny_raw(root, train={"epochs": epochs}, strategy={"scheduler": scheduler, "combiner": combiner}))


def _final_weights(source: str, state: dict) -> torch.Tensor:
    """The source combiner's own final weights, read from its state (not from what it logged)."""
    s = state["groups"][0]["strategies"]["combiner"]
    if source == "uncertainty":
        return torch.exp(-s["log_var"])
    if source == "learned":
        return len(TASKS) * torch.softmax(s["logits"], 0)
    return s["w"]


@pytest.mark.parametrize("scheduler, source, pilot, epochs", [
    ("round_robin", "uncertainty", 1, 1),  # fast tier; fixed from step to step: the test below
    pytest.param("dsg", "gradnorm", 2, 3, marks=pytest.mark.slow),
    pytest.param("round_robin", "learned", 2, 3, marks=pytest.mark.slow),
    pytest.param("dsg", "dwa", 4, 3, marks=pytest.mark.slow),
])
def test_pilot_weights_are_the_sources_final_weights_and_stay_fixed(micro, tmp_path, scheduler, source, pilot, epochs):
    root, data = micro
    src = train(_cfg(root, source, epochs=pilot), None, tmp_path / "source", prepared=data)  # the pilot, alone
    if source == "dwa":  # its mean over the epochs (its state holds only the last epoch's)
        expected = torch.tensor([[m[f"strategy/{t}/weight"] for t in TASKS] for m in src]).mean(0)
    else:
        expected = _final_weights(source, safe_load(tmp_path / "source" / "checkpoint" / "state.pt"))
    assert not torch.allclose(expected, torch.ones(len(TASKS)))  # the source did learn something
    history = train(_cfg(root, {"name": "transferred", "source": source, "pilot_epochs": pilot}, scheduler, epochs),
                    None, tmp_path / "run", prepared=data)
    for m in history:
        torch.testing.assert_close(torch.tensor([m[f"strategy/{t}/weight"] for t in TASKS]), expected)
    if scheduler == "round_robin":
        assert all(m[f"strategy/{t}/active"] < 1 for m in history for t in TASKS)


def test_weights_stay_fixed_and_apply_to_the_active_tasks_only():
    w = [0.5, 2.0, 1.5, 0.25, 3.0]
    c = Transferred(CTX, source="gradnorm")
    assert c.pilot() == ("gradnorm", 2)
    c.transfer([{f"strategy/{t}/weight": 9.0 for t in TASKS}, {f"strategy/{t}/weight": v for t, v in zip(TASKS, w)}])
    assert c.pilot() is None
    gen = torch.Generator().manual_seed(0)
    for epoch in range(3):
        c.start_epoch(epoch)
        for _ in range(4):
            losses = torch.rand(5, generator=gen, requires_grad=True)
            active = torch.zeros(5, dtype=torch.bool)
            active[int(torch.randint(5, (1,), generator=gen))] = True  # one task per step, as round robin
            (grad,) = torch.autograd.grad(c.combine(losses, active), losses)
            torch.testing.assert_close(grad, torch.tensor(w) * active)
        c.end_epoch(epoch, {f"train/{t}/loss": 1.0 + epoch for t in TASKS})
        assert [c.log()[f"strategy/{t}/weight"] for t in TASKS] == w


def test_dwa_transfers_its_mean_the_others_their_last_epoch():
    assert Transferred(CTX, source="dwa", pilot_epochs=2).pilot() == ("dwa", 3)  # it acts from its third epoch
    rows = [{f"strategy/{t}/weight": float(e + j) for j, t in enumerate(TASKS)} for e in range(4)]
    for source, expected in (("dwa", [1.5 + j for j in range(5)]), ("uncertainty", [3.0 + j for j in range(5)])):
        c = Transferred(CTX, source=source, pilot_epochs=3)
        c.transfer(rows)
        assert c.weights.tolist() == expected


def test_from_an_earlier_run_folder_checkpoint_or_metrics_file(micro, tmp_path):
    root, data = micro
    history = train(_cfg(root, "uncertainty", epochs=1), None, tmp_path / "src", prepared=data)
    last = [history[-1][f"strategy/{t}/weight"] for t in TASKS]
    (tmp_path / "src" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in history))
    for where in (tmp_path / "src", tmp_path / "src" / "checkpoint", tmp_path / "src" / "metrics.jsonl"):
        c = Transferred(CTX, from_run=str(where))
        assert c.pilot() is None and c.weights.tolist() == pytest.approx(last, rel=1e-6)
    cfg = _cfg(root, {"name": "transferred", "from_run": str(tmp_path / "src")}, "round_robin", epochs=1)
    m = train(cfg, None, tmp_path / "run", prepared=data)[-1]
    assert [m[f"strategy/{t}/weight"] for t in TASKS] == pytest.approx(last, rel=1e-6)


@pytest.mark.parametrize("content, message", [
    (None, "no such file or folder"),
    (b"\x80\x02garbage", "not a readable checkpoint"),
    (b'{"epoch": 0}\n', "no epoch logged a weight for every task"),
    (b"not json\n", "not JSON or JSON lines"),
    (b"x" * 64, "more than the limit 32"),
])
def test_a_bad_weights_source_is_one_line_naming_the_file(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(transferred, "MAX_JSON_BYTES", 32)
    path = tmp_path / ("state.pt" if content and content.startswith(b"\x80") else "metrics.jsonl")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        build_config({"strategy": {"combiner": {"name": "transferred", "from_run": str(path)}}})
    text = str(err.value)
    assert text.startswith(f"strategy.combiner: from_run: {path}") and message in text and "\n" not in text


@pytest.mark.parametrize("params, message", [
    ({"source": "pcgrad"}, "source must be one of uncertainty, learned, gradnorm, dwa, got 'pcgrad'"),
    ({"pilot_epochs": 0}, "pilot_epochs must be in [1, 1000], got 0"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ConfigError) as err:
        build_config({"strategy": {"combiner": {"name": "transferred", **params}}})
    assert str(err.value).startswith(f"strategy.combiner: {message}") and "\n" not in str(err.value)


@pytest.mark.slow
def test_resume_is_exact_and_does_not_rerun_the_pilot(micro, tmp_path, monkeypatch):
    root, data = micro
    cfg = _cfg(root, {"name": "transferred", "source": "gradnorm", "pilot_epochs": 1}, "dsg", epochs=3)
    assert_resume_exact(cfg, tmp_path, stop_after=0, prepared=data)
    pilots = []
    monkeypatch.setattr(Transferred, "transfer", lambda self, history, where="": pilots.append(where))
    train(cfg, None, tmp_path / "part", resume=True, prepared=data)
    assert pilots == []
