"""Every scheduler x combiner pair trains for real on tiny synthetic data, without NaN, and reports
what it did (tasks trained, the weights each applied)."""
import math
import warnings

import pytest
import torch

from mtl_core import TASKS
from mtl_core.config import build_config
from mtl_core.data.synth import write_synthetic
from mtl_core.prepare import prepare
from mtl_core.strategies import REGISTRIES
from mtl_core.train import train

from conftest import assert_resume_exact, tiny_raw

PAIRS = [(s, c) for s in REGISTRIES["scheduler"] for c in REGISTRIES["combiner"]]


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("micro"), seed=5, n_train=16, n_val=8, n_test=8)
    cfg = build_config(tiny_raw(root))
    return root, prepare(cfg, torch.device("cpu"), splits=("train", "val"))


def _cfg(root, scheduler, combiner, modality="all_modalities", epochs=2):
    return build_config(tiny_raw(root, train={"epochs": epochs},
                                 strategy={"scheduler": {"name": scheduler}, "combiner": {"name": combiner},
                                           "modality": {"name": modality}}))


# The fast tier trains a covering set (every combiner, each with a different scheduler in turn, so every
# scheduler too); the other pairs, and `transferred` (it trains a pilot first), are in the slow tier.
_SCHEDULERS = list(REGISTRIES["scheduler"])
FAST_PAIRS = {(_SCHEDULERS[i % len(_SCHEDULERS)], c) for i, c in enumerate(REGISTRIES["combiner"]) if c != "transferred"}
TRAIN_PAIRS = [pytest.param(s, c, marks=() if (s, c) in FAST_PAIRS else pytest.mark.slow) for s, c in PAIRS]


@pytest.mark.parametrize("scheduler, combiner", TRAIN_PAIRS)
def test_pair_trains_without_nan(micro, tmp_path, scheduler, combiner):
    root, data = micro
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's DPP notice for nash_mtl
        history = train(_cfg(root, scheduler, combiner), None, tmp_path, prepared=data)
    for m in history:
        active = {t: m[f"strategy/{t}/active"] for t in TASKS}
        assert all(0.0 <= a <= 1.0 for a in active.values()) and sum(active.values()) > 0
        for t in TASKS:
            assert math.isfinite(m[f"train/{t}/loss"]) and math.isfinite(m[f"val/{t}/loss"])
            if active[t] > 0:  # every combiner reports the weight it gave each task that trained
                assert math.isfinite(m[f"strategy/{t}/weight"]) and m[f"strategy/{t}/weight"] >= 0, t
        if scheduler == "all_tasks":
            assert all(a == 1.0 for a in active.values())
    last = history[-1]
    if REGISTRIES["combiner"][combiner].uses_gradients and scheduler in ("all_tasks", "dsg"):
        assert -1.0 <= last["strategy/grad_cosine"] <= 1.0


def test_modality_schedules_train_on_what_they_say(micro, tmp_path):
    """The share of training samples that used each modality, per epoch: `all_modalities` = what the clips have,
    `dropout` less of each, `one_at_a_time` exactly its stage's modalities."""
    root, data = micro
    runs = {m: train(_cfg(root, "all_tasks", "equal", m), None, tmp_path / m, prepared=data) for m in REGISTRIES["modality"]}
    assert all(math.isfinite(m["val/avg_loss"]) for h in runs.values() for m in h)
    share = lambda h, e, mod: h[e][f"strategy/modality/{mod}"]  # noqa: E731
    for e in range(2):
        for mod in ("text", "video", "audio"):
            assert 0.9 <= share(runs["all_modalities"], e, mod) <= 1.0
            assert 0.0 < share(runs["dropout"], e, mod) < share(runs["all_modalities"], e, mod)
    stages = [("text", "video"), ("text", "audio")]  # one epoch each by default
    for e, stage in enumerate(stages):
        for mod in ("text", "video", "audio"):
            assert share(runs["one_at_a_time"], e, mod) == float(mod in stage)


def test_strategy_metrics_are_reported(micro, tmp_path):
    root, data = micro
    history = train(_cfg(root, "dsg", "uncertainty"), None, tmp_path / "a", prepared=data)
    assert {f"strategy/{t}/stopped" for t in TASKS} <= set(history[-1])
    assert {f"strategy/{t}/weight" for t in TASKS} <= set(history[-1])
    history = train(_cfg(root, "sampling", "equal", "dropout"), None, tmp_path / "b", prepared=data)
    assert abs(sum(history[-1][f"strategy/{t}/prob"] for t in TASKS) - 1) < 1e-5
    assert 0 < history[-1]["strategy/modality/video"] <= 1


@pytest.mark.parametrize("scheduler, combiner, modality", [
    ("sampling", "rlw", "dropout"),
    ("dsg", "gradnorm", "one_at_a_time"),
    ("curriculum", "db_mtl", "all_modalities"),
    ("round_robin", "pcgrad", "dropout"),
    ("sequential", "learned", "all_modalities"),
    ("all_tasks", "dwa", "all_modalities"),
])
def test_resume_with_stateful_strategies_is_exact(micro, tmp_path, scheduler, combiner, modality):
    root, data = micro
    assert_resume_exact(_cfg(root, scheduler, combiner, modality, epochs=4), tmp_path, stop_after=1, prepared=data)


def _frozen_snapshot(run, j):
    head = {k: v.detach().clone() for k, v in run.model.heads[run.tasks[j]].state_dict().items()}
    own = [p.detach()[j].clone() for p in run.strategies["combiner"].parameters()]
    return head, own


# the fast tier: a loss method, a learned weighting and a gradient method under round robin; the slow tier:
# every other pair
FAST_FREEZE = {("round_robin", "equal"), ("round_robin", "uncertainty"), ("round_robin", "pcgrad")}
FREEZE_PAIRS = [pytest.param(s, c, marks=() if (s, c) in FAST_FREEZE else pytest.mark.slow) for s, c in PAIRS]


@pytest.mark.parametrize("scheduler, combiner", FREEZE_PAIRS)
def test_an_inactive_task_leaves_its_head_and_combiner_parameters_untouched(micro, scheduler, combiner):
    """Whatever the combiner, a task that is not active in a step (its scheduler left it out, or the batch
    has no label for it) keeps its head's weights and its combiner entries: AdamW must not move them on
    momentum from earlier steps (it did under every loss combiner, never under gradient methods)."""
    from mtl_core.train import build_group, train_step

    root, data = micro
    cfg = _cfg(root, scheduler, combiner)
    cpu = torch.device("cpu")
    run = build_group(cfg, cfg.tasks, data, cpu)
    batches = list(run.train_split.batches(8, drop_last=True))
    steps = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(3):
            for inputs, labels in batches:
                if epoch == 2:  # momentum is built: now the batch has no label for task 0
                    labels = labels.clone()
                    labels[:, 0] = -1
                before = [_frozen_snapshot(run, j) for j in range(len(run.tasks))]
                _, _, active = train_step(run, cfg, inputs, labels, epoch, cpu)
                run.step += 1
                steps += 1
                for j in (~active).nonzero().flatten().tolist():
                    head, own = _frozen_snapshot(run, j)
                    for k, v in head.items():
                        assert torch.equal(v, before[j][0][k]), (j, k)
                    for x, y in zip(own, before[j][1]):
                        assert torch.equal(x, y), j
                if epoch == 2:
                    assert not active[0]
    assert steps >= 3
