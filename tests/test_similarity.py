"""Covariance similarity score (Wu, Zhang & Ré Eq. 5) against an independent SVD-of-X computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlkit.analysis import covariance_similarity, similarity_matrix
from mtlkit.analysis.similarity import covariance_factor
from mtlkit.errors import DataError, MtlkitError


def reference_score(X1: np.ndarray, X2: np.ndarray, energy: float = 0.99) -> float:
    """Eq. 5 via the SVD of X (eigenvalues of XᵀX = σ(X)², eigenvectors = right singular vectors)."""
    def factor(X: np.ndarray) -> np.ndarray:
        _, s, Vt = np.linalg.svd(X, full_matrices=False)
        lam = s**2
        frac = np.cumsum(lam) / lam.sum()
        r = next(k + 1 for k in range(len(lam)) if frac[k] >= energy - 1e-12)
        return Vt[:r].T * s[:r]
    M1, M2 = factor(X1), factor(X2)
    return float(np.linalg.norm(M1.T @ M2) / (np.linalg.norm(M1) * np.linalg.norm(M2)))


def with_spectrum(rng: np.random.Generator, n: int, eigvals: list[float]) -> np.ndarray:
    """An [n, d] matrix whose XᵀX has exactly the given eigenvalues (random eigenvectors)."""
    d = len(eigvals)
    P, _ = np.linalg.qr(rng.normal(size=(n, d)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return P @ np.diag(np.sqrt(eigvals)) @ V.T


def test_matches_reference_and_bounded() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = int(rng.integers(2, 8))
        X1 = rng.normal(size=(int(rng.integers(3, 30)), d)) * rng.uniform(0.1, 3, size=d)
        X2 = rng.normal(size=(int(rng.integers(3, 30)), d)) + rng.normal(size=d)
        for energy in (0.5, 0.9, 0.99, 1.0):
            s = covariance_similarity(X1, X2, energy=energy)
            assert 0.0 <= s <= 1.0
            assert s == pytest.approx(reference_score(X1, X2, energy), rel=1e-9)
            assert s == pytest.approx(covariance_similarity(X2, X1, energy=energy), rel=1e-12)


def test_self_score() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5))
    rank_one = rng.normal(size=(10, 1)) @ x
    assert covariance_similarity(rank_one, rank_one) == pytest.approx(1.0)
    lam = [4.0, 3.0, 2.0, 1.0]  # Eq. 5 with itself = ‖λ‖₂ / ‖λ‖₁ (energy 1 keeps all four)
    X = with_spectrum(rng, 12, lam)
    assert covariance_similarity(X, X, energy=1.0) == pytest.approx(np.linalg.norm(lam) / sum(lam))
    assert covariance_similarity(X, X, energy=1.0, normalization="self") == pytest.approx(1.0)


def test_invariances() -> None:
    rng = np.random.default_rng(2)
    X1, X2 = rng.normal(size=(15, 4)) @ rng.normal(size=(4, 4)), rng.normal(size=(9, 4)) @ rng.normal(size=(4, 4))
    base = covariance_similarity(X1, X2)
    P1, _ = np.linalg.qr(rng.normal(size=(15, 15)))  # sample-side rotation: XᵀX unchanged
    perm = rng.permutation(9)
    assert covariance_similarity(P1 @ X1, 3.5 * X2[perm]) == pytest.approx(base, rel=1e-9)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # the same feature rotation on both tasks
    assert covariance_similarity(X1 @ Q, X2 @ Q) == pytest.approx(base, rel=1e-9)
    assert abs(covariance_similarity(X1, X2 @ Q) - base) > 1e-3  # rotating one task only is NOT invariant


def test_orthogonal_feature_spaces_score_zero() -> None:
    rng = np.random.default_rng(3)
    X1 = np.hstack([rng.normal(size=(10, 3)), np.zeros((10, 3))])
    X2 = np.hstack([np.zeros((8, 3)), rng.normal(size=(8, 3))])
    assert covariance_similarity(X1, X2) == pytest.approx(0.0, abs=1e-12)


def test_energy_truncation() -> None:
    rng = np.random.default_rng(4)
    X = with_spectrum(rng, 20, [50.0, 30.0, 15.0, 4.0, 1.0])  # cumulative 0.50, 0.80, 0.95, 0.99, 1.00
    assert covariance_factor(X, 0.75).shape == (5, 2)
    assert covariance_factor(X, 0.85).shape == (5, 3)
    assert covariance_factor(X, 0.99).shape[1] in (4, 5)  # exactly on the boundary: rounding decides
    assert covariance_factor(X, 1.0).shape == (5, 5)
    M = covariance_factor(X, 1.0)
    np.testing.assert_allclose(M @ M.T, X.T @ X, atol=1e-9)
    low = with_spectrum(rng, 20, [1.0, 1.0, 0.0])  # rank 2: energy 1 keeps the 2 non-zero eigenpairs
    assert covariance_factor(low, 1.0).shape == (3, 2)


def test_similarity_matrix() -> None:
    rng = np.random.default_rng(5)
    Xs = [rng.normal(size=(int(rng.integers(5, 20)), 4)) * rng.uniform(0.2, 2, size=4) for _ in range(4)]
    S = similarity_matrix(Xs)
    assert S.shape == (4, 4)
    np.testing.assert_array_equal(S, S.T)
    for i in range(4):
        for j in range(4):
            assert S[i, j] == pytest.approx(covariance_similarity(Xs[i], Xs[j]), rel=1e-12)
    S_self = similarity_matrix([torch.from_numpy(x) for x in Xs], normalization="self")
    np.testing.assert_allclose(np.diag(S_self), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(S_self, S_self.T)
    assert ((S_self >= 0) & (S_self <= 1)).all()


def test_torch_inputs() -> None:
    rng = np.random.default_rng(6)
    X1, X2 = rng.normal(size=(10, 3)), rng.normal(size=(7, 3))
    expected = covariance_similarity(X1, X2)
    assert covariance_similarity(torch.from_numpy(X1).float(), torch.from_numpy(X2)) == pytest.approx(expected, 1e-5)


def test_errors() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5, 3))
    with pytest.raises(DataError, match="feature dimension"):
        covariance_similarity(X, rng.normal(size=(5, 4)))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        covariance_similarity(X, bad)
    with pytest.raises(DataError):
        covariance_similarity(X, np.zeros((4, 3)))
    with pytest.raises(DataError):
        covariance_similarity(X[0], X)
    with pytest.raises(MtlkitError):
        covariance_similarity(X, X, energy=0.0)
    with pytest.raises(MtlkitError, match="paper, self"):
        covariance_similarity(X, X, normalization="cosine")
    with pytest.raises(DataError):
        similarity_matrix([X, rng.normal(size=(5, 2))])
    with pytest.raises(MtlkitError):
        similarity_matrix([])
