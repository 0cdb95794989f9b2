import logging

import torch

from mtl_core import TASKS
from mtl_core.strategies import StrategyContext
from mtl_core.strategies.modality import AllModalities, ModalityDropout, OneAtATime

CTX = StrategyContext(TASKS, epochs=6, seed=0)
ALL3 = torch.ones(64, 3, dtype=torch.bool)


def _mixed_presence(n: int) -> torch.Tensor:
    """Clips with everything, text only (as in the real release), text + audio, video + audio."""
    rows = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    return rows.repeat(n // 4, 1)


def test_dropout_never_drops_everything_and_matches_rates():
    md = ModalityDropout(CTX, p_text=0.5, p_video=0.3, p_audio=0.1)
    masks = torch.cat([md.mask(ALL3) for _ in range(300)])
    assert masks.any(1).all()
    keep = masks.float().mean(0)
    # P(keep u) = (1-p_u) + P(all dropped)/3 (the re-kept modality is chosen uniformly)
    all_dropped = 0.5 * 0.3 * 0.1
    expected = torch.tensor([0.5, 0.7, 0.9]) + all_dropped / 3
    assert torch.allclose(keep, expected, atol=0.01)


def test_dropout_draws_only_among_the_modalities_a_clip_has():
    md = ModalityDropout(CTX, p=0.5)
    present = _mixed_presence(64)
    masks = torch.stack([md.mask(present) for _ in range(400)])  # [draws, B, 3]
    assert not (masks & ~present).any()  # never switches on what the clip lacks
    assert masks.any(2).all()  # no clip is ever left with nothing
    text_only = masks[:, 1::4]
    assert text_only[..., 0].all()  # a text-only clip always keeps its text
    # text + audio: each dropped with p = 0.5; both dropped (0.25) re-keeps one of the two uniformly
    pair = masks[:, 2::4].float().mean((0, 1))
    torch.testing.assert_close(pair, torch.tensor([0.625, 0.0, 0.625]), atol=0.02, rtol=0)


def test_dropout_with_certain_drop_keeps_exactly_one():
    md = ModalityDropout(CTX, p=0.99)
    masks = torch.cat([md.mask(torch.ones(100, 3, dtype=torch.bool)) for _ in range(20)])
    assert (masks.sum(1) >= 1).all()
    assert (masks.sum(1) == 1).float().mean() > 0.9


def test_dropout_is_seeded_and_resumable():
    a, b = ModalityDropout(CTX), ModalityDropout(CTX)
    present = _mixed_presence(32)
    assert torch.equal(a.mask(present), b.mask(present))
    state = a.state_dict()
    first = a.mask(present)
    b.load_state_dict(state)
    assert torch.equal(b.mask(present), first)


def test_all_modalities_uses_what_each_clip_has():
    present = _mixed_presence(8)
    assert torch.equal(AllModalities(CTX).mask(present), present)


def test_one_at_a_time_stages_then_all():
    sched = OneAtATime(CTX, stages=(("text", "video"), ("audio",)), epochs_per_stage=2)
    rows = []
    for epoch in range(6):
        sched.start_epoch(epoch)
        m = sched.mask(torch.ones(4, 3, dtype=torch.bool))
        assert (m == m[0]).all()
        rows.append(m[0].tolist())
    tv, a, everything = [True, True, False], [False, False, True], [True, True, True]
    assert rows == [tv, tv, a, a, everything, everything]
    sched.start_epoch(0)
    assert torch.equal(sched.mask(_mixed_presence(4)), _mixed_presence(4) & torch.tensor([True, True, False]))


def test_one_at_a_time_skips_stages_no_clip_can_train(caplog):
    text_only = StrategyContext(TASKS, epochs=6, seed=0, modalities=("text",))
    with caplog.at_level(logging.WARNING):
        sched = OneAtATime(text_only, epochs_per_stage=1)  # default stages: tv, ta, va
    assert sched.stages == (("text", "video"), ("text", "audio"))  # video + audio: nothing to train on
    assert len(caplog.records) == 1 and "video', 'audio" in caplog.text
    used = []
    for epoch in range(3):
        sched.start_epoch(epoch)
        used.append(sched.mask(torch.tensor([[True, False, False]]))[0].tolist())
    assert all(u[0] for u in used)  # every epoch trains on the text the clips have
