"""Task weightings: SVD re-weighting (Wu, Zhang & Ré Algorithm 2), equal and inverse-size weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlkit.errors import DataError, MtlkitError
from mtlkit.optim.weighting import equal_weights, inverse_size_weights, svd_task_weights


def reference_weights(X: np.ndarray, Y: np.ndarray, r: int) -> np.ndarray:
    """α_i via Θ = U S Vᵀ: U_rᵀθ_i = S_r V_r[i], so α_i = sqrt(Σ_{k≤r} s_k² V[i, k]²) (no projection of θ)."""
    Theta = np.column_stack([sum(X[j] * Y[j, i] for j in range(X.shape[0])) for i in range(Y.shape[1])])
    _, s, Vt = np.linalg.svd(Theta, full_matrices=False)
    return np.sqrt(((s[:r, None] * Vt[:r]) ** 2).sum(axis=0))


def test_full_rank_gives_theta_norms() -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 4))
    got = svd_task_weights(X, Y, rank=4, normalize=False)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, np.linalg.norm(X.T @ Y, axis=0), rtol=1e-10)


def test_more_tasks_than_features_full_rank() -> None:
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(20, 2)), rng.normal(size=(20, 5))
    np.testing.assert_allclose(svd_task_weights(X, Y, rank=5, normalize=False),
                               np.linalg.norm(X.T @ Y, axis=0), rtol=1e-10)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_matches_reference(r: int) -> None:
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(25, 5)), rng.normal(size=(25, 4))
    np.testing.assert_allclose(svd_task_weights(X, Y, rank=r, normalize=False), reference_weights(X, Y, r),
                               rtol=1e-9)


def test_task_outside_top_subspace_gets_zero() -> None:
    rng = np.random.default_rng(3)
    n = 40
    X = np.linalg.qr(rng.normal(size=(n, 3)))[0] * np.sqrt(n)  # XᵀX = n·I, so θ_i = Xᵀy_i is easy to steer
    targets = np.array([[5.0, 0, 0], [4.0, 0.5, 0], [0, 0, 1.0]]).T  # θ_3 ⟂ the dominant direction e_1
    Y = X @ targets / n  # Xᵀy_i = targets[:, i]
    np.testing.assert_allclose(X.T @ Y, targets, atol=1e-10)
    alpha = svd_task_weights(X, Y, rank=1, normalize=False)
    assert alpha[2] == pytest.approx(0.0, abs=1e-10)
    assert alpha[0] > 4.9 and alpha[1] > 3.9


def test_normalize_mean_one_and_torch() -> None:
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 5))
    raw = svd_task_weights(X, Y, rank=2, normalize=False)
    w = svd_task_weights(X, Y, rank=2)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-12)
    wt = svd_task_weights(torch.from_numpy(X).float(), torch.from_numpy(Y).float(), rank=2)
    assert isinstance(wt, torch.Tensor) and wt.dtype == torch.float32 and wt.shape == (5,)
    np.testing.assert_allclose(wt.numpy(), w, rtol=1e-5)


def test_missing_labels_drop_rows_for_that_task() -> None:
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 3))
    Y_nan = Y.copy()
    Y_nan[[1, 7, 8], 1] = np.nan
    Y_zero = Y.copy()
    Y_zero[[1, 7, 8], 1] = 0.0
    got = svd_task_weights(X, Y_nan, rank=2, normalize=False)
    np.testing.assert_allclose(got, reference_weights(X, Y_zero, 2), rtol=1e-10)
    keep = np.setdiff1d(np.arange(20), [1, 7, 8])
    assert np.linalg.norm(X[keep].T @ Y[keep, 1]) == pytest.approx(svd_task_weights(X, Y_nan, 3, False)[1])


def test_errors() -> None:
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    with pytest.raises(MtlkitError, match="rank"):
        svd_task_weights(X, Y, rank=3)
    with pytest.raises(MtlkitError, match="rank"):
        svd_task_weights(X, Y, rank=0)
    with pytest.raises(DataError):
        svd_task_weights(X, Y[:9], rank=1)
    with pytest.raises(DataError):
        svd_task_weights(X[:, 0], Y, rank=1)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        svd_task_weights(bad, Y, rank=1)
    with pytest.raises(DataError, match="zero"):
        svd_task_weights(X, np.full((10, 2), np.nan), rank=1)


def test_equal_and_inverse_size_weights() -> None:
    w = equal_weights(4)
    assert w.dtype == torch.float32 and torch.equal(w, torch.ones(4))
    v = inverse_size_weights([100, 50, 25])
    np.testing.assert_allclose(v.numpy(), np.array([1, 2, 4]) * 3 / 7, rtol=1e-6)
    assert v.mean().item() == pytest.approx(1.0)
    assert torch.equal(inverse_size_weights(torch.tensor([7, 7])), torch.ones(2))
    with pytest.raises(DataError):
        inverse_size_weights([10, 0])
    with pytest.raises(MtlkitError):
        equal_weights(0)
