"""Gradient aggregators on the T per-task gradients of the shared parameters (the batched `task_gradient_parts`),
each working in Gram space (the ``T×T`` matrix ``G Gᵀ``) where its math allows: the per-task gradients once
(one batched vector-Jacobian product, or one backward pass for a row-separable model on per-task input), the Gram
matrix once (``O(T²·n)``), a small ``T×T`` problem on the host in float64 numpy (``O(T³)``: no Python loop over
tasks of n-dimensional vectors), and the update as one combination ``Σ_t c_t g_t`` of the gradients.

Conventions (shared by every aggregator here, and PCGrad's):

* **Input.** The Jacobian ``J'`` whose row t is ``T·w_t·∇L_t`` for the step's task weights ``w`` (the objective's
  ``Σ_t w_t L_t``; default ``w_t = 1/T``, so ``J'`` is the plain per-task gradients), under DDP averaged over ranks
  first so that every rank aggregates the same matrix.
* **Scale.** An aggregator the paper (or torchjd) defines as a *sum* over tasks (GradVac, GradDrop, ConFIG) is
  divided by T, one defined as a *mean* or convex combination (UPGrad, CAGrad, IMTL-G, Aligned-MTL, …) is taken as
  is; so with agreeing gradients every update is the mean gradient, hard-share's scale, and the learning rates of
  hard-share carry over. Nash-MTL and FairGrad are scale-free by construction (their weights scale as 1/‖g‖).
* **Update.** ``total.backward()`` runs once (task-specific parameters and penalties get their usual gradients,
  DistributedDataParallel all-reduces them), then the shared parameters' ``.grad`` receives the aggregate minus
  the plain ``Σ_t w_t ∇L_t`` it already holds.
* **State.** Stateful aggregators (GradVac's EMA targets, Nash-MTL's weights and update counter, MoCo's tracked
  gradients, SDMGrad's and MoDo's weights, ExcessMTL's and DB-MTL's running statistics, the random draws' step
  counter) return it from ``state()`` under keys prefixed by the registry name, and take it back in
  ``load_state``, so a resumed run continues exactly. Random choices (GradVac's order, GradDrop's thresholds) come
  from a CPU generator seeded from (seed, step), identical on every rank.

Oracles (tests/test_aggregators.py): torchjd's implementation where it has the method (`torchjd.aggregation`),
scipy's solvers (SLSQP, least squares, bounded least squares) where torchjd needs cvxpy or quadprog, the paper's
equations otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.hparams import HParam, Space
from mtlkit.optim.combiners import (
    CombinerSpec,
    TaskGradients,
    TaskTape,
    _add_to_grads,
    _all_reduce,
    pcgrad_orders,
    task_gradient_parts,
)

# ---------------------------------------------------------------------- small problems on the host (float64)


def project_simplex(Y: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``Y`` (or of a vector) onto the probability simplex (Duchi et al. 2008:
    one sort per row, vectorised over rows)."""
    Y = np.asarray(Y, dtype=np.float64)
    one = Y.ndim == 1
    Y2 = np.atleast_2d(Y)
    U = -np.sort(-Y2, axis=1)
    css = np.cumsum(U, axis=1) - 1.0
    k = np.arange(1, Y2.shape[1] + 1)
    ok = U - css / k > 0
    rho = Y2.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)  # the last index where the condition holds
    theta = css[np.arange(Y2.shape[0]), rho] / (rho + 1)
    out = np.maximum(Y2 - theta[:, None], 0.0)
    return out[0] if one else out


def bound_qp(G: np.ndarray, U: np.ndarray, free: np.ndarray | None = None, max_iter: int | None = None
             ) -> np.ndarray:
    """For each row u of ``U``: ``argmin_v vᵀ G v`` subject to ``v ≥ u`` (``G`` symmetric positive definite).

    With ``v = u + x`` this is a non-negative least-squares problem in Gram form, ``min_{x≥0} xᵀGx + 2xᵀGu``, solved
    for all rows together by block principal pivoting (Júdice & Pires 1994; Kim & Park 2011, multiple right-hand
    sides): each round exchanges the infeasible variables of every row between its free and bound sets and solves
    each changed row's free system (a Cholesky solve), until the KKT conditions ``x ≥ 0``, ``y = G(u+x) ≥ 0``,
    ``x·y = 0`` hold. It terminates in a finite number of rounds; ``free`` (``[K, T]`` bools), a guess of the
    variables above their bound, saves rounds."""
    from scipy.linalg import lapack

    G = np.asarray(G, dtype=np.float64)
    U = np.atleast_2d(np.asarray(U, dtype=np.float64))
    K, T = U.shape
    B = U @ G  # row k: G u_k
    X = np.zeros((K, T))
    Y = B.copy()
    F = np.zeros((K, T), dtype=bool) if free is None else np.array(free, dtype=bool)
    p = np.full(K, 3)
    ninf = np.full(K, T + 1)
    tol = 1e-13 * max(1.0, float(np.abs(U).max(initial=0.0))) * max(1.0, float(np.abs(G).max(initial=0.0)))
    xtol = 1e-13 * max(1.0, float(np.abs(U).max(initial=0.0)))

    def solve(rows: np.ndarray) -> None:
        for r in rows:
            idx = np.flatnonzero(F[r])
            x = np.zeros(T)
            if len(idx):
                rhs = -B[r, idx]
                _, sol, info = lapack.dposv(G.take(idx, 0).take(idx, 1), rhs)
                if info != 0:  # not numerically positive definite: least squares
                    sol = np.linalg.lstsq(G.take(idx, 0).take(idx, 1), rhs, rcond=None)[0]
                x[idx] = sol
            X[r] = x
            y = G @ x + B[r]
            y[idx] = 0.0
            Y[r] = y

    if F.any():
        solve(np.nonzero(F.any(1))[0])
    for _ in range(max_iter if max_iter is not None else 10 * T + 10):
        bad = (F & (X + xtol < 0)) | (~F & (Y + tol < 0))
        n = bad.sum(1)
        todo = n > 0
        if not todo.any():
            break
        full = todo & (n < ninf)
        back = todo & ~full & (p > 0)
        single = todo & ~full & ~back
        ninf[full], p[full] = n[full], 3
        p[back] -= 1
        swap = bad & (full | back)[:, None]
        if single.any():  # the backup rule: only the largest infeasible index changes side
            rows = np.nonzero(single)[0]
            last = T - 1 - np.argmax(bad[rows, ::-1], axis=1)
            swap[rows, last] = True
        F ^= swap
        solve(np.nonzero(todo)[0])
    return U + X


def _normalized(M: np.ndarray, eps: float) -> np.ndarray:
    """``M / trace(M)`` (the Gram matrix of the Frobenius-normalised Jacobian), zeros when the trace is below eps
    (torchjd's ``normalize``)."""
    tr = float(np.trace(M))
    return np.zeros_like(M) if tr < eps or tr <= 0 else M / tr


def upgrad_weights(M: np.ndarray, pref: np.ndarray | None = None, norm_eps: float = 0.0,
                   reg_eps: float = 1e-4) -> np.ndarray:
    """UPGrad's weights (Quinton & Rey 2024): ``Σ_i W_i`` where ``Jᵀ W_i`` is the projection of ``pref_i g_i``
    onto the dual cone of the rows, i.e. ``W_i = argmin_{v ≥ pref_i e_i} vᵀ G v`` (their Proposition 1), with
    torchjd's conditioning: ``G`` divided by its trace, plus ``reg_eps·I``. ``pref`` defaults to ``1/T``."""
    T = M.shape[0]
    pref = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    Gn = _normalized(M, norm_eps) + reg_eps * np.eye(T)
    guess = Gn < 0  # start with g_i's projection against every gradient it conflicts with
    return bound_qp(Gn, np.diag(pref), free=guess).sum(0)


def dualproj_weights(M: np.ndarray, pref: np.ndarray | None = None, norm_eps: float = 0.0,
                     reg_eps: float = 1e-4) -> np.ndarray:
    """DualProj's weights (Quinton & Rey 2024): the projection of the preference-weighted sum onto the dual cone,
    ``argmin_{v ≥ pref} vᵀ G v`` (same conditioning as `upgrad_weights`)."""
    T = M.shape[0]
    pref = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    Gn = _normalized(M, norm_eps) + reg_eps * np.eye(T)
    return bound_qp(Gn, pref[None, :])[0]


def cagrad_weights(M: np.ndarray, c: float, norm_eps: float = 1e-4, iters: int = 3000) -> np.ndarray:
    """CAGrad's weights (Liu et al. 2021, Algorithm 1) on the Gram matrix: with ``g_0`` the mean gradient,
    ``√φ = c‖g_0‖`` and ``w* = argmin_{w∈Δ} g_wᵀ g_0 + √φ ‖g_w‖`` (``g_w = Σ w_t g_t``), the update is
    ``g_0 + (√φ/‖g_w*‖) g_w*``, i.e. weights ``1/T + (√φ/‖g_w*‖) w*`` (zeros when ``‖g_w*‖`` is below norm_eps: on
    the Pareto front). As torchjd, the problem is posed on the trace-normalised Gram matrix (the weights are
    scale-invariant). It is solved by accelerated projected gradient on the simplex (FISTA with backtracking and
    adaptive restart) until the support settles, then by Newton's method on the KKT equations of that support
    (where the authors and LibMTL call SLSQP and torchjd cvxpy)."""
    T = M.shape[0]
    Mn = _normalized(M, norm_eps)
    b = Mn.mean(1)  # G g_0 in the weights' basis
    sqrt_phi = c * math.sqrt(max(float(Mn.sum()), 0.0)) / T
    if sqrt_phi == 0.0:
        return np.full(T, 1.0 / T)
    w = _cagrad_fista(Mn, b, sqrt_phi, iters)
    w = _cagrad_newton(Mn, b, sqrt_phi, w)
    gw = math.sqrt(max(float(w @ Mn @ w), 0.0))
    if gw < norm_eps:
        return np.zeros(T)
    return np.full(T, 1.0 / T) + (sqrt_phi / gw) * w


def _cagrad_value_grad(Mn: np.ndarray, b: np.ndarray, sqrt_phi: float, w: np.ndarray) -> tuple[float, np.ndarray]:
    Mw = Mn @ w
    nrm = math.sqrt(max(float(w @ Mw), 0.0))
    g = b + (sqrt_phi / nrm) * Mw if nrm > 0 else b.copy()
    return float(b @ w) + sqrt_phi * nrm, g


def _cagrad_fista(Mn: np.ndarray, b: np.ndarray, sqrt_phi: float, iters: int) -> np.ndarray:
    """FISTA with backtracking and adaptive restart on the simplex for `cagrad_weights`' problem, stopped once the
    support has not changed for 50 iterations and the steps are small (the Newton polish does the rest)."""
    T = Mn.shape[0]
    w = np.full(T, 1.0 / T)
    fw, _ = _cagrad_value_grad(Mn, b, sqrt_phi, w)
    z, t, L = w.copy(), 1.0, 1.0
    support, stable, restarted = w > 0, 0, False
    for _ in range(iters):
        fz, gz = _cagrad_value_grad(Mn, b, sqrt_phi, z)
        while True:
            w_new = project_simplex(z - gz / L)
            d = w_new - z
            f_new, _ = _cagrad_value_grad(Mn, b, sqrt_phi, w_new)
            if f_new <= fz + float(gz @ d) + 0.5 * L * float(d @ d) + 1e-15 * abs(fz) or L > 1e15:
                break
            L *= 2.0
        if f_new > fw:  # adaptive restart: momentum made it worse; twice in a row: no descent left (rounding)
            if restarted:
                break
            z, t, restarted = w.copy(), 1.0, True
            continue
        restarted = False
        step = float(np.abs(w_new - w).max())
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = w_new + ((t - 1.0) / t_new) * (w_new - w)
        w, fw, t = w_new, f_new, t_new
        L = max(L / 1.5, 1e-12)
        now = w > 0
        stable = stable + 1 if np.array_equal(now, support) else 0
        support = now
        if step <= 1e-14 or (stable >= 50 and step <= 1e-6):
            break
    return w


def _cagrad_newton(Mn: np.ndarray, b: np.ndarray, sqrt_phi: float, w: np.ndarray, iters: int = 50) -> np.ndarray:
    """Newton's method on the KKT equations ``b_S + √φ (Gw)_S/‖g_w‖ = ν·1``, ``Σ w_S = 1`` of the support S of
    ``w``; returns the polished weights when they stay positive and every task off S has ``∇f_j ≥ ν`` (the KKT
    conditions of the whole problem), else ``w`` unchanged."""
    S = np.nonzero(w > 1e-12 * float(w.max()))[0]
    k = len(S)
    x = w[S].copy()
    A = Mn[np.ix_(S, S)]
    ones = np.ones(k)
    _, g = _cagrad_value_grad(Mn, b, sqrt_phi, w)
    nu = float(g[S].mean())
    for _ in range(iters):
        Ax = A @ x
        s = math.sqrt(max(float(x @ Ax), 0.0))
        if not s > 0:
            return w
        r = np.concatenate([b[S] + sqrt_phi * Ax / s - nu, [x.sum() - 1.0]])
        if float(np.abs(r).max()) <= 1e-14:
            break
        H = sqrt_phi * (A / s - np.outer(Ax, Ax) / s ** 3)
        K = np.block([[H, -ones[:, None]], [ones[None, :], np.zeros((1, 1))]])
        try:
            step = np.linalg.solve(K, -r)
        except np.linalg.LinAlgError:
            return w
        x = x + step[:k]
        nu = nu + float(step[k])
        if (x <= 0).any():
            return w
    out = np.zeros_like(w)
    out[S] = x
    _, g = _cagrad_value_grad(Mn, b, sqrt_phi, out)
    scale = max(1.0, float(np.abs(g).max()))
    off = np.ones(len(w), dtype=bool)
    off[S] = False
    if off.any() and float(g[off].min()) < nu - 1e-9 * scale:
        return w
    return out


def imtl_g_weights(M: np.ndarray) -> np.ndarray:
    """IMTL-G's weights (Liu et al. 2021, in torchjd's generalisation to dependent rows): ``v = G⁺ d`` with ``d_t =
    ‖g_t‖``, normalised to sum 1 (zeros when the sum vanishes): the aggregate has equal projections on every unit
    task gradient."""
    d = np.sqrt(np.clip(np.diagonal(M), 0.0, None))
    v = np.linalg.pinv(M, hermitian=True) @ d
    s = float(v.sum())
    return np.zeros_like(v) if abs(s) < 1e-12 else v / s


ALIGNED_SCALES = ("min", "median", "rmse")


def aligned_mtl_weights(M: np.ndarray, pref: np.ndarray | None = None, scale_mode: str = "min") -> np.ndarray:
    """Aligned-MTL's weights (Senushkin et al. 2023, Algorithm 1): with ``G = V Λ Vᵀ`` (rank r), the balance
    transformation ``B = √λ_scale V Λ^{-1/2} Vᵀ`` makes the aligned gradients orthogonal with equal norms; the
    weights are ``B·pref`` (pref = 1/T). ``scale_mode``: the smallest eigenvalue (the paper's), the (lower) median
    or the mean ('rmse', the authors' code), as in torchjd."""
    T = M.shape[0]
    pref = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    lam, V = np.linalg.eigh(M)
    tol = float(lam.max(initial=0.0)) * T * np.finfo(np.float64).eps
    keep = lam > tol
    if not keep.any():
        return pref.copy()
    order = np.argsort(-lam[keep])
    lam, V = lam[keep][order], V[:, keep][:, order]
    lower_median = float(np.sort(lam)[(len(lam) - 1) // 2])  # torch.median's: the lower of the two middle values
    scale = {"min": lam[-1], "median": lower_median, "rmse": float(lam.mean())}[scale_mode]
    B = math.sqrt(scale) * (V / np.sqrt(lam)) @ V.T
    return B @ pref


def fair_weights(M: np.ndarray, alpha: float, iters: int = 200, tol: float = 1e-11) -> np.ndarray:
    """The α-fair allocation of FairGrad (Ban & Ji 2024, Eq. 4): ``w > 0`` with ``(G w)_t = w_t^{-1/α}``; α = 1 is
    Nash-MTL's bargaining solution (Navon et al. 2022: ``w_t (Gw)_t = 1``), α = 0 uniform weights.

    It is the minimiser of the strictly convex ``½wᵀGw − Σ_t h(w_t)`` (``h' = w^{-1/α}``), found by Newton's method
    with backtracking (a T×T solve per iteration) until every ``w_t^{1/α}(Gw)_t`` is 1 to ``tol`` (or, below 1e-9,
    the steps are damped by rounding). A task whose
    gradient is zero gets weight 0 (no finite solution exists for it)."""
    T = M.shape[0]
    if alpha == 0:
        return np.full(T, 1.0 / T)
    d = np.clip(np.diagonal(M), 0.0, None)
    live = d > 1e-300 * max(1.0, float(d.max(initial=0.0)))
    out = np.zeros(T)
    if not live.any():
        return out
    A = M[np.ix_(live, live)]
    k = int(live.sum())
    inv_a = 1.0 / alpha

    def value(x: np.ndarray) -> float:
        h = np.log(x).sum() if alpha == 1 else (x ** (1.0 - inv_a)).sum() / (1.0 - inv_a)
        return 0.5 * float(x @ A @ x) - float(h)

    x = (k * d[live]) ** (-alpha / (alpha + 1.0))
    fx = value(x)
    for _ in range(iters):
        Ax = A @ x
        res = float(np.abs(x ** inv_a * Ax - 1.0).max())
        if res <= tol:
            break
        g = Ax - x ** (-inv_a)
        H = A + np.diag(inv_a * x ** (-inv_a - 1.0))
        try:
            step = np.linalg.solve(H, -g)
        except np.linalg.LinAlgError:
            step = -g / np.diagonal(H)
        s = 1.0
        neg = step < 0
        if neg.any():  # stay inside w > 0
            s = min(1.0, 0.99 * float((-x[neg] / step[neg]).min()))
        slope = float(g @ step)
        while s > 1e-20:
            x_new = x + s * step
            f_new = value(x_new)
            if f_new <= fx + 1e-4 * s * slope:
                break
            s *= 0.5
        else:
            break
        if s < 1e-3 and res < 1e-9:  # damped steps at rounding level: no further progress
            break
        x, fx = x_new, f_new
    out[live] = x
    return out


def config_weights(M: np.ndarray, pref: np.ndarray | None = None, n: int | None = None) -> np.ndarray:
    """ConFIG's weights (Liu et al. 2024, Eq. 2) in the basis of the gradients: the direction ``U⁺ pref`` for the
    unit gradients ``U`` (``= Uᵀ(UUᵀ)⁺ pref``: coefficients ``D⁻¹(D⁻¹GD⁻¹)⁺ pref``), normalised, times the sum of
    the gradients' projections on it (torchjd's ConFIG; pref = ones). ``n`` (the Jacobian's columns) sets the
    pseudo-inverse's cut-off as ``torch.linalg.pinv`` of the unit matrix would."""
    T = M.shape[0]
    pref = np.ones(T) if pref is None else np.asarray(pref, dtype=np.float64)
    d = np.sqrt(np.clip(np.diagonal(M), 0.0, None))
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    Mu = inv[:, None] * M * inv[None, :]
    lam, V = np.linalg.eigh(Mu)
    rtol = max(T, n or T) * np.finfo(np.float64).eps
    keep = lam > (rtol ** 2) * max(float(lam.max(initial=0.0)), 0.0)
    pinv = (V[:, keep] / lam[keep]) @ V[:, keep].T
    c = inv * (pinv @ pref)
    nrm2 = float(c @ M @ c)
    if not nrm2 > 0:
        return np.zeros(T)
    return (float(M.sum(0) @ c) / nrm2) * c


def gradvac_coefficients(M: np.ndarray, phi: np.ndarray, orders: np.ndarray, beta: float,
                         eps: float = 1e-8) -> np.ndarray:
    """GradVac (Wang et al. 2021) in the basis of the original gradients: ``C`` with ``g_i' = Σ_k C_ik g_k``, and
    the EMA targets ``phi`` ``[T, T]`` updated in place. Each ``g_i`` meets the others in ``orders[i]``; where its
    cosine with ``g_j`` is below the target ``φ̂_ij``, ``g_j`` is added with the closed-form coefficient that lifts
    the cosine to ``φ̂_ij``, and ``φ̂_ij ← (1−β)φ̂_ij + βφ_ij``. Task i's pass touches only row i, so the T passes run
    together, one round per position in the order (as `pcgrad_coefficients`); the same numbers as torchjd's
    sequential loop for the same orders."""
    T = M.shape[0]
    C = np.eye(T)
    D = M.copy()  # C·G
    rows = np.arange(T)
    norm_j_all = np.sqrt(np.clip(np.diagonal(M), 0.0, None))
    for k in range(orders.shape[1]):
        j = orders[:, k]
        dot = D[rows, j]
        norm_i = np.sqrt(np.clip((D * C).sum(1), 0.0, None))
        norm_j = norm_j_all[j]
        cos = dot / (norm_i * norm_j + eps)
        target = phi[rows, j].copy()
        hit = cos < target
        if hit.any():
            s_cos = np.sqrt(np.clip(1.0 - cos[hit] ** 2, 0.0, None))
            s_tgt = np.sqrt(np.clip(1.0 - target[hit] ** 2, 0.0, None))
            w = norm_i[hit] * (target[hit] * s_cos - cos[hit] * s_tgt) / (norm_j[hit] * s_tgt + eps)
            i, jj = rows[hit], j[hit]
            C[i, jj] += w
            D[i] += w[:, None] * M[jj]
        phi[rows, j] = (1.0 - beta) * target + beta * cos
    return C


def sdmgrad_weights(A: np.ndarray, w: np.ndarray, lr: float = 10.0, momentum: float = 0.5, n_iter: int = 20,
                    lam: float = 0.3, pref: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SDMGrad (Xiao et al. 2023): ``n_iter`` steps of projected SGD with momentum on the simplex weights ``w`` of
    ``½‖J(w + λw̃)‖²`` (``A = J Jᵀ`` scaled by the mean gradient norm, as the authors and torchjd do), from the
    previous step's ``w``; returns (the new ``w``, the aggregation weights ``(w + λw̃)/(1 + λ)``)."""
    T = A.shape[0]
    pref = np.full(T, 1.0 / T) if pref is None else pref
    scale = float(np.sqrt(np.clip(np.diagonal(A), 0.0, None)).mean())
    a = A / (scale ** 2 + 1e-8)
    v: np.ndarray | None = None
    for _ in range(n_iter):
        g = a @ (w + lam * pref)
        v = g if v is None else momentum * v + g
        w = project_simplex(w - lr * v)
    return w, (w + lam * pref) / (1.0 + lam)


def graddrop_combine(blocks: Sequence[tuple[str, torch.Tensor]], U: torch.Tensor) -> list[torch.Tensor]:
    """GradDrop (Chen et al. 2020, Algorithm 1 lines 10-15) on the blocks of a `TaskGradients`: per coordinate the
    positive-sign purity ``P = ½(1 + Σ_t g_t / Σ_t |g_t|)``; a task's component is kept where its sign is the one
    drawn (``P > U``: positive, ``P < U``: negative) and the kept components summed. ``U`` holds one uniform draw per
    dense coordinate, in block order. A coordinate only one task reaches (a diagonal block) is always kept."""
    out: list[torch.Tensor] = []
    i = 0
    for kind, b in blocks:
        if kind != "dense":
            out.append(b)  # [T, m] block rows: kept as they are
            continue
        u = U[i:i + b.shape[1]].to(b.dtype)
        i += b.shape[1]
        P = 0.5 * (1.0 + b.sum(0) / b.abs().sum(0))
        keep = ((P - u > 0) & (b > 0)) | ((P - u < 0) & (b < 0))
        out.append((keep.to(b.dtype) * b).sum(0))
    return out


# ---------------------------------------------------------------------- the combiner base


class GradientAggregator:
    """A combiner that replaces the task part of the shared parameters' gradient by an aggregate of the T per-task
    gradients (see the module docstring for the input, scale, update and state conventions).

    Subclasses set ``name`` (their registry name, the prefix of their state keys) and implement `aggregate`,
    returning either coefficients ``[T]`` on the rows of the given `TaskGradients` or the update itself, one
    tensor per input (in the inputs' flattened block order: a ``[n_i]`` tensor for a dense block, ``[T, m_i]`` for a
    diagonal one)."""

    per_task_gradients = True  # the Trainer records a `TaskTape` for it on row-separable models
    name = "aggregator"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = int(torch.initial_seed() if seed is None else seed) % (2 ** 62)
        self.step = 0
        self.last_weights: torch.Tensor | None = None  # the latest coefficients on the rows (for inspection)

    # -- hooks
    def row_scale(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``c`` of the rows ``c_t ∇L_t`` the aggregator works on: ``T·w`` (the raw gradients under 1/T weights)."""
        return weights * losses.shape[0]

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what `extra_state` returned (keys without the name prefix)."""

    # -- machinery
    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.step) % (2 ** 63))

    @staticmethod
    def _host(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError(f"{type(self).__name__} needs the task weights w of total = Σ w_t L_t + penalties "
                             "(weights=...)")
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise ValueError(f"{type(self).__name__} needs at least one shared parameter that requires grad")
        w = weights.detach().to(losses.dtype)
        global_losses = _all_reduce(losses.detach().clone(), mean=True)
        c = self.row_scale(global_losses, w).detach()
        G = task_gradient_parts(losses, params, weights=c, tape=tape)
        G.all_reduce(mean=True)
        plain = torch.where(c != 0, w / torch.where(c != 0, c, torch.ones_like(c)), torch.zeros_like(c))
        with torch.no_grad():
            out = self.aggregate(G, global_losses)
            if isinstance(out, torch.Tensor):
                coef = out.to(device=losses.device, dtype=losses.dtype)
                self.last_weights = coef
                delta = G.combine(coef - plain)
            else:
                base = G.combine(plain)
                delta = [o.reshape(b.shape).to(b.dtype) - b for o, b in zip(out, base, strict=True)]
        self.step += 1
        total.backward()
        _add_to_grads(params, delta)

    def state(self) -> dict[str, torch.Tensor]:
        st = {f"{self.name}.step": torch.tensor(self.step, dtype=torch.int64)}
        st.update({f"{self.name}.{k}": v for k, v in self.extra_state().items()})
        return st

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        pre = f"{self.name}."
        if pre + "step" in state:
            self.step = int(state[pre + "step"])
        self.load_extra_state({k[len(pre):]: v for k, v in state.items() if k.startswith(pre) and k != pre + "step"})

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _coef(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=like.device, dtype=like.dtype)


def _gram_host(G: TaskGradients) -> np.ndarray:
    M = GradientAggregator._host(G.gram())
    return 0.5 * (M + M.T)


def _row_norms2(blocks: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """``‖g_t‖²`` per task from blocks (O(T·n), no Gram matrix)."""
    return sum(b.pow(2).sum(1) for _, b in blocks)  # type: ignore[return-value]


class UPGrad(GradientAggregator):
    """UPGrad (Quinton & Rey 2024, Jacobian Descent for Multi-Objective Optimization): each task gradient projected
    onto the dual cone of all of them (so no task's loss increases to first order), averaged (`upgrad_weights`)."""

    name = "upgrad"

    def __init__(self, reg_eps: float = 1e-4, seed: int | None = None) -> None:
        super().__init__(seed)
        self.reg_eps = float(reg_eps)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(upgrad_weights(_gram_host(G), reg_eps=self.reg_eps), losses)


class DualProj(GradientAggregator):
    """DualProj (Quinton & Rey 2024): the mean gradient projected onto the dual cone of the task gradients."""

    name = "dualproj"

    def __init__(self, reg_eps: float = 1e-4, seed: int | None = None) -> None:
        super().__init__(seed)
        self.reg_eps = float(reg_eps)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(dualproj_weights(_gram_host(G), reg_eps=self.reg_eps), losses)


CAGRAD_RESCALES = (0, 1, 2)


class CAGrad(GradientAggregator):
    """CAGrad (Liu et al., NeurIPS 2021, Conflict-Averse Gradient Descent): the update maximising the worst task's
    improvement within a ball of radius ``c‖g_0‖`` around the mean gradient (`cagrad_weights`); ``rescale`` divides
    it by 1 (0), ``1 + c²`` (1, the authors' and LibMTL's default) or ``1 + c`` (2)."""

    name = "cagrad"

    def __init__(self, c: float = 0.4, rescale: int = 1, seed: int | None = None) -> None:
        super().__init__(seed)
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c}")
        if rescale not in CAGRAD_RESCALES:
            raise ValueError(f"CAGrad rescale must be one of {CAGRAD_RESCALES}, got {rescale}")
        self.c, self.rescale = float(c), int(rescale)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        w = cagrad_weights(_gram_host(G), self.c)
        div = {0: 1.0, 1: 1.0 + self.c ** 2, 2: 1.0 + self.c}[self.rescale]
        return _coef(w / div, losses)

    def __repr__(self) -> str:
        return f"CAGrad(c={self.c}, rescale={self.rescale})"


class IMTLG(GradientAggregator):
    """IMTL-G (Liu et al., ICLR 2021, Towards Impartial Multi-task Learning): the convex-sum-to-one combination
    whose projections on every unit task gradient are equal (`imtl_g_weights`)."""

    name = "imtl-g"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(imtl_g_weights(_gram_host(G)), losses)


class AlignedMTL(GradientAggregator):
    """Aligned-MTL (Senushkin et al., CVPR 2023, Independent Component Alignment for Multi-Task Learning): the
    gradients made orthogonal with equal norms by the Gram matrix's eigen-decomposition (`aligned_mtl_weights`)."""

    name = "aligned-mtl"

    def __init__(self, scale_mode: str = "min", seed: int | None = None) -> None:
        super().__init__(seed)
        if scale_mode not in ALIGNED_SCALES:
            raise ValueError(f"Aligned-MTL scale_mode must be one of {ALIGNED_SCALES}, got {scale_mode!r}")
        self.scale_mode = scale_mode

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(aligned_mtl_weights(_gram_host(G), scale_mode=self.scale_mode), losses)


class NashMTL(GradientAggregator):
    """Nash-MTL (Navon et al., ICML 2022, Multi-Task Learning as a Bargaining Game): weights ``α > 0`` with
    ``α_t (Gα)_t = 1`` (`fair_weights` with α = 1, solved exactly by Newton's method where the authors run 20
    steps of a cvxpy sequential convex programme), recomputed every ``update_every`` steps and reused in between
    (on the new gradients), the update ``Σ α_t g_t`` scaled down to norm ``max_norm`` when longer (0: never)."""

    name = "nash-mtl"

    def __init__(self, update_every: int = 1, max_norm: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if update_every < 1:
            raise ValueError(f"Nash-MTL update_every must be >= 1, got {update_every}")
        if max_norm < 0:
            raise ValueError(f"Nash-MTL max_norm must be >= 0, got {max_norm}")
        self.update_every, self.max_norm = int(update_every), float(max_norm)
        self.alpha: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        if self.alpha is None or len(self.alpha) != M.shape[0] or self.step % self.update_every == 0:
            self.alpha = fair_weights(M, 1.0)
        a = self.alpha.copy()
        if self.max_norm > 0:
            nrm = math.sqrt(max(float(a @ M @ a), 0.0))
            if nrm > self.max_norm:
                a *= self.max_norm / nrm
        return _coef(a, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.alpha is None else {"alpha": torch.from_numpy(self.alpha.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.alpha = state["alpha"].detach().cpu().double().numpy().copy() if "alpha" in state else None

    def __repr__(self) -> str:
        return f"NashMTL(update_every={self.update_every}, max_norm={self.max_norm})"


class FairGrad(GradientAggregator):
    """FairGrad (Ban & Ji, ICML 2024, Fair Resource Allocation in Multi-Task Learning): α-fair weights with
    ``(Gw)_t = w_t^{-1/α}`` (`fair_weights`; α = 1 is Nash-MTL's solution, α → ∞ approaches max-min fairness),
    solved afresh each step from the same start, so no state is needed for an exact resume."""

    name = "fairgrad"

    def __init__(self, alpha: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if alpha < 0:
            raise ValueError(f"FairGrad alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(fair_weights(_gram_host(G), self.alpha), losses)

    def __repr__(self) -> str:
        return f"FairGrad(alpha={self.alpha})"


class ConFIG(GradientAggregator):
    """ConFIG (Liu et al. 2024, Towards Conflict-free Training of Physics Informed Neural Networks, Eq. 2): the
    direction with equal cosine to every task gradient, with the length of the gradients' summed projections on it
    (`config_weights`), divided by T (the paper sums)."""

    name = "config"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        n = sum(b.shape[1] * (1 if k == "dense" else G.n_tasks) for k, b in G.blocks)
        return _coef(config_weights(_gram_host(G), n=n) / G.n_tasks, losses)


class GradVac(GradientAggregator):
    """GradVac (Wang et al., ICLR 2021, Gradient Vaccine): each task gradient, in a random order over the others,
    lifted towards an EMA target cosine with each of them (`gradvac_coefficients`), summed and divided by T. The
    targets ``φ̂`` and the step counter (the order's seed) are the state."""

    name = "gradvac"

    def __init__(self, beta: float = 0.5, eps: float = 1e-8, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac beta must be in [0, 1], got {beta}")
        self.beta, self.eps = float(beta), float(eps)
        self.phi: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        if self.phi is None or self.phi.shape != (T, T):
            self.phi = np.zeros((T, T))
        orders = pcgrad_orders(T, self._generator()).numpy()
        C = gradvac_coefficients(M, self.phi, orders, self.beta, self.eps)
        return _coef(C.sum(0) / T, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.phi is None else {"phi": torch.from_numpy(self.phi.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.phi = state["phi"].detach().cpu().double().numpy().copy() if "phi" in state else None

    def __repr__(self) -> str:
        return f"GradVac(beta={self.beta})"


class GradDrop(GradientAggregator):
    """GradDrop (Chen et al., NeurIPS 2020, Just Pick a Sign): per coordinate of the shared parameters, keep the
    tasks' components of one sign, drawn with the positive-sign purity as probability (`graddrop_combine`), summed
    and divided by T. Applied to the parameter gradients, as torchjd does (the paper applies it to the gradients of
    an activation layer)."""

    name = "graddrop"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        n = sum(b.shape[1] for k, b in G.blocks if k == "dense")
        U = torch.rand(n, generator=self._generator(), dtype=torch.float64)
        dev = G.blocks[0][1].device if G.blocks else torch.device("cpu")
        out = graddrop_combine(G.blocks, U.to(dev))
        T = G.n_tasks
        return [o / T for o in out]


class MoDo(GradientAggregator):
    """MoDo (Chen et al., NeurIPS 2023 / JMLR 2024, Three-Way Trade-Off in Multi-Objective Learning): simplex weights
    updated by one projected step ``λ ← Π_Δ(λ − γ(Gλ + ρλ))`` per training step, the update ``Σ λ_t g_t``. The paper
    takes ``G = J₁J₂ᵀ`` from two independent batches; here (as LibMTL with one batch) the step's Gram matrix."""

    name = "modo"

    def __init__(self, gamma: float = 0.1, rho: float = 0.1, seed: int | None = None) -> None:
        super().__init__(seed)
        if gamma <= 0 or rho < 0:
            raise ValueError(f"MoDo needs gamma > 0 and rho >= 0, got {gamma}, {rho}")
        self.gamma, self.rho = float(gamma), float(rho)
        self.lam: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        lam = np.full(T, 1.0 / T) if self.lam is None or len(self.lam) != T else self.lam
        self.lam = project_simplex(lam - self.gamma * (M @ lam + self.rho * lam))
        return _coef(self.lam, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.lam is None else {"lambda": torch.from_numpy(self.lam.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.lam = state["lambda"].detach().cpu().double().numpy().copy() if "lambda" in state else None


class SDMGrad(GradientAggregator):
    """SDMGrad (Xiao et al., NeurIPS 2023, Direction-oriented Multi-objective Learning): simplex weights ``w`` kept
    across steps and refined by ``iters`` projected momentum steps on ``½‖J(w + λw̃)‖²`` (`sdmgrad_weights`), the
    update ``J(w + λw̃)/(1 + λ)`` with the mean ``w̃ = 1/T`` as preference. One batch's Gram matrix stands for the
    paper's ``J₁J₂ᵀ`` of two independent batches."""

    name = "sdmgrad"

    def __init__(self, lam: float = 0.3, lr: float = 10.0, momentum: float = 0.5, iters: int = 20,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        if lam < 0 or lr <= 0 or not 0 <= momentum < 1 or iters < 1:
            raise ValueError(f"SDMGrad needs lam >= 0, lr > 0, 0 <= momentum < 1, iters >= 1; got {lam}, {lr}, "
                             f"{momentum}, {iters}")
        self.lam, self.lr, self.momentum, self.iters = float(lam), float(lr), float(momentum), int(iters)
        self.w: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        w0 = np.full(T, 1.0 / T) if self.w is None or len(self.w) != T else self.w
        self.w, coef = sdmgrad_weights(M, w0, self.lr, self.momentum, self.iters, self.lam)
        return _coef(coef, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.w is None else {"w": torch.from_numpy(self.w.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.w = state["w"].detach().cpu().double().numpy().copy() if "w" in state else None


class _BlockState:
    """Helpers for a ``[T, n]`` running statistic kept block by block in a `TaskGradients`' structure."""

    @staticmethod
    def save(blocks: list[tuple[str, torch.Tensor]] | None, key: str) -> dict[str, torch.Tensor]:
        if blocks is None:
            return {}
        out = {}
        for i, (kind, b) in enumerate(blocks):
            out[f"{key}.{i}.{kind}"] = b.detach().clone()
        return out

    @staticmethod
    def load(state: Mapping[str, torch.Tensor], key: str) -> list[tuple[str, torch.Tensor]] | None:
        found = []
        for k, v in state.items():
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == key:
                found.append((int(parts[1]), parts[2], v))
        if not found:
            return None
        return [(kind, v.clone()) for _, kind, v in sorted(found, key=lambda x: x[0])]

    @staticmethod
    def compatible(blocks: list[tuple[str, torch.Tensor]] | None, G: TaskGradients) -> bool:
        return blocks is not None and len(blocks) == len(G.blocks) and all(
            k0 == k1 and b0.shape == b1.shape for (k0, b0), (k1, b1) in zip(blocks, G.blocks, strict=True))

    @staticmethod
    def match(blocks: list[tuple[str, torch.Tensor]], G: TaskGradients) -> list[tuple[str, torch.Tensor]]:
        """Blocks moved to the gradients' devices and dtypes (after a load)."""
        return [(k, b.to(device=g.device, dtype=g.dtype)) for (k, b), (_, g) in zip(blocks, G.blocks, strict=True)]


def _combine_blocks(blocks: Sequence[tuple[str, torch.Tensor]], coef: torch.Tensor) -> list[torch.Tensor]:
    """``Σ_t coef_t y_t`` over block rows: ``[n_i]`` for a dense block, ``[T, m_i]`` for a diagonal one."""
    out = []
    for kind, b in blocks:
        c = coef.to(device=b.device, dtype=b.dtype)
        out.append(c @ b if kind == "dense" else c[:, None] * b)
    return out


def _gram_blocks(blocks: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    return TaskGradients(blocks[0][1].shape[0], list(blocks), [b.shape for _, b in blocks]).gram()


class MoCo(GradientAggregator):
    """MoCo (Fernando et al., ICLR 2023, Mitigating Gradient Bias in Multi-objective Learning): tracked gradients
    ``Y ← Y − β_k(Y − J)`` (the state, ``[T, n]`` kept in the gradients' block structure), simplex weights
    ``λ ← Π_Δ(λ − γ_k(YYᵀ + ρI)λ)``, the update ``Σ λ_t y_t``; ``β_k = β/k^{σ_β}``, ``γ_k = γ/k^{σ_γ}`` (LibMTL's
    decay; the paper's projection onto the simplex where LibMTL takes a softmax)."""

    name = "moco"

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
                 rho: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0 < beta <= 1 or gamma <= 0 or rho < 0 or beta_sigma < 0 or gamma_sigma < 0:
            raise ValueError("MoCo needs 0 < beta <= 1, gamma > 0, rho >= 0 and non-negative decay exponents")
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = (
            float(beta), float(beta_sigma), float(gamma), float(gamma_sigma), float(rho))
        self.y: list[tuple[str, torch.Tensor]] | None = None
        self.lam: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        T = G.n_tasks
        k = self.step + 1
        beta = self.beta / k ** self.beta_sigma
        gamma = self.gamma / k ** self.gamma_sigma
        if not _BlockState.compatible(self.y, G):
            self.y = [(kind, torch.zeros_like(b)) for kind, b in G.blocks]
        assert self.y is not None
        self.y = [(kind, y - beta * (y - g)) for (kind, y), (_, g) in zip(_BlockState.match(self.y, G), G.blocks,
                                                                           strict=True)]
        M = self._host(_gram_blocks(self.y))
        lam = np.full(T, 1.0 / T) if self.lam is None or len(self.lam) != T else self.lam
        self.lam = project_simplex(lam - gamma * ((M + self.rho * np.eye(T)) @ lam))
        coef = _coef(self.lam, G.blocks[0][1])
        self.last_weights = coef
        return _combine_blocks(self.y, coef)

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = _BlockState.save(self.y, "y")
        if self.lam is not None:
            st["lambda"] = torch.from_numpy(self.lam.copy())
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.y = _BlockState.load(state, "y")
        self.lam = state["lambda"].detach().cpu().double().numpy().copy() if "lambda" in state else None


class ExcessMTL(GradientAggregator):
    """ExcessMTL (He et al., ICML 2024, Robust Multi-Task Learning with Excess Risks): simplex task weights moved by
    exponentiated gradient steps towards tasks with a large excess-risk estimate ``Σ g_t²/√(Σ_steps g_t² + 1e-7)``
    (a diagonal AdaGrad Hessian; Eqs. 6-9), each estimate divided by the first step's (the baseline); the update
    ``Σ w_t g_t``. The squared-gradient sums (``[T, n]``, block structure), weights and baseline are the state."""

    name = "excess-mtl"

    def __init__(self, step_size: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if step_size <= 0:
            raise ValueError(f"ExcessMTL step size must be > 0, got {step_size}")
        self.step_size = float(step_size)
        self.sq: list[tuple[str, torch.Tensor]] | None = None
        self.w: torch.Tensor | None = None
        self.initial: torch.Tensor | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        T = G.n_tasks
        ref = G.blocks[0][1]
        if not _BlockState.compatible(self.sq, G):
            self.sq = [(k, torch.zeros_like(b)) for k, b in G.blocks]
            self.w, self.initial = None, None
        assert self.sq is not None
        self.sq = [(k, s + g.pow(2)) for (k, s), (_, g) in zip(_BlockState.match(self.sq, G), G.blocks, strict=True)]
        risk = sum(((g.pow(2) / torch.sqrt(s + 1e-7)).sum(1) for (_, s), (_, g) in zip(self.sq, G.blocks,
                                                                                       strict=True)),
                   torch.zeros(T, dtype=ref.dtype, device=ref.device))
        if self.initial is None:
            self.initial = risk.clone()
        else:
            risk = risk / (self.initial.to(risk) + 1e-7)
        w = torch.full((T,), 1.0 / T, dtype=ref.dtype, device=ref.device) if self.w is None else self.w.to(ref)
        self.w = torch.softmax(torch.log(w) + self.step_size * risk, dim=0)
        return self.w.clone()

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = _BlockState.save(self.sq, "sq")
        if self.w is not None:
            st["w"] = self.w.detach().clone()
        if self.initial is not None:
            st["initial"] = self.initial.detach().clone()
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.sq = _BlockState.load(state, "sq")
        self.w = state["w"].clone() if "w" in state else None
        self.initial = state["initial"].clone() if "initial" in state else None


class DBMTL(GradientAggregator):
    """DB-MTL (Lin et al. 2023, Dual-Balancing Multi-Task Learning): loss-scale balancing by the logarithm of each
    loss (gradients ``∇L_t/(L_t + 1e-8)``) and gradient-magnitude balancing: an EMA ``ĝ_t ← g_t + β_k(ĝ_t − g_t)``
    (``β_k = β/k^σ``; the state, block structure) and the update ``Σ_t w_t (max_u‖ĝ_u‖/‖ĝ_t‖) ĝ_t`` — every task at
    the largest task's gradient norm (LibMTL's sum, divided by T under the default weights)."""

    name = "db-mtl"

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0 <= beta <= 1 or beta_sigma < 0:
            raise ValueError(f"DB-MTL needs 0 <= beta <= 1 and beta_sigma >= 0, got {beta}, {beta_sigma}")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.buf: list[tuple[str, torch.Tensor]] | None = None
        self._w: torch.Tensor | None = None

    def row_scale(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        self._w = weights
        return 1.0 / (losses + 1e-8)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        k = self.step + 1
        beta = self.beta / k ** self.beta_sigma
        if not _BlockState.compatible(self.buf, G) or self.step == 0:
            self.buf = [(kind, torch.zeros_like(b)) for kind, b in G.blocks]
        assert self.buf is not None
        self.buf = [(kind, g + beta * (y - g)) for (kind, y), (_, g) in zip(_BlockState.match(self.buf, G), G.blocks,
                                                                            strict=True)]
        norms = _row_norms2(self.buf).sqrt()
        alpha = norms.max() / (norms + 1e-8)
        w = self._w if self._w is not None else torch.full_like(alpha, 1.0 / G.n_tasks)
        coef = alpha * w.to(alpha)
        self.last_weights = coef
        return _combine_blocks(self.buf, coef)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return _BlockState.save(self.buf, "buf")

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.buf = _BlockState.load(state, "buf")


# ---------------------------------------------------------------------- registry entries

AGGREGATOR_PARAMS: dict[str, tuple[HParam, ...]] = {
    "upgrad": (),
    "dualproj": (),
    "cagrad": (
        HParam("cagrad_c", "float", 0.4, "c: radius of the ball around the mean gradient, relative to its norm",
               low=0.0, space=Space("uniform", 0.1, 0.9)),
        HParam("cagrad_rescale", "int", 1, "divide the update by 1 (0), 1 + c² (1) or 1 + c (2)",
               choices=CAGRAD_RESCALES),
    ),
    "imtl-g": (),
    "aligned-mtl": (
        HParam("aligned_scale", "str", "min", "eigenvalue that sets the aligned gradients' norm: min (the paper), "
               "median, rmse (the mean, the authors' code)", choices=ALIGNED_SCALES),
    ),
    "nash-mtl": (
        HParam("nash_update_every", "int", 1, "recompute the bargaining weights every this many steps", low=1),
        HParam("nash_max_norm", "float", 1.0, "scale the update down to this norm when longer (0: never)", low=0.0),
    ),
    "fairgrad": (
        HParam("fairgrad_alpha", "float", 1.0, "α of α-fairness (1 = Nash-MTL's proportional fairness, 0 = equal "
               "weights)", low=0.0, space=Space("log", 0.1, 10.0)),
    ),
    "config": (),
    "gradvac": (
        HParam("gradvac_beta", "float", 0.5, "β: EMA rate of the target cosine similarities", low=0.0, high=1.0,
               space=Space("log", 1e-3, 1.0)),
    ),
    "graddrop": (),
    "moco": (
        HParam("moco_beta", "float", 0.5, "β: tracking rate of the gradients (β/k^σβ at step k)", low=0.0,
               low_open=True, high=1.0, space=Space("log", 0.01, 1.0)),
        HParam("moco_beta_sigma", "float", 0.5, "σβ: decay exponent of β", low=0.0),
        HParam("moco_gamma", "float", 0.1, "γ: step size of the task weights (γ/k^σγ at step k)", low=0.0,
               low_open=True, space=Space("log", 1e-3, 10.0)),
        HParam("moco_gamma_sigma", "float", 0.5, "σγ: decay exponent of γ", low=0.0),
        HParam("moco_rho", "float", 0.0, "ρ: ℓ2 regularisation of the task weights' update", low=0.0),
    ),
    "sdmgrad": (
        HParam("sdmgrad_lambda", "float", 0.3, "λ: pull of the direction towards the mean gradient", low=0.0,
               space=Space("uniform", 0.1, 1.0)),
        HParam("sdmgrad_lr", "float", 10.0, "step size of the inner weight solver", low=0.0, low_open=True),
        HParam("sdmgrad_momentum", "float", 0.5, "momentum of the inner weight solver", low=0.0, high=1.0,
               high_open=True),
        HParam("sdmgrad_iters", "int", 20, "inner solver steps per training step", low=1),
    ),
    "modo": (
        HParam("modo_gamma", "float", 0.1, "γ: step size of the task weights", low=0.0, low_open=True,
               space=Space("log", 1e-3, 1.0)),
        HParam("modo_rho", "float", 0.1, "ρ: ℓ2 regularisation of the task weights", low=0.0),
    ),
    "excess-mtl": (
        HParam("excess_step", "float", 1.0, "η: step size of the exponentiated weight update", low=0.0,
               low_open=True, space=Space("log", 0.01, 10.0)),
    ),
    "db-mtl": (
        HParam("dbmtl_beta", "float", 0.9, "β: EMA rate of the log-loss gradients (β/k^σ at step k)", low=0.0,
               high=1.0, space=Space("uniform", 0.5, 0.99)),
        HParam("dbmtl_beta_sigma", "float", 0.0, "σ: decay exponent of β", low=0.0),
    ),
}

_MAKERS: dict[str, Callable[[dict[str, Any]], GradientAggregator]] = {
    "upgrad": lambda hp: UPGrad(),
    "dualproj": lambda hp: DualProj(),
    "cagrad": lambda hp: CAGrad(c=hp["cagrad_c"], rescale=hp["cagrad_rescale"]),
    "imtl-g": lambda hp: IMTLG(),
    "aligned-mtl": lambda hp: AlignedMTL(scale_mode=hp["aligned_scale"]),
    "nash-mtl": lambda hp: NashMTL(update_every=hp["nash_update_every"], max_norm=hp["nash_max_norm"]),
    "fairgrad": lambda hp: FairGrad(alpha=hp["fairgrad_alpha"]),
    "config": lambda hp: ConFIG(),
    "gradvac": lambda hp: GradVac(beta=hp["gradvac_beta"]),
    "graddrop": lambda hp: GradDrop(),
    "moco": lambda hp: MoCo(beta=hp["moco_beta"], beta_sigma=hp["moco_beta_sigma"], gamma=hp["moco_gamma"],
                            gamma_sigma=hp["moco_gamma_sigma"], rho=hp["moco_rho"]),
    "sdmgrad": lambda hp: SDMGrad(lam=hp["sdmgrad_lambda"], lr=hp["sdmgrad_lr"], momentum=hp["sdmgrad_momentum"],
                                  iters=hp["sdmgrad_iters"]),
    "modo": lambda hp: MoDo(gamma=hp["modo_gamma"], rho=hp["modo_rho"]),
    "excess-mtl": lambda hp: ExcessMTL(step_size=hp["excess_step"]),
    "db-mtl": lambda hp: DBMTL(beta=hp["dbmtl_beta"], beta_sigma=hp["dbmtl_beta_sigma"]),
}

_TEXT: dict[str, tuple[str, str]] = {
    "upgrad": ("UPGrad: each task gradient projected onto the dual cone of all of them (no task's loss rises to "
               "first order), averaged; T box-constrained T×T QPs by block principal pivoting.",
               "Quinton & Rey 2024 (Jacobian Descent for Multi-Objective Optimization); torchjd"),
    "dualproj": ("DualProj: the mean gradient projected onto the dual cone of the task gradients (one T×T QP).",
                 "Quinton & Rey 2024 (Jacobian Descent for Multi-Objective Optimization); torchjd"),
    "cagrad": ("CAGrad: the update within a ball around the mean gradient that maximises the worst task's "
               "improvement (simplex problem on the Gram matrix, accelerated projected gradient).",
               "Liu et al., NeurIPS 2021 (Conflict-Averse Gradient Descent for Multi-task Learning)"),
    "imtl-g": ("IMTL-G: the combination (weights summing to 1) with equal projections on every unit task "
               "gradient (pseudo-inverse of the Gram matrix).",
               "Liu et al., ICLR 2021 (Towards Impartial Multi-task Learning)"),
    "aligned-mtl": ("Aligned-MTL: task gradients made orthogonal with equal norms through the Gram matrix's "
                    "eigen-decomposition (stable condition number), then averaged.",
                    "Senushkin et al., CVPR 2023 (Independent Component Alignment for Multi-Task Learning)"),
    "nash-mtl": ("Nash-MTL: the Nash bargaining solution, weights α with α_t (Gα)_t = 1 (Newton's method on the "
                 "T×T Gram matrix), update clipped to max_norm.",
                 "Navon et al., ICML 2022 (Multi-Task Learning as a Bargaining Game)"),
    "fairgrad": ("FairGrad: α-fair task weights, (Gw)_t = w_t^(-1/α) (Newton's method on the Gram matrix).",
                 "Ban & Ji, ICML 2024 (Fair Resource Allocation in Multi-Task Learning)"),
    "config": ("ConFIG: the conflict-free direction with equal cosine to every task gradient, with the length of "
               "their summed projections (pseudo-inverse of the unit gradients' Gram matrix).",
               "Liu et al., ICLR 2025 (ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks)"),
    "gradvac": ("GradVac: each task gradient lifted towards an EMA target cosine with the others (random order, "
                "closed-form corrections on the Gram matrix), summed.",
                "Wang et al., ICLR 2021 (Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
                "Massively Multilingual Models)"),
    "graddrop": ("GradDrop: per coordinate of the shared parameters, only the task components of one randomly "
                 "drawn sign (probability: the sign purity) are kept.",
                 "Chen et al., NeurIPS 2020 (Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
                 "Dropout)"),
    "moco": ("MoCo: tracked (bias-corrected) task gradients and simplex weights updated by one projected step "
             "each training step.",
             "Fernando et al., ICLR 2023 (Mitigating Gradient Bias in Multi-objective Learning: A Provably "
             "Convergent Approach)"),
    "sdmgrad": ("SDMGrad: MGDA-like simplex weights regularised towards the mean direction, refined by a few "
                "projected momentum steps per training step.",
                "Xiao et al., NeurIPS 2023 (Direction-oriented Multi-objective Learning: Simple and Provable "
                "Stochastic Algorithms)"),
    "modo": ("MoDo: simplex weights updated by one projected gradient step on the Gram matrix per training step.",
             "Chen et al., NeurIPS 2023 (Three-Way Trade-Off in Multi-Objective Learning: Optimization, "
             "Generalization and Conflict-Avoidance)"),
    "excess-mtl": ("ExcessMTL: simplex task weights raised for tasks with a large excess-risk estimate (diagonal "
                   "AdaGrad Hessian of the per-task gradients), by exponentiated gradient steps.",
                   "He et al., ICML 2024 (Robust Multi-Task Learning with Excess Risks)"),
    "db-mtl": ("DB-MTL: log-loss gradients (loss-scale balancing), EMA-smoothed, each scaled to the largest task's "
               "gradient norm (gradient-magnitude balancing).",
               "Lin et al. 2023 (Dual-Balancing for Multi-Task Learning)"),
}

KINDS = {name: ("weighting" if name in ("excess-mtl", "db-mtl") else "aggregator") for name in _MAKERS}
"""How `mtlkit methods` lists each entry: ExcessMTL and DB-MTL are loss weightings (LibMTL's) computed from
per-task gradients."""

SPECS: dict[str, CombinerSpec] = {
    name: CombinerSpec(name, _TEXT[name][0], _TEXT[name][1], make, params=AGGREGATOR_PARAMS[name],
                       kind=KINDS[name])
    for name, make in _MAKERS.items()
}
"""The named aggregators (`mtlkit.optim.combiners.COMBINERS` includes them): ``METHOD+NAME``."""


def aggregator_names() -> list[str]:
    """The registered aggregator names, in listing order."""
    return list(SPECS)


__all__ = ["SPECS", "AlignedMTL", "CAGrad", "ConFIG", "DBMTL", "DualProj", "ExcessMTL", "FairGrad", "GradDrop",
           "GradVac", "GradientAggregator", "IMTLG", "MoCo", "MoDo", "NashMTL", "SDMGrad", "UPGrad",
           "aligned_mtl_weights", "bound_qp", "cagrad_weights", "config_weights", "dualproj_weights", "fair_weights",
           "gradvac_coefficients", "graddrop_combine", "imtl_g_weights", "project_simplex", "sdmgrad_weights",
           "upgrad_weights"]
