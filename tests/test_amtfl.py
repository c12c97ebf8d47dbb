"""AMTFL / Deep-AMTFL and their Table-1 baselines (go-mtl, amtl, nn, mt-nn): the objective against Eq. 6 written
out task by task and against finite differences, the α = γ = 0 reduction to the plain network, the ℓ1 prox,
Go-MTL's closed-form L-step and lasso S-step, and short end-to-end training against trivial predictors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.analysis.relations import task_relations
from mtlkit.data.tensors import Batch
from mtlkit.datasets.amtfl_synthetic import amtfl_split, amtfl_synthetic
from mtlkit.methods.amtfl import AmtflNet, reconstruction_share, soft_threshold
from mtlkit.methods.amtfl_baselines import (
    AmtlNet,
    DeepAmtlNet,
    _lasso_fista,
    go_mtl_fit,
    go_mtl_l_step,
    go_mtl_objective,
)
from mtlkit.methods.base import MethodParts, as_output
from mtlkit.nn.conv import SmallCNN
from mtlkit.train.losses import TaskLoss

pytestmark = pytest.mark.usefixtures("one_thread")

D = 4


def _tiny(kind: str = "regression", shared: bool = False, sizes: tuple[int, ...] = (9, 6, 12),
          seed: int = 0) -> MultiTaskData:
    """T = len(sizes) small related tasks (heterogeneous rows of the given sizes, or one shared X)."""
    rng = np.random.default_rng(seed)
    ws = rng.normal(size=(len(sizes), D))
    if shared:
        X = rng.normal(size=(sizes[0], D))
        Y = np.stack([X @ w + 0.3 * rng.normal(size=len(X)) for w in ws], 1)
        return MultiTaskData.from_shared(X, (Y > 0).astype(float) if kind == "binary" else Y, kind=kind)
    Xs = [rng.normal(size=(n, D)) for n in sizes]
    ys = [X @ w + 0.3 * rng.normal(size=len(X)) for X, w in zip(Xs, ws, strict=True)]
    return MultiTaskData.from_tasks(Xs, [(y > 0).astype(float) for y in ys] if kind == "binary" else ys, kind=kind)


def _parts(method: str, data: MultiTaskData, seed: int = 0, **hp: object) -> MethodParts:
    entry = mtlkit.methods.get(method)
    torch.manual_seed(seed)
    parts = entry.build(data.info(), {**entry.defaults, **hp})
    parts.model.double()
    return parts


def _objective(parts: MethodParts, data: MultiTaskData) -> tuple[torch.Tensor, torch.Tensor]:
    """What the Trainer minimises on the full data as one batch: ``(1/T) Σ_t L_t + Σ penalties``; and the
    network's features."""
    dd = data.tensors("cpu", dtype=torch.float64)
    batch = dd.full()
    out = as_output(parts.model(batch.x))
    loss = TaskLoss(data.spec)
    total = loss(out.pred, batch).mean()
    for pen in parts.penalties:
        total = total + pen(parts.model, out, batch)
    return total, out.features.get("z", torch.zeros(()))


def _central_difference(f: Callable[[], float], p: torch.Tensor, h: float) -> torch.Tensor:
    """∂f/∂p by central differences, one entry of ``p`` at a time (``p`` is restored)."""
    fd = torch.zeros_like(p)
    flat, fdf = p.data.view(-1), fd.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        fdf[i] = (up - down) / (2 * h)
    return fd


HP = {"alpha": 0.7, "gamma": 0.3, "mu": 0.05, "lam": 0.02, "delta": 0.4, "hidden": 3}


# ---------------------------------------------------------------------- the objective
@pytest.mark.parametrize(("kind", "shared"), [("regression", False), ("binary", True)])
def test_amtfl_objective_is_eq6_written_out(kind, shared):
    """Eq. 6 divided by T, computed task by task with explicit loops (the reference) = the Trainer's objective."""
    data = _tiny(kind, shared)
    parts = _parts("amtfl", data, **HP)
    m = parts.model
    assert isinstance(m, AmtflNet)
    got, _ = _objective(parts, data)
    L, bL = m.backbone[0].weight.T, m.backbone[0].bias  # [d, k], [k]
    S, bS, A, bA = m.S, m.head.bias[:, 0], m.A, m.bias_A
    T = data.n_tasks
    sizes = [len(data.task_arrays(t)[0]) for t in range(T)]
    ref = torch.zeros((), dtype=torch.float64)
    rec_sum, rec_rows = torch.zeros((), dtype=torch.float64), 0
    rows = [torch.as_tensor(data.task_arrays(t)[0]) for t in range(T)]
    for t in range(T):
        X, y = rows[t], torch.as_tensor(data.task_arrays(t)[1])
        z = torch.relu(X @ L + bL)
        o = z @ S[:, t] + bS[t]
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        lt = ((o - y) ** 2).mean() if kind == "regression" else bce(o, y)
        ref = ref + (1 + HP["alpha"] * A[t].abs().sum()) * (lt + HP["delta"] / sizes[t] ** 0.5)
    for X in ([rows[0]] if shared else rows):  # the paper's stacked X: every task's rows (shared: once)
        for x in X:
            z = torch.relu(x @ L + bL)
            f = z @ S + bS
            f = torch.sigmoid(f) if kind == "binary" else f
            rec_sum = rec_sum + ((z - torch.relu(f @ A + bA)) ** 2).sum()
            rec_rows += 1
    ref = ref + HP["mu"] * S.abs().sum() + HP["gamma"] * rec_sum / rec_rows + HP["lam"] * (L ** 2).sum()
    torch.testing.assert_close(got, ref / T, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- the asymmetry (which side, which index)
def _easy_hard_pair(noise: tuple[float, float] = (0.1, 2.0), same_rows: bool = False, **hp: object
                    ) -> tuple[MethodParts, MultiTaskData]:
    """Two regression tasks with the *same* predictor w, task 0 with little label noise (easy), task 1 with much
    (hard); a linear AMTFL with one latent feature z = x·w that both tasks use with weight 1 (S = [1, 1], no
    biases), so ZS = [z, z] and Ẑ = z(a_easy + a_hard): the reconstruction sees only a_easy + a_hard, and
    the ℓ1 weighted by each task's loss alone decides which row of A carries it."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=D)
    X0 = rng.normal(size=(40, D))
    e0 = rng.normal(size=40)
    Xs = [X0, X0 if same_rows else rng.normal(size=(40, D))]
    es = [e0, e0 if same_rows else rng.normal(size=40)]
    ys = [X @ w + s * e for X, s, e in zip(Xs, noise, es, strict=True)]
    data = MultiTaskData.from_tasks(Xs, ys, kind="regression", names=["easy", "hard"])
    parts = _parts("amtfl", data, **{"hidden": 1, "activation": "identity", "alpha": 1.0, "gamma": 1.0, "mu": 0.0,
                                     "lam": 0.0, "delta": 0.0, **hp})
    m = parts.model
    with torch.no_grad():
        m.backbone[0].weight.copy_(torch.as_tensor(w)[None, :])
        m.backbone[0].bias.zero_()
        m.head.weight.fill_(1.0)
        m.head.bias.zero_()
        m.bias_A.zero_()
    return parts, data


def _at(parts: MethodParts, data: MultiTaskData, a: tuple[float, float]) -> torch.Tensor:
    with torch.no_grad():
        parts.model.A.copy_(torch.tensor([[a[0]], [a[1]]], dtype=torch.float64))
    return _objective(parts, data)[0]


def test_outgoing_transfer_of_the_hard_task_costs_more_and_the_optimum_transfers_easy_to_hard():
    """Closed form: with the reconstruction fixed (a_easy + a_hard = u), moving u from the easy row of A to the
    hard row raises the objective by exactly α·u·(L_hard − L_easy)/T (the loss weight sits on row t, task t's
    *outgoing* transfer, scaled by task t's own loss); the minimiser over A is a = (u*, 0) with
    u* = 1 − αL_easy/(2γ·mean z²), and its transfer AS = [[u*, u*], [0, 0]]: easy → hard, nothing hard → easy."""
    parts, data = _easy_hard_pair()
    m = parts.model
    dd = data.tensors("cpu", dtype=torch.float64)
    with torch.no_grad():
        z = m.features(dd.x)[..., 0]  # [T, B]
        pred = as_output(m(dd.x)).pred
    L = TaskLoss(data.spec)(pred, dd.full())  # [T]
    assert L[0] < L[1] / 10
    T, u = 2, 0.6
    easy, half, hard = _at(parts, data, (u, 0.0)), _at(parts, data, (u / 2, u / 2)), _at(parts, data, (0.0, u))
    assert easy < half < hard
    torch.testing.assert_close(hard - easy, u * (L[1] - L[0]) / T, rtol=1e-10, atol=1e-12)
    mz2 = (z[dd.mask] ** 2).mean()
    u_star = float(1.0 - L[0] / (2.0 * mz2))  # α = γ = 1
    assert 0.5 < u_star < 1.0
    total = _at(parts, data, (u_star, 0.0))
    (g,) = torch.autograd.grad(total, [m.A])
    assert abs(float(g[0, 0])) < 1e-10  # stationary in the easy row
    assert abs(float(g[1, 0])) < float(L[1]) / T  # the hard row's 0 is inside its ℓ1 sub-differential: optimal
    for a in ((u_star + 0.05, 0.0), (u_star - 0.05, 0.0), (u_star, 0.02), (u_star - 0.02, 0.02), (0.0, u_star)):
        assert _at(parts, data, a) > total  # and nothing nearby is lower
    _at(parts, data, (u_star, 0.0))
    (AS,) = m.task_relations().values()
    torch.testing.assert_close(AS, torch.tensor([[u_star, u_star], [0.0, 0.0]], dtype=torch.float64))


def test_a_task_with_zero_loss_pays_no_outgoing_penalty():
    """δ = 0 and the easy task fitted exactly (L_easy = 0): the gradient on its row of A is the reconstruction's
    alone (as with α = 0); the hard task's row also carries α·L_hard·sign(a)/T."""
    grads = {}
    for alpha in (0.0, 1.0):
        parts, data = _easy_hard_pair(noise=(0.0, 2.0), alpha=alpha)
        total = _at(parts, data, (0.3, 0.2))
        grads[alpha] = torch.autograd.grad(total, [parts.model.A])[0]
        if alpha:
            dd = data.tensors("cpu", dtype=torch.float64)
            L = TaskLoss(data.spec)(as_output(parts.model(dd.x)).pred, dd.full()).detach()
    assert float(L[0]) < 1e-20
    torch.testing.assert_close(grads[1.0][0], grads[0.0][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads[1.0][1] - grads[0.0][1], L[1:] / 2, rtol=1e-12, atol=1e-14)


def test_equal_losses_make_the_penalty_symmetric_under_relabelling():
    """Two tasks with the same rows, labels and weights: swapping their rows of A leaves the objective unchanged."""
    parts, data = _easy_hard_pair(noise=(1.0, 1.0), same_rows=True, delta=0.3, mu=0.1, lam=0.05)
    torch.testing.assert_close(_at(parts, data, (0.7, -0.2)), _at(parts, data, (-0.2, 0.7)), rtol=1e-13, atol=1e-13)


def test_reconstruction_share_reads_the_feedback():
    """1 when Ẑ = Z (a_easy + a_hard = 1 with S = [1, 1]); 0 when A = 0 and b_A is Z's mean (the ℓ1 dead zone)."""
    parts, data = _easy_hard_pair()
    m = parts.model
    dd = data.tensors("cpu", dtype=torch.float64)
    z = m.features(dd.x)[dd.mask]
    _at(parts, data, (0.75, 0.25))
    assert reconstruction_share(m, z) == pytest.approx(1.0, abs=1e-12)
    _at(parts, data, (0.0, 0.0))
    with torch.no_grad():
        m.bias_A.copy_(z.mean(0))
    assert reconstruction_share(m, z) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("method", "kind", "shared"),
                         [("amtfl", "regression", False), ("amtfl", "binary", True), ("deep-amtfl", "binary", False),
                          ("amtl", "regression", False), ("mt-nn", "binary", False), ("nn", "regression", False)])
def test_objective_gradient_matches_finite_differences(method, kind, shared):
    data = _tiny(kind, shared)
    extra = {"hidden": [3, 3]} if method == "deep-amtfl" else ({"hidden": 3} if "nn" in method or method == "amtfl"
                                                                else {})
    hp = {k: v for k, v in HP.items() if k in mtlkit.methods.get(method).defaults and k != "hidden"}
    parts = _parts(method, data, seed=1, **hp, **extra)
    if method == "amtl":
        with torch.no_grad():  # B away from 0 (the |·| kink) and the zero diagonal
            parts.model.B.copy_(torch.rand(3, 3, dtype=torch.float64) * 0.5 + 0.1)
    params = [p for p in parts.model.parameters()]
    total, _ = _objective(parts, data)
    grads = torch.autograd.grad(total, params)
    h = 1e-6
    for p, g in zip(params, grads, strict=True):
        fd = _central_difference(lambda: _objective(parts, data)[0].item(), p, h)
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-7)


def _copy(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    own = dst.state_dict()
    dst.load_state_dict({k: v for k, v in src.state_dict().items() if k in own}, strict=False)


def test_alpha_gamma_zero_reduces_to_the_plain_network():
    """α = γ = 0: AMTFL's objective is MT-NN's plus the constant (δ/T)Σ_t 1/√N_t, with the same gradients; with
    μ = δ = 0 and equal task sizes it is NN's."""
    data = _tiny("regression", sizes=(9, 6, 12))
    hp = {"alpha": 0.0, "gamma": 0.0, "mu": 0.05, "lam": 0.02, "delta": 0.4, "hidden": 3}
    amtfl = _parts("amtfl", data, seed=3, **hp)
    mtnn = _parts("mt-nn", data, seed=4, hidden=3, mu=0.05, lam=0.02)
    _copy(mtnn.model, amtfl.model)
    a, _ = _objective(amtfl, data)
    b, _ = _objective(mtnn, data)
    const = 0.4 * sum(n ** -0.5 for n in (9, 6, 12)) / 3
    torch.testing.assert_close(a, b + const, rtol=1e-13, atol=1e-13)
    ga = dict(zip([n for n, _ in amtfl.model.named_parameters()],
                  torch.autograd.grad(a, list(amtfl.model.parameters()), allow_unused=True), strict=True))
    gb = dict(zip([n for n, _ in mtnn.model.named_parameters()],
                  torch.autograd.grad(b, list(mtnn.model.parameters())), strict=True))
    for n, g in gb.items():
        torch.testing.assert_close(ga[n], g, rtol=1e-13, atol=1e-15)
    assert ga["A"] is None or torch.count_nonzero(ga["A"]) == 0  # A is disconnected

    eq = _tiny("regression", sizes=(8, 8, 8))
    amtfl = _parts("amtfl", eq, seed=3, **{**hp, "mu": 0.0, "delta": 0.0})
    plain = _parts("nn", eq, seed=5, hidden=3, lam=0.02)
    _copy(plain.model, amtfl.model)
    torch.testing.assert_close(_objective(amtfl, eq)[0], _objective(plain, eq)[0], rtol=1e-13, atol=1e-13)


def test_nn_pools_the_loss_over_all_rows():
    """NN's loss is the plain mean over every training row (big tasks weigh more); MT-NN's the mean of task means."""
    data = _tiny("regression", sizes=(9, 3, 15))
    nn_parts = _parts("nn", data, lam=0.0)
    mt = _parts("mt-nn", data, mu=0.0, lam=0.0)
    _copy(mt.model, nn_parts.model)
    dd = data.tensors("cpu", dtype=torch.float64)
    sq = ((as_output(nn_parts.model(dd.x)).pred[..., 0] - dd.y) ** 2)[dd.mask]
    per_task = [((as_output(nn_parts.model(dd.x)).pred[t, :, 0] - dd.y[t]) ** 2)[dd.mask[t]].mean() for t in range(3)]
    torch.testing.assert_close(_objective(nn_parts, data)[0], sq.mean(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(_objective(mt, data)[0], torch.stack(per_task).mean(), rtol=1e-13, atol=1e-13)


def test_amtl_penalty_is_eq4_written_out():
    data = _tiny("regression")
    parts = _parts("amtl", data, mu=0.3, lam=0.7)
    m = parts.model
    assert isinstance(m, AmtlNet)
    with torch.no_grad():
        m.B.copy_(torch.rand(3, 3, dtype=torch.float64))
        m.B.fill_diagonal_(0.0)
    got, _ = _objective(parts, data)
    W = m.linear.weight[..., 0]  # [T, d]
    ref = torch.zeros((), dtype=torch.float64)
    for t in range(3):
        X, y = (torch.as_tensor(a) for a in data.task_arrays(t))
        lt = ((X @ W[t] + m.linear.bias[t, 0] - y) ** 2).mean()
        ref = ref + (1 + 0.3 * m.B[t].abs().sum()) * lt
        ref = ref + 0.7 * ((W[t] - sum(m.B[s, t] * W[s] for s in range(3))) ** 2).sum()  # w_t ≈ Σ_s B_st w_s
    torch.testing.assert_close(got, ref / 3, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- prox and Go-MTL solvers
def test_soft_threshold_is_the_l1_prox():
    """Brute force: argmin_v ½(v − x)² + thr·|v| on a fine grid; zero inside [−thr, thr]; non-expansive."""
    x = torch.tensor([-2.0, -0.3, -0.1, 0.0, 0.05, 0.25, 1.7], dtype=torch.float64)
    thr = 0.25
    grid = torch.linspace(-3, 3, 600001, dtype=torch.float64)
    brute = grid[(0.5 * (grid[None] - x[:, None]) ** 2 + thr * grid.abs()[None]).argmin(1)]
    got = soft_threshold(x, thr)
    torch.testing.assert_close(got, brute, rtol=0, atol=2e-5)
    assert torch.all(got[x.abs() <= thr] == 0)
    y = x.flip(0) * 0.7
    assert torch.all((soft_threshold(x, thr) - soft_threshold(y, thr)).abs() <= (x - y).abs() + 1e-15)


def _spd(rng: np.random.Generator, T: int, d: int) -> torch.Tensor:
    X = rng.normal(size=(T, 20, d))
    return torch.as_tensor(np.einsum("tnd,tne->tde", X, X) / 20)


def test_go_mtl_l_step_matches_the_kronecker_normal_equations():
    """The notes' column-major formula vec(L) = (λI + Σ s_ts_tᵀ ⊗ C_t)⁻¹ Σ vec(r_t s_tᵀ), built with numpy, and a
    zero gradient of the L-objective at the returned L."""
    rng = np.random.default_rng(0)
    T, d, k, lam = 4, 5, 3, 0.3
    C, R = _spd(rng, T, d), torch.as_tensor(rng.normal(size=(T, d)))
    S = torch.as_tensor(rng.normal(size=(k, T)))
    L = go_mtl_l_step(C, R, S, lam)
    M = lam * np.eye(d * k)
    rhs = np.zeros(d * k)
    for t in range(T):
        s = S[:, t].numpy()
        M += np.kron(np.outer(s, s), C[t].numpy())
        rhs += np.outer(R[t].numpy(), s).reshape(-1, order="F")
    ref = np.linalg.solve(M, rhs).reshape(d, k, order="F")
    np.testing.assert_allclose(L.numpy(), ref, rtol=1e-10, atol=1e-12)
    Lv = L.clone().requires_grad_(True)
    obj = sum(S[:, t] @ Lv.T @ C[t] @ Lv @ S[:, t] - 2 * R[t] @ Lv @ S[:, t] for t in range(T)) + lam * (Lv ** 2).sum()
    (g,) = torch.autograd.grad(obj, Lv)
    assert g.abs().max() < 1e-10


def test_go_mtl_s_step_meets_the_lasso_optimality_conditions():
    """KKT of min sᵀGs − 2hᵀs + μ‖s‖₁: gradient −μ·sign(s_i) on the support, |gradient| ≤ μ off it."""
    rng = np.random.default_rng(1)
    G, h, mu = _spd(rng, 3, 6), torch.as_tensor(rng.normal(size=(3, 6))), 0.4
    s = _lasso_fista(G, h, torch.zeros(3, 6, dtype=torch.float64), mu, 3000)
    g = 2 * (torch.einsum("tij,tj->ti", G, s) - h)
    on = s != 0
    assert on.any() and (~on).any()  # both cases exercised
    torch.testing.assert_close(g[on], -mu * torch.sign(s[on]), rtol=0, atol=1e-6)
    assert torch.all(g[~on].abs() <= mu + 1e-6)


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_go_mtl_alternation_decreases_the_objective(kind):
    data = _tiny(kind, sizes=(30, 20, 40))
    dd = data.tensors("cpu", dtype=torch.float64)
    objs = [go_mtl_objective(dd, kind, *go_mtl_fit(dd, kind, 2, 0.05, 0.1, iters=it, inner=200), 0.05, 0.1).item()
            for it in (1, 3, 10)]
    assert objs[0] >= objs[1] - 1e-9 >= objs[2] - 2e-9


# ---------------------------------------------------------------------- training end to end
def _synthetic_split():
    data, truth = amtfl_synthetic(n_easy=3, n_hard=3, d=8, n_splits=1, seed=0, sigma_easy=0.5, sigma_hard=1.0)
    return amtfl_split(data, truth, 0)


FAST = {"epochs": 40, "lr": 1e-2, "batch_size": 25, "patience": 0}


@pytest.mark.parametrize(("method", "hp"), [
    ("amtfl", {**FAST, "lr": 3e-2, "hidden": 8, "activation": "identity"}),
    ("amtfl", {**FAST, "lr": 3e-2, "hidden": 8}), ("deep-amtfl", {**FAST, "lr": 3e-2, "hidden": [16, 8]}),
    ("nn", {**FAST, "lr": 3e-2, "hidden": 8}), ("mt-nn", {**FAST, "lr": 3e-2, "hidden": 8}),
    ("amtl", {**FAST, "lr": 3e-2}), ("go-mtl", {"k": 4})])
def test_regression_methods_beat_the_mean_predictor(method, hp):
    split = _synthetic_split()
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    rmse = run.evaluate("test").per_task["rmse"]
    trivial = np.array([np.std(split.test.task_arrays(t)[1]) for t in range(split.test.n_tasks)])
    assert np.mean(rmse / trivial) < 0.7, (rmse, trivial)  # STL reaches 0.33, the methods 0.33-0.56


def _binary_images(n: int = 300, seed: int = 0) -> MultiTaskData:
    """8×8 one-channel images, shared by 3 binary tasks: is the top / left / centre region brighter than average."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, 8, 8))
    regions = [X[:, 0, :4, :].mean((1, 2)), X[:, 0, :, :4].mean((1, 2)), X[:, 0, 2:6, 2:6].mean((1, 2))]
    Y = np.stack([(r > 0).astype(float) for r in regions], 1)
    return MultiTaskData.from_shared(X, Y, kind="binary")


@pytest.mark.parametrize(("method", "hp"), [
    ("deep-amtfl", {**FAST, "backbone": "cnn", "channels": [4, 8], "hidden": [16], "epochs": 25}),
    ("deep-amtl", {**FAST, "backbone": "cnn", "channels": [4, 8], "hidden": [16], "epochs": 25}),
    ("amtfl", {**FAST, "hidden": 16}), ("go-mtl", {"k": 6, "mu": 1e-3}), ("amtl", FAST), ("mt-nn", FAST)])
def test_binary_methods_beat_the_majority_class(method, hp):
    split = _binary_images().split(test=0.25, val=0.2, seed=0)
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    err = run.evaluate("test").per_task["error"]
    trivial = np.array([100 * min(np.mean(y), 1 - np.mean(y)) for y in
                        (split.test.task_arrays(t)[1] for t in range(3))])
    assert np.mean(err) < np.mean(trivial) - 20, (err, trivial)  # trivial ≈ 46 %, the methods 8-17 %


def test_task_relations_shapes_and_values():
    split = _synthetic_split()
    T = split.train.n_tasks
    run = mtlkit.train("amtfl", split, hparams={**FAST, "epochs": 3, "hidden": 5}, device="cpu")
    rel = task_relations(run)
    (AS,) = rel.values()
    assert list(rel) == ["transfer AS (task × task)"] and AS.shape == (T, T)
    m = run.model
    np.testing.assert_allclose(AS, (m.A @ m.head.weight[..., 0].T).detach().double().numpy(), rtol=1e-6)
    amtl = mtlkit.train("amtl", split, hparams={**FAST, "epochs": 3, "mu": 0.01, "lam": 3.0}, device="cpu")
    (B,) = task_relations(amtl).values()
    assert B.shape == (T, T) and np.all(np.diag(B) == 0) and np.all(B >= 0) and B.max() > 0
    go = mtlkit.train("go-mtl", split, hparams={"k": 3}, device="cpu")
    assert next(iter(task_relations(go).values())).shape == (3, T)
    assert task_relations(mtlkit.train("nn", split, hparams={**FAST, "epochs": 1}, device="cpu")) == {}


def test_prox_option_gives_exact_zeros_in_S():
    split = _synthetic_split()
    hp = {**FAST, "epochs": 10, "hidden": 8, "mu": 20.0, "optimizer": "sgd", "lr": 0.05}
    with_prox = mtlkit.train("amtfl", split, hparams={**hp, "prox": True}, device="cpu")
    by_grad = mtlkit.train("amtfl", split, hparams=hp, device="cpu")
    assert (with_prox.model.head.weight == 0).float().mean() > 0.5
    assert (by_grad.model.head.weight == 0).sum() == 0


@pytest.mark.parametrize(("method", "hp", "match"), [
    ("amtfl", {"alpha": -1.0}, "alpha"), ("amtfl", {"hidden": 0}, "hidden"), ("amtfl", {"recon": "x"}, "recon"),
    ("deep-amtfl", {"backbone": "resnet"}, "backbone"), ("deep-amtfl", {"backbone": "cnn"}, "image"),
    ("go-mtl", {"k": 99}, "k=99"), ("amtl", {"nonneg": "yes"}, "nonneg"), ("mt-nn", {"mu": -1.0}, "mu")])
def test_bad_hyper_parameters_raise(method, hp, match):
    entry = mtlkit.methods.get(method)
    with pytest.raises(ValueError, match=match):
        entry.build(_tiny().info(), {**entry.defaults, **hp})


@pytest.mark.parametrize("in_shape", [(8, 8), (2, 8, 8)])
def test_small_cnn_applies_one_network_to_every_image(in_shape):
    """Any leading axes ([B, ...] or [T, B, ...]) give the same features as each image on its own."""
    torch.manual_seed(0)
    cnn = SmallCNN(in_shape, channels=[3, 4], hidden=[5]).double()
    x = torch.randn(3, 2, *in_shape, dtype=torch.float64)
    out = cnn(x)
    assert out.shape == (3, 2, 5) and cnn(x[0]).shape == (2, 5)
    img = x.reshape(6, *((1, *in_shape) if len(in_shape) == 2 else in_shape))
    one = torch.stack([cnn.fcs(cnn.convs(img[i:i + 1]).flatten(1))[0] for i in range(6)])
    torch.testing.assert_close(out.reshape(6, 5), one, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="image shape"):
        SmallCNN((64,))


def test_deep_amtfl_cnn_on_heterogeneous_images():
    rng = np.random.default_rng(0)
    data = MultiTaskData.from_tasks([rng.normal(size=(n, 1, 8, 8)) for n in (5, 7)],
                                    [rng.integers(0, 2, size=n).astype(float) for n in (5, 7)], kind="binary")
    parts = _parts("deep-amtfl", data, backbone="cnn", channels=[2, 3], hidden=[4])
    out = as_output(parts.model(data.tensors("cpu", dtype=torch.float64).x))
    assert out.pred.shape == (2, 7, 1) and out.features["z"].shape == (2, 7, 4)
    total, _ = _objective(parts, data)
    assert torch.isfinite(total)


def test_multiclass_is_refused_by_amtfl_but_not_by_nn():
    rng = np.random.default_rng(0)
    data = MultiTaskData.from_tasks([rng.normal(size=(9, D))] * 2, [np.arange(9) % 3] * 2, kind="multiclass",
                                    n_classes=[3, 3])
    with pytest.raises(ValueError, match="binary"):
        mtlkit.methods.get("amtfl").build(data.info(), dict(mtlkit.methods.get("amtfl").defaults))
    parts = mtlkit.methods.get("nn").build(data.info(), dict(mtlkit.methods.get("nn").defaults))
    assert as_output(parts.model(torch.zeros(2, 5, D))).pred.shape == (2, 5, 3)


def test_penalty_accepts_a_batch_with_unlabelled_rows():
    """Padding rows (mask False) count neither in the task losses nor in the reconstruction error."""
    data = _tiny("regression")
    parts = _parts("amtfl", data, **HP)
    dd = data.tensors("cpu", dtype=torch.float64)
    b = dd.full()
    pad = Batch(x=torch.cat([b.x, 100 + torch.randn_like(b.x)], 1), y=torch.cat([b.y, torch.randn_like(b.y)], 1),
                mask=torch.cat([b.mask, torch.zeros_like(b.mask)], 1), shared=False)
    pen = parts.penalties[0]
    got = pen(parts.model, as_output(parts.model(pad.x)), pad)
    ref = pen(parts.model, as_output(parts.model(b.x)), b)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- Deep-AMTL
DEEP_AMTL_HP = {"mu": 0.3, "lam_b": 0.7, "lam": 0.02, "delta": 0.4, "hidden": [3, 3]}


def _deep_amtl(kind: str, shared: bool, seed: int = 1) -> tuple[MethodParts, MultiTaskData]:
    """deep-amtl on tiny data (float64) with an off-diagonal B away from the |·| kink."""
    data = _tiny(kind, shared)
    parts = _parts("deep-amtl", data, seed=seed, **DEEP_AMTL_HP)
    with torch.no_grad():
        parts.model.B.copy_(torch.rand(3, 3, dtype=torch.float64) * 0.5 + 0.1)
        parts.model.B.fill_diagonal_(0.0)
    return parts, data


@pytest.mark.parametrize(("kind", "shared"), [("regression", False), ("binary", True)])
def test_deep_amtl_penalty_is_the_formula_written_out(kind, shared):
    """(1/T)[Σ_t (1 + μ‖b_t^o‖₁)(L_t + δ/√N_t) + λ_B Σ_j ‖s_j − Σ_t B_tj s_t‖² + λΣ‖W_l‖²] with explicit loops."""
    parts, data = _deep_amtl(kind, shared)
    m = parts.model
    assert isinstance(m, DeepAmtlNet)
    got, _ = _objective(parts, data)
    mlp = [layer for layer in m.backbone.modules() if isinstance(layer, torch.nn.Linear)]
    assert len(mlp) == 2
    S, bS, B = m.head.weight[..., 0], m.head.bias[:, 0], m.B  # S as rows s_t [T, k]
    T = data.n_tasks
    sizes = [len(data.task_arrays(t)[0]) for t in range(T)]
    hp = DEEP_AMTL_HP
    ref = torch.zeros((), dtype=torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for t in range(T):
        X, y = (torch.as_tensor(a) for a in data.task_arrays(t))
        z = X
        for layer in mlp:
            z = torch.relu(z @ layer.weight.T + layer.bias)
        o = z @ S[t] + bS[t]
        lt = ((o - y) ** 2).mean() if kind == "regression" else bce(o, y)
        ref = ref + (1 + hp["mu"] * sum(B[t, s].abs() for s in range(T))) * (lt + hp["delta"] / sizes[t] ** 0.5)
        ref = ref + hp["lam_b"] * ((S[t] - sum(B[s, t] * S[s] for s in range(T))) ** 2).sum()
    ref = ref + hp["lam"] * sum((layer.weight ** 2).sum() for layer in mlp)
    torch.testing.assert_close(got, ref / T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kind", "shared"), [("regression", False), ("binary", True)])
def test_deep_amtl_gradient_matches_finite_differences(kind, shared):
    parts, data = _deep_amtl(kind, shared, seed=2)
    params = list(parts.model.parameters())
    grads = torch.autograd.grad(_objective(parts, data)[0], params)
    h = 1e-6
    for p, g in zip(params, grads, strict=True):
        fd = _central_difference(lambda: _objective(parts, data)[0].item(), p, h)
        if p is parts.model.B:  # the diagonal sits on |·|'s kink at 0: compare the off-diagonal only
            off = ~torch.eye(3, dtype=torch.bool)
            g, fd = g[off], fd[off]
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-7)


def test_deep_amtl_keeps_b_nonnegative_with_zero_diagonal():
    """After training steps B is projected: B ≥ 0 and B_tt = 0, with some transfer learned; without ``nonneg``
    the diagonal stays 0 while negative entries survive (so the clamp, not the data, keeps B ≥ 0)."""
    split = _synthetic_split()
    T = split.train.n_tasks
    hp = {**FAST, "epochs": 3, "hidden": [8], "mu": 0.01, "lam_b": 3.0}
    run = mtlkit.train("deep-amtl", split, hparams=hp, device="cpu")
    (B,) = task_relations(run).values()
    assert B.shape == (T, T) and np.all(np.diag(B) == 0) and np.all(B >= 0) and B.max() > 1e-3
    free = mtlkit.train("deep-amtl", split, hparams={**hp, "nonneg": False}, device="cpu")
    Bf = free.model.B.detach().numpy()
    assert np.all(np.diag(Bf) == 0) and Bf.min() < 0


@pytest.mark.parametrize(("hp", "match"), [({"mu": -1.0}, "mu"), ({"lam_b": -0.1}, "lam_b"),
                                           ({"nonneg": 1}, "nonneg"), ({"backbone": "resnet"}, "backbone")])
def test_deep_amtl_bad_hyper_parameters_raise(hp, match):
    entry = mtlkit.methods.get("deep-amtl")
    with pytest.raises(ValueError, match=match):
        entry.build(_tiny().info(), {**entry.defaults, **hp})
