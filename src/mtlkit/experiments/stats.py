"""Statistics for experiment tables: confidence intervals, improvements over single-task learning."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from mtlkit.errors import DataError, MtlkitError


def mean_ci(
    values: ArrayLike, axis: int = 0, level: float = 0.95
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Mean and half-width of the Student-t confidence interval over `axis`, for reporting mean ± CI.

    NaNs are ignored; the mean is NaN where no value is left and the half-width NaN where fewer than 2 are.
    """
    if not 0.0 < level < 1.0:
        raise MtlkitError(f"confidence level must lie strictly between 0 and 1; got {level}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise DataError("mean_ci needs an array of values, not a scalar")
    ok = ~np.isnan(v)
    n = ok.sum(axis=axis)
    total = np.where(ok, v, 0.0).sum(axis=axis)
    mean = np.full(n.shape, np.nan)
    np.divide(total, n, out=mean, where=n > 0)
    dev2 = np.where(ok, (v - np.expand_dims(mean, axis)) ** 2, 0.0).sum(axis=axis)
    half = np.full(n.shape, np.nan)
    many = n >= 2
    if np.any(many):
        sd = np.sqrt(dev2[many] / (n[many] - 1))
        half[many] = stats.t.ppf(0.5 + level / 2.0, n[many] - 1) * sd / np.sqrt(n[many])
    if mean.ndim == 0:
        return float(mean), float(half)
    return mean, half


def nanmean(a: ArrayLike, axis: int | None = None) -> Any:
    """``np.nanmean`` without the all-NaN warning (an all-NaN slice is simply NaN here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(a, dtype=np.float64), axis=axis)


def summarize(scores: ArrayLike) -> tuple[float, float]:
    """Mean ± 95% CI half-width over splits of the task-averaged metric (``scores`` is ``[splits, T]``)."""
    mean, ci = mean_ci(nanmean(scores, axis=1))
    return float(mean), float(ci)


def _pair(method: ArrayLike, stl: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(method, dtype=np.float64)
    s = np.asarray(stl, dtype=np.float64)
    if m.shape != s.shape:
        raise DataError(
            f"method and STL results must have the same per-task shape; got {m.shape} and {s.shape}"
        )
    return m, s


ACCURACY_OF: dict[str, str] = {"error": "accuracy"}
"""Error-like metrics that have an accuracy (``100 − error``): TOMATO Table 4's gain is taken on the accuracy."""


def improvement_basis(metric: str | None) -> str:
    """The metric Δ vs STL is computed on for ``metric``: the accuracy for a classification error, else the
    metric itself (RMSE, MAE, cross-entropy and the accuracy-like metrics have no other)."""
    return ACCURACY_OF.get(metric or "", metric or "")


def taskwise_improvement(method: ArrayLike, stl: ArrayLike, lower_is_better: bool,
                         metric: str | None = None) -> np.ndarray:
    """Per-task relative improvement over STL in percent (TOMATO Table 4); positive = method is better.

    TOMATO's Table 4 is the relative gain in *accuracy*, ``100·(acc − acc_STL)/acc_STL`` (its own numbers: the
    synthetic 85.91 vs 83.45 % accuracy gives 2.95 ≈ its 2.94). So a classification ``metric="error"`` is first
    turned into accuracy ``100 − error``. Metrics with no accuracy: ``100·(stl − m)/|stl|`` when lower is better
    (RMSE), ``100·(m − stl)/|stl|`` when higher is. NaN where the denominator is 0.
    """
    m, s = _pair(method, stl)
    if metric in ACCURACY_OF:
        m, s, lower_is_better = 100.0 - m, 100.0 - s, False
    gain = s - m if lower_is_better else m - s
    out = np.full(np.shape(gain), np.nan)
    np.divide(100.0 * gain, np.abs(s), out=out, where=s != 0)
    return out


def tasks_hurt(method: ArrayLike, stl: ArrayLike, lower_is_better: bool, tol: float = 0.0) -> int:
    """Number of tasks where the method is worse than STL by more than `tol` (negative transfer).

    `tol` is in the metric's own units; tasks with a NaN on either side are not counted.
    """
    m, s = _pair(method, stl)
    worse_by = m - s if lower_is_better else s - m
    with np.errstate(invalid="ignore"):
        return int(np.sum(worse_by > tol))
