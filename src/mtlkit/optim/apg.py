"""Accelerated proximal gradient (FISTA, Beck & Teboulle 2009) on torch tensors, and the proximal maps the
shallow MTL solvers need: elementwise soft-thresholding (lasso), group soft-thresholding along one axis
(ℓ2,1 over feature rows, RMTL's task-wise group norm) and singular value soft-thresholding (trace norm).

The solver minimises ``F(p) = f(p) + g(p)`` over a tuple of tensors ``p``: ``f`` smooth (its gradient by
autograd), ``g`` with a cheap prox. Every tensor may hold all T tasks on its first axis: one step is a few
batched einsums whatever T is; the step size is shared by all tasks (the penalties couple them).

Backtracking: the local Lipschitz estimate ``L`` starts at ``lipschitz`` (or 1) and is multiplied by ``eta``
until ``f(p⁺) ≤ f(y) + ⟨∇f(y), p⁺ − y⟩ + L/2‖p⁺ − y‖²``; it never decreases, so a good initial estimate (see
:func:`power_lipschitz`) saves work. Restart (O'Donoghue & Candès 2015): momentum resets whenever the
objective goes up, which keeps the iterates monotone in practice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtlkit.optim.prox import element_factor

__all__ = ["APGResult", "apg", "power_lipschitz", "prox_group", "prox_trace", "soft_threshold"]

Params = tuple[Tensor, ...]


# ---------------------------------------------------------------------- proximal maps
def soft_threshold(x: Tensor, step: float | Tensor) -> Tensor:
    """``argmin_z ½‖z − x‖² + step·‖z‖₁`` elementwise: ``sign(x)·max(|x| − step, 0)`` (the lasso prox)."""
    _check_step(step)
    return torch.sign(x) * torch.relu(x.abs() - step)


def prox_group(x: Tensor, step: float | Tensor, dim: int | Sequence[int] = -1) -> Tensor:
    """``argmin_z ½‖z − x‖² + step·Σ_g ‖z_g‖₂`` where a group ``g`` is every slice along ``dim``: each group is
    scaled by ``max(0, 1 − step/‖x_g‖)`` (0 for a zero group). ``x`` [T, d] with ``dim=0`` is the ℓ2,1 prox
    over feature rows (all tasks' weights of one feature); ``dim=1`` is RMTL's task-wise group prox.

    Uses `mtlkit.optim.prox.element_factor`, TOMATO's group soft-threshold factor."""
    _check_step(step)
    norms = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return x * element_factor(norms, step)


def prox_trace(x: Tensor, step: float | Tensor) -> Tensor:
    """``argmin_z ½‖z − x‖²_F + step·‖z‖_*`` (singular value soft-thresholding, Cai et al. 2010), batched over
    leading axes: ``U·diag(max(σ − step, 0))·Vᵀ``."""
    _check_step(step)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return (u * torch.relu(s - step).unsqueeze(-2)) @ vh


def _check_step(step: float | Tensor) -> None:
    if not isinstance(step, Tensor) and not float(step) >= 0:
        raise ValueError(f"a prox step must be >= 0, got {step}")


# ---------------------------------------------------------------------- Lipschitz estimate
def power_lipschitz(z: Tensor, weights: Tensor | None = None, n_iter: int = 30) -> Tensor:
    """Largest eigenvalue of ``Zᵀ diag(weights) Z`` per leading batch entry by power iteration, for ``z``
    [..., n, k] (rows weighted, e.g. by a mask over the task's row count); returns [...]. A slight
    overestimate (×1.01) so it can seed a backtracking line search."""
    w = torch.ones(z.shape[:-1], dtype=z.dtype, device=z.device) if weights is None else weights.to(z.dtype)
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(*z.shape[:-2], z.shape[-1], 1, generator=g, dtype=z.dtype).to(z.device)
    lam = torch.zeros(z.shape[:-2], dtype=z.dtype, device=z.device)
    for _ in range(n_iter):
        v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(1e-300)
        zv = z @ v
        av = z.transpose(-1, -2) @ (w.unsqueeze(-1) * zv)
        lam = (v * av).sum((-2, -1))
        v = av
    return lam * 1.01


# ---------------------------------------------------------------------- solver
@dataclass
class APGResult:
    """The solution ``params``, iterations run, whether the tolerance was met, the objective per iteration
    (when a penalty value was given, else the smooth part) and the final Lipschitz estimate."""

    params: Params
    n_iter: int
    converged: bool
    objective: list[float] = field(default_factory=list)
    lipschitz: float = 1.0


def _value_and_grad(f: Callable[[Params], Tensor], p: Params) -> tuple[Tensor, Params]:
    with torch.enable_grad():
        q = tuple(t.detach().requires_grad_(True) for t in p)
        val = f(q)
        grads = torch.autograd.grad(val, q)
    return val.detach(), tuple(g.detach() for g in grads)


def _dot(a: Params, b: Params) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


@torch.no_grad()
def apg(
    smooth: Callable[[Params], Tensor],
    prox: Callable[[Params, float], Params],
    params: Sequence[Tensor],
    penalty: Callable[[Params], Tensor] | None = None,
    lipschitz: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    eta: float = 2.0,
    restart: bool = True,
) -> APGResult:
    """Minimise ``smooth(p) + penalty(p)`` by FISTA with backtracking, from ``params``.

    ``prox(p, step)`` must return ``argmin_z ½‖z − p‖² + step·penalty(z)``; ``penalty`` (its value) is only
    used for restarts and the reported objective. Stops when ``‖p_k − p_{k−1}‖ ≤ tol·max(1, ‖p_{k−1}‖)``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if not eta > 1:
        raise ValueError(f"eta (backtracking factor) must be > 1, got {eta}")
    L = float(lipschitz) if lipschitz is not None and lipschitz > 0 else 1.0
    x = tuple(t.detach().clone() for t in params)
    y = x
    t_k = 1.0

    def total(p: Params, fp: Tensor) -> float:
        return float(fp + penalty(p)) if penalty is not None else float(fp)

    fx = smooth(x)
    obj = [total(x, fx)]
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        fy, gy = _value_and_grad(smooth, y)
        while True:
            x_new = prox(tuple(a - b / L for a, b in zip(y, gy, strict=True)), 1.0 / L)
            diff = tuple(a - b for a, b in zip(x_new, y, strict=True))
            f_new = smooth(x_new)
            bound = fy + _dot(gy, diff) + 0.5 * L * _dot(diff, diff)
            if float(f_new) <= float(bound) + 1e-12 * abs(float(fy)) or L > 1e300:
                break
            L *= eta
        F_new = total(x_new, f_new)
        step = tuple(a - b for a, b in zip(x_new, x, strict=True))
        change = float(_dot(step, step)) ** 0.5
        scale = max(1.0, float(_dot(x, x)) ** 0.5)
        if restart and F_new > obj[-1]:
            t_k = 1.0  # objective went up: drop the momentum, take a plain proximal step next time
            y = x_new
        else:
            t_next = (1.0 + (1.0 + 4.0 * t_k * t_k) ** 0.5) / 2.0
            beta = (t_k - 1.0) / t_next
            y = tuple(a + beta * s for a, s in zip(x_new, step, strict=True))
            t_k = t_next
        x = x_new
        obj.append(F_new)
        if change <= tol * scale:
            converged = True
            break
    return APGResult(params=x, n_iter=it, converged=converged, objective=obj, lipschitz=L)
