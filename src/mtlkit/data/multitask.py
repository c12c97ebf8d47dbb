"""`MultiTaskData`: the tasks' inputs and labels, validated once, in either of the two MTL layouts.

Heterogeneous tasks each own their rows (``X_t, y_t``: School, MNIST-MTL); shared-input tasks label
the same rows (``X, Y[:, t]``: multi-label images), where NaN marks a missing label that contributes
no loss and no metric. Nothing is silently dropped, coerced or reordered.

When ``kind`` is not given it is inferred from the labels (`infer_kind`) and never silently: the inference
is recorded in ``notes`` and logged on the ``mtlkit.data`` logger (a WARNING whenever the labels are
integers, i.e. another kind was plausible; the CLI prints those). scipy.sparse features are densified to
float32 at construction, up to a memory cap (`MAX_DENSE_BYTES`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.data.spec import KINDS, DataInfo, TaskSpec
from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.splits import Split
    from mtlkit.data.tensors import DeviceData
    from mtlkit.data.transforms import FeatureTransform


log = logging.getLogger("mtlkit.data")

#: Largest dense copy (bytes) that scipy.sparse input is densified into; ``max_dense_bytes=`` or the
#: environment variable ``MTLKIT_MAX_DENSE_BYTES`` override it.
MAX_DENSE_BYTES = 2 * 1024**3
#: Most distinct integer labels `infer_kind` takes as classes (``0..k-1``); more are read as regression.
MAX_INFERRED_CLASSES = 10


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
    """A numeric array as float64; scipy.sparse features become dense float32 (see `densify`)."""
    if _is_sparse(a):
        return densify(a, what, max_dense_bytes)
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _as_label_array(a: Any, what: str) -> np.ndarray:
    if _is_sparse(a):  # implicit zeros are labels 0 here, not missing labels
        _check_dense_size([a], what, None, itemsize=8)
        a = a.toarray()
    return _as_float_array(a, what)


# ---------------------------------------------------------------------- task kind inference
@dataclass(frozen=True)
class KindInference:
    """What `infer_kind` decided: the ``kind``, a one-line ``note`` saying why and how to override it, the
    logging ``level`` of the note (WARNING when another kind was plausible), and for two-valued labels
    that are not 0/1 the ``mapping`` (low, high) -> (0, 1)."""

    kind: str
    note: str
    level: int = logging.WARNING
    mapping: tuple[float, float] | None = None


def _override(*kinds: str) -> str:
    alts = " or ".join(f"kind={k!r} (CLI: --kind {k})" for k in kinds)
    return f"; pass {alts} to override"


def _values(vals: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(f"{v:g}" for v in vals[:limit])
    return "{" + shown + (", ..." if len(vals) > limit else "") + "}"


def infer_kind(ys: Sequence[Any], what: str = "the labels") -> KindInference:
    """The task kind of label arrays (all tasks pooled, NaN = missing), always with a note saying why:

    - labels that are not all integers: ``regression``;
    - exactly the values {0, 1} (or only one of them): ``binary``;
    - exactly two other integer values, e.g. {1, 2} or {-1, 1}: ``binary``, the lower mapped to 0 and the
      higher to 1 (``mapping``);
    - the integers ``0..k-1`` with 3 <= k <= `MAX_INFERRED_CLASSES`: ``multiclass``;
    - any other integers (more levels, negative, gaps, not starting at 0: ratings, counts): ``regression``;
    - 2-D label arrays per task (3-D shared): ``distribution``.

    Every outcome comes with a note naming it and how to override it; it is a WARNING whenever the labels
    are integers (another kind was plausible), INFO for non-integer labels and soft labels.
    """
    arrays = [np.asarray(y, dtype=np.float64) for y in ys]

    def out(kind: str, why: str, alt: str | None, level: int = logging.WARNING,
            mapping: tuple[float, float] | None = None) -> KindInference:
        return KindInference(kind, f"task kind inferred from {what}: {kind} ({why})"
                             + (_override(alt) if alt else ""), level, mapping)

    if any(a.ndim >= 2 for a in arrays):
        return out("distribution", "one row of class probabilities per example", None, logging.INFO)
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = np.unique(flat[np.isfinite(flat)])
    if vals.size == 0:
        return out("regression", "every value is missing", None, logging.INFO)
    if not np.all(vals == np.round(vals)):
        return out("regression", "the values are not all integers", None, logging.INFO)
    k = len(vals)
    if set(vals.tolist()) <= {0.0, 1.0}:
        return out("binary", "the values are 0/1", "regression")
    if k == 2:
        lo, hi = float(vals[0]), float(vals[1])
        return out("binary", f"two values, {lo:g} and {hi:g}, read as classes 0 and 1", "regression",
                   mapping=(lo, hi))
    if vals[0] == 0 and vals[-1] == k - 1 and k <= MAX_INFERRED_CLASSES:
        return out("multiclass", f"{k} classes: the values are the integers 0..{k - 1}", "regression")
    if k == 1:
        why = f"a single value, {vals[0]:g}"
    elif k > MAX_INFERRED_CLASSES:
        why = f"{k} distinct integers from {vals[0]:g} to {vals[-1]:g}, more than {MAX_INFERRED_CLASSES} levels"
    else:
        why = f"the integers {_values(vals)} are not the classes 0..{k - 1}"
    return out("regression", why, "multiclass")


def _map_binary(y: np.ndarray, mapping: tuple[float, float]) -> np.ndarray:
    lo, hi = mapping
    return np.where(y == lo, 0.0, np.where(y == hi, 1.0, y))


def resolve_kind(kind: str | None, ys: Sequence[np.ndarray], what: str = "the labels"
                 ) -> tuple[str, list[np.ndarray], str | None, tuple[float, float] | None]:
    """``kind`` (inferred by `infer_kind` when None), the labels (two-valued binary labels mapped to 0/1), the
    note to record, already logged on ``mtlkit.data`` (None when nothing was inferred or mapped), and the
    original values of classes 0 and 1 when binary labels were mapped (`TaskSpec.labels`), else None."""
    ys = list(ys)
    if kind is None:
        inf = infer_kind(ys, what)
    elif kind == "binary":  # binary labels may be any two values, like a scikit-learn classifier's
        flat = np.concatenate([np.ravel(y) for y in ys]) if ys else np.zeros(0)
        vals = np.unique(flat[np.isfinite(flat)])
        if len(vals) != 2 or set(vals.tolist()) <= {0.0, 1.0}:
            return kind, ys, None, None
        lo, hi = float(vals[0]), float(vals[1])
        inf = KindInference("binary", f"binary labels: {what} has two values, {lo:g} and {hi:g}, read as classes "
                            "0 and 1", mapping=(lo, hi))
    else:
        return kind, ys, None, None
    if inf.mapping is not None:
        ys = [_map_binary(y, inf.mapping) for y in ys]
    log.log(inf.level, inf.note)
    return inf.kind, ys, inf.note, inf.mapping


@contextlib.contextmanager
def collect_notes(level: int = logging.WARNING) -> Iterator[list[str]]:
    """Within the block, notes logged on ``mtlkit.data`` at ``level`` or above are collected into the
    yielded list instead of being printed (the CLI prints them once the data have loaded)."""
    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    handler = _Collect(level)
    old = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False
    if log.level == logging.NOTSET or log.level > level:
        log.setLevel(level)
    try:
        yield notes
    finally:
        log.removeHandler(handler)
        log.propagate, _ = old
        log.setLevel(old[1])


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


class MultiTaskData:
    """T tasks' inputs and labels in the heterogeneous or the shared-input layout.

    Build with :meth:`from_tasks`, :meth:`from_shared` or :meth:`from_table`; split with :meth:`split`
    (per-task stratified, from a seed) or :meth:`split_indices` (given index sets).
    """

    def __init__(
        self,
        spec: TaskSpec,
        *,
        xs: Sequence[np.ndarray] | None = None,
        ys: Sequence[np.ndarray] | None = None,
        x: np.ndarray | None = None,
        y: np.ndarray | None = None,
        name: str = "custom",
        feature_names: Sequence[str] | None = None,
        transform: FeatureTransform | None = None,
        predefined_splits: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]] | None = None,
        notes: Sequence[str] = (),
        validate: bool = True,
    ) -> None:
        self.spec = spec
        self.name = name
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.transform = transform
        self.predefined_splits = list(predefined_splits) if predefined_splits is not None else None
        self.notes = list(notes)
        if (xs is None) == (x is None):
            raise DataError("give either per-task xs/ys (heterogeneous) or one shared x/y, not both")
        self.xs = list(xs) if xs is not None else None
        self.ys = list(ys) if ys is not None else None
        self.x = x
        self.y = y
        if validate:
            self._validate()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_tasks(
        cls,
        Xs: Sequence[Any],
        ys: Sequence[Any],
        kind: str | None = None,
        names: Sequence[str] | None = None,
        n_classes: int | Sequence[int] | None = None,
        max_dense_bytes: int | None = None,
        labels: tuple[float, ...] | None = None,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Heterogeneous tasks: task t has its own rows ``Xs[t]`` [n_t, ...] and labels ``ys[t]``.

        ``kind`` None infers it from the labels (`infer_kind`: non-integer labels are regression, 0/1 binary,
        ...) with a note in ``notes`` and on the ``mtlkit.data`` logger; binary labels may be any two values
        (the lower becomes class 0). ``Xs[t]`` may be scipy.sparse: densified to float32 when all of them
        fit in ``max_dense_bytes`` (default `dense_cap`), else a `DataError`.
        """
        if len(Xs) != len(ys):
            raise DataError(f"{len(Xs)} feature arrays but {len(ys)} label arrays: one of each per task")
        if len(Xs) == 0:
            raise DataError("no tasks given")
        T = len(Xs)
        names = _task_names(names, T)
        _check_dense_size(Xs, "the tasks' features", max_dense_bytes)
        xs = [_as_float_array(X, f"features of task {names[t]!r}", max_dense_bytes) for t, X in enumerate(Xs)]
        ys_ = [_as_label_array(y, f"labels of task {names[t]!r}") for t, y in enumerate(ys)]
        inferred = kind is None
        kind, ys_, note, mapped = resolve_kind(kind, ys_)
        if note:
            kwargs["notes"] = [*kwargs.get("notes", ()), note]
        spec = TaskSpec(kind, tuple(names), _class_counts(kind, n_classes, ys_, T), labels or mapped)
        data = cls(spec, xs=xs, ys=ys_, **kwargs)
        return data.require_two_classes() if inferred and kwargs.get("validate", True) else data

    @classmethod
    def from_shared(
        cls,
        X: Any,
        Y: Any,
        kind: str | None = None,
        names: Sequence[str] | None = None,
        n_classes: int | Sequence[int] | None = None,
        max_dense_bytes: int | None = None,
        labels: tuple[float, ...] | None = None,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Shared-input tasks: one ``X`` [N, ...] and ``Y[:, t]`` per task (``[N, T, p]`` for soft
        labels); NaN in ``Y`` is a missing label that contributes no loss and no metric.

        ``kind`` None infers it from ``Y`` as `from_tasks` does; ``X`` may be scipy.sparse (densified to
        float32 under ``max_dense_bytes``)."""
        x = _as_float_array(X, "features", max_dense_bytes)
        y = _as_label_array(Y, "labels")
        if y.ndim == 1:
            y = y[:, None]
        inferred = kind is None
        if kind is None and y.ndim == 3:
            kind, note = "distribution", "task kind inferred from the labels: distribution ([N, T, classes])"
            log.info(note)
            kwargs["notes"] = [*kwargs.get("notes", ()), note]
        elif y.ndim == 2 and y.shape[1] > 0 and (kind is None or kind == "binary"):
            kind, cols, note, mapped = resolve_kind(kind, [y[:, t] for t in range(y.shape[1])])
            labels = labels or mapped
            y = np.stack(cols, axis=1)
            if note:
                kwargs["notes"] = [*kwargs.get("notes", ()), note]
        kind = kind or "binary"  # malformed labels: the shape errors below say what is wrong
        if kind == "distribution" and y.ndim != 3:
            raise DataError(f"shared distribution labels must be [N, T, classes], got shape {y.shape}")
        if kind != "distribution" and y.ndim != 2:
            raise DataError(f"shared labels must be [N, T], got shape {y.shape}")
        T = y.shape[1]
        names = _task_names(names, T)
        per_task = [y[:, t][~np.isnan(y[:, t])] if y.ndim == 2 else y[:, t] for t in range(T)]
        spec = TaskSpec(kind, tuple(names), _class_counts(kind, n_classes, per_task, T), labels)
        data = cls(spec, x=x, y=y, **kwargs)
        return data.require_two_classes() if inferred and kwargs.get("validate", True) else data

    @classmethod
    def from_table(
        cls,
        path: str | Path,
        task: str,
        target: str,
        features: Sequence[str] | None = None,
        kind: str | None = None,
        categorical: bool | Sequence[str] = False,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Read a CSV or Parquet file with one row per example, a task column and a target column.

        Features are all other columns (or ``features``), numeric unless ``categorical`` one-hot
        encodes the non-numeric ones (``True``) or the named ones. ``kind`` is inferred when omitted
        (`infer_kind`: 0/1 binary, 0..k-1 with k <= 10 multiclass, other integers such as 0-10 ratings and
        non-integers regression) with a note on the ``mtlkit.data`` logger and in ``notes``. Duplicate
        column names, blank cells (task, target, features), non-numeric or infinite values, an empty file
        or one with a header but no rows are `DataError`s naming the column and the data row (from 1).
        """
        from mtlkit.data.table import read_table

        return read_table(cls, path, task=task, target=target, features=features, kind=kind,
                          categorical=categorical, **kwargs)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        spec = self.spec
        if spec.kind not in KINDS:
            raise DataError(f"unknown task kind {spec.kind!r}")
        if self.xs is not None:
            assert self.ys is not None
            shape = None
            for t, (X, y) in enumerate(zip(self.xs, self.ys, strict=True)):
                nm = f"task {spec.names[t]!r}"
                if X.ndim < 2:
                    raise DataError(f"features of {nm} must be [rows, features...], got shape {X.shape}")
                if len(X) == 0:
                    raise DataError(f"{nm} is empty: it has no rows")
                if len(X) != len(y):
                    raise DataError(f"{nm} has {len(X)} feature rows but {len(y)} labels")
                if shape is None:
                    shape = X.shape[1:]
                elif X.shape[1:] != shape:
                    raise DataError(f"features of {nm} have shape {X.shape[1:]} per row, task "
                                    f"{spec.names[0]!r} has {shape}: all tasks need the same features")
                _check_finite(X, f"features of {nm}", columns=self.feature_names)
                _check_labels(y, spec.kind, spec.n_classes[t], f"labels of {nm}")
        else:
            assert self.x is not None and self.y is not None
            if self.x.ndim < 2:
                raise DataError(f"features must be [rows, features...], got shape {self.x.shape}")
            if len(self.x) != len(self.y):
                raise DataError(f"{len(self.x)} feature rows but {len(self.y)} label rows")
            if len(self.x) == 0:
                raise DataError("the data set has no rows")
            _check_finite(self.x, "features", columns=self.feature_names)
            for t in range(spec.n_tasks):
                yt = self.y[:, t]
                known = ~np.isnan(yt) if yt.ndim == 1 else ~np.isnan(yt).any(1)
                if not known.any():
                    raise DataError(f"task {spec.names[t]!r} is empty: every label is missing")
                _check_labels(yt[known], spec.kind, spec.n_classes[t], f"labels of task {spec.names[t]!r}",
                              rows=np.flatnonzero(known))

    def require_two_classes(self) -> MultiTaskData:
        """Raise a `DataError` naming the first binary/multiclass task whose labels are all one class; done
        whenever the kind was inferred, and by `from_table` always (explicit kinds from arrays allow it)."""
        for t in range(self.n_tasks):
            _check_two_classes(self.task_arrays(t)[1], self.kind, self.task_names[t])
        return self

    # ------------------------------------------------------------------ properties
    @property
    def shared(self) -> bool:
        """True for the shared-input layout (one X for all tasks)."""
        return self.x is not None

    @property
    def n_tasks(self) -> int:
        return self.spec.n_tasks

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.spec.names

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def feature_shape(self) -> tuple[int, ...]:
        if self.xs is not None:
            return tuple(self.xs[0].shape[1:])
        assert self.x is not None
        return tuple(self.x.shape[1:])

    @property
    def task_sizes(self) -> tuple[int, ...]:
        """Labelled rows per task."""
        if self.xs is not None:
            return tuple(len(X) for X in self.xs)
        return tuple(int(self.label_mask(t).sum()) for t in range(self.n_tasks))

    def label_mask(self, t: int) -> np.ndarray:
        """Shared layout: which rows carry a label for task t."""
        assert self.y is not None
        yt = self.y[:, t]
        return ~np.isnan(yt) if yt.ndim == 1 else ~np.isnan(yt).any(1)

    def task_arrays(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Task t's labelled rows and labels (missing labels removed), whatever the layout."""
        if self.xs is not None:
            assert self.ys is not None
            return self.xs[t], self.ys[t]
        assert self.x is not None and self.y is not None
        m = self.label_mask(t)
        return self.x[m], self.y[m, t]

    def info(self) -> DataInfo:
        return DataInfo(spec=self.spec, feature_shape=self.feature_shape, shared=self.shared,
                        train_sizes=self.task_sizes)

    def checksum(self) -> str:
        """SHA-256 (first 16 hex digits) of the features, labels and task names: identifies the data."""
        h = hashlib.sha256()
        h.update(repr((self.spec.kind, self.spec.names, self.spec.n_classes)).encode())
        arrays = (self.xs or []) + (self.ys or []) if self.xs is not None else [self.x, self.y]
        for a in arrays:  # shapes too: moving a row from one task to the next changes the data
            h.update(repr(np.shape(a)).encode())
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        sizes = self.task_sizes
        layout = "shared input" if self.shared else "heterogeneous"
        return (f"MultiTaskData({self.name!r}, {self.n_tasks} {self.kind} tasks, {layout}, features "
                f"{self.feature_shape}, rows per task {min(sizes)}-{max(sizes)})")

    # ------------------------------------------------------------------ subsets and splits
    def subset(self, indices: Sequence[np.ndarray] | np.ndarray) -> MultiTaskData:
        """Rows by index: one index array per task (heterogeneous) or one row index array (shared)."""
        common = dict(name=self.name, feature_names=self.feature_names, notes=self.notes, validate=False)
        if self.xs is not None:
            assert self.ys is not None
            xs = [self.xs[t][np.asarray(i, dtype=np.int64)] for t, i in enumerate(indices)]
            ys = [self.ys[t][np.asarray(i, dtype=np.int64)] for t, i in enumerate(indices)]
            return MultiTaskData(self.spec, xs=xs, ys=ys, **common)
        assert self.x is not None and self.y is not None
        idx = np.asarray(indices, dtype=np.int64)
        return MultiTaskData(self.spec, x=self.x[idx], y=self.y[idx], **common)

    def with_features(self, fn: Any) -> MultiTaskData:
        """A copy whose features are ``fn(X)`` (a fitted transform), labels unchanged."""
        common = dict(name=self.name, notes=self.notes, validate=False)
        if self.xs is not None:
            return MultiTaskData(self.spec, xs=[fn(X) for X in self.xs], ys=self.ys, **common)
        return MultiTaskData(self.spec, x=fn(self.x), y=self.y, **common)

    def split(self, test: float = 0.2, val: float = 0.2, seed: int = 0) -> Split:
        """Random per-task split, stratified by label: ``test`` of each task's rows, then ``val`` of the
        remaining rows (TOMATO's protocol). Shared-input data are split by row."""
        from mtlkit.data.splits import random_split

        return random_split(self, test=test, val=val, seed=seed)

    def split_indices(
        self,
        train: Sequence[np.ndarray] | np.ndarray,
        test: Sequence[np.ndarray] | np.ndarray,
        val: Sequence[np.ndarray] | np.ndarray | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> Split:
        """A split from given index sets (e.g. School's Argyriou splits); when ``val`` is omitted a
        stratified ``val_fraction`` of each task's training rows becomes the validation set."""
        from mtlkit.data.splits import indexed_split

        return indexed_split(self, train=train, test=test, val=val, val_fraction=val_fraction, seed=seed)

    def tensors(self, device: Any = None, dtype: Any = None) -> DeviceData:
        """Padded tensors on ``device`` for batched training and evaluation (see `DeviceData`)."""
        from mtlkit.data.tensors import to_device_data

        return to_device_data(self, device=device, dtype=dtype)


def _task_names(names: Sequence[str] | None, T: int) -> list[str]:
    if names is None:
        return [f"task{t}" for t in range(T)]
    names = [str(n) for n in names]
    if len(names) != T:
        raise DataError(f"{len(names)} task names for {T} tasks")
    return names


def _class_counts(kind: str, n_classes: int | Sequence[int] | None, ys: Sequence[np.ndarray],
                  T: int) -> tuple[int, ...]:
    if kind not in KINDS:
        raise DataError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "regression":
        return (1,) * T
    if kind == "binary":
        return (2,) * T
    if n_classes is None:
        if kind == "distribution":
            widths = {y.shape[-1] if y.ndim == 2 else -1 for y in ys}
            if len(widths) != 1 or -1 in widths:
                raise DataError("distribution labels must be [n, classes] with the same classes for all tasks")
            return (widths.pop(),) * T
        counts = []
        for y in ys:
            finite = y[np.isfinite(y)]
            counts.append(int(finite.max()) + 1 if finite.size else 2)
        return tuple(max(c, 2) for c in counts)
    if isinstance(n_classes, int):
        return (n_classes,) * T
    if len(n_classes) != T:
        raise DataError(f"{len(n_classes)} class counts for {T} tasks")
    return tuple(int(c) for c in n_classes)
