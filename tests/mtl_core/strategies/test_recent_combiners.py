"""The methods of LibMTL's current list and torchjd 0.18 (FAMO, STCH, UPGrad, GradVac, ConFIG, FairGrad,
ExcessMTL): each is checked on the property that makes it that method."""
import math
import warnings

import pytest
import torch

from mtl_core.strategies import StrategyContext
from mtl_core.strategies.combiners import FAMO, STCH, ConFIG, ExcessMTL, FairGrad, GradVac, UPGrad

TASKS3 = ("binary", "gory", "sarcasm")
CTX = StrategyContext(TASKS3, epochs=10, seed=0)
CTX2 = StrategyContext(TASKS3[:2], epochs=10, seed=0)
ALL = torch.ones(3, dtype=torch.bool)
# one task conflicts with the two others: the mean gradient has a negative inner product with it
CONFLICT = torch.tensor([[1.0, 0.2, 0.0, 0.3], [0.1, 1.0, 0.0, -0.2], [-1.5, -1.2, 0.4, 0.0]])


def _agg(combiner, g, losses=None):
    idx = torch.arange(len(g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return combiner.aggregate(g, torch.ones(len(g)) if losses is None else losses, idx)


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# --- UPGrad ------------------------------------------------------------------------------------------

def test_upgrad_conflicts_with_no_task_and_is_the_mean_without_conflict():
    assert min(float(CONFLICT.mean(0) @ g) for g in CONFLICT) < -0.1  # the plain mean hurts the third task
    d = _agg(UPGrad(CTX), CONFLICT)
    assert all(float(d @ g) >= -1e-6 for g in CONFLICT)
    assert d.norm() > 0.05  # not the trivial zero step
    # gradients already in each other's dual cone are left as they are: the mean of the rows
    agree = torch.tensor([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.2, 0.1, 1.0]])
    torch.testing.assert_close(_agg(UPGrad(CTX), agree), agree.mean(0), atol=1e-3, rtol=1e-3)


# --- ConFIG ------------------------------------------------------------------------------------------

def test_config_has_equal_cosine_with_every_task_gradient():
    g = torch.randn(3, 6, generator=torch.Generator().manual_seed(4)) * torch.tensor([[3.0], [1.0], [0.2]])
    d = _agg(ConFIG(CTX), g)
    cos = torch.tensor([_cos(d, row) for row in g])
    torch.testing.assert_close(cos, cos.mean().expand(3), atol=1e-5, rtol=1e-5)
    assert (cos > 0).all()
    u = d / d.norm()
    assert float(d.norm()) == pytest.approx(float((g @ u).sum()), rel=1e-5)  # the length: Σ_i g_i·u
    d3 = _agg(ConFIG(CTX), CONFLICT)
    cos3 = torch.tensor([_cos(d3, row) for row in CONFLICT])
    torch.testing.assert_close(cos3, cos3.mean().expand(3), atol=1e-5, rtol=1e-5)


def test_config_is_torchjds_direction_and_keeps_equal_cosines_with_millions_of_parameters():
    from torchjd.aggregation import ConFIG as JD

    g = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_agg(ConFIG(CTX), g), JD()(g), atol=1e-5, rtol=1e-5)
    # close gradients in 300 000 float32 parameters: a pseudo-inverse of the [A, d] rows with the default
    # cutoff max(A, d)·eps (0.036) drops two of their three singular values (0.025 and 0.012 of the largest),
    # and the cosines spread by 4e-4
    gen = torch.Generator().manual_seed(2)
    a, b, c = (v / v.norm() for v in torch.randn(3, 300_000, generator=gen))
    g = torch.stack([a, 0.3 * (a + 0.03 * b), 4.0 * (a + 0.05 * c)])
    d = _agg(ConFIG(CTX), g)
    cos = torch.tensor([_cos(d, row) for row in g])
    torch.testing.assert_close(cos, cos.mean().expand(3), atol=2e-5, rtol=0)


# --- GradVac -----------------------------------------------------------------------------------------

G2 = torch.tensor([[1.0, 0.0, 0.0], [-0.6, 1.0, 0.0]])  # cosine -0.51


def test_gradvac_raises_a_pair_below_its_target_to_the_target():
    vac = GradVac(CTX2, beta=0.5)
    vac.targets[0, 1] = 0.5  # g_0 should meet g_1 at cosine 0.5
    vac.targets[1, 0] = -1.0  # never below: g_1 is left as it is
    g0, g1 = G2
    w = vac.weights(G2, torch.arange(2))  # the column sums of C, where corrected g_i = Σ_k C_ik g_k
    assert float(w[0]) == pytest.approx(1.0)  # g_1 gained nothing from g_0
    corrected = g0 + (w[1] - 1) * g1
    assert _cos(corrected, g1) == pytest.approx(0.5, abs=1e-5)
    assert _cos(g0, g1) < 0
    # the targets move towards the cosine each pair had: φ̂ ← (1 - beta)·φ̂ + beta·φ
    phi = _cos(g0, g1)
    assert float(vac.targets[0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * phi, abs=1e-6)
    assert float(vac.targets[1, 0]) == pytest.approx(0.5 * -1.0 + 0.5 * phi, abs=1e-6)
    # from the initial targets 0 a conflicting pair is made orthogonal: PCGrad's projection
    pcgrad = g0 - (g0 @ g1) / (g1 @ g1) * g1 + g1 - (g1 @ g0) / (g0 @ g0) * g0
    torch.testing.assert_close(_agg(GradVac(CTX2), G2), pcgrad)


def test_gradvac_leaves_pairs_above_target_and_keeps_targets_per_pair_across_subsets():
    agree = torch.tensor([[1.0, 0.3, 0.0], [0.2, 1.0, 0.0], [0.0, 0.4, 1.0]])
    vac = GradVac(CTX)
    torch.testing.assert_close(_agg(vac, agree), agree.sum(0))  # every cosine is above its target 0
    learned = vac.targets[0, 2].item()
    assert learned == pytest.approx(0.5 * _cos(agree[0], agree[2]), abs=1e-6) and learned > 0.05
    # a step on {binary, gory} moves only that pair's targets; {binary, sarcasm}'s are kept for later
    _agg_idx(vac, G2, torch.tensor([0, 1]))
    assert vac.targets[0, 2].item() == learned
    # the pair {binary, sarcasm} now conflicts: binary's gradient is raised to the learned target
    g = torch.stack([agree[0], -agree[2]])
    w = vac.weights(g, torch.tensor([0, 2]))
    assert _cos(g[0] + (w[1] - 1) * g[1], g[1]) == pytest.approx(learned, abs=1e-5)
    assert vac.targets[0, 2].item() == pytest.approx(0.5 * learned + 0.5 * _cos(g[0], g[1]), abs=1e-6)


# --- FairGrad ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_fairgrad_weights_solve_the_alpha_fair_fixed_point(alpha):
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g[2] *= 0.3
    fair = FairGrad(CTX, alpha=alpha)
    w = fair.weights(g, torch.arange(3))
    assert (w > 0).all()
    # (G Gᵀ w)_i = w_i^(-1/alpha): alpha = 1 is proportional fairness, (G Gᵀ w)_i = 1 / w_i
    torch.testing.assert_close(g @ g.T @ w, w ** (-1 / alpha), rtol=1e-4, atol=1e-6)
    d = fair.aggregate(g, torch.ones(3), torch.arange(3))
    torch.testing.assert_close(d, w @ g)
    # each task's share of the improvement: proportional fairness gives every task g_i·d·w_i = 1
    if alpha == 1.0:
        torch.testing.assert_close((g @ d) * w, torch.ones(3, dtype=torch.float64), rtol=1e-4, atol=1e-6)


# --- ExcessMTL ---------------------------------------------------------------------------------------

def test_excess_mtl_up_weights_the_task_with_larger_excess_risk():
    ex = ExcessMTL(CTX2, robust_step_size=0.5)
    idx = torch.arange(2)
    g = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    first = ex.aggregate(g, torch.ones(2), idx)
    torch.testing.assert_close(first, g.sum(0))  # the first step sets the baselines: weights 1 each
    weights = []
    for k in range(1, 8):  # binary keeps its gradient, gory's shrinks: its excess risk falls faster
        step = g * torch.tensor([[1.0], [0.5 ** k]])
        d = ex.aggregate(step, torch.ones(2), idx)
        w = torch.linalg.lstsq(step.T, d.unsqueeze(1)).solution.squeeze(1)
        assert w.sum().item() == pytest.approx(2.0, abs=1e-4)
        weights.append(w)
    assert all(w[0] > w[1] for w in weights)
    assert weights[-1][0] > weights[0][0]  # and more so with every step


def test_excess_mtl_is_torchjds_rule_on_a_fixed_task_set_and_keeps_per_task_state():
    from torchjd.aggregation import ExcessMTL as JD

    gen = torch.Generator().manual_seed(0)
    ours, ref = ExcessMTL(CTX, robust_step_size=0.3), JD(robust_step_size=0.3, n_warmup_steps=1)
    for _ in range(6):
        g = torch.randn(3, 8, generator=gen) * torch.tensor([[2.0], [1.0], [0.3]])
        torch.testing.assert_close(_agg(ours, g), 3 * ref(g), rtol=1e-4, atol=1e-5)
    # a task that sits out a step keeps its sums and baseline; the other two go on as before
    sq, base = ours.sq_sum[2].clone(), ours.baseline[2].clone()
    g = torch.randn(2, 8, generator=gen)
    ours.aggregate(g, torch.ones(2), torch.tensor([0, 1]))
    assert torch.equal(ours.sq_sum[2], sq) and torch.equal(ours.baseline[2], base)


# --- FAMO --------------------------------------------------------------------------------------------

def test_famo_weights_are_c_z_over_l_and_move_toward_the_task_whose_loss_falls_slowly():
    famo = FAMO(CTX, weight_lr=0.05, gamma=0.0)
    losses = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    (grad,) = torch.autograd.grad(famo.combine(losses, ALL), losses)
    inv = 1 / losses.detach()  # z uniform at first: c·z_t/L_t, times T
    torch.testing.assert_close(grad, 3 * inv / inv.sum())
    famo = FAMO(CTX, weight_lr=0.05, gamma=0.0)
    lo = torch.tensor([1.0, 1.0, 1.0])
    for _ in range(60):  # binary's loss barely falls, the other two fall fast
        lo = lo * torch.tensor([0.999, 0.95, 0.95])
        famo.combine(lo, ALL)
    z = torch.softmax(famo.logits, 0)
    assert z[0] > 0.5 and z[0] > z[1] and z[0] > z[2]
    torch.testing.assert_close(z[1], z[2])
    w = famo.weights(lo.double(), ALL)
    assert w.sum().item() == pytest.approx(3.0) and w[0] > w[1]


def test_famo_logits_move_only_for_tasks_active_in_both_steps():
    famo = FAMO(CTX)
    famo.combine(torch.tensor([1.0, 1.0, 1.0]), ALL)
    famo.combine(torch.tensor([0.9, 0.5, 0.7]), ALL)
    state = {k: v.clone() for k, v in famo.state_dict().items()}
    part = torch.tensor([True, True, False])
    famo.combine(torch.tensor([0.8, 0.4, 0.6]), part)  # sarcasm sits out: its logit and moments stay
    famo.combine(torch.tensor([0.7, 0.3, 0.5]), ALL)  # sarcasm was out of the last step: still no move
    for key in ("logits", "adam_m", "adam_v", "adam_t"):
        assert famo.state_dict()[key][2] == state[key][2], key
        assert famo.state_dict()[key][0] != state[key][0], key
    logged = famo.log()
    assert sum(logged[f"strategy/{t}/z"] for t in TASKS3) == pytest.approx(1.0)


# --- STCH --------------------------------------------------------------------------------------------

def _stch_after_warmup(mu, nadir=(0.5, 1.0, 2.0)):
    stch = STCH(CTX, mu=mu, warmup_epochs=1)
    stch.start_epoch(0)
    stch.combine(torch.tensor(nadir) * 0.5, ALL)
    stch.combine(torch.tensor(nadir) * 1.5, ALL)  # the epoch's mean is the nadir
    stch.end_epoch(0, {})
    return stch


def test_stch_warms_up_on_log_losses_and_takes_the_nadir_from_the_last_warmup_epoch():
    stch = STCH(CTX, warmup_epochs=2)
    losses = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    (grad,) = torch.autograd.grad(stch.combine(losses, ALL), losses)
    torch.testing.assert_close(grad, 1 / losses.detach())  # Σ log L_t
    stch.end_epoch(0, {})
    assert torch.isnan(stch.nadir).all()
    stch.combine(torch.tensor([0.2, 0.4, 0.6]), ALL)
    stch.combine(torch.tensor([0.4, 0.8, 1.0]), torch.tensor([True, True, False]))
    stch.end_epoch(1, {})
    torch.testing.assert_close(stch.nadir, torch.tensor([0.3, 0.6, 0.6], dtype=torch.float64))
    assert _stch_after_warmup(1.0).nadir.tolist() == pytest.approx([0.5, 1.0, 2.0])


def test_stch_tends_to_the_tchebycheff_max_as_mu_shrinks():
    losses = torch.tensor([0.6, 1.5, 2.2])  # normalised log losses f = log(L / nadir)
    f = torch.log(losses / torch.tensor([0.5, 1.0, 2.0]))
    gaps = []
    for mu in (2.0, 0.5, 0.1, 0.01, 0.001):
        value = _stch_after_warmup(mu).scalarize(losses, ALL).item() / 3
        assert f.max().item() <= value + 1e-6 <= f.max().item() + mu * math.log(3) + 2e-6  # its bounds
        gaps.append(value - f.max().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3
    # the weight goes to the task farthest from its ideal (gory, f = log 1.5) as mu → 0
    stch = _stch_after_warmup(0.001)
    probe = losses.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(stch.combine(probe, ALL), probe)
    torch.testing.assert_close(grad, torch.tensor([0.0, 3 / 1.5, 0.0]), atol=1e-4, rtol=1e-4)
    # large mu: the weights of the log losses flatten towards equal
    flat = _stch_after_warmup(100.0)
    probe = losses.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(flat.combine(probe, ALL), probe)
    torch.testing.assert_close(grad * losses, torch.ones(3), atol=2e-2, rtol=0)


# --- shared contracts --------------------------------------------------------------------------------

NEW_GRADIENT = [UPGrad, GradVac, ConFIG, FairGrad, ExcessMTL]


@pytest.mark.parametrize("cls", NEW_GRADIENT)
def test_new_gradient_methods_report_the_weights_they_applied(cls):
    g = torch.tensor([[1.0, 0.0, 0.0, 0.5], [-0.6, 1.0, 0.0, 0.0], [0.2, 0.1, 2.0, 0.0]])
    comb = cls(CTX)
    active = torch.tensor([0, 2])
    d = _agg_idx(comb, g[active], active)
    logged = comb.log()
    w = torch.tensor([logged["strategy/binary/weight"], logged["strategy/sarcasm/weight"]])
    assert "strategy/gory/weight" not in logged
    assert w.sum().item() == pytest.approx(2.0, abs=1e-4) and (w > 0).all()
    raw = w * logged["strategy/weight_sum"] / 2
    torch.testing.assert_close(raw @ g[active], d, atol=1e-4, rtol=1e-4)


def _agg_idx(comb, g, idx):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return comb.aggregate(g, torch.ones(len(idx)), idx)


@pytest.mark.parametrize("cls", NEW_GRADIENT)
def test_new_gradient_methods_pass_a_single_task_gradient(cls):
    g = torch.tensor([[0.3, -1.0, 2.0]])
    torch.testing.assert_close(_agg_idx(cls(CTX), g, torch.tensor([1])), g[0])


@pytest.mark.parametrize("cls", [UPGrad, GradVac, ConFIG, ExcessMTL])
def test_new_gradient_methods_are_finite_on_vanishing_gradients(cls):
    """FairGrad is left out: like Nash-MTL it is scale-invariant (a unit step for any gradient size)."""
    tiny = 1e-12 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    out = _agg_idx(cls(CTX), tiny, torch.arange(3))
    assert torch.isfinite(out).all()
    assert out.norm() <= 3 * tiny.norm(dim=1).max() + 1e-15


def test_new_loss_methods_are_finite_on_zero_losses():
    for comb in (FAMO(CTX), _stch_after_warmup(1.0)):
        for _ in range(3):
            value = comb.combine(torch.zeros(3), ALL)
            assert math.isfinite(value.item())
        assert all(math.isfinite(v) for v in comb.log().values())


# --- training: state in the checkpoint ---------------------------------------------------------------

@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from mtl_core.config import build_config
    from mtl_core.data.synth import write_synthetic
    from mtl_core.prepare import prepare
    from conftest import tiny_raw

    root = write_synthetic(tmp_path_factory.mktemp("micro"), seed=5, n_train=16, n_val=8, n_test=8)
    return root, prepare(build_config(tiny_raw(root)), torch.device("cpu"), splits=("train", "val"))


@pytest.mark.slow  # 20-50 s each; test_registry.py's round trip checks the same state quickly
@pytest.mark.parametrize("scheduler, combiner", [
    ("all_tasks", "famo"), ("all_tasks", "stch"), ("dsg", "gradvac"), ("all_tasks", "excess_mtl"),
])
def test_resume_with_the_new_stateful_combiners_is_exact(micro, tmp_path, scheduler, combiner):
    from mtl_core.config import build_config
    from conftest import assert_resume_exact, tiny_raw

    root, data = micro
    params = {"warmup_epochs": 1} if combiner == "stch" else {}
    cfg = build_config(tiny_raw(root, train={"epochs": 4}, strategy={
        "scheduler": {"name": scheduler}, "combiner": {"name": combiner, **params}, "modality": {"name": "all_modalities"}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_resume_exact(cfg, tmp_path, stop_after=1, prepared=data)


def test_the_coverage_table_names_every_combiner():
    """docs/methods.md's table of LibMTL's and torchjd's methods names exactly the registered combiners (but
    this project's own), each once."""
    import re
    from pathlib import Path

    from mtl_core.strategies import REGISTRIES

    text = (Path(__file__).resolve().parents[3] / "docs" / "methods.md").read_text()
    section = text.split('<a id="coverage"></a>', 1)[1].split("\n## ", 2)[1]  # its heading to the next
    named = [m for line in section.splitlines() if line.startswith("| ")
             for m in re.findall(r"\[`(\w+)`\]", line.split("|")[3])]
    own = {"transferred", "learned", "inverse_loss", "adaptive"}
    assert sorted(named) == sorted(set(REGISTRIES["combiner"]) - own)
