"""Proximal operators of TOMATO's topic-task sparsity penalties (TOMATO, Section "Optimization", Eq. 9-12).

TOMATO minimises ``loss + λ·Ω(Θˢ)`` by proximal SGD: after each SGD step with learning rate r, the sparse part
``Θˢ`` is replaced by the solution of Eq. 9,

    argmin_Θ  1/(2λr)·‖Θ − Θ̄‖²  +  Ω(Θ)   ==   argmin_Θ  ½‖Θ − Θ̄‖²  +  step·Ω(Θ),   step = λ·r,

i.e. by ``prox_{step·Ω}(Θ̄)``. Both penalties act on *group vectors*: ``θ_{k,t}`` is every parameter of the
topic-task module g_{k,t} (all layers, weights and biases) flattened and concatenated (paper Eq. 7).

* :func:`prox_element` — Ω^el(Θ) = Σ_g ‖θ_g‖₂ (Eq. 3, the group-lasso / ℓ_{2,1,1} norm over all (k, t));
  its prox is group soft-thresholding, Eq. 10.
* :func:`prox_exclusive` — Ω^ex(Θ) = ½ Σ_k (Σ_t ‖θ_{k,t}‖₂)² (Eq. 4, the squared ℓ_{2,1,2} norm, *with* the ½);
  its prox is Eq. 11 with the per-topic threshold A_k of Eq. 12, computed by Algorithm 1 (sort, prefix sums,
  max of the "diluted averages" S_i / (1/step + i)), valid by Lemma 2. The ½ of Eq. 4 is what makes Eq. 12's
  threshold come out as written: without it the prox of step·(Σ_t‖θ_t‖)² would have the threshold
  S_i / (1/(2·step) + i). (The paper's "1/(λt)" in Eq. 12 is a typo for 1/(λr).)

Both operators are of the form ``θ_g ← c_g·θ_g`` with one scalar ``c_g ∈ [0, 1]`` per group, computed from the
group norms alone; :func:`element_factor` / :func:`exclusive_factor` expose that map so a penalty whose group
vectors are spread over several parameter tensors can be applied without concatenating them
(:func:`group_prox_step`, the Trainer's ``prox(model, lr)`` hook).

They are plain tensor maps, meant to run under ``torch.no_grad()`` (no gradient flows through them); they keep
the input's dtype and device; ``prox_*`` return a new tensor, ``prox_*_`` update in place.

**ε (MTSEM option).** The authors' code adds ε = 1e-4·step to norms in denominators "to avoid NaN". The
default here (``eps=None``) is the exact prox, with a zero-norm group guarded explicitly (its output is 0,
never NaN). Passing ``eps`` reproduces the code's formulas (see each function); the result then differs from
the exact prox by a relative O(eps/‖θ_g‖).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "element_factor",
    "exclusive_factor",
    "exclusive_threshold",
    "group_prox_step",
    "prox_element",
    "prox_element_",
    "prox_exclusive",
    "prox_exclusive_",
]

Kind = Literal["element", "exclusive"]


def _check_float(theta: Tensor) -> None:
    if not theta.is_floating_point():
        raise TypeError(f"proximal operators need a floating-point tensor, got {theta.dtype}")


def _as_step(step: float | Tensor, like: Tensor) -> Tensor:
    """``step`` as a tensor of ``like``'s dtype/device; a Python number is checked to be ≥ 0 (a tensor is not,
    to avoid a device sync)."""
    if not isinstance(step, Tensor):
        step = float(step)
        if not step >= 0:  # also rejects NaN
            raise ValueError(f"step (λ·lr) must be ≥ 0, got {step}")
    return torch.as_tensor(step, dtype=like.dtype, device=like.device)


def _check_eps(eps: float | None) -> None:
    if eps is not None and not eps >= 0:
        raise ValueError(f"eps must be ≥ 0 or None, got {eps}")


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0`` and 0 elsewhere (``num`` is 0 there in every use below: no 0/0)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def element_factor(norms: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """Per-group scale ``c_g`` of the element prox (Eq. 10) from the group norms ``a_g = ‖θ_g‖₂``.

    Exact (``eps=None``): ``c_g = max(0, 1 − step/a_g) = relu(a_g − step)/a_g``, and ``c_g = 0`` for a_g = 0.
    Groups with ``a_g ≤ step`` get exactly 0. With ``eps``: MTSEM's ``clip(1 − step/(a_g + eps), 0, 1)``,
    which zeroes the groups with ``a_g ≤ step − eps``.

    ``step`` is a number or a tensor broadcastable to ``norms``.
    """
    _check_eps(eps)
    step_t = _as_step(step, norms)
    if eps is None:
        return _safe_ratio(torch.relu(norms - step_t), norms)
    den = norms + eps
    return _safe_ratio(den - step_t, den).clamp(0.0, 1.0)


def exclusive_threshold(norms: Tensor, step: float | Tensor) -> Tensor:
    """The per-topic threshold ``A_k`` of Eq. 12 by Algorithm 1, for ``norms [..., T]`` (task axis last).

    With ``a_(1) ≥ … ≥ a_(T)`` the sorted norms and ``S_i = Σ_{j≤i} a_(j)``,
    ``A_k = max_i S_i / (1/step + i) = max_i step·S_i / (1 + step·i)`` — by Lemma 2 the maximum of the diluted
    averages over all subsets of tasks is attained by a prefix of the sorted norms. One sort per topic, batched
    over all leading axes: O(T log T) per topic. ``step = 0`` gives 0 (identity prox); ``step = inf`` gives the
    largest norm (everything zeroed), the paper's λ → ∞ limit. Returns a tensor of shape ``norms.shape[:-1]``.

    ``step`` is a number or a tensor broadcastable to ``norms.shape[:-1]`` (one step per topic).
    """
    step_t = _as_step(step, norms)
    if norms.shape[-1] == 0:
        return torch.zeros(norms.shape[:-1], dtype=norms.dtype, device=norms.device)
    a_sorted, _ = torch.sort(norms, dim=-1, descending=True)
    prefix = torch.cumsum(a_sorted, dim=-1)
    i = torch.arange(1, norms.shape[-1] + 1, dtype=norms.dtype, device=norms.device)
    # S_i / (1/step + i): exact at both ends (1/0 = inf → 0; 1/inf = 0 → S_i/i), no inf/inf.
    diluted = prefix / (torch.reciprocal(step_t).unsqueeze(-1) + i)
    return diluted.amax(dim=-1)


def exclusive_factor(norms: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """Per-group scale ``c_{k,t}`` of the exclusive prox (Eq. 11) from the norms ``a [..., T]`` (task axis last).

    ``c_{k,t} = relu(a_{k,t} − A_k) / a_{k,t}`` (0 where a = 0), with ``A_k`` from :func:`exclusive_threshold`.
    With ``eps``: MTSEM's ``relu(a − A_k)/(a + eps)`` (same zero pattern, slightly less than the exact scale).
    """
    _check_eps(eps)
    thr = exclusive_threshold(norms, step).unsqueeze(-1)
    num = torch.relu(norms - thr)
    return _safe_ratio(num, norms if eps is None else norms + eps)


def _group_norms(theta: Tensor) -> Tensor:
    return torch.linalg.vector_norm(theta, dim=-1)


def prox_element(theta: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """TOMATO's topic-task-element prox (Eq. 10): group soft-thresholding of every group vector.

    Returns ``argmin_x ½‖x − θ‖² + step·Σ_g ‖x_g‖₂`` (Eq. 9 with Ω = Ω^el of Eq. 3, ``step = λ·r``), i.e.
    ``x_g = max(0, 1 − step/‖θ_g‖₂)·θ_g``.

    Args:
        theta: ``[..., n]`` — any leading shape (e.g. ``[G, n]`` or ``[K, T, n]``) indexes the groups, the
            LAST axis is the group vector (the flattened, concatenated parameters of one topic-task module).
        step: ``λ·lr`` ≥ 0; a number, or a tensor broadcastable to ``theta.shape[:-1]`` (one step per group).
        eps: ``None`` (default) for the exact prox; a number for MTSEM's ``clip(1 − step/(‖θ_g‖ + eps), 0, 1)``
            (the authors use eps = 1e-4·step), which keeps groups with ``step − eps < ‖θ_g‖ ≤ step`` alive.

    Groups with ``‖θ_g‖ ≤ step`` become exactly 0, all-zero groups stay 0 (no NaN). Same dtype and device as
    ``theta``; a new tensor (see :func:`prox_element_` for the in-place form).
    """
    _check_float(theta)
    return theta * element_factor(_group_norms(theta), step, eps).unsqueeze(-1)


def prox_element_(theta: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """In-place :func:`prox_element`; returns ``theta``."""
    _check_float(theta)
    return theta.mul_(element_factor(_group_norms(theta), step, eps).unsqueeze(-1))


def prox_exclusive(theta: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """TOMATO's topic-task-exclusive prox (Lemma 1, Eq. 11-12; threshold by Algorithm 1).

    For every topic k, returns ``argmin_x ½ Σ_t ‖x_t − θ_{k,t}‖² + step·½ (Σ_t ‖x_t‖₂)²`` — Eq. 9 with
    Ω = Ω^ex of Eq. 4 (the ½ included), ``step = λ·r`` — that is
    ``x_{k,t} = max(0, 1 − A_k/‖θ_{k,t}‖₂)·θ_{k,t}``, ``A_k = max_i S_i/(1/step + i)`` over the prefix sums
    ``S_i`` of the task norms sorted in decreasing order. Topics are independent; tasks within a topic compete.

    Args:
        theta: ``[K, T, n]`` or more generally ``[..., T, n]``: the second-to-last axis is the task axis the
            penalty couples, the last one the group vector, all leading axes are independent topics.
        step: ``λ·lr`` ≥ 0; a number, or a tensor broadcastable to ``theta.shape[:-2]`` (one step per topic).
        eps: ``None`` (default) for the exact prox; a number for MTSEM's ``relu(‖θ‖ − A_k)/(‖θ‖ + eps)·θ``.

    Properties: tasks with ``‖θ_{k,t}‖ ≤ A_k`` become exactly 0; for finite step the largest-norm task of a topic
    is never zeroed (A_k < max_t ‖θ_{k,t}‖, up to rounding when 1/step is below the float resolution of T);
    all-zero input gives zeros (no NaN). Batched: one sort per topic, no loop over topics or tasks. Same dtype and
    device as ``theta``; a new tensor (see :func:`prox_exclusive_` for the in-place form).
    """
    _check_float(theta)
    if theta.dim() < 2:
        raise ValueError(f"prox_exclusive needs theta [..., T, n], got shape {tuple(theta.shape)}")
    return theta * exclusive_factor(_group_norms(theta), step, eps).unsqueeze(-1)


def prox_exclusive_(theta: Tensor, step: float | Tensor, eps: float | None = None) -> Tensor:
    """In-place :func:`prox_exclusive`; returns ``theta``."""
    _check_float(theta)
    if theta.dim() < 2:
        raise ValueError(f"prox_exclusive needs theta [..., T, n], got shape {tuple(theta.shape)}")
    return theta.mul_(exclusive_factor(_group_norms(theta), step, eps).unsqueeze(-1))


def group_prox_step(
    params: Callable[[nn.Module], Sequence[Tensor]],
    kind: Kind,
    lam: float,
    *,
    group_ndim: int = 2,
    eps_rel: float | None = None,
) -> Callable[[nn.Module, float], None]:
    """A Trainer proximal step ``prox(model, lr)`` applying TOMATO's prox with ``step = lam·lr`` in place.

    Args:
        params: ``model -> tensors`` whose first ``group_ndim`` axes index the groups (e.g. every θˢ weight and
            bias ``[K, T, ...]`` of the topic-task modules). A group vector is the concatenation over all the
            returned tensors of their trailing entries — the paper's "flatten and concatenate" (Eq. 7) — and is
            never materialised: squared norms are summed per tensor, then each tensor is scaled in place.
        kind: ``"element"`` (Eq. 10, every group independent) or ``"exclusive"`` (Eq. 11-12, the LAST group
            axis is the task axis coupled within each topic; needs ``group_ndim ≥ 1``).
        lam: the penalty strength λ ≥ 0 of Eq. 8 (0 makes the step a no-op).
        group_ndim: how many leading axes index groups (2 for ``[K, T, ...]``).
        eps_rel: ``None`` for the exact prox; MTSEM's stabiliser is ``eps_rel=1e-4`` (eps = 1e-4·λ·lr).
    """
    if kind not in ("element", "exclusive"):
        raise ValueError(f"kind must be 'element' or 'exclusive', got {kind!r}")
    if not lam >= 0:
        raise ValueError(f"lam (λ) must be ≥ 0, got {lam}")
    if group_ndim < (1 if kind == "exclusive" else 0):
        raise ValueError(f"group_ndim must be ≥ {1 if kind == 'exclusive' else 0} for kind={kind!r}")
    factor_fn = element_factor if kind == "element" else exclusive_factor

    def prox(model: nn.Module, lr: float) -> None:
        step = lam * float(lr)
        if step == 0:
            return
        tensors = list(params(model))
        if not tensors:
            return
        lead = tensors[0].shape[:group_ndim]
        for p in tensors:
            if p.shape[:group_ndim] != lead:
                raise ValueError(f"prox group tensors disagree on the group axes: {tuple(p.shape)} vs {tuple(lead)}")
        with torch.no_grad():
            dtype = tensors[0].dtype
            for p in tensors[1:]:
                dtype = torch.promote_types(dtype, p.dtype)
            sq = sum(p.reshape(*lead, -1).to(dtype).pow(2).sum(-1) for p in tensors)
            assert isinstance(sq, Tensor)
            eps = None if eps_rel is None else eps_rel * step
            factor = factor_fn(sq.sqrt(), step, eps)
            for p in tensors:
                p.mul_(factor.reshape(*lead, *([1] * (p.dim() - group_ndim))).to(p.dtype))

    return prox
