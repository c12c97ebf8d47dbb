"""MGDA-UB (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as Multi-Objective Optimization", the upper-bound
variant) and its min-norm solver.

Per-task gradients of the raw losses ``L_t`` w.r.t. the shared representation ``Z = features["shared"]``; the
min-norm point ``α`` of their convex hull by (pairwise) Frank-Wolfe on the T×T Gram matrix, on the device (at most
``iters`` steps, stopping once the pairwise gap vanishes; on an accelerator the gap is read every 25 steps, so a step
syncs with the host rarely); the shared parameters then receive the gradient of ``(Σ_t w_t)·Σ_t α_t L_t`` — exactly
MGDA-UB's ``Σ_t α_t L_t`` under the default weights ``w_t = 1/T`` (they sum to 1); other weights keep their total,
MGDA picks the split. This is done with a hook on ``Z`` that adds ``Σ_t ((Σw)·α_t − w_t)·∂L_t/∂Z`` to the gradient
reaching it. Task-specific parameters keep their plain gradients ``w_t ∂L_t/∂θ_t``. A model that exposes no
``features["shared"]`` falls back (with a warning, once) to plain MGDA on the shared *parameters*. On per-task input
a row-separable model's representation gradients do not overlap: the Gram matrix is diagonal and the same
Frank-Wolfe steps run on the host with heaps (bit for bit the dense loop's result).

Distributed data parallel: the representation Gram matrix is summed over ranks (each rank holds different rows of
Z, so the global Gram is the sum of the local ones) and the losses the normalisation uses are averaged.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mtlkit.hparams import HParam
from mtlkit.optim.gradients import _add_to_grads, _all_reduce
from mtlkit.optim.per_task import task_gradient_parts
from mtlkit.optim.tape import TaskTape

MGDA_NORMS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: torch.Tensor, iters: int = 250, tol: float = 1e-10) -> torch.Tensor:
    """The min-norm point of the convex hull of T vectors from their Gram matrix: ``argmin_{α∈Δ} αᵀ M α``.

    From the uniform weights, ``iters`` pairwise Frank-Wolfe steps with exact line search (Lacoste-Julien & Jaggi
    2015): mass moves from the support vertex with the largest gradient to the vertex with the smallest. It
    converges linearly, where the plain Frank-Wolfe step of Sener & Koltun's solver converges as O(1/k) and
    zig-zags on faces (at T = 40, 250 plain steps leave ~20% excess norm², pairwise ones ~1e-5). Two tasks are
    solved exactly by one step. Everything stays on ``gram``'s device. The loop stops early once the pairwise gap
    ``(Mα)_v − (Mα)_s`` (zero exactly at the optimum) falls below ``tol`` times the largest diagonal entry; the test
    costs a host sync, so on an accelerator it is made only every 25 steps, on the CPU after every step."""
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square [T, T] matrix, got shape {tuple(gram.shape)}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    T = gram.shape[0]
    M = gram.double()
    if T == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    check_every = 1 if M.device.type == "cpu" else 25
    d = M.diagonal()
    if bool(torch.isfinite(d).all()) and not bool(torch.count_nonzero(M - torch.diag(d))):
        alpha_d = _min_norm_diagonal(d.tolist(), iters, tol, check_every)  # one sync instead of one per check
        return torch.tensor(alpha_d, dtype=M.dtype).to(device=gram.device, dtype=gram.dtype)
    return _min_norm_pairwise(M, iters, tol, check_every).to(gram.dtype)


def _min_norm_pairwise(M: torch.Tensor, iters: int, tol: float, check_every: int) -> torch.Tensor:
    """`min_norm_weights`' pairwise Frank-Wolfe loop on a float64 Gram matrix, on its device."""
    T = M.shape[0]
    eye = torch.eye(T, dtype=M.dtype, device=M.device)
    alpha = torch.full((T,), 1.0 / T, dtype=M.dtype, device=M.device)
    neg_inf = torch.tensor(float("-inf"), dtype=M.dtype, device=M.device)
    stop = tol * float(M.diagonal().max().clamp_min(1e-300))
    for i in range(iters):  # pairwise steps: mass moves from the worst support vertex v to the best vertex s
        Ma = M @ alpha  # half the gradient of αᵀMα
        s = torch.argmin(Ma)
        v = torch.argmax(torch.where(alpha > 0, Ma, neg_inf))
        if i % check_every == 0 and float(Ma[v] - Ma[s]) <= stop:
            break
        curv = (M[s, s] + M[v, v] - 2 * M[s, v]).clamp_min(1e-30)
        step = torch.minimum(((Ma[v] - Ma[s]) / curv).clamp_min(0), alpha[v])  # exact line search on [0, α_v]
        alpha = alpha + step * (eye[s] - eye[v])
    return alpha


def _min_norm_diagonal(d: list[float], iters: int, tol: float, check_every: int) -> list[float]:
    """`min_norm_weights` of a diagonal Gram matrix ``diag(d)`` (the per-task representation gradients of a
    row-separable model never overlap): the very same pairwise Frank-Wolfe steps in float64, bit for bit (``Mα`` is
    ``d_t α_t`` exactly, a step changes two weights), with heaps for the argmin / argmax (ties to the lowest index,
    as torch's), so a step costs O(log T) on the host instead of O(T²) tensor work."""
    T = len(d)
    alpha = [1.0 / T] * T
    ma = [dt * a for dt, a in zip(d, alpha, strict=True)]
    low = [(v, t) for t, v in enumerate(ma)]  # min-heap of (Mα)_t
    high = [(-v, t) for t, v in enumerate(ma)]  # max-heap over the support (α_t > 0)
    heapq.heapify(low)
    heapq.heapify(high)
    stop = tol * max(max(d), 1e-300)
    for i in range(iters):
        while low[0][0] != ma[low[0][1]]:
            heapq.heappop(low)
        while -high[0][0] != ma[high[0][1]] or not alpha[high[0][1]] > 0:
            heapq.heappop(high)
        s, v = low[0][1], high[0][1]
        gap = ma[v] - ma[s]
        if i % check_every == 0 and gap <= stop:
            break
        curv = max(d[s] + d[v] - 2 * (d[s] if s == v else 0.0), 1e-30)
        step = min(max(gap / curv, 0.0), alpha[v])
        if s == v:
            alpha[s] = alpha[s] + step + -step  # eye[s] - eye[v] is 0: α + step·0
        else:
            alpha[s] = alpha[s] + step
            alpha[v] = alpha[v] - step
        for t in (s, v):
            ma[t] = d[t] * alpha[t]
            heapq.heappush(low, (ma[t], t))
            heapq.heappush(high, (-ma[t], t))
    return alpha


class MGDAUB:
    """MGDA-UB (Sener & Koltun 2018): min-norm task weights from the gradients w.r.t. the shared representation
    ``features["shared"]``; see the module docstring for the mechanics, scaling and DDP handling.

    ``normalization``: scale each task gradient before the min-norm problem by 1 (``none``), ``‖g_t‖`` (``l2``),
    ``L_t`` (``loss``) or ``L_t‖g_t‖`` (``loss+``); the weights then apply to the raw losses, as Sener & Koltun
    and LibMTL do."""

    per_task_gradients = True  # the Trainer records a `TaskTape` for it on row-separable models

    def __init__(self, normalization: str = "none", iters: int = 250) -> None:
        if normalization not in MGDA_NORMS:
            raise ValueError(f"MGDA-UB normalization must be one of {', '.join(MGDA_NORMS)}, got {normalization!r}")
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"MGDA-UB iters must be a non-negative integer, got {iters!r}")
        self.normalization, self.iters = normalization, iters
        self._warned = False
        self.last_weights: torch.Tensor | None = None  # α of the latest step (on the device)

    def _weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        gram = gram.detach()
        if self.normalization == "none":
            scale = torch.ones_like(losses)
        else:
            gn = gram.diagonal().clamp_min(0).sqrt()
            ls = _all_reduce(losses.detach().clone(), mean=True)
            scale = {"l2": gn, "loss": ls, "loss+": ls * gn}[self.normalization]
        scale = scale.clamp_min(1e-12)
        return min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.iters)

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError("MGDA-UB needs the task weights w of total = Σ w_t L_t + penalties (weights=...)")
        w = weights.detach().to(losses.dtype)
        z = (features or {}).get("shared")
        if z is not None and z.requires_grad:
            Gz = task_gradient_parts(losses, z, tape=tape)  # [T, rows·dims]: this rank's rows of Z
            with torch.no_grad():
                alpha = self._weights(_all_reduce(Gz.gram(), mean=False), losses)
                coef = w.sum() * alpha - w
                delta = Gz.combine(coef)[0]
            self.last_weights = alpha
            handle = z.register_hook(lambda g: g + delta.to(g.dtype))
            try:
                total.backward()
            finally:
                handle.remove()
            return
        if not self._warned:
            warnings.warn("MGDA-UB: the model exposes no features['shared'] representation; falling back to MGDA "
                          "on the gradients of the shared parameters", stacklevel=2)
            self._warned = True
        params = [p for p in shared if p.requires_grad]
        G = task_gradient_parts(losses, params, tape=tape)
        G.all_reduce(mean=True)
        with torch.no_grad():
            alpha = self._weights(G.gram(), losses)
            deltas = G.combine(w.sum() * alpha - w)
        self.last_weights = alpha
        total.backward()
        _add_to_grads(params, deltas)

    def __repr__(self) -> str:
        return f"MGDAUB(normalization={self.normalization!r}, iters={self.iters})"


MGDA_PARAMS: tuple[HParam, ...] = (
    HParam("mgda_norm", "str", "none", "scaling of each task gradient before the min-norm problem: none, l2 ‖g_t‖, "
           "loss L_t, loss+ L_t‖g_t‖ (Sener & Koltun's options)", choices=MGDA_NORMS),
    HParam("mgda_iters", "int", 250, "Frank-Wolfe iterations of the min-norm solver at most (LibMTL's MAX_ITER; "
           "it stops early once converged)", low=1),
)
