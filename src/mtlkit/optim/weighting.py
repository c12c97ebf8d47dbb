"""Task weightings for the loss ``Σ_t α_t L_t`` (the Trainer's ``fit_sgd(..., task_weights=Tensor[T])``).

* `svd_task_weights`: Algorithm 2 of Wu, Zhang & Ré (ICLR'20), for tasks sharing one input matrix ``X``:
  ``θ_i = Xᵀy_i``, ``Θ = [θ_1..θ_T]``, ``U_r`` its top-r left singular vectors, ``α_i = ‖U_rᵀθ_i‖₂``.
* `equal_weights`, `inverse_size_weights`: the plain alternatives.

All three return weights with MEAN 1 (``normalize=False`` gives the paper's raw α). Note the Trainer's own default
is ``1/T`` per task (sum 1); mean-1 weights make the total loss T times larger, so divide by T to keep its scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlkit.errors import DataError, MtlkitError


def svd_task_weights(X: Any, Y: Any, rank: int, normalize: bool = True) -> torch.Tensor | np.ndarray:
    """Algorithm 2 weights ``α_i = ‖U_rᵀ Xᵀy_i‖₂`` for shared ``X [n, d]`` and labels ``Y [n, T]`` (NaN = missing).

    A missing label ``Y[j, i]`` drops sample j from ``θ_i`` (its term is zeroed). Labels are used as given (the
    paper does not centre them). ``rank`` is r in 1..T; with r ≥ rank(Θ) every ``α_i = ‖θ_i‖``. If the r-th and
    (r+1)-th singular values tie, ``U_r`` (hence α) is not unique. Computed in float64; returns a tensor (X's
    dtype and device) when X is a tensor, else a float64 ndarray. ``normalize`` rescales to mean 1.
    """
    is_torch = isinstance(X, torch.Tensor)
    Xn = _to_numpy(X)
    Yn = _to_numpy(Y)
    if Xn.ndim != 2 or Xn.shape[0] == 0 or Xn.shape[1] == 0:
        raise DataError(f"svd_task_weights needs X as a non-empty [n, d] matrix, got shape {Xn.shape}")
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    if Yn.ndim != 2 or Yn.shape[0] != Xn.shape[0] or Yn.shape[1] == 0:
        raise DataError(f"svd_task_weights needs Y [n, T] with the same n as X {Xn.shape}, got shape {Yn.shape}")
    if not np.isfinite(Xn).all():
        raise DataError("svd_task_weights: X contains NaN or infinite values")
    if np.isinf(Yn).any():
        raise DataError("svd_task_weights: Y contains infinite values (NaN marks a missing label)")
    T = Yn.shape[1]
    if isinstance(rank, bool) or int(rank) != rank or not 1 <= int(rank) <= T:
        raise MtlkitError(f"svd_task_weights: rank must be an integer in 1..T={T}, got {rank}")
    theta = Xn.T @ np.where(np.isnan(Yn), 0.0, Yn)  # [d, T]: θ_i = Σ_{j observed} x_j y_ji
    U, _, _ = np.linalg.svd(theta, full_matrices=False)
    Ur = U[:, : min(int(rank), U.shape[1])]
    alpha = np.linalg.norm(Ur.T @ theta, axis=0)
    if normalize:
        alpha = _mean_one(alpha, "svd_task_weights")
    if is_torch:
        return torch.as_tensor(alpha, dtype=X.dtype if X.is_floating_point() else torch.float64, device=X.device)
    return alpha


def equal_weights(n_tasks: int, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """All-ones task weights ``[T]`` (mean 1)."""
    if isinstance(n_tasks, bool) or int(n_tasks) != n_tasks or n_tasks < 1:
        raise MtlkitError(f"equal_weights needs a positive number of tasks, got {n_tasks}")
    return torch.ones(int(n_tasks), dtype=dtype, device=device)


def inverse_size_weights(sizes: Sequence[float] | np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32,
                         device: Any = None) -> torch.Tensor:
    """Weights ``∝ 1/N_t`` for per-task training-set sizes ``N_t > 0``, rescaled to mean 1."""
    n = _to_numpy(sizes).reshape(-1)
    if n.size == 0 or not np.isfinite(n).all() or (n <= 0).any():
        raise DataError(f"inverse_size_weights needs positive finite task sizes, got {n.tolist()}")
    return torch.as_tensor(_mean_one(1.0 / n, "inverse_size_weights"), dtype=dtype, device=device)


def _mean_one(w: np.ndarray, who: str) -> np.ndarray:
    """``w / mean(w)``, or a `DataError` when every weight is zero."""
    m = float(w.mean())
    if not m > 0.0:
        raise DataError(f"{who}: every task weight is zero (no label signal), cannot rescale to mean 1")
    return w / m


def _to_numpy(a: Any) -> np.ndarray:
    """A float64 numpy copy of an array-like or tensor."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)
