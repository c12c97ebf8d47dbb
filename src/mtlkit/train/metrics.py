"""Per-task evaluation metrics on padded, masked arrays (numpy only).

Every task ``t`` owns row ``t`` of the padded arrays; ``mask[t, i]`` says whether row ``i`` is a real,
labelled example. Masked-out rows contribute to nothing (they may hold any value, NaN included).
Each metric comes back as a float64 array ``[T]``; a task with no labelled row, or a metric that is
undefined for it (e.g. AUC with one class present), gets NaN.

Conventions (all chosen to agree with scikit-learn where it defines the metric):

* ``error`` and ``accuracy`` are percentages; ``precision``/``recall``/``auc`` are fractions in [0, 1].
* binary: the predicted class is 1 when ``p >= 0.5`` (a probability of exactly 0.5 counts as class 1).
* precision/recall use scikit-learn's ``zero_division=0``: a class never predicted has precision 0,
  a class never present has recall 0. Multiclass values are macro averages over ``labels=range(p_t)``.
* multiclass AUC is the macro one-vs-rest AUC on the task's first ``p_t`` probability columns,
  renormalised to sum to 1. Classes absent from the task's labelled rows are left out of the macro
  average (scikit-learn would return NaN); it is NaN only when fewer than 2 classes are present.
* cross-entropies clip probabilities to ``[1e-7, 1 - 1e-7]`` and use them as given (no renormalising).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from mtlkit.errors import DataError

KINDS = ("regression", "binary", "multiclass", "distribution")

PRIMARY_METRIC: dict[str, str] = {
    "regression": "rmse",
    "binary": "error",
    "multiclass": "error",
    "distribution": "cross_entropy",
}

LOWER_IS_BETTER: dict[str, bool] = {
    "rmse": True,
    "mae": True,
    "explained_variance": False,
    "error": True,
    "accuracy": False,
    "auc": False,
    "precision": False,
    "recall": False,
    "cross_entropy": True,
}

_CLASSIFICATION = ("error", "accuracy", "auc", "precision", "recall", "cross_entropy")
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "regression": ("rmse", "mae", "explained_variance"),
    "binary": _CLASSIFICATION,
    "multiclass": _CLASSIFICATION,
    "distribution": ("cross_entropy", "error", "accuracy"),
}

EPS = 1e-7
THRESHOLD = 0.5


def compute_metrics(
    kind: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    mask: np.ndarray | None = None,
    n_classes: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Per-task metrics for one kind of task: each value is a float64 array [T].

    NaN where a task has no labelled row or the metric is undefined (e.g. AUC with one class present).
    """
    if kind not in KINDS:
        raise DataError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    want_true, want_pred = {
        "regression": (2, 2),
        "binary": (2, 2),
        "multiclass": (2, 3),
        "distribution": (3, 3),
    }[kind]
    if y_true.ndim != want_true or y_pred.ndim != want_pred:
        raise DataError(
            f"{kind} metrics need y_true with {want_true} dims and y_pred with {want_pred} dims "
            f"([T, N] or [T, N, P]); got shapes {y_true.shape} and {y_pred.shape}"
        )
    if y_true.shape[:2] != y_pred.shape[:2] or (want_true == 3 and y_true.shape != y_pred.shape):
        raise DataError(f"y_true shape {y_true.shape} does not match y_pred shape {y_pred.shape}")
    t, n = y_true.shape[:2]
    if mask is None:
        mask = np.ones((t, n), dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (t, n):
            raise DataError(f"mask shape {mask.shape} does not match the [T, N] = {(t, n)} of y_true")
        mask = mask.astype(bool)

    if kind == "regression":
        return _regression(y_true.astype(np.float64), y_pred, mask)
    if kind == "binary":
        return _binary(y_true, y_pred, mask)
    p_t = _n_classes(n_classes, t, y_pred.shape[2])
    if kind == "multiclass":
        return _multiclass(y_true, y_pred, mask, p_t)
    return _distribution(y_true.astype(np.float64), y_pred, mask, p_t)


def average(per_task: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each metric over tasks, ignoring NaN tasks (NaN if every task is NaN)."""
    out: dict[str, float] = {}
    for name, values in per_task.items():
        v = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(v)
        out[name] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


# ----------------------------------------------------------------------------------------------------
# helpers


def _n_classes(n_classes: Sequence[int] | None, t: int, p: int) -> np.ndarray:
    """Each task's number of classes as an int array [T], validated against the P columns."""
    if n_classes is None:
        return np.full(t, p, dtype=np.int64)
    arr = np.asarray(n_classes)
    if arr.shape != (t,):
        raise DataError(f"n_classes must give one class count per task ({t}); got shape {arr.shape}")
    if not np.all(arr == np.round(arr)) or np.any(arr < 1) or np.any(arr > p):
        raise DataError(f"n_classes must be integers in [1, {p}] (P = {p} probability columns); got {arr}")
    return arr.astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """num / den elementwise, with `fill` where den == 0 (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _masked_mean(values: np.ndarray, mask: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of values[t, mask[t]] per task; NaN for tasks with no rows. NaN in masked-out rows is ignored."""
    return _safe_div(np.where(mask, values, 0.0).sum(axis=1), count)


def _binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney statistic with average ranks for ties (as sklearn); NaN if one class."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _check_labels(y_true: np.ndarray, mask: np.ndarray, upper: np.ndarray, kind: str) -> np.ndarray:
    """Integer class ids of the labelled rows, checked to lie in [0, upper[t]); padded rows become 0."""
    y = np.where(mask, y_true, 0).astype(np.float64)
    bad = mask & ((y != np.round(y)) | (y < 0) | (y >= upper[:, None]) | np.isnan(y))
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise DataError(
            f"{kind} label {y_true[t, i]!r} of task {t}, row {i} is not a class id in [0, {upper[t]})"
        )
    return y.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# one function per kind


def _regression(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    count = mask.sum(axis=1)
    diff = y - p
    rmse = np.sqrt(_masked_mean(diff**2, mask, count))
    mae = _masked_mean(np.abs(diff), mask, count)
    # sklearn.metrics.explained_variance_score: 1 - Var(y - p) / Var(y), population variances;
    # with force_finite: 1.0 when both variances are 0, 0.0 when only Var(y) is 0.
    diff_mean = _masked_mean(diff, mask, count)
    y_mean = _masked_mean(y, mask, count)
    num = _masked_mean((diff - diff_mean[:, None]) ** 2, mask, count)
    den = _masked_mean((y - y_mean[:, None]) ** 2, mask, count)
    ev = np.where(num == 0, 1.0, 0.0)
    np.subtract(1.0, num / np.where(den == 0, 1.0, den), out=ev, where=den != 0)
    ev[count == 0] = np.nan
    return {"rmse": rmse, "mae": mae, "explained_variance": ev}


def _classification_counts(
    y: np.ndarray, pred: np.ndarray, mask: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task and class: true positives, predicted counts and true counts, each [T, n_cols]."""
    classes = np.arange(n_cols)
    true_oh = (y[..., None] == classes) & mask[..., None]
    pred_oh = (pred[..., None] == classes) & mask[..., None]
    return (true_oh & pred_oh).sum(axis=1), pred_oh.sum(axis=1), true_oh.sum(axis=1)


def _binary(y_true: np.ndarray, p: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    t = y_true.shape[0]
    y = _check_labels(y_true, mask, np.full(t, 2), "binary")
    count = mask.sum(axis=1)
    pred = (p >= THRESHOLD).astype(np.int64)
    wrong = np.where(mask, pred != y, False).sum(axis=1)
    error = 100.0 * _safe_div(wrong, count)
    tp, n_pred, n_true = _classification_counts(y, pred, mask, 2)
    precision = _safe_div(tp[:, 1], n_pred[:, 1], fill=0.0)
    recall = _safe_div(tp[:, 1], n_true[:, 1], fill=0.0)
    pc = np.clip(p, EPS, 1.0 - EPS)
    with np.errstate(invalid="ignore"):
        ll = -(y * np.log(pc) + (1 - y) * np.log1p(-pc))
    ce = _masked_mean(ll, mask, count)
    auc = np.array([_binary_auc(y[k, mask[k]] == 1, p[k, mask[k]]) for k in range(t)], dtype=np.float64)
    empty = count == 0
    precision[empty] = np.nan
    recall[empty] = np.nan
    return {
        "error": error,
        "accuracy": 100.0 - error,
        "auc": auc,
        "precision": precision,
        "recall": recall,
        "cross_entropy": ce,
    }


def _multiclass(
    y_true: np.ndarray, p: np.ndarray, mask: np.ndarray, p_t: np.ndarray
) -> dict[str, np.ndarray]:
    t, _, n_cols = p.shape
    y = _check_labels(y_true, mask, p_t, "multiclass")
    count = mask.sum(axis=1)
    own = np.arange(n_cols)[None, :] < p_t[:, None]  # [T, P]: the task's own columns
    pred = np.argmax(np.where(own[:, None, :], np.nan_to_num(p, nan=-np.inf), -np.inf), axis=-1)
    wrong = np.where(mask, pred != y, False).sum(axis=1)
    error = 100.0 * _safe_div(wrong, count)

    tp, n_pred, n_true = _classification_counts(y, pred, mask, n_cols)
    precision = np.where(own, _safe_div(tp, n_pred, fill=0.0), 0.0).sum(axis=1) / p_t
    recall = np.where(own, _safe_div(tp, n_true, fill=0.0), 0.0).sum(axis=1) / p_t

    p_y = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    ce = _masked_mean(-np.log(np.clip(p_y, EPS, 1.0 - EPS)), mask, count)

    auc = np.full(t, np.nan)
    for k in range(t):
        yk = y[k, mask[k]]
        present = np.flatnonzero(n_true[k, : p_t[k]])
        if present.size < 2:
            continue
        scores = p[k, mask[k], : p_t[k]]
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = scores / scores.sum(axis=1, keepdims=True)
        auc[k] = np.mean([_binary_auc(yk == c, scores[:, c]) for c in present])

    empty = count == 0
    precision[empty] = np.nan
    recall[empty] = np.nan
    return {
        "error": error,
        "accuracy": 100.0 - error,
        "auc": auc,
        "precision": precision,
        "recall": recall,
        "cross_entropy": ce,
    }


def _distribution(y: np.ndarray, p: np.ndarray, mask: np.ndarray, p_t: np.ndarray) -> dict[str, np.ndarray]:
    n_cols = p.shape[2]
    count = mask.sum(axis=1)
    own = (np.arange(n_cols)[None, :] < p_t[:, None])[:, None, :]  # [T, 1, P]
    terms = np.where(own, y * np.log(np.clip(p, EPS, 1.0 - EPS)), 0.0)
    ce = _masked_mean(-terms.sum(axis=-1), mask, count)
    true_cls = np.argmax(np.where(own, np.nan_to_num(y, nan=-np.inf), -np.inf), axis=-1)
    pred_cls = np.argmax(np.where(own, np.nan_to_num(p, nan=-np.inf), -np.inf), axis=-1)
    wrong = np.where(mask, true_cls != pred_cls, False).sum(axis=1)
    error = 100.0 * _safe_div(wrong, count)
    return {"cross_entropy": ce, "error": error, "accuracy": 100.0 - error}
