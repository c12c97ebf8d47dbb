"""Tensor trace norms (TNRDMTL Eq. 1-3) against numpy nuclear norms of independently built unfoldings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtlkit.errors import MtlkitError
from mtlkit.methods.trace_norm import (
    from_paper_layout,
    tensor_trace_norm,
    to_paper_layout,
    trace_norm_terms,
    unfold,
)


def nuc(M: np.ndarray) -> float:
    """Numpy's nuclear norm."""
    return float(np.linalg.norm(M, "nuc"))


def mode_unfolding_loops(A: np.ndarray, i: int) -> np.ndarray:
    """Mode-i unfolding by explicit loops: row = index on axis i, column = the other indices in row-major order."""
    rest = [s for k, s in enumerate(A.shape) if k != i]
    M = np.zeros((A.shape[i], int(np.prod(rest))))
    for idx in itertools.product(*[range(s) for s in A.shape]):
        others = [idx[k] for k in range(A.ndim) if k != i]
        col = int(np.ravel_multi_index(others, rest)) if rest else 0
        M[idx[i], col] = A[idx]
    return M


def tt_unfolding_loops(A: np.ndarray, j: int) -> np.ndarray:
    """W_[j] by explicit loops: row = first j indices, column = the rest (both row-major)."""
    rows, cols = A.shape[:j], A.shape[j:]
    M = np.zeros((int(np.prod(rows)), int(np.prod(cols))))
    for idx in itertools.product(*[range(s) for s in A.shape]):
        M[np.ravel_multi_index(idx[:j], rows), np.ravel_multi_index(idx[j:], cols)] = A[idx]
    return M


SHAPES = [(4, 3, 5), (2, 3, 2, 4, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_laf_matches_numpy(shape: tuple[int, ...]) -> None:
    A = np.random.default_rng(0).normal(size=shape)
    T = shape[-1]
    expected = nuc(A.reshape(-1, T))
    assert nuc(mode_unfolding_loops(A, A.ndim - 1)) == pytest.approx(expected, rel=1e-10)  # T × ∏D: same σ
    got = tensor_trace_norm(torch.from_numpy(A), "laf")
    assert got.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_tucker_matches_numpy(shape: tuple[int, ...]) -> None:
    A = np.random.default_rng(1).normal(size=shape)
    expected = sum(nuc(mode_unfolding_loops(A, i)) for i in range(A.ndim))  # all modes, task mode included
    moved = sum(nuc(np.moveaxis(A, i, 0).reshape(A.shape[i], -1)) for i in range(A.ndim))
    assert moved == pytest.approx(expected, rel=1e-10)
    assert tensor_trace_norm(torch.from_numpy(A), "tucker").item() == pytest.approx(expected, rel=1e-10)
    for i in range(A.ndim):
        np.testing.assert_array_equal(unfold(torch.from_numpy(A), i).numpy(), mode_unfolding_loops(A, i))


@pytest.mark.parametrize("shape", SHAPES)
def test_tt_matches_numpy(shape: tuple[int, ...]) -> None:
    A = np.random.default_rng(2).normal(size=shape)
    expected = [nuc(tt_unfolding_loops(A, j)) for j in range(1, A.ndim)]
    got = trace_norm_terms(torch.from_numpy(A), "tt")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    assert tensor_trace_norm(torch.from_numpy(A), "TT").item() == pytest.approx(sum(expected), rel=1e-10)


def test_matrix_case_all_kinds_agree() -> None:
    A = np.random.default_rng(3).normal(size=(6, 4))
    W = torch.from_numpy(A)
    assert tensor_trace_norm(W, "tt").item() == pytest.approx(nuc(A), rel=1e-10)
    assert tensor_trace_norm(W, "laf").item() == pytest.approx(nuc(A), rel=1e-10)
    assert tensor_trace_norm(W, "tucker").item() == pytest.approx(2 * nuc(A), rel=1e-10)


def test_identical_tasks_are_rank_one() -> None:
    w = np.random.default_rng(4).normal(size=(3, 4, 2))
    T = 5
    A = np.stack([w] * T, axis=-1)
    assert tensor_trace_norm(torch.from_numpy(A), "laf").item() == pytest.approx(np.sqrt(T) * np.linalg.norm(w))


def test_gradcheck_distinct_singular_values() -> None:
    g = torch.Generator().manual_seed(0)
    for kind in ("laf", "tucker", "tt"):
        W = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, k=kind: tensor_trace_norm(x, k), (W,), eps=1e-6, atol=1e-5)


def test_gradient_is_u_vt() -> None:
    A = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W = A.clone().requires_grad_(True)
    tensor_trace_norm(W, "laf").backward()
    U, _, Vh = np.linalg.svd(A.numpy(), full_matrices=False)
    np.testing.assert_allclose(W.grad.numpy(), U @ Vh, atol=1e-10)


@pytest.mark.parametrize("kind", ["laf", "tucker", "tt"])
def test_gradient_finite_at_repeated_singular_values(kind: str) -> None:
    Q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(6, 6)))
    orth = torch.from_numpy(Q[:, :3].reshape(2, 3, 3))  # (6 × 3) with orthonormal columns: σ = 1, 1, 1
    same = torch.from_numpy(np.stack([np.ones((2, 3))] * 4, axis=-1))  # all tasks equal: rank 1, zero σ repeated
    for base in (orth, same, torch.zeros(2, 3, 4, dtype=torch.float64)):
        for dtype in (torch.float32, torch.float64):
            W = base.to(dtype).clone().requires_grad_(True)
            tensor_trace_norm(W, kind).backward()
            assert W.grad is not None and torch.isfinite(W.grad).all()


def test_float64_compute_keeps_dtype_and_grad() -> None:
    W = torch.randn(4, 3, 2, requires_grad=True)
    out = tensor_trace_norm(W, "tucker", dtype=torch.float64)
    assert out.dtype == torch.float32
    out.backward()
    assert W.grad is not None and W.grad.dtype == torch.float32
    assert out.item() == pytest.approx(tensor_trace_norm(W.detach().double(), "tucker").item(), rel=1e-6)


def test_to_paper_layout_round_trip() -> None:
    conv = torch.randn(3, 8, 4, 5, 2)  # [T, cout, cin, kh, kw]
    P = to_paper_layout(conv)
    assert P.shape == (5, 2, 4, 8, 3)
    for t, o, c, h, w in itertools.product(range(3), range(8), range(4), range(5), range(2)):
        assert P[h, w, c, o, t] == conv[t, o, c, h, w]
    assert torch.equal(from_paper_layout(P), conv)
    assert torch.equal(to_paper_layout(list(conv)), P)
    fc = torch.randn(3, 7, 6)  # TaskLinear [T, in, out]
    F = to_paper_layout(fc)
    assert F.shape == (7, 6, 3) and torch.equal(F[:, :, 1], fc[1])
    assert torch.equal(from_paper_layout(F), fc)


def test_errors() -> None:
    with pytest.raises(MtlkitError, match="laf, tucker, tt"):
        tensor_trace_norm(torch.randn(3, 2), "nuclear")
    with pytest.raises(ValueError):
        tensor_trace_norm(torch.randn(3), "laf")
    with pytest.raises(MtlkitError):
        tensor_trace_norm(torch.ones(3, 2, dtype=torch.int64), "laf")
    with pytest.raises(MtlkitError):
        to_paper_layout(torch.randn(2, 3, 4, 5))
