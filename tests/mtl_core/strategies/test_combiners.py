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


def test_uncertainty_clamp_is_reached_and_s_comes_back():
    unc = Uncertainty(CTX, clamp=0.5)
    _optimise(unc, torch.tensor([0.05, 0.05, 0.05]), 300)  # optimum s = log(2L) = -2.3: beyond the bound
    assert torch.allclose(unc.log_var.detach().clamp(-0.5, 0.5), torch.full((3,), -0.5))
    assert unc.log()["strategy/gory/weight"] == pytest.approx(math.exp(0.5), rel=1e-5)
    _optimise(unc, torch.tensor([0.5, 0.5, 0.5]), 300)  # the loss rose: optimum s = log(1) = 0
    torch.testing.assert_close(unc.log_var.detach(), torch.zeros(3), atol=0.02, rtol=0)


def test_learned_parameters_get_their_own_learning_rate(tiny_cfg):
    from mtl_core.train import _optimizer
    from mtl_core.model.hiccap import HICCAP

    cfg = tiny_cfg(train={"lr": 1e-4})
    model = HICCAP(TASKS3, 16, freeze_text=True, rnn_units=8, attention_heads=4, head_dims=(8, 4))
    for combiner, lr in ((Uncertainty(CTX), 0.01), (Learned(CTX, weight_lr=0.05), 0.05),
                         (IMTL(CTX, scale_lr=0.02), 0.02)):
        opt, _ = _optimizer(cfg, model, combiner, 10)
        assert [g["lr"] for g in opt.param_groups] == [1e-4, lr]
        assert opt.param_groups[1]["params"] == combiner.parameters()
        assert opt.param_groups[1]["weight_decay"] == 0.0


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


@pytest.mark.parametrize("distribution", ["normal", "dirichlet"])
def test_rlw_draws_follow_the_specified_distribution(distribution):
    """λ/T is softmax of N(0, I) (normal) or Dirichlet(1) (dirichlet): compare the first weight's
    distribution with a reference sample drawn independently (two-sample Kolmogorov-Smirnov)."""
    from scipy.stats import ks_2samp

    rlw = RLW(CTX, distribution=distribution)
    first = torch.stack([rlw.sample(ALL) for _ in range(4000)])[:, 0].numpy() / 3
    gen = torch.Generator().manual_seed(123)
    if distribution == "normal":
        ref = torch.softmax(torch.randn(4000, 3, generator=gen), 1)[:, 0]
    else:
        ref = torch.distributions.Dirichlet(torch.ones(3)).sample((4000,))[:, 0]
    assert ks_2samp(first, ref.numpy()).pvalue > 0.01
    other = "dirichlet" if distribution == "normal" else "normal"
    wrong = torch.stack([RLW(StrategyContext(TASKS3, 1, s), distribution=other).sample(ALL) for s in range(4000)])
    assert ks_2samp(first, wrong[:, 0].numpy() / 3).pvalue < 0.01  # the test tells the two apart


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


def test_mgda_is_the_min_norm_point_and_reports_its_weights():
    ctx = StrategyContext(TASKS3[:2], 1, 0)
    g1, g2 = G2
    a = ((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1)
    mgda = MGDA(ctx, epsilon=1e-6, max_iters=1000)
    torch.testing.assert_close(_agg(mgda, G2), a * g1 + (1 - a) * g2, atol=1e-3, rtol=1e-3)
    logged = mgda.log()
    # min-norm weights (a, 1 - a) sum to 1; reported on the loss methods' scale (mean 1 over tasks)
    assert logged["strategy/binary/weight"] == pytest.approx(2 * float(a), abs=2e-3)
    assert logged["strategy/gory/weight"] == pytest.approx(2 * float(1 - a), abs=2e-3)
    assert logged["strategy/weight_sum"] == pytest.approx(1.0, abs=1e-4)
    assert "strategy/binary/weight" not in mgda.log()  # reset once per epoch


GRADIENT_METHODS = [PCGrad, MGDA, CAGrad, IMTL, AlignedMTL, NashMTL, DBMTL]


@pytest.mark.parametrize("cls", GRADIENT_METHODS)
def test_gradient_methods_report_the_weights_they_applied(cls):
    """Every gradient method logs per-task weights: the epoch's mean, on the loss methods' scale;
    for the torchjd weightings they reproduce the direction exactly."""
    g = torch.tensor([[1.0, 0.0, 0.0, 0.5], [-0.6, 1.0, 0.0, 0.0], [0.2, 0.1, 2.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comb = cls(CTX)
        active = torch.tensor([0, 2])
        d = comb.aggregate(g[active], torch.ones(2), active)
    logged = comb.log()
    w = torch.tensor([logged["strategy/binary/weight"], logged["strategy/sarcasm/weight"]])
    assert "strategy/gory/weight" not in logged  # never active this epoch
    assert w.sum().item() == pytest.approx(2.0, abs=1e-4) and (w > 0).all()
    if cls is not DBMTL:  # DB-MTL's weights act on its gradient EMA, not on this step's rows
        raw = w * logged["strategy/weight_sum"] / 2
        torch.testing.assert_close(raw @ g[active], d, atol=1e-4, rtol=1e-4)


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


def test_imtl_l_drives_scaled_losses_to_equality():
    imtl = IMTL(CTX, scale_lr=0.05)
    losses = torch.tensor([0.25, 1.0, 2.0])
    opt = torch.optim.Adam(imtl.parameters(), lr=imtl.param_lr)
    spread = []
    for _ in range(600):
        opt.zero_grad()
        imtl.transform_losses(losses, ALL).sum().backward()  # e^s·L - s, gradient e^s·L - 1
        opt.step()
        scaled = imtl.s.detach().exp() * losses
        spread.append(float(scaled.max() - scaled.min()))
    assert spread[0] > spread[100] > spread[-1]
    torch.testing.assert_close(imtl.s.detach().exp() * losses, torch.ones(3), rtol=1e-2, atol=1e-2)


def _toy_head_grads(combiner):
    from mtl_core.strategies.gradients import backward_aggregated
    from conftest import Toy

    model = Toy().train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g)
    y = torch.randint(0, 2, (32, 3), generator=g)
    torch.manual_seed(0)
    z = model.encode(x)
    logits = model.heads_forward(z)
    losses = torch.stack([torch.nn.functional.cross_entropy(logits[t], y[:, j]) for j, t in enumerate(model.tasks)])
    backward_aggregated(model, z, losses, torch.ones(3, dtype=torch.bool), combiner)
    return [model.heads[t].weight.grad.clone() for t in model.tasks], losses.detach()


def test_imtl_l_scales_the_heads_and_trains_s():
    ctx = StrategyContext(("a", "b", "c"), 1, 0)
    plain, _ = _toy_head_grads(IMTL(ctx, loss_balance=False))
    balanced = IMTL(ctx)
    with torch.no_grad():
        balanced.s.copy_(torch.tensor([0.5, -0.3, 1.0]))  # as after some training
    scaled, losses = _toy_head_grads(balanced)
    for j in range(3):  # each head's gradient is that of e^{s_t}·L_t
        torch.testing.assert_close(scaled[j], plain[j] * math.exp(float(balanced.s.detach()[j])), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(balanced.s.grad, balanced.s.detach().exp() * losses - 1)


def test_aligned_mtl_equalises_singular_values():
    # Orthogonal gradients of different norms: every singular value becomes the smallest (0.5), so
    # each task gets the same step; torchjd's default preference is the mean (1/T each).
    g = torch.diag(torch.tensor([3.0, 1.0, 0.5]))
    torch.testing.assert_close(_agg(AlignedMTL(CTX), g), torch.full((3,), 0.5 / 3), atol=1e-4, rtol=1e-4)
    bigger = torch.diag(torch.tensor([30.0, 1.0, 0.5]))
    torch.testing.assert_close(_agg(AlignedMTL(CTX), bigger), torch.full((3,), 0.5 / 3), atol=1e-4, rtol=1e-4)


def test_nash_mtl_never_reuses_weights_across_task_subsets():
    g = torch.diag(torch.tensor([4.0, 1.0, 0.25]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nash = NashMTL(CTX, max_norm=0.0, update_weights_every=5)
        nash.aggregate(g[[0, 1]], torch.ones(2), torch.tensor([0, 1]))  # solves for {binary, gory}
        d = nash.aggregate(g[[0, 2]], torch.ones(2), torch.tensor([0, 2]))  # another subset: its own solve
        fresh = NashMTL(CTX, max_norm=0.0).aggregate(g[[0, 2]], torch.ones(2), torch.tensor([0, 2]))
    torch.testing.assert_close(d, fresh)
    torch.testing.assert_close(d, torch.tensor([1.0, 0.0, 1.0]), atol=2e-2, rtol=2e-2)  # unit step each


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
    """Vanishing gradients give a finite and vanishing direction (nothing blown up by a division),
    and zero losses a finite inverse-loss objective that still equals Σ w_t L_t = 0."""
    tiny = 1e-12 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    for cls in (PCGrad, MGDA, IMTL, AlignedMTL):
        out = cls(CTX).aggregate(tiny, torch.ones(3), torch.arange(3))
        assert torch.isfinite(out).all(), cls.name
        assert out.norm() <= 3 * tiny.norm(dim=1).max() + 1e-15, cls.name
    zero = InverseLoss(CTX).combine(torch.zeros(3), ALL)
    assert math.isfinite(zero.item()) and zero.item() == 0.0
