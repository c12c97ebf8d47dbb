"""`MultiTaskData`: the tasks' inputs and labels, validated once, in either of the two MTL layouts.

Heterogeneous tasks each own their rows (``X_t, y_t``: School, MNIST-MTL); shared-input tasks label
the same rows (``X, Y[:, t]``: multi-label images), where NaN marks a missing label that contributes
no loss and no metric. Nothing is silently dropped, coerced or reordered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.data.spec import KINDS, DataInfo, TaskSpec
from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.splits import Split
    from mtlkit.data.tensors import DeviceData
    from mtlkit.data.transforms import FeatureTransform


def _as_float_array(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_finite(x: np.ndarray, what: str, rows: np.ndarray | None = None) -> None:
    """``rows`` maps x's rows to the row numbers a person sees (when missing labels were removed)."""
    bad = ~np.isfinite(x)
    if bad.any():
        pos = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(x[tuple(pos)]) else "inf"
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
        kind: str = "regression",
        names: Sequence[str] | None = None,
        n_classes: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Heterogeneous tasks: task t has its own rows ``Xs[t]`` [n_t, ...] and labels ``ys[t]``."""
        if len(Xs) != len(ys):
            raise DataError(f"{len(Xs)} feature arrays but {len(ys)} label arrays: one of each per task")
        if len(Xs) == 0:
            raise DataError("no tasks given")
        T = len(Xs)
        names = _task_names(names, T)
        xs = [_as_float_array(X, f"features of task {names[t]!r}") for t, X in enumerate(Xs)]
        ys_ = [_as_float_array(y, f"labels of task {names[t]!r}") for t, y in enumerate(ys)]
        spec = TaskSpec(kind, tuple(names), _class_counts(kind, n_classes, ys_, T))
        return cls(spec, xs=xs, ys=ys_, **kwargs)

    @classmethod
    def from_shared(
        cls,
        X: Any,
        Y: Any,
        kind: str = "binary",
        names: Sequence[str] | None = None,
        n_classes: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Shared-input tasks: one ``X`` [N, ...] and ``Y[:, t]`` per task (``[N, T, p]`` for soft
        labels); NaN in ``Y`` is a missing label that contributes no loss and no metric."""
        x = _as_float_array(X, "features")
        y = _as_float_array(Y, "labels")
        if y.ndim == 1:
            y = y[:, None]
        if kind == "distribution" and y.ndim != 3:
            raise DataError(f"shared distribution labels must be [N, T, classes], got shape {y.shape}")
        if kind != "distribution" and y.ndim != 2:
            raise DataError(f"shared labels must be [N, T], got shape {y.shape}")
        T = y.shape[1]
        names = _task_names(names, T)
        per_task = [y[:, t][~np.isnan(y[:, t])] if y.ndim == 2 else y[:, t] for t in range(T)]
        spec = TaskSpec(kind, tuple(names), _class_counts(kind, n_classes, per_task, T))
        return cls(spec, x=x, y=y, **kwargs)

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
        encodes the non-numeric ones (``True``) or the named ones; ``kind`` is inferred when omitted.
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
                _check_finite(X, f"features of {nm}")
                _check_labels(y, spec.kind, spec.n_classes[t], f"labels of {nm}")
        else:
            assert self.x is not None and self.y is not None
            if self.x.ndim < 2:
                raise DataError(f"features must be [rows, features...], got shape {self.x.shape}")
            if len(self.x) != len(self.y):
                raise DataError(f"{len(self.x)} feature rows but {len(self.y)} label rows")
            if len(self.x) == 0:
                raise DataError("the data set has no rows")
            _check_finite(self.x, "features")
            for t in range(spec.n_tasks):
                yt = self.y[:, t]
                known = ~np.isnan(yt) if yt.ndim == 1 else ~np.isnan(yt).any(1)
                if not known.any():
                    raise DataError(f"task {spec.names[t]!r} is empty: every label is missing")
                _check_labels(yt[known], spec.kind, spec.n_classes[t], f"labels of task {spec.names[t]!r}",
                              rows=np.flatnonzero(known))

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
