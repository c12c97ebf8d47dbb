"""Input conversion and validation for `MultiTaskData`: numeric arrays, scipy.sparse densified under a memory
cap, finite values, labels inside each task's classes; every error names the task, row and column."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlkit.errors import DataError

#: Largest dense copy (bytes) that scipy.sparse input is densified into; ``max_dense_bytes=`` or the
#: environment variable ``MTLKIT_MAX_DENSE_BYTES`` override it.
MAX_DENSE_BYTES = 2 * 1024**3


def _is_sparse(a: Any) -> bool:
    sp = sys.modules.get("scipy.sparse")  # not imported: cannot be a scipy.sparse matrix
    return sp is not None and bool(sp.issparse(a))


def dense_cap(max_dense_bytes: int | None = None) -> int:
    """The memory cap for densifying sparse input: the argument, else ``$MTLKIT_MAX_DENSE_BYTES``, else
    `MAX_DENSE_BYTES`."""
    if max_dense_bytes is not None:
        return int(max_dense_bytes)
    env = os.environ.get("MTLKIT_MAX_DENSE_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise DataError(f"MTLKIT_MAX_DENSE_BYTES must be a number of bytes, got {env!r}") from None
    return MAX_DENSE_BYTES


def _gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 / 100 else f"{n / 1024**2:.1f} MiB"


def _check_dense_size(arrays: Sequence[Any], what: str, max_dense_bytes: int | None, itemsize: int = 4) -> None:
    sparse = [a for a in arrays if _is_sparse(a)]
    if not sparse:
        return
    need = sum(int(np.prod(a.shape)) for a in sparse) * itemsize
    cap = dense_cap(max_dense_bytes)
    if need > cap:
        rows, cols = sum(a.shape[0] for a in sparse), sparse[0].shape[1]
        nnz = sum(int(a.nnz) for a in sparse) / max(1, sum(int(np.prod(a.shape)) for a in sparse))
        raise DataError(f"{what} are scipy.sparse ({rows} x {cols}, {100 * nnz:.2g}% non-zero); mtlkit densifies "
                        f"sparse input to float32, which would take {_gib(need)}, over the {_gib(cap)} cap "
                        "(raise it with max_dense_bytes= or $MTLKIT_MAX_DENSE_BYTES); sparse storage is not "
                        "supported beyond that: reduce the features first (e.g. TruncatedSVD, a smaller vocabulary)")


def densify(a: Any, what: str = "features", max_dense_bytes: int | None = None) -> Any:
    """``a`` itself, or a scipy.sparse matrix as a dense float32 array when it fits under `dense_cap`
    (else a `DataError` saying how big it would be)."""
    if not _is_sparse(a):
        return a
    _check_dense_size([a], what, max_dense_bytes)
    return np.asarray(a.toarray(), dtype=np.float32)


def _as_float_array(a: Any, what: str, max_dense_bytes: int | None = None) -> np.ndarray:
    """A numeric array as float64, or as itself when it is float32 (no float64 copy of float32 data: every value
    stays exact, and whoever computes on it converts per call); scipy.sparse features become dense float32
    (see `densify`)."""
    if _is_sparse(a):
        return densify(a, what, max_dense_bytes)
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.dtype == np.float32:
        return arr
    return arr.astype(np.float64, copy=False)


def _as_label_array(a: Any, what: str) -> np.ndarray:
    """Labels as float64 (NaN may mark a missing one); sparse labels are densified, implicit zeros being 0."""
    if _is_sparse(a):  # implicit zeros are labels 0 here, not missing labels
        _check_dense_size([a], what, None, itemsize=8)
        a = a.toarray()
    return _as_float_array(a, what).astype(np.float64, copy=False)


def _check_finite(x: np.ndarray, what: str, rows: np.ndarray | None = None,
                  columns: Sequence[str] | None = None) -> None:
    """``rows`` maps x's rows to the row numbers a person sees (when missing labels were removed);
    ``columns`` are the feature names, used in the message when given."""
    bad = ~np.isfinite(x)
    if bad.any():
        pos = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(x[tuple(pos)]) else "inf"
        if x.ndim == 2 and columns is not None and len(columns) == x.shape[1]:
            col = f", column {columns[int(pos[1])]!r} (index {int(pos[1])})"
        else:
            col = "" if x.ndim < 2 else f", column {int(pos[1])}" if x.ndim == 2 else f", position {tuple(pos[1:])}"
        row = int(pos[0]) if rows is None else int(rows[pos[0]])
        raise DataError(f"{what} has {int(bad.sum())} non-finite value(s); first: {kind} at row {row}{col}")


def _check_labels(y: np.ndarray, kind: str, p: int, what: str, rows: np.ndarray | None = None) -> None:
    """Labels of one task with missing entries already removed; ``rows`` are their original row numbers."""
    if kind == "distribution":
        if y.ndim != 2:
            raise DataError(f"{what}: distribution labels must be [n, classes], got shape {y.shape}")
        if y.shape[1] != p:
            raise DataError(f"{what}: distribution labels have {y.shape[1]} columns, expected {p}")
        _check_finite(y, what, rows)
        if (y < 0).any() or not np.allclose(y.sum(1), 1.0, atol=1e-4):
            i = int(np.argmax((y < 0).any(1) | ~np.isclose(y.sum(1), 1.0, atol=1e-4)))
            row = i if rows is None else int(rows[i])
            raise DataError(f"{what}: soft labels must be non-negative and sum to 1; row {row} is {y[i].tolist()}")
        return
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be a vector, got shape {y.shape}")
    _check_finite(y, what, rows)
    if kind == "regression":
        return
    valid = np.arange(p)
    bad = ~np.isin(y, valid)
    if bad.any():
        i = int(np.argmax(bad))
        allowed = "{0, 1}" if kind == "binary" else f"the integers 0..{p - 1}"
        row = i if rows is None else int(rows[i])
        raise DataError(f"{what}: label {y[i]:g} at row {row} is outside the task's classes ({allowed})")


def _check_two_classes(y: np.ndarray, kind: str, name: str) -> None:
    """A binary or multiclass task whose labels are all one class cannot be learned (nor its error read)."""
    if kind not in ("binary", "multiclass"):
        return
    vals = np.unique(y)
    if len(vals) == 1:
        raise DataError(f"task {name!r} has only one class: all its {len(y)} labels are {vals[0]:g}; a {kind} "
                        "task needs at least two classes (drop the task, or check its labels and the kind)")


def _check_finite_rows(rows: Any, what: str, columns: Sequence[str] | None = None) -> None:
    """`_check_finite` of `mtlkit.data.rows.Rows`, block by block (the same message: the count over all rows, the
    first bad cell's row and column)."""
    if rows.plain:
        _check_finite(rows.base, what, columns=columns)
        return
    bad, first = 0, None
    for s, block in rows.blocks():
        n = int((~np.isfinite(block)).sum())
        if n and first is None:
            try:
                _check_finite(block, what, rows=np.arange(s, s + len(block)), columns=columns)
            except DataError as e:
                first = e
        bad += n
    if first is not None:
        msg = str(first)
        raise DataError(f"{what} has {bad} non-finite value(s); " + msg[msg.index("; first: ") + 2:])
