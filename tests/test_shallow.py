"""Shallow MTL solvers (`lasso`, `l21`, `rmtl` by FISTA): proximal maps against closed forms and optimality
conditions, solutions against scikit-learn's coordinate descent or the KKT / subgradient conditions of the
convex problem, the logistic variant, and the registry round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

import mtlkit
from mtlkit.analysis.relations import task_relations
from mtlkit.methods.shallow import RMTLNet, TaskLossSum, solve_l21, solve_lasso, solve_rmtl
from mtlkit.optim.apg import apg, prox_group, prox_trace, soft_threshold

pytestmark = pytest.mark.usefixtures("one_thread")
T, N, D = 3, 40, 6


def _problem(kind: str = "regression", shared: bool = False, seed: int = 0) -> TaskLossSum:
    """3 tasks, 6 features (2 irrelevant), uneven task sizes through the mask, a non-zero intercept."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)) if shared else rng.normal(size=(T, N, D))
    W = rng.normal(size=(T, D))
    W[:, :2] = 0.0
    z = np.einsum("nd,td->tn" if shared else "tnd,td->tn", X, W) + 0.5
    y = z + 0.3 * rng.normal(size=(T, N)) if kind == "regression" else (rng.random((T, N)) < 1 / (1 + np.exp(-z)))
    mask = np.ones((T, N), dtype=bool)
    mask[1, 28:] = False
    return TaskLossSum(torch.tensor(X), torch.tensor(y, dtype=torch.float64), torch.tensor(mask), kind)


# ---------------------------------------------------------------------- proximal maps
def test_soft_threshold_is_the_scalar_minimiser():
    x = torch.tensor([-2.0, -0.3, 0.0, 0.1, 0.7, 3.0], dtype=torch.float64)
    got = soft_threshold(x, 0.5)
    for xi, gi in zip(x.tolist(), got.tolist(), strict=True):
        ref = minimize_scalar(lambda z, xi=xi: 0.5 * (z - xi) ** 2 + 0.5 * abs(z), bounds=(-5, 5), method="bounded",
                              options={"xatol": 1e-10}).x
        assert gi == pytest.approx(ref, abs=1e-6)
    assert (got[1:4] == 0).all()


@pytest.mark.parametrize("dim", [0, 1])
def test_group_prox_matches_moreau_decomposition(dim):
    """prox_{t‖·‖₂}(v) = v − Π_{‖·‖₂ ≤ t}(v) per group (Moreau), computed group by group."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    x[:, 2] = 0.0
    x[1] *= 0.05  # a small row: its group is zeroed when dim=1
    got = prox_group(x, 0.4, dim=dim)
    ref = x.clone()
    groups = range(x.shape[1 - dim])
    for i in groups:
        v = x[:, i] if dim == 0 else x[i]
        proj = v * min(1.0, 0.4 / max(float(v.norm()), 1e-300))
        if dim == 0:
            ref[:, i] = v - proj
        else:
            ref[i] = v - proj
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(got).all()
    assert (got[:, 2] == 0).all()


def test_trace_prox_satisfies_the_subgradient_condition():
    """p = prox_{t‖·‖_*}(x) iff (x − p)/t ∈ ∂‖p‖_*: Uᵣᵀ G Vᵣ = I on p's range and ‖G‖₂ ≤ 1; and no random
    perturbation lowers the prox objective."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = float(torch.linalg.svdvals(x)[1])  # keeps exactly one singular value
    p = prox_trace(x, t)
    u, s, vh = torch.linalg.svd(p)
    r = int((s > 1e-10).sum())
    assert r == 1
    G = (x - p) / t
    torch.testing.assert_close(u[:, :r].T @ G @ vh[:r].T, torch.eye(r, dtype=torch.float64), atol=1e-10, rtol=0)
    assert float(torch.linalg.matrix_norm(G, ord=2)) <= 1 + 1e-10

    def obj(z: torch.Tensor) -> float:
        return float(0.5 * ((z - x) ** 2).sum() + t * torch.linalg.svdvals(z).sum())

    base = obj(p)
    for k in range(20):
        d = torch.randn(5, 4, generator=g, dtype=torch.float64)
        assert obj(p + 1e-3 * (k + 1) * d) >= base - 1e-12


def test_apg_without_penalty_reaches_least_squares():
    rng = np.random.default_rng(2)
    A, b = torch.tensor(rng.normal(size=(30, 5))), torch.tensor(rng.normal(size=30))
    res = apg(lambda p: ((A @ p[0] - b) ** 2).sum(), lambda p, s: p, [torch.zeros(5, dtype=torch.float64)],
              max_iter=5000, tol=1e-12)
    ref = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    torch.testing.assert_close(res.params[0], ref, atol=1e-8, rtol=0)
    assert res.converged


def test_bad_solver_arguments_raise():
    with pytest.raises(ValueError, match="max_iter"):
        apg(lambda p: (p[0] ** 2).sum(), lambda p, s: p, [torch.zeros(2)], max_iter=0)
    with pytest.raises(ValueError, match="step"):
        soft_threshold(torch.zeros(2), -1.0)


# ---------------------------------------------------------------------- optimality of the solutions
@pytest.mark.parametrize("shared", [False, True])
def test_lasso_matches_scikit_learn(shared):
    """sklearn's Lasso minimises (1/2n)‖y − Xw − b‖² + α‖w‖₁: our per-task mean squared error + lam‖w‖₁ is
    twice that with α = lam/2 (independent solver: coordinate descent)."""
    from sklearn.linear_model import Lasso

    loss = _problem(shared=shared)
    lam = 0.1
    res = solve_lasso(loss, lam, max_iter=20000, tol=1e-12)
    W, b = res.params
    assert res.converged
    X, y, m = loss.x.numpy(), loss.y.numpy(), loss.w.numpy() > 0
    for t in range(T):
        Xt = X[m[t]] if shared else X[t][m[t]]
        sk = Lasso(alpha=lam / 2, tol=1e-14, max_iter=100_000).fit(Xt, y[t][m[t]])
        np.testing.assert_allclose(W[t].numpy(), sk.coef_, atol=1e-7)
        assert b[t].item() == pytest.approx(sk.intercept_, abs=1e-7)
    assert (W[:, :2] == 0).sum() >= 3  # exact zeros from the prox on the irrelevant features


def _check_group_kkt(G: torch.Tensor, Wg: torch.Tensor, lam: float, dim: int, atol: float) -> None:
    """0 ∈ G + lam·∂Σ_g‖W_g‖: G_g = −lam·W_g/‖W_g‖ for non-zero groups, ‖G_g‖ ≤ lam for zero groups."""
    norms = torch.linalg.vector_norm(Wg, dim=dim, keepdim=True)
    nz = (norms > 1e-10).expand_as(Wg)
    target = -lam * Wg / norms.clamp_min(1e-300)
    torch.testing.assert_close(G[nz], target[nz], atol=atol, rtol=0)
    zero_groups = torch.linalg.vector_norm(G, dim=dim)[(norms <= 1e-10).squeeze(dim)]
    assert (zero_groups <= lam + atol).all()


@pytest.mark.parametrize("shared", [False, True])
def test_l21_solution_satisfies_kkt(shared):
    loss = _problem(shared=shared, seed=3)
    lam = 0.6
    res = solve_l21(loss, lam, max_iter=20000, tol=1e-12)
    W, b = res.params
    gW, gb = loss.gradient(W, b)
    torch.testing.assert_close(gb, torch.zeros_like(gb), atol=1e-8, rtol=0)
    _check_group_kkt(gW, W, lam, dim=0, atol=1e-7)
    n_zero = int((torch.linalg.vector_norm(W, dim=0) == 0).sum())
    assert 1 <= n_zero < D  # some whole features dropped for all tasks, not all


def _outlier_problem() -> TaskLossSum:
    """Tasks 0 and 1 share one weight vector, task 2 is an outlier: RMTL's motivating case."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(T, N, D))
    w = rng.normal(size=D)
    W = np.stack([w, w, 2 * rng.normal(size=D)])
    y = np.einsum("tnd,td->tn", X, W) + 0.3 * rng.normal(size=(T, N))
    return TaskLossSum(torch.tensor(X), torch.tensor(y), torch.ones(T, N, dtype=torch.bool), "regression")


def _check_rmtl_kkt(loss: TaskLossSum, lam_l: float, lam_s: float) -> tuple[int, torch.Tensor]:
    """−G ∈ lam_l·∂‖L‖_* (Uᵣᵀ(−G/lam_l)Vᵣ = I, ‖P⊥(−G/lam_l)‖₂ ≤ 1) and −G ∈ lam_s·∂Σ‖s_t‖, G = ∇_W loss.
    Returns rank(L) and the row norms of S."""
    res = solve_rmtl(loss, lam_l, lam_s, max_iter=30000, tol=1e-13)
    assert res.converged
    Lr, S, b = res.params
    gW, gb = loss.gradient(Lr + S, b)
    torch.testing.assert_close(gb, torch.zeros_like(gb), atol=1e-7, rtol=0)
    _check_group_kkt(gW, S, lam_s, dim=1, atol=1e-6)
    u, s, vh = torch.linalg.svd(Lr)
    r = int((s > 1e-8).sum())
    Gn = -gW / lam_l
    Ur, Vr = u[:, :r], vh[:r].T
    torch.testing.assert_close(Ur.T @ Gn @ Vr, torch.eye(r, dtype=torch.float64), atol=1e-6, rtol=0)
    resid = Gn - Ur @ Ur.T @ Gn @ Vr @ Vr.T  # the part of the subgradient off L's range: spectral norm <= 1
    assert float(torch.linalg.matrix_norm(resid, ord=2)) <= 1 + 1e-6
    # the last iterate is the best one seen (restarts allow single increases on the way)
    obj = np.asarray(res.objective)
    assert obj[-1] <= obj.min() + 1e-12 and obj[-1] < obj[0]
    return r, torch.linalg.vector_norm(S, dim=1)


def test_rmtl_solution_satisfies_kkt():
    r, s_norms = _check_rmtl_kkt(_problem(seed=4), 0.5, 0.4)
    assert 1 <= r < T and (s_norms > 0).all()  # low rank, every task with its own part


def test_rmtl_moves_the_outlier_task_to_the_group_sparse_part():
    """With 0.71·lam_l < lam_s < lam_l the shared pair goes to a rank-1 L and only the outlier keeps an S row."""
    r, s_norms = _check_rmtl_kkt(_outlier_problem(), 1.0, 0.85)
    assert r == 1
    assert s_norms[0] == 0 and s_norms[1] == 0 and s_norms[2] > 1.0


def test_closed_form_gradient_matches_autograd():
    for kind in ("regression", "binary"):
        loss = _problem(kind=kind, seed=5)
        W = torch.randn(T, D, dtype=torch.float64, requires_grad=True)
        b = torch.randn(T, dtype=torch.float64, requires_grad=True)
        gW, gb = torch.autograd.grad(loss(W, b), (W, b))
        cW, cb = loss.gradient(W.detach(), b.detach())
        torch.testing.assert_close(cW, gW)
        torch.testing.assert_close(cb, gb)


def test_logistic_lasso_kkt_and_learns():
    loss = _problem(kind="binary", seed=6)
    lam = 0.02
    W, b = solve_lasso(loss, lam, max_iter=20000, tol=1e-12).params
    gW, gb = loss.gradient(W, b)
    torch.testing.assert_close(gb, torch.zeros_like(gb), atol=1e-7, rtol=0)
    nz = W != 0
    torch.testing.assert_close(gW[nz], -lam * torch.sign(W[nz]), atol=1e-7, rtol=0)
    assert (gW[~nz].abs() <= lam + 1e-7).all()
    # it learns: training accuracy well above the majority class
    pred = (loss.predict(W, b) > 0).double()
    m = loss.w > 0
    acc = float((pred == loss.y)[m].double().mean())
    majority = float(torch.maximum(loss.y[m].mean(), 1 - loss.y[m].mean()))
    assert acc > majority + 0.1 and acc > 0.75


# ---------------------------------------------------------------------- registry round trip
def _data(kind: str = "regression") -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(7)
    W = rng.normal(size=(T, D))
    W[:, :2] = 0.0
    Xs = [rng.normal(size=(50, D)) for _ in range(T)]
    ys = [X @ W[t] + 0.1 * rng.normal(size=50) for t, X in enumerate(Xs)]
    if kind == "binary":
        ys = [(y > 0).astype(float) for y in ys]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind=kind)


@pytest.mark.parametrize("method", ["lasso", "l21", "rmtl"])
def test_methods_train_predict_and_reload(method, tmp_path):
    split = _data().split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train(method, split, hparams={"max_iter": 500}, seed=0, device="cpu")
    ev = run.evaluate("test")
    assert ev.mean["rmse"] < 0.5  # standardised targets have rmse ~1 for a constant predictor
    if method == "rmtl":
        m = run.model
        assert isinstance(m, RMTLNet)
        torch.testing.assert_close(m.linear.weight[..., 0], m.low_rank + m.sparse)
        rel = task_relations(run)
        cos = rel["RMTL low-rank part: task cosine similarity"]
        assert cos.shape == (T, T) and np.all(np.abs(cos) <= 1 + 1e-9)
        np.testing.assert_allclose(rel["RMTL group-sparse part: ||s_t||"][0], m.sparse.norm(dim=1).numpy(), rtol=1e-6)
    X = split.test.xs[0]
    again = mtlkit.load(run.save(tmp_path / method))
    np.testing.assert_allclose(again.predict(X, task=0), run.predict(X, task=0), rtol=1e-6)


def test_binary_tasks_train_and_bad_hyper_parameters_raise():
    split = _data("binary").split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("l21", split, hparams={"lam": 1e-3}, seed=0, device="cpu")
    assert run.evaluate("test").mean["error"] < 25.0
    with pytest.raises(ValueError, match="lam .*must be ≥ 0"):
        mtlkit.train("lasso", split, hparams={"lam": -1.0}, device="cpu")
    with pytest.raises(ValueError, match="max_iter"):
        mtlkit.train("rmtl", split, hparams={"max_iter": 0}, device="cpu")
    assert mtlkit.methods.get("rmtl").grid_for("regression") == {"lam_l": [1e-2, 1e-1, 1.0], "lam_s": [1e-2, 1e-1, 1.0]}
