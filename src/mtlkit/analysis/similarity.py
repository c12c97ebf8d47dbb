"""Covariance similarity of two tasks' data (Wu, Zhang & Ré, "Understanding and Improving Information Transfer in
Multi-Task Learning", Eq. 5).

For a task's data ``X [n, d]``: (a) ``C = XᵀX`` (uncentred, as in the paper); (b) eigendecompose ``C = U D Uᵀ``
(eigenvalues descending) and keep the top ``r`` eigenpairs, ``r`` the smallest count whose cumulative eigenvalue
sum reaches ``energy`` (0.99) of the total; (c) ``M = U_r D_r^{1/2}`` (so ``M Mᵀ`` is the rank-r approximation of
``C``). The score of two tasks is ``‖M₁ᵀM₂‖_F / (‖M₁‖_F ‖M₂‖_F)`` in ``[0, 1]``.

Readings where the paper is loose:

* "r is chosen to contain 99% of the singular values" is read as the CUMULATIVE SUM of the singular values of the
  covariance ``C`` being approximated, i.e. its eigenvalues ``λ_j = σ_j(X)²`` (not ``σ_j(X)``).
* The score is invariant to anything that leaves ``C`` unchanged, i.e. ``X → P X`` for any orthogonal ``P`` on the
  sample side (row permutations, rotations of each column of X, the paper's "rotations of the columns"), separately
  for each task, and to a global scale ``X → c X``. It is invariant to a feature-space rotation ``X → X Q`` only
  when the SAME ``Q`` is applied to both tasks.
* Eq. 5 of a data set with ITSELF is ``‖λ_r‖₂ / ‖λ_r‖₁``, which is 1 only when the retained covariance has rank 1
  (e.g. 1/√k for k equal eigenvalues). ``normalization="self"`` divides by ``√(‖M₁ᵀM₁‖_F ‖M₂ᵀM₂‖_F)`` instead:
  the square root of the Frobenius cosine of the two truncated covariances, exactly 1 for identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlkit.errors import DataError, MtlkitError, UnknownNameError

NORMALIZATIONS = ("paper", "self")


def covariance_factor(X: Any, energy: float = 0.99) -> np.ndarray:
    """The factor ``M = U_r D_r^{1/2}`` ``[d, r]`` of ``XᵀX``, top eigenpairs holding ``energy`` of Σλ."""
    return _factor(_as_matrix(X, "X"), _energy(energy), "X")


def covariance_similarity(X1: Any, X2: Any, energy: float = 0.99, normalization: str = "paper") -> float:
    """Eq. 5 covariance similarity score of ``X1 [n1, d]`` and ``X2 [n2, d]`` (numpy or torch), a float in [0, 1]."""
    e = _energy(energy)
    norm = _normalization(normalization)
    A, B = _as_matrix(X1, "X1"), _as_matrix(X2, "X2")
    if A.shape[1] != B.shape[1]:
        raise DataError(f"covariance_similarity needs the same feature dimension d, got X1 {A.shape} and X2 {B.shape}")
    return _score(_factor(A, e, "X1"), _factor(B, e, "X2"), norm)


def similarity_matrix(Xs: Sequence[Any], energy: float = 0.99, normalization: str = "paper") -> np.ndarray:
    """The ``[T, T]`` matrix of `covariance_similarity` between every pair of task data sets (symmetric).

    Its diagonal is each task's score with itself: 1 with ``normalization="self"``, ``‖λ_r‖₂/‖λ_r‖₁`` with "paper".
    """
    e = _energy(energy)
    norm = _normalization(normalization)
    mats = [_as_matrix(X, f"Xs[{t}]") for t, X in enumerate(Xs)]
    if not mats:
        raise MtlkitError("similarity_matrix needs at least one task's data")
    d = mats[0].shape[1]
    for t, m in enumerate(mats):
        if m.shape[1] != d:
            raise DataError(f"similarity_matrix needs the same feature dimension for every task: Xs[0] has d={d}, "
                            f"Xs[{t}] has d={m.shape[1]}")
    factors = [_factor(m, e, f"Xs[{t}]") for t, m in enumerate(mats)]
    T = len(factors)
    S = np.empty((T, T), dtype=np.float64)
    for i in range(T):
        for j in range(i, T):
            S[i, j] = S[j, i] = _score(factors[i], factors[j], norm)
    return S


def _score(M1: np.ndarray, M2: np.ndarray, normalization: str) -> float:
    """Eq. 5 from the two factors, clipped to [0, 1] against rounding."""
    num = np.linalg.norm(M1.T @ M2)
    if normalization == "paper":
        den = np.linalg.norm(M1) * np.linalg.norm(M2)
    else:
        den = np.sqrt(np.linalg.norm(M1.T @ M1) * np.linalg.norm(M2.T @ M2))
    return float(np.clip(num / den, 0.0, 1.0))


def _factor(X: np.ndarray, energy: float, name: str) -> np.ndarray:
    """``U_r D_r^{1/2}`` of ``C = XᵀX`` (float64), r the smallest count reaching ``energy`` of the eigenvalue sum."""
    C = X.T @ X
    lam, U = np.linalg.eigh((C + C.T) / 2)
    lam, U = lam[::-1], U[:, ::-1]
    tol = max(lam[0], 0.0) * C.shape[0] * np.finfo(np.float64).eps  # numerically-zero eigenvalues are dropped
    lam = np.where(lam > tol, lam, 0.0)
    if lam[0] <= 0.0:
        raise DataError(f"{name} has a zero covariance (all entries zero); its similarity is undefined")
    csum = np.cumsum(lam)
    r = int(np.searchsorted(csum, energy * csum[-1], side="left")) + 1
    r = min(r, int(np.count_nonzero(lam)))
    return U[:, :r] * np.sqrt(lam[:r])


def _as_matrix(X: Any, name: str) -> np.ndarray:
    """A finite float64 ``[n, d]`` numpy copy of a numpy array or torch tensor, or a `DataError`."""
    arr = X.detach().cpu().double().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty 2-D [n, d] matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return arr


def _energy(energy: float) -> float:
    """The energy fraction, checked to lie in (0, 1]."""
    e = float(energy)
    if not 0.0 < e <= 1.0:
        raise MtlkitError(f"energy must be in (0, 1], got {energy}")
    return e


def _normalization(name: str) -> str:
    """The normalisation name, or an `UnknownNameError` listing the known ones."""
    if name not in NORMALIZATIONS:
        raise UnknownNameError(f"unknown normalization {name!r}; known: {', '.join(NORMALIZATIONS)}")
    return name
