import math
import warnings

import pytest
import torch

from mtl_core.strategies import StrategyContext
from mtl_core.strategies.combiners import (
    DBMTL, DWA, IMTL, MGDA, RLW, Adaptive, AlignedMTL, CAGrad, Equal, Fixed, GradNorm, InverseLoss, Learned,
    NashMTL, PCGrad, Uncertainty,
)

TASKS3 = ("binary", "gory", "sarcasm")
CTX = StrategyContext(TASKS3, epochs=10, seed=0)
ALL = torch.ones(3, dtype=torch.bool)


def test_equal_and_fixed():
    losses = torch.tensor([0.5, 1.0, 2.0])
    assert Equal(CTX).combine(losses, torch.tensor([True, False, True])).item() == 2.5
    fixed = Fixed(CTX, weights={"gory": 0.25})
    assert fixed.combine(losses, ALL).item() == pytest.approx(0.5 + 0.25 + 2.0)
    with pytest.raises(ValueError, match="not configured: mature"):
        Fixed(CTX, weights={"mature": 1.0})


def _optimise(combiner, losses, steps, lr=0.05):
    opt = torch.optim.Adam(combiner.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        combiner.combine(losses, ALL).backward()
        opt.step()


def test_uncertainty_reaches_one_over_twice_the_loss():
    unc = Uncertainty(CTX)
    losses = torch.tensor([0.4, 1.0, 2.5])
    _optimise(unc, losses, 3000)
    torch.testing.assert_close(torch.exp(-unc.log_var.detach()), 1 / (2 * losses), rtol=1e-3, atol=1e-3)


def test_learned_weights_stay_normalised_and_do_not_collapse():
    losses = torch.tensor([0.2, 0.5, 0.9])
    learned = Learned(CTX, entropy=1.0)
    _optimise(learned, losses, 3000)
    w = learned.weights().detach()
    assert w.sum().item() == pytest.approx(3.0, abs=1e-5)
    expected = 3 * torch.softmax(-3 * losses / 1.0, 0)  # the regularised optimum
    torch.testing.assert_close(w, expected, rtol=1e-2, atol=1e-2)
    assert w.min() > 0.2  # 3·softmax(-2.7) ≈ 0.24: down-weighted, not starved
    collapsing = Learned(CTX, entropy=0.0)  # the textbook version: all mass on the easiest task
    _optimise(collapsing, losses, 3000)
    assert collapsing.weights()[0].item() > 2.9


def test_gradnorm_weights_sum_to_t_and_move_toward_the_slower_task():
    gn = GradNorm(CTX, alpha=1.5, weight_lr=0.05)
    norms = torch.ones(3)
    gn.combine(torch.tensor([1.0, 1.0, 1.0]), ALL, norms)  # records L(0)
    for _ in range(20):  # binary's loss has barely moved; sarcasm's has halved
        gn.combine(torch.tensor([0.95, 0.8, 0.5]), ALL, norms)
    assert gn.w.sum().item() == pytest.approx(3.0, abs=1e-5)
    assert gn.w[0] > gn.w[1] > gn.w[2]
    # with equal progress and unequal gradient norms, weights equalise w·n
    eq = GradNorm(CTX, alpha=1.5, weight_lr=0.01)
    n = torch.tensor([0.5, 1.0, 2.0])
    for _ in range(400):
        eq.combine(torch.ones(3), ALL, n)
    g = eq.w * n
    assert (g.max() - g.min()) / g.mean() < 0.1


def test_dwa_matches_the_formula():
    dwa = DWA(CTX, temperature=2.0)
    history = [[1.0, 1.0, 1.0], [0.5, 1.0, 0.8], [0.4, 0.5, 0.8]]
    for epoch, losses in enumerate(history):
        dwa.start_epoch(epoch)
        if epoch < 2:
            assert dwa.w.tolist() == [1.0, 1.0, 1.0]
        dwa.end_epoch(epoch, {f"train/{t}/loss": v for t, v in zip(TASKS3, losses)})
    dwa.start_epoch(3)
    r = torch.tensor(history[2]) / torch.tensor(history[1])
    expected = 3 * torch.exp(r / 2) / torch.exp(r / 2).sum()
    torch.testing.assert_close(dwa.w, expected)


def test_inverse_loss_weights_are_detached():
    losses = torch.tensor([0.2, 0.5, 1.0], requires_grad=True)
    inv = InverseLoss(CTX)
    (grad,) = torch.autograd.grad(inv.combine(losses, ALL), losses)
    expected = 3 * (1 / losses.detach()) / (1 / losses.detach()).sum()
    torch.testing.assert_close(grad, expected)  # not the harmonic mean's H²/(T L²)


def test_adaptive_weights_focus_on_hard_tasks():
    ad = Adaptive(CTX, gamma=2.0, ema=0.0)
    assert ad.w.tolist() == [1.0, 1.0, 1.0]
    ad.end_epoch(0, {"val/binary/f1": 0.9, "val/gory/f1": 0.3, "val/sarcasm/f1": 0.6})
    k = torch.tensor([0.9, 0.3, 0.6])
    raw = -(1 - k) ** 2 * k.log()
    torch.testing.assert_close(ad.w, 3 * raw / raw.sum())
    assert ad.w[1] > ad.w[2] > ad.w[0]


def test_rlw_weights_are_random_normalised_and_respect_active():
    rlw = RLW(CTX)
    act = torch.tensor([True, False, True])
    draws = [rlw.sample(act) for _ in range(50)]
    assert all(d[1] == 0 and d.sum().item() == pytest.approx(2.0) for d in draws)
    assert len({tuple(d.tolist()) for d in draws}) == 50
    again = RLW(CTX)
    assert torch.equal(again.sample(act), draws[0])  # seeded


# --- gradient aggregators on hand-made gradient sets ---------------------------------------------

G2 = torch.tensor([[1.0, 0.0, 0.0], [-0.6, 1.0, 0.0]])  # conflicting pair (cosine < 0)


def _agg(combiner, g, losses=None):
    idx = torch.arange(len(g))
    return combiner.aggregate(g, torch.ones(len(g)) if losses is None else losses, idx)


def test_pcgrad_projects_orthogonally_and_removes_conflict():
    ctx = StrategyContext(TASKS3[:2], 1, 0)
    g1, g2 = G2
    d = _agg(PCGrad(ctx), G2)
    g1pc = g1 - (g1 @ g2) / (g2 @ g2) * g2
    g2pc = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert g1pc @ g2 == pytest.approx(0.0, abs=1e-6)  # orthogonal to the conflicting gradient
    torch.testing.assert_close(d, g1pc + g2pc)
    assert d @ g1 >= 0 and d @ g2 >= 0
    # three tasks, one conflicting with the two others: no negative inner product remains
    g3 = torch.tensor([[1.0, 0.2, 0.0], [0.1, 1.0, 0.0], [-0.5, -0.5, 1.0]])
    d3 = _agg(PCGrad(CTX), g3)
    assert all(d3 @ g >= -1e-6 for g in g3)


def test_mgda_is_the_min_norm_point():
    ctx = StrategyContext(TASKS3[:2], 1, 0)
    g1, g2 = G2
    a = ((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1)
    torch.testing.assert_close(_agg(MGDA(ctx, epsilon=1e-6, max_iters=1000), G2), a * g1 + (1 - a) * g2,
                               atol=1e-3, rtol=1e-3)


def test_cagrad_with_c_zero_is_the_mean_and_improves_the_worst_task():
    ctx = StrategyContext(TASKS3[:2], 1, 0)
    g0 = G2.mean(0)
    torch.testing.assert_close(_agg(CAGrad(ctx, c=0.0), G2), g0, atol=1e-4, rtol=1e-4)
    d = _agg(CAGrad(ctx, c=0.5), G2)
    worst = lambda v: min(float(v @ g) for g in G2)  # noqa: E731
    assert worst(d / d.norm()) > worst(g0 / g0.norm())


def test_imtl_g_has_equal_projections_on_every_unit_gradient():
    g = torch.tensor([[2.0, 0.0, 0.0], [0.3, 1.0, 0.0], [0.0, 0.5, 3.0]])
    d = _agg(IMTL(CTX, loss_balance=False), g)
    proj = (g / g.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj.mean().expand(3), rtol=1e-4, atol=1e-5)


def test_imtl_l_drives_scaled_losses_to_one():
    imtl = IMTL(CTX, scale_lr=0.1)
    losses = torch.tensor([0.25, 1.0, 2.0])
    for _ in range(500):
        _agg(imtl, torch.eye(3), losses)
    torch.testing.assert_close(imtl.s.exp() * losses, torch.ones(3), rtol=1e-3, atol=1e-3)


def test_aligned_mtl_equalises_singular_values():
    # Orthogonal gradients of different norms: every singular value becomes the smallest (0.5), so
    # each task gets the same step; torchjd's default preference is the mean (1/T each).
    g = torch.diag(torch.tensor([3.0, 1.0, 0.5]))
    torch.testing.assert_close(_agg(AlignedMTL(CTX), g), torch.full((3,), 0.5 / 3), atol=1e-4, rtol=1e-4)
    bigger = torch.diag(torch.tensor([30.0, 1.0, 0.5]))
    torch.testing.assert_close(_agg(AlignedMTL(CTX), bigger), torch.full((3,), 0.5 / 3), atol=1e-4, rtol=1e-4)


def test_nash_mtl_is_scale_invariant():
    g = torch.diag(torch.tensor([4.0, 1.0, 0.25]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = _agg(NashMTL(CTX, max_norm=0.0), g)
    # bargaining solution: alpha_t = 1/||g_t||, so every task gets the same unit step
    torch.testing.assert_close(d, torch.ones(3), atol=2e-2, rtol=2e-2)


def test_db_mtl_balances_log_gradients_to_the_largest_norm():
    db = DBMTL(CTX, beta=0.9)
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    losses = torch.tensor([0.5, 1.0, 2.0])
    d = _agg(db, g, losses)
    ema = 0.1 * g / losses[:, None]  # first step: EMA from zero
    norms = ema.norm(dim=1)
    torch.testing.assert_close(d, (norms.max() / norms)[:, None].mul(ema).sum(0))
    assert db.ema.shape == (3, 2)


@pytest.mark.parametrize("cls", [PCGrad, MGDA, CAGrad, IMTL, AlignedMTL, DBMTL])
def test_single_active_task_passes_its_gradient(cls):
    g = torch.tensor([[0.3, -1.0, 2.0]])
    d = cls(CTX).aggregate(g, torch.ones(1), torch.tensor([1]))
    if cls is DBMTL:
        g = 0.1 * g  # its EMA starts from zero
    torch.testing.assert_close(d, g[0])


def test_nan_free_on_degenerate_inputs():
    zero = torch.zeros(3, 4)
    for cls in (PCGrad, MGDA, IMTL, AlignedMTL):
        out = cls(CTX).aggregate(zero + 1e-12 * torch.randn(3, 4), torch.ones(3), torch.arange(3))
        assert torch.isfinite(out).all(), cls.name
    assert math.isfinite(InverseLoss(CTX).combine(torch.zeros(3), ALL).item())
