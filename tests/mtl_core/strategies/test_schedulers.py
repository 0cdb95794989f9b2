import pytest
import torch

from mtl_core import TASKS
from mtl_core.strategies import StrategyContext
from mtl_core.strategies.schedulers import Curriculum, DynamicStopAndGo, RoundRobin, Sampling, Sequential

CTX = StrategyContext(TASKS, epochs=10, seed=0, positives=(70, 22, 8, 17, 37))


def active(mask):
    return [t for t, m in zip(TASKS, mask.tolist()) if m]


def test_round_robin_visits_in_configured_order():
    order = ("gory", "binary", "sarcasm", "mature", "slapstick")
    rr = RoundRobin(CTX, order=order)
    visited = [active(rr.step_mask(step)) for step in range(12)]
    assert visited == [[order[s % 5]] for s in range(12)]


def test_round_robin_rejects_bad_order():
    with pytest.raises(ValueError, match="each configured task once"):
        RoundRobin(CTX, order=("gory", "gory", "binary", "mature", "sarcasm"))


def f1(**scores):
    return {f"val/{t}/f1": scores.get(t, 0.5) for t in TASKS}


def test_sequential_fixed_epochs_then_joint():
    order = ("sarcasm", "gory", "binary", "mature", "slapstick")
    seq = Sequential(CTX, order=order, epochs_per_task=2, final_joint=True)
    seen = []
    for epoch in range(12):
        seq.start_epoch(epoch)
        seen.append(active(seq.step_mask(0)))
        seq.end_epoch(epoch, f1())
    assert seen[:10] == [[order[e // 2]] for e in range(10)]
    assert seen[10] == seen[11] == list(TASKS)


def test_sequential_moves_on_when_f1_stops_improving():
    seq = Sequential(CTX, order=TASKS, patience=2)
    script = [0.5, 0.6, 0.6, 0.59]  # binary improves twice, then two epochs without improvement
    for epoch, score in enumerate(script):
        assert active(seq.step_mask(0)) == ["binary"], epoch
        seq.end_epoch(epoch, f1(binary=score))
    assert active(seq.step_mask(0)) == ["mature"]
    # without final_joint the last task keeps training
    last = Sequential(CTX, order=TASKS, epochs_per_task=1)
    for epoch in range(8):
        last.end_epoch(epoch, f1())
    assert active(last.step_mask(0)) == ["sarcasm"]


def test_dsg_follows_stop_go_rule_including_return_to_go():
    dsg = DynamicStopAndGo(CTX, iter_gap=4)
    g = TASKS.index("gory")
    # Worked by hand from the rule in docs/methods.md#scheduler-dsg
    # (threshold 0.1 %, continue 0.5 %, patience 1, cooldown 1):
    scores = [0.5, 0.6, 0.6, 0.6, 0.59, 0.59, 0.59, 0.59, 0.59, 0.7]
    expected = [False, False, False, True, False, False, False, True, False, False]
    got = []
    for epoch, s in enumerate(scores):
        dsg.end_epoch(epoch, f1(gory=s))
        got.append(dsg.stopped[g])
    assert got == expected
    assert dsg.best[g] == 0.7


def test_dsg_stopped_task_trains_only_every_iter_gap():
    dsg = DynamicStopAndGo(CTX, iter_gap=4)
    dsg.stopped[TASKS.index("mature")] = True
    steps = [s for s in range(12) if dsg.step_mask(s)[TASKS.index("mature")]]
    assert steps == [0, 4, 8]
    assert all(dsg.step_mask(s)[TASKS.index("gory")] for s in range(12))
    dsg.reset_epochs = (3,)
    dsg.start_epoch(3)
    assert not any(dsg.stopped) and dsg.best == [float("-inf")] * 5


def test_sampling_frequencies_match_probabilities():
    s = Sampling(CTX, signal="loss", temperature=0.5, floor=0.1)
    s.ema = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0])
    p = s.ema ** 2 / (s.ema ** 2).sum() * 0.9 + 0.02  # the specified rule
    torch.testing.assert_close(s.probabilities(), p)
    n = 20000
    counts = torch.zeros(5)
    for step in range(n):
        counts += s.step_mask(step).float()
    assert torch.allclose(counts / n, p, atol=0.015)


def test_sampling_floor_keeps_every_task_alive_and_k_tasks_per_step():
    s = Sampling(CTX, signal="loss", temperature=0.1, floor=0.2, tasks_per_step=2)
    s.ema = torch.tensor([1e-6, 1e-6, 1e-6, 1e-6, 1.0])
    assert (s.probabilities() >= 0.2 / 5 - 1e-7).all()
    assert all(int(s.step_mask(i).sum()) == 2 for i in range(50))


def test_annealed_sampling_goes_from_proportional_towards_uniform():
    s = Sampling(CTX, signal="annealed", floor=0.0)
    n = torch.tensor(CTX.positives, dtype=torch.float)
    s.start_epoch(0)
    torch.testing.assert_close(s.probabilities(), n / n.sum())  # α = 1
    s.start_epoch(CTX.epochs - 1)
    torch.testing.assert_close(s.probabilities(), n ** 0.2 / (n ** 0.2).sum())  # α = 0.2


def test_difficulty_sampling_follows_validation_f1():
    s = Sampling(CTX, signal="difficulty", floor=0.0)
    s.end_epoch(0, f1(binary=0.9, mature=0.5, gory=0.2, slapstick=0.5, sarcasm=0.5))
    p = s.probabilities()
    assert p[TASKS.index("gory")] > p[TASKS.index("mature")] > p[TASKS.index("binary")]


def _run_curriculum(cur, epochs, scores=None):
    seen = []
    for epoch in range(epochs):
        cur.start_epoch(epoch)
        seen.append(active(cur.step_mask(0)))
        cur.end_epoch(epoch, scores or f1())
    return seen


def test_curriculum_fixed_stages_activate_exactly_the_configured_tasks():
    stages = (("binary",), ("binary", "gory"), ("mature", "sarcasm", "slapstick"))
    seen = _run_curriculum(Curriculum(CTX, stages=stages, epochs_per_stage=2), 8)
    expected = [["binary"]] * 2 + [["binary", "gory"]] * 2 + [["mature", "slapstick", "sarcasm"]] * 4
    assert seen == expected


def test_curriculum_cumulative_order():
    order = ("binary", "gory", "sarcasm", "slapstick", "mature")
    seen = _run_curriculum(Curriculum(CTX, order=order, epochs_per_stage=1), 6)
    assert [sorted(s) for s in seen] == [sorted(order[:min(e + 1, 5)]) for e in range(6)]


@pytest.mark.parametrize("mode, first", [("assessed", "binary"), ("anti", "gory")])
def test_assessed_and_anti_curriculum_order_by_validation_f1(mode, first):
    scores = f1(binary=0.9, mature=0.6, gory=0.2, slapstick=0.5, sarcasm=0.4)
    cur = Curriculum(CTX, mode=mode, assessment_epochs=2, epochs_per_stage=1)
    seen = _run_curriculum(cur, 5, scores)
    assert seen[0] == seen[1] == list(TASKS)  # assessment: all tasks
    assert seen[2] == [first]
    easy_first = ["binary", "mature", "slapstick", "sarcasm", "gory"]
    expected = easy_first if mode == "assessed" else easy_first[::-1]
    assert cur.order == expected
    assert sorted(seen[3]) == sorted(expected[:2]) and sorted(seen[4]) == sorted(expected[:3])


def test_sampling_observe_tracks_the_loss_ema_and_steers_probabilities():
    ctx = StrategyContext(("a", "b", "c"), epochs=4, seed=0)
    s = Sampling(ctx, signal="loss", ema=0.5, floor=0.0, temperature=1.0)
    ema = torch.ones(3)
    steps = [torch.tensor([4.0, 1.0, 0.5]), torch.tensor([2.0, 1.0, float("nan")]), torch.tensor([4.0, 0.2, 0.5])]
    for losses in steps:
        s.observe(losses, torch.tensor([True, False, True]))
        ema = torch.where(torch.isfinite(losses), 0.5 * ema + 0.5 * losses, ema)  # NaN keeps the old value
        torch.testing.assert_close(s.ema, ema)
    torch.testing.assert_close(s.probabilities(), ema / ema.sum())  # harder task, more often
    assert s.probabilities().argmax() == 0
    log = s.log()
    assert log["strategy/a/active"] == 1.0 and log["strategy/b/active"] == 0.0
