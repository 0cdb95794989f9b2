import torch

from mtl_core import TASKS
from mtl_core.strategies import StrategyContext
from mtl_core.strategies.modality import ModalityDropout, OneAtATime

CTX = StrategyContext(TASKS, epochs=6, seed=0)


def test_dropout_never_drops_everything_and_matches_rates():
    md = ModalityDropout(CTX, p_text=0.5, p_video=0.3, p_audio=0.1)
    masks = torch.cat([md.mask(64) for _ in range(300)])
    assert masks.any(1).all()
    keep = masks.float().mean(0)
    # P(keep u) = (1-p_u) + P(all dropped)/3 (the re-kept modality is chosen uniformly)
    all_dropped = 0.5 * 0.3 * 0.1
    expected = torch.tensor([0.5, 0.7, 0.9]) + all_dropped / 3
    assert torch.allclose(keep, expected, atol=0.01)


def test_dropout_with_certain_drop_keeps_exactly_one():
    md = ModalityDropout(CTX, p=0.99)
    masks = torch.cat([md.mask(100) for _ in range(20)])
    assert (masks.sum(1) >= 1).all()
    assert (masks.sum(1) == 1).float().mean() > 0.9


def test_dropout_is_seeded_and_resumable():
    a, b = ModalityDropout(CTX), ModalityDropout(CTX)
    assert torch.equal(a.mask(32), b.mask(32))
    state = a.state_dict()
    first = a.mask(32)
    b.load_state_dict(state)
    assert torch.equal(b.mask(32), first)


def test_one_at_a_time_stages_then_all():
    sched = OneAtATime(CTX, stages=(("text", "video"), ("audio",)), epochs_per_stage=2)
    rows = []
    for epoch in range(6):
        sched.start_epoch(epoch)
        m = sched.mask(4)
        assert (m == m[0]).all()
        rows.append(m[0].tolist())
    tv, a, everything = [True, True, False], [False, False, True], [True, True, True]
    assert rows == [tv, tv, a, a, everything, everything]
