"""The small problems of the gradient aggregators (`mtlkit.optim.aggregators`), on the host in float64 numpy: each
takes the T×T Gram matrix ``M = G Gᵀ`` of the per-task gradients (or its pieces) and returns task weights or
coefficients — simplex projection, box-constrained QPs by block principal pivoting (UPGrad, DualProj), CAGrad's
simplex problem (FISTA + Newton), IMTL-G, Aligned-MTL, α-fair weights (Newton: Nash-MTL, FairGrad), ConFIG,
GradVac's rounds, SDMGrad's inner solver — plus GradDrop's sign selection on the gradient blocks. ``O(T³)`` each;
no Python loop over tasks of n-dimensional vectors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


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
