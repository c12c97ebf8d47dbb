"""Gradient aggregators against independent oracles on random Jacobians (T ∈ {2, 5, 20}): torchjd's implementation
where it has the method (with a scipy BVLS projector where torchjd needs quadprog), scipy's SLSQP / least squares
where torchjd needs cvxpy, the paper's equations otherwise; then the combiners' `.grad` on a small network against
the aggregate of per-task autograd gradients, state round trips and an exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from resume_check import straight_and_resumed
from scipy.optimize import lsq_linear, minimize
from torchjd import aggregation as jd
from torchjd._linalg import DualConeProjector, normalize, regularize

import mtlkit
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods import registry
from mtlkit.methods.base import as_output
from mtlkit.methods.baselines import HardShareNet
from mtlkit.optim import aggregators as agg
from mtlkit.optim.combiners import COMBINERS, TaskGradients, make_combiner, pcgrad_orders

pytestmark = pytest.mark.usefixtures("one_thread")

TS = [2, 5, 20]


def _jac(T: int, n: int = 30, seed: int = 0, conflict: bool = True) -> torch.Tensor:
    """A random [T, n] float64 Jacobian with a common direction and, optionally, tasks pointing against it."""
    g = torch.Generator().manual_seed(1000 * T + seed)
    J = torch.randn(T, n, generator=g, dtype=torch.float64) + 0.7 * torch.randn(n, generator=g, dtype=torch.float64)
    if conflict:
        J[::3] *= -0.6
    return J


def _gram(J: torch.Tensor) -> np.ndarray:
    return (J @ J.T).numpy()


def _agg(w: np.ndarray, J: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(w) @ J


class BVLSProjector(DualConeProjector):
    """torchjd's QuadprogProjector (normalise, regularise, one QP per row) with scipy's bounded-variable least
    squares as the QP solver: ``min_v ‖Lᵀv‖²`` subject to ``v ≥ u`` for ``G = LLᵀ``."""

    def __call__(self, U: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        Gn = regularize(normalize(G, 1e-4), 1e-4).double().numpy()
        L = np.linalg.cholesky(Gn)
        rows = U.reshape(-1, U.shape[-1]).double().numpy()
        out = [lsq_linear(L.T, np.zeros(len(u)), bounds=(u, np.inf), method="bvls", tol=1e-15).x for u in rows]
        return torch.tensor(np.array(out), dtype=G.dtype).reshape(U.shape)


# ---------------------------------------------------------------------- stateless aggregators vs torchjd / scipy
@pytest.mark.parametrize("T", TS)
def test_upgrad_and_dualproj_match_torchjd(T: int) -> None:
    J = _jac(T)
    ref = jd.UPGrad(projector=BVLSProjector())(J)
    torch.testing.assert_close(_agg(agg.upgrad_weights(_gram(J)), J), ref, rtol=1e-7, atol=1e-9)
    ref = jd.DualProj(projector=BVLSProjector())(J)
    torch.testing.assert_close(_agg(agg.dualproj_weights(_gram(J)), J), ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("T", TS)
def test_upgrad_update_conflicts_with_no_task(T: int) -> None:
    """The property UPGrad is built for: the update has a non-negative inner product with every task gradient."""
    J = _jac(T, seed=3)
    d = _agg(agg.upgrad_weights(_gram(J), reg_eps=0.0), J)
    assert float((J @ d).min()) >= -1e-9 * float(J.norm() ** 2)


def test_bound_qp_matches_bvls_with_and_without_a_start_guess() -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 8))
    G = A @ A.T + 1e-3 * np.eye(12)
    U = rng.normal(size=(5, 12))
    L = np.linalg.cholesky(G)
    ref = np.array([lsq_linear(L.T, np.zeros(12), bounds=(u, np.inf), method="bvls", tol=1e-15).x for u in U])
    np.testing.assert_allclose(agg.bound_qp(G, U), ref, atol=1e-9)
    np.testing.assert_allclose(agg.bound_qp(G, U, free=rng.random((5, 12)) < 0.5), ref, atol=1e-9)


def _cagrad_slsqp(M: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """CAGrad's problem as the authors solve it (scipy SLSQP on the simplex), on the trace-normalised Gram."""
    T = len(M)
    Mn = M / np.trace(M)
    b = Mn.mean(1)
    sp = c * np.sqrt(Mn.sum()) / T

    def f(x: np.ndarray) -> float:
        return float(b @ x + sp * np.sqrt(max(x @ Mn @ x, 0.0)))

    best = None
    for x0 in (np.full(T, 1.0 / T), np.eye(T)[int(np.argmin(np.diag(Mn)))]):
        r = minimize(f, x0, method="SLSQP", bounds=[(0, 1)] * T,
                     constraints={"type": "eq", "fun": lambda x: x.sum() - 1}, options={"ftol": 1e-15, "maxiter": 2000})
        if best is None or r.fun < best.fun:
            best = r
    assert best is not None
    x = best.x
    return np.full(T, 1.0 / T) + sp / np.sqrt(x @ Mn @ x) * x, best.fun


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("c", [0.2, 0.5])
def test_cagrad_matches_scipy_slsqp(T: int, c: float) -> None:
    J = _jac(T, seed=1)
    M = _gram(J)
    got = agg.cagrad_weights(M, c)
    ref, fref = _cagrad_slsqp(M, c)
    Mn = M / np.trace(M)
    w = (got - 1.0 / T) / (got - 1.0 / T).sum()  # the simplex point behind the weights
    val = float(Mn.mean(1) @ w + c * np.sqrt(Mn.sum()) / T * np.sqrt(w @ Mn @ w))
    assert val <= fref + 1e-9  # never worse than SLSQP
    torch.testing.assert_close(_agg(got, J), _agg(ref, J), rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("T", TS)
def test_imtl_g_and_aligned_mtl_match_torchjd(T: int) -> None:
    J = _jac(T, seed=2)
    torch.testing.assert_close(_agg(agg.imtl_g_weights(_gram(J)), J), jd.IMTLG()(J), rtol=1e-7, atol=1e-9)
    for mode in agg.ALIGNED_SCALES:
        torch.testing.assert_close(_agg(agg.aligned_mtl_weights(_gram(J), scale_mode=mode), J),
                                   jd.AlignedMTL(scale_mode=mode)(J), rtol=1e-7, atol=1e-9)


def test_imtl_g_equal_projections() -> None:
    """IMTL-G's defining property: the update's projections on the unit task gradients are all equal."""
    J = _jac(5, seed=4)
    d = _agg(agg.imtl_g_weights(_gram(J)), J)
    proj = (J @ d) / J.norm(dim=1)
    torch.testing.assert_close(proj, torch.full_like(proj, float(proj.mean())), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fairgrad_matches_torchjd_least_squares(T: int, alpha: float) -> None:
    """FairGrad's α-fair weights against torchjd (scipy least squares); α = 1 is Nash-MTL's bargaining solution,
    which torchjd solves with cvxpy (not installed): least squares is the oracle there too, plus the residual."""
    J = _jac(T, seed=5)
    M = _gram(J)
    got = agg.fair_weights(M, alpha)
    ref = jd.FairGradWeighting(alpha=alpha)(torch.from_numpy(M)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(M @ got, got ** (-1.0 / alpha), rtol=1e-9)  # (Gw)_t = w_t^(-1/α) exactly


def test_fairgrad_zero_alpha_and_zero_gradient() -> None:
    J = _jac(4, seed=6)
    np.testing.assert_allclose(agg.fair_weights(_gram(J), 0.0), np.full(4, 0.25))
    J[2] = 0.0
    w = agg.fair_weights(_gram(J), 1.0)
    assert w[2] == 0.0 and np.all(w[[0, 1, 3]] > 0)


def test_nash_mtl_weights_solve_the_bargaining_equations_with_slsqp() -> None:
    """Nash-MTL: min ½αᵀGα − Σ log α (its stationarity is α_t(Gα)_t = 1) by SLSQP, the brute-force oracle."""
    J = _jac(5, seed=7)
    M = _gram(J)

    def f(a: np.ndarray) -> float:
        return float(0.5 * a @ M @ a - np.log(a).sum())

    x0 = np.full(5, 1.0 / np.sqrt(np.diag(M).mean()))
    r = minimize(f, x0, jac=lambda a: M @ a - 1 / a, method="SLSQP", bounds=[(1e-9, None)] * 5,
                 options={"ftol": 1e-15, "maxiter": 1000})
    np.testing.assert_allclose(agg.fair_weights(M, 1.0), r.x, rtol=1e-5)


@pytest.mark.parametrize("T", TS)
def test_config_matches_torchjd(T: int) -> None:
    J = _jac(T, seed=8)
    torch.testing.assert_close(_agg(agg.config_weights(_gram(J), n=J.shape[1]), J), jd.ConFIG()(J), rtol=1e-7,
                               atol=1e-9)


@pytest.mark.parametrize("T", TS)
def test_graddrop_matches_torchjd(T: int) -> None:
    J = _jac(T, seed=9)
    torch.manual_seed(5)
    U = torch.rand(J.shape[1], dtype=J.dtype)  # the draw torchjd makes below
    torch.manual_seed(5)
    ref = jd.GradDrop()(J)
    got = agg.graddrop_combine([("dense", J)], U)[0]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def _torchjd_orders(orders: torch.Tensor):
    """A stand-in for torch.randperm that makes torchjd's GradVac visit the other tasks in ``orders[i]``."""
    T = orders.shape[0]
    calls = iter(range(T))

    def randperm(m: int, *a, **k) -> torch.Tensor:
        i = next(calls)
        others = [j for j in range(T) if j != i]
        return torch.tensor([others.index(j) for j in orders[i].tolist()])

    return randperm


@pytest.mark.parametrize("T", TS)
def test_gradvac_matches_torchjd_over_three_steps(T: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same orders, same EMA targets carried over three calls: the vectorised rounds equal torchjd's loop."""
    ref_agg = jd.GradVac(beta=0.3)
    phi = np.zeros((T, T))
    for step in range(3):
        J = _jac(T, seed=10 + step)
        orders = pcgrad_orders(T, torch.Generator().manual_seed(step))
        with monkeypatch.context() as m:
            m.setattr(torch, "randperm", _torchjd_orders(orders))
            ref = ref_agg(J)
        C = agg.gradvac_coefficients(_gram(J), phi, orders.numpy(), 0.3)
        torch.testing.assert_close(_agg(C.sum(0), J), ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(phi, ref_agg.gramian_weighting._phi_t.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", TS)
def test_modo_sdmgrad_match_torchjd_over_three_steps(T: int) -> None:
    modo, sdm = jd.MoDoWeighting(gamma=0.05, rho=0.1), jd.SDMGradWeighting(lr=5.0, momentum=0.5, n_iter=10,
                                                                          lambda_=0.3)
    lam = np.full(T, 1.0 / T)
    w = np.full(T, 1.0 / T)
    for step in range(3):
        J = _jac(T, seed=20 + step) / 3
        G = J @ J.T
        lam = agg.project_simplex(lam - 0.05 * (G.numpy() @ lam + 0.1 * lam))
        np.testing.assert_allclose(lam, modo(G).numpy(), rtol=1e-9, atol=1e-12)
        w, coef = agg.sdmgrad_weights(G.numpy(), w, lr=5.0, momentum=0.5, n_iter=10, lam=0.3)
        np.testing.assert_allclose(coef, sdm(G).numpy(), rtol=1e-9, atol=1e-12)


def test_project_simplex_matches_torchjd() -> None:
    from torchjd.aggregation._utils.simplex import project_onto_simplex

    rng = np.random.default_rng(1)
    for T in TS:
        y = rng.normal(size=T) * 2
        np.testing.assert_allclose(agg.project_simplex(y), project_onto_simplex(torch.from_numpy(y)).numpy(),
                                   atol=1e-12)


# ---------------------------------------------------------------------- stateful ones through the combiner
def _taskgrads(J: torch.Tensor) -> TaskGradients:
    return TaskGradients(J.shape[0], [("dense", J.clone())], [torch.Size([J.shape[1]])])


@pytest.mark.parametrize("T", TS)
def test_excess_mtl_matches_torchjd_over_three_steps(T: int) -> None:
    ref, mine = jd.ExcessMTLWeighting(robust_step_size=0.5), agg.ExcessMTL(step_size=0.5)
    for step in range(3):
        J = _jac(T, seed=30 + step)
        got = mine.aggregate(_taskgrads(J), torch.ones(T))
        mine.step += 1
        torch.testing.assert_close(got, ref(J), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", TS)
def test_moco_follows_the_papers_updates(T: int) -> None:
    """MoCo (Fernando et al. 2023, Algorithm 1 with LibMTL's step decay): y ← y − β_k(y − g); λ ← Π_Δ(λ −
    γ_k(YYᵀ + ρI)λ); update Yᵀλ — written out with numpy on the vectors."""
    beta, bs, gamma, gs, rho = 0.5, 0.5, 0.2, 0.5, 0.1
    mine = agg.MoCo(beta=beta, beta_sigma=bs, gamma=gamma, gamma_sigma=gs, rho=rho)
    Y, lam = np.zeros((T, 30)), np.full(T, 1.0 / T)
    for k in range(1, 4):
        J = _jac(T, seed=40 + k)
        Y = Y - beta / k ** bs * (Y - J.numpy())
        lam = agg.project_simplex(lam - gamma / k ** gs * ((Y @ Y.T + rho * np.eye(T)) @ lam))
        got = mine.aggregate(_taskgrads(J), torch.ones(T))[0]
        mine.step += 1
        np.testing.assert_allclose(got.numpy(), lam @ Y, rtol=1e-9, atol=1e-12)


def test_db_mtl_follows_libmtl_updates() -> None:
    """DB-MTL: buffer ← g + β_k(buffer − g) on the log-loss gradients, update Σ_t w_t (max‖ĝ‖/‖ĝ_t‖) ĝ_t."""
    T, beta, sigma = 5, 0.8, 0.5
    mine = agg.DBMTL(beta=beta, beta_sigma=sigma)
    mine._w = torch.full((T,), 1.0 / T, dtype=torch.float64)
    buf = np.zeros((T, 30))
    for k in range(1, 4):
        J = _jac(T, seed=50 + k)
        buf = J.numpy() + beta / k ** sigma * (buf - J.numpy())
        nrm = np.linalg.norm(buf, axis=1)
        ref = ((nrm.max() / (nrm + 1e-8)) / T) @ buf
        got = mine.aggregate(_taskgrads(J), torch.ones(T))[0]
        mine.step += 1
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_nash_mtl_reuses_its_weights_between_updates_and_clips() -> None:
    nash = agg.NashMTL(update_every=2, max_norm=0.0)
    J1, J2 = _jac(4, seed=60), _jac(4, seed=61)
    a1 = nash.aggregate(_taskgrads(J1), torch.ones(4)).numpy()
    nash.step += 1
    a2 = nash.aggregate(_taskgrads(J2), torch.ones(4)).numpy()
    np.testing.assert_allclose(a1, a2)  # step 1: not an update step
    np.testing.assert_allclose(a1, agg.fair_weights(_gram(J1), 1.0))
    clip = agg.NashMTL(max_norm=0.5)
    a = clip.aggregate(_taskgrads(J1), torch.ones(4))
    assert float((a.double() @ J1).norm()) == pytest.approx(0.5)


# ---------------------------------------------------------------------- combiners on a network
T3, B, D = 3, 9, 5
ARCH = {"hidden": [6], "head_hidden": [4], "activation": "tanh", "dropout": 0.0}

REFERENCE = {  # the aggregate of the raw per-task gradients J (default weights), as the oracles define it
    "upgrad": lambda J: jd.UPGrad(projector=BVLSProjector())(J),
    "dualproj": lambda J: jd.DualProj(projector=BVLSProjector())(J),
    "imtl-g": lambda J: jd.IMTLG()(J),
    "aligned-mtl": lambda J: jd.AlignedMTL()(J),
    "fairgrad": lambda J: jd.FairGrad(alpha=1.0)(J),
    "config": lambda J: jd.ConFIG()(J) / J.shape[0],
    "cagrad": lambda J: _agg(_cagrad_slsqp(_gram(J), 0.4)[0], J) / (1 + 0.4 ** 2),
    "nash-mtl": lambda J: _agg(agg.fair_weights(_gram(J), 1.0), J) * min(
        1.0, 1.0 / float(_agg(agg.fair_weights(_gram(J), 1.0), J).norm())),
}


def _net(shared: bool, seed: int = 0) -> tuple[HardShareNet, torch.Tensor, torch.Tensor]:
    info = DataInfo(TaskSpec("regression", tuple(f"t{i}" for i in range(T3)), (1,) * T3), (D,), shared)
    torch.manual_seed(seed)
    net = HardShareNet(info, **ARCH).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*((B, D) if shared else (T3, B, D)), generator=g, dtype=torch.float64)
    y = torch.randn(T3, B, generator=g, dtype=torch.float64)
    return net, x, y


def _losses(net: HardShareNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((as_output(net(x)).pred[..., 0] - y) ** 2).mean(1)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("shared", [True, False])
def test_combiner_grads_equal_the_reference_aggregate(name: str, shared: bool) -> None:
    """The shared parameters' .grad is the oracle's aggregate of the per-task gradients (autograd, one task at a
    time) plus the penalty's gradient; the heads keep their plain gradients w_t ∇L_t."""
    net, x, y = _net(shared, seed=2)
    w = torch.full((T3,), 1.0 / T3, dtype=torch.float64)
    bottom = list(net.bottom.parameters())
    losses = _losses(net, x, y)
    pen = 0.1 * sum((p ** 2).sum() for p in net.parameters())
    make_combiner(name).backward(losses, (w * losses).sum() + pen, bottom, weights=w)
    got_bottom = torch.cat([p.grad.reshape(-1) for p in bottom])
    got_heads = [p.grad.clone() for p in net.heads.parameters()]
    net.zero_grad()
    losses = _losses(net, x, y)
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], bottom, retain_graph=True)])
                     for t in range(T3)])
    ref = REFERENCE[name](J) + 0.2 * torch.cat([p.detach().reshape(-1) for p in bottom])
    rtol = {"cagrad": 2e-4, "fairgrad": 1e-5}.get(name, 1e-7)  # SLSQP's and least squares' own tolerances
    torch.testing.assert_close(got_bottom, ref, rtol=rtol, atol=1e-8 if rtol < 1e-5 else 1e-6)
    pen = 0.1 * sum((p ** 2).sum() for p in net.parameters())
    ((w * losses).sum() + pen).backward()
    for a, b in zip(got_heads, net.heads.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad, rtol=1e-12, atol=1e-14)


def test_weights_scale_the_tasks_rows() -> None:
    """Task weights w enter as the rows T·w_t ∇L_t: doubling a task's weight is UPGrad on that row doubled."""
    net, x, y = _net(True, seed=3)
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    bottom = list(net.bottom.parameters())
    losses = _losses(net, x, y)
    make_combiner("upgrad").backward(losses, (w * losses).sum(), bottom, weights=w)
    got = torch.cat([p.grad.reshape(-1) for p in bottom])
    net.zero_grad()
    losses = _losses(net, x, y)
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], bottom, retain_graph=True)])
                     for t in range(T3)])
    torch.testing.assert_close(got, jd.UPGrad(projector=BVLSProjector())(3 * w[:, None] * J), rtol=1e-7, atol=1e-9)


STATEFUL = ["gradvac", "nash-mtl", "moco", "sdmgrad", "modo", "excess-mtl", "db-mtl", "graddrop"]


@pytest.mark.parametrize("name", STATEFUL)
def test_state_round_trip_continues_identically(name: str) -> None:
    """Two steps, save the state, a fresh combiner loads it: its next step's .grad equals the original's."""
    net, x, y = _net(False, seed=4)
    w = torch.full((T3,), 1.0 / T3, dtype=torch.float64)
    bottom = list(net.bottom.parameters())
    a = make_combiner(name)
    for _ in range(2):
        net.zero_grad()
        losses = _losses(net, x + 0.1 * a.step, y)
        a.backward(losses, (w * losses).sum(), bottom, weights=w)
    b = make_combiner(name)
    b.load_state({k: v.clone() for k, v in a.state().items()})
    grads = []
    for c in (a, b):
        net.zero_grad()
        losses = _losses(net, x + 0.3, y)
        c.backward(losses, (w * losses).sum(), bottom, weights=w)
        grads.append(torch.cat([p.grad.reshape(-1) for p in bottom]))
    assert torch.equal(grads[0], grads[1])


def test_every_aggregator_is_listed_with_its_paper_and_composes() -> None:
    for name, spec in agg.SPECS.items():
        assert COMBINERS[name] is spec and spec.paper and spec.summary
        info = registry.get(f"hard-share+{name}")
        assert spec.paper in info.paper
        assert set(spec.defaults) <= set(info.defaults)
    assert registry.describe("srdml+cagrad")["defaults"]["cagrad_c"] == 0.4
    assert registry.get("tomato-el+nash-mtl").name == "tomato-el+nash-mtl"


def _split() -> mtlkit.Split:
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(40, 4)) for _ in range(3)]
    ys = [X @ rng.normal(size=4) + 0.1 * rng.normal(size=40) for X in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression").split(test=0.2, val=0.2, seed=0)


@pytest.mark.parametrize("name", ["moco", "nash-mtl:nash_update_every=3"])
def test_stateful_aggregator_resumes_bitwise(tmp_path, name: str) -> None:
    """The aggregator's state travels in the training checkpoint: an extended run ends where a straight one does."""
    comb, _, over = name.partition(":")
    hp = {"epochs": 4, "lr": 1e-2, "patience": 0, "batch_size": 8}
    if over:
        k, v = over.split("=")
        hp[k] = int(v)
    method = f"hard-share+{comb}"
    split = _split()
    a, b = straight_and_resumed(method, split, hp, tmp_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
