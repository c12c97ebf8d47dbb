"""Tensor trace norms of a stack of per-task weights (Yang & Hospedales, "Trace Norm Regularised Deep Multi-Task
Learning", Eq. 1-3), with the task axis LAST: ``W`` is ``[D_1, ..., D_{N-1}, T]``.

* ``"laf"`` (Eq. 1): ``‖W_(N)‖_*``, the nuclear norm of the task-mode unfolding; it has the same singular values
  as the ``(∏D) × T`` matrix ``W.reshape(-1, T)``.
* ``"tucker"`` (Eq. 2): ``Σ_{i=1..N} ‖W_(i)‖_*`` over ALL modes, the task mode included, where the mode-i
  unfolding ``W_(i)`` moves axis i to the front and reshapes to ``(D_i, ∏ rest)``.
* ``"tt"`` (Eq. 3): ``Σ_{j=1..N-1} ‖W_[j]‖_*`` with ``W_[j] = reshape(W, [D_1⋯D_j, D_{j+1}⋯D_N])``, a row-major
  reshape with no permutation (so it depends on the axis order: use `to_paper_layout` for PyTorch kernels).

The per-term weights γ_i of the paper are left to the caller (`trace_norm_terms` gives the terms). Gradients flow
through the singular values only (``torch.linalg.svdvals(M).sum()``, whose backward is ``U Vᵀ``, the subgradient
of Watson 1992): no gradient through U or V, so repeated singular values are harmless.

Tucker's unfoldings are very wide (``D_i × ∏rest``, e.g. 28 × 8896 for a 28→64 layer of 139 tasks), and the
backward of an SVD needs the full U and V of each one, every step. When a gradient is needed, `tucker` norms are
therefore taken from the small Gram matrix of each unfolding instead (`nuclear_norm_gram`: ``M Mᵀ`` in float64,
its eigen-decomposition, ``‖M‖_* = Σ √λ_i`` and the gradient ``U Σ⁻¹ Uᵀ M = U Vᵀ``): the same value and subgradient
up to float32 rounding, about 3× cheaper at T = 139. Without a gradient (analysis) `svdvals` is used as before.
"""

from __future__ import annotations

import math

import torch

from mtlkit.errors import MtlkitError, UnknownNameError

# re-exported: the layout helpers live in nn (a layer may use them without importing a method)
from mtlkit.nn.layouts import from_paper_layout as from_paper_layout
from mtlkit.nn.layouts import to_paper_layout as to_paper_layout

KINDS = ("laf", "tucker", "tt")


def unfold(W: torch.Tensor, mode: int) -> torch.Tensor:
    """The mode-``mode`` unfolding: axis ``mode`` moved first, the rest flattened in order: ``(D_mode, ∏rest)``."""
    if W.dim() < 1:
        raise MtlkitError("unfold needs a tensor with at least one axis")
    mode = _axis(mode, W.dim())
    return torch.movedim(W, mode, 0).reshape(W.shape[mode], -1)


def tt_unfold(W: torch.Tensor, j: int) -> torch.Tensor:
    """The TT unfolding ``W_[j]``: a row-major reshape to ``(D_1⋯D_j, D_{j+1}⋯D_N)``, ``1 ≤ j ≤ N-1``."""
    if not 1 <= j <= W.dim() - 1:
        raise MtlkitError(f"TT unfolding index must be in 1..{W.dim() - 1} for a {W.dim()}-way tensor, got {j}")
    return W.reshape(math.prod(W.shape[:j]), math.prod(W.shape[j:]))


def nuclear_norm(M: torch.Tensor) -> torch.Tensor:
    """Sum of the singular values of a matrix; its gradient is ``U Vᵀ`` (no U/V derivative terms)."""
    return torch.linalg.svdvals(M).sum()


class _GramNuclearNorm(torch.autograd.Function):
    """``‖M‖_*`` from the eigenvalues of the smaller Gram matrix (``M Mᵀ`` or ``Mᵀ M``) in float64; backward
    ``U Σ⁻¹ Uᵀ M`` (= ``U Vᵀ``) over the singular values above 1e-7 × the largest (smaller ones lie below the
    resolution of a float32 SVD: the subgradient drops their arbitrary singular-vector pairs, a valid choice)."""

    @staticmethod
    def forward(ctx: object, M: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        X = M.detach().double()
        wide = X.shape[0] <= X.shape[1]
        lam, U = torch.linalg.eigh(X @ X.T if wide else X.T @ X)
        s = lam.clamp_min(0).sqrt()
        keep = s > 1e-7 * s.max()
        ctx.save_for_backward(X, U, s, keep)  # type: ignore[attr-defined]
        ctx.wide = wide  # type: ignore[attr-defined]
        return s.sum().to(M.dtype)

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        X, U, s, keep = ctx.saved_tensors  # type: ignore[attr-defined]
        inv = torch.where(keep, g.double() / s.clamp_min(1e-300), torch.zeros_like(s))
        P = (U * inv) @ U.T  # g · U Σ⁻¹ Uᵀ, small
        return (P @ X if ctx.wide else X @ P).to(g.dtype)  # type: ignore[attr-defined]


def nuclear_norm_gram(M: torch.Tensor) -> torch.Tensor:
    """`nuclear_norm` through the eigen-decomposition of the smaller Gram matrix of ``M`` (float64): the same value
    and subgradient ``U Vᵀ`` up to float32 rounding, without the SVD's full U and V (see `_GramNuclearNorm`)."""
    return _GramNuclearNorm.apply(M)


def trace_norm_terms(W: torch.Tensor, kind: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The nuclear norms that make up ``tensor_trace_norm(W, kind)``, as a 1-D tensor (1, N or N-1 terms)."""
    key = _kind(kind)
    if not isinstance(W, torch.Tensor) or W.dim() < 2:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise MtlkitError(f"tensor_trace_norm needs a tensor W [..., T] with at least 2 axes, got {shape}")
    if not W.is_floating_point():
        raise MtlkitError(f"tensor_trace_norm needs a floating-point tensor, got {W.dtype}")
    Wc = W if dtype is None else W.to(dtype)
    if key == "laf":
        mats = [Wc.reshape(-1, Wc.shape[-1])]
    elif key == "tucker":
        mats = [unfold(Wc, i) for i in range(Wc.dim())]
        if torch.is_grad_enabled() and Wc.requires_grad:  # the SVD's backward needs full U, V: take the Gram route
            return torch.stack([nuclear_norm_gram(m) for m in mats]).to(W.dtype)
    else:
        mats = [tt_unfold(Wc, j) for j in range(1, Wc.dim())]
    return torch.stack([nuclear_norm(m) for m in mats]).to(W.dtype)


def tensor_trace_norm(W: torch.Tensor, kind: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Tensor trace norm of ``W [..., T]`` (task axis last); ``kind`` "laf" | "tucker" | "tt"; optional ``dtype``."""
    return trace_norm_terms(W, kind, dtype=dtype).sum()


def _kind(kind: str) -> str:
    """The normalised kind name, or an `UnknownNameError` listing the known kinds."""
    key = str(kind).lower()
    if key not in KINDS:
        raise UnknownNameError(f"unknown tensor trace norm kind {kind!r}; known: {', '.join(KINDS)}")
    return key


def _axis(mode: int, ndim: int) -> int:
    """A non-negative axis index (negative counts from the end), or a `MtlkitError`."""
    if not -ndim <= mode < ndim:
        raise MtlkitError(f"mode {mode} is out of range for a {ndim}-way tensor")
    return mode % ndim
