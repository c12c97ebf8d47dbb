"""`MultiTaskData`: the tasks' inputs and labels, validated once, in either of the two MTL layouts.

Heterogeneous tasks each own their rows (``X_t, y_t``: School, MNIST-MTL); shared-input tasks label
the same rows (``X, Y[:, t]``: multi-label images), where NaN marks a missing label that contributes
no loss and no metric. Nothing is silently dropped, coerced or reordered.

When ``kind`` is not given it is inferred from the labels (`infer_kind`) and never silently: the inference
is recorded in ``notes`` and logged on the ``mtlkit.data`` logger (a WARNING whenever the labels are
integers, i.e. another kind was plausible; the CLI prints those). scipy.sparse features are densified to
float32 at construction, up to a memory cap (`MAX_DENSE_BYTES`).

Memory (issue 18): features given as float32 are kept float32 (other numbers as float64), and the features of
a subset (a split's parts), or of a standardised copy, are an index into the source's rows and a row-wise map
(`mtlkit.data.rows.Rows`), gathered when read, so the source is held once whatever is derived from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from mtlkit.data.checks import (  # noqa: F401  (re-exported: the public names' old home)
    MAX_DENSE_BYTES,
    _as_float_array,
    _as_label_array,
    _check_dense_size,
    _check_finite,
    _check_finite_rows,
    _check_labels,
    _check_two_classes,
    _is_sparse,
    dense_cap,
    densify,
)
from mtlkit.data.kinds import (  # noqa: F401  (re-exported)
    MAX_INFERRED_CLASSES,
    KindInference,
    collect_notes,
    infer_kind,
    log,
    resolve_kind,
)
from mtlkit.data.rows import Rows, TaskRows
from mtlkit.data.shared_labels import LabelCells
from mtlkit.data.spec import KINDS, DataInfo, TaskSpec
from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.ranks import Ranks
    from mtlkit.data.splits import Split
    from mtlkit.data.tensors import DeviceData
    from mtlkit.data.transforms import FeatureTransform


def _all_arrays(values: list[np.ndarray | Rows]) -> TypeGuard[list[np.ndarray]]:
    """True when no entry is held by reference (every one a plain array)."""
    return all(not isinstance(v, Rows) for v in values)


class MultiTaskData:
    """T tasks' inputs and labels in the heterogeneous or the shared-input layout.

    Build with :meth:`from_tasks`, :meth:`from_shared` or :meth:`from_table`; split with :meth:`split`
    (per-task stratified, from a seed) or :meth:`split_indices` (given index sets).
    """

    def __init__(
        self,
        spec: TaskSpec,
        *,
        xs: Sequence[np.ndarray | Rows] | None = None,
        ys: Sequence[np.ndarray] | None = None,
        x: np.ndarray | Rows | None = None,
        y: np.ndarray | LabelCells | None = None,
        name: str = "custom",
        feature_names: Sequence[str] | None = None,
        transform: FeatureTransform | None = None,
        predefined_splits: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]] | None = None,
        notes: Sequence[str] = (),
        validate: bool = True,
        spill_dir: str | None = None,
    ) -> None:
        self.spec = spec
        #: Where device stores built from these data are memory-mapped (None: in memory); set for streamed tables.
        self.spill_dir = spill_dir
        self.name = name
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.transform = transform
        self.predefined_splits = list(predefined_splits) if predefined_splits is not None else None
        self.notes = list(notes)
        if (xs is None) == (x is None):
            raise DataError("give either per-task xs/ys (heterogeneous) or one shared x/y, not both")
        self.xs = xs  # the setter wraps them as Rows
        self.ys = list(ys) if ys is not None else None
        self.x = x
        self.y = y
        if validate:
            self._validate()

    # ------------------------------------------------------------------ features, held as Rows
    @property
    def xs(self) -> Sequence[np.ndarray] | None:
        """Heterogeneous layout: each task's feature array ``[n_t, ...]`` (None for shared input). Rows held by
        reference (a split's part, a standardised copy) are gathered when a task is read (`TaskRows`)."""
        if self._xs is None:
            return None
        if _all_arrays(self._xs):
            return self._xs  # the list itself: assigning into it sticks, as ever
        return TaskRows([Rows.of(v) for v in self._xs])

    @xs.setter
    def xs(self, value: Sequence[np.ndarray | Rows] | None) -> None:
        self._xs = None if value is None else [v.base if isinstance(v, Rows) and v.plain else v for v in value]

    @property
    def x(self) -> np.ndarray | None:
        """Shared-input layout: the features ``[N, ...]`` (None for heterogeneous tasks); gathered now when held
        by reference."""
        return None if self._x is None else self._x.array()

    @x.setter
    def x(self, value: np.ndarray | Rows | None) -> None:
        self._x = None if value is None else Rows.of(value)

    def feature_rows(self) -> list[Rows]:
        """The features as `Rows`, one per task (heterogeneous) or one (shared input): read them block by block
        (`Rows.blocks`) to bound memory."""
        if self._xs is not None:
            return [Rows.of(v) for v in self._xs]
        assert self._x is not None
        return [self._x]

    @property
    def n_rows(self) -> int:
        """Rows held: all tasks' rows (heterogeneous) or N (shared input)."""
        return sum(len(r) for r in self.feature_rows())

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
        Y: Any = None,
        kind: str | None = None,
        names: Sequence[str] | None = None,
        n_classes: int | Sequence[int] | None = None,
        max_dense_bytes: int | None = None,
        labels: tuple[float, ...] | None = None,
        unstored: str = "zero",
        cells: tuple[Any, Any, Any] | None = None,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Shared-input tasks: one ``X`` [N, ...] and ``Y[:, t]`` per task (``[N, T, p]`` for soft
        labels); NaN in ``Y`` is a missing label that contributes no loss and no metric.

        ``kind`` None infers it from ``Y`` as `from_tasks` does; ``X`` may be scipy.sparse (densified to
        float32 under ``max_dense_bytes``).

        Mostly missing labels without a dense ``[N, T]`` matrix: ``Y`` scipy.sparse with ``unstored="missing"``
        (its stored entries, explicit zeros included, are the labels; by default, ``"zero"``, unstored cells
        are labels 0, as in scikit-learn's multi-label indicator matrices, and ``Y`` is densified), or
        ``Y=None, cells=(rows, tasks, values)`` (COO triples; T is ``len(names)`` or the largest task + 1).
        Either is held as its cells (`LabelCells`) and gives the same batches as the dense matrix."""
        if unstored not in ("zero", "missing"):
            raise DataError(f"unstored must be 'zero' or 'missing', got {unstored!r}")
        if cells is not None or (unstored == "missing" and _is_sparse(Y)):
            from mtlkit.data.shared_labels import from_cells

            return from_cells(cls, X, Y, cells, kind=kind, names=names, n_classes=n_classes,
                              max_dense_bytes=max_dense_bytes, labels=labels, **kwargs)
        if Y is None:
            raise DataError("no labels given: pass Y (or cells=(rows, tasks, values))")
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
            kind, cols, kind_note, mapped = resolve_kind(kind, [y[:, t] for t in range(y.shape[1])])
            labels = labels or mapped
            y = np.stack(cols, axis=1)
            if kind_note:
                kwargs["notes"] = [*kwargs.get("notes", ()), kind_note]
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
        stream: bool | None = None,
        spill_dir: str | Path | None = None,
        distributed: bool | Ranks = False,
        **kwargs: Any,
    ) -> MultiTaskData:
        """Read a CSV or Parquet file (or a folder of Parquet files) with one row per example, a task column and
        a target column.

        Features are all other columns (or ``features``), numeric unless ``categorical`` one-hot
        encodes the non-numeric ones (``True``) or the named ones. ``kind`` is inferred when omitted
        (`infer_kind`: 0/1 binary, 0..k-1 with k <= 10 multiclass, other integers such as 0-10 ratings and
        non-integers regression) with a note on the ``mtlkit.data`` logger and in ``notes``. Duplicate
        column names, blank cells (task, target, features), non-numeric or infinite values, an empty file
        or one with a header but no rows are `DataError`s naming the column and the data row (from 1).

        ``stream`` (default: for a folder): read Parquet batch by batch into a memory-mapped feature file in
        ``spill_dir`` (`mtlkit.data.streaming`), so data larger than memory train with the same batches;
        ``stream=False`` reads a folder into memory (pandas). ``distributed`` (streaming; True: every rank of the
        initialised ``torch.distributed`` group calls it; or a `mtlkit.data.ranks.Ranks`): the ranks share the
        reading, each the features of its share of the row groups, into one memory-mapped file per machine; every
        rank gets the same data. Without streaming each rank reads the whole table, as before.
        """
        p = Path(path)
        if distributed:  # the ranks take the same road (or all stop): a rank that streams waits for the others
            from mtlkit.data.ranks import agree_on_path, resolve_ranks

            ranks = resolve_ranks(distributed)
            if ranks is not None:
                agree_on_path(ranks, p)
            distributed = ranks or False  # resolved once: no second gather of the machines
        if stream is None:
            stream = p.is_dir()
        if stream:
            from mtlkit.data.streaming import read_parquet_stream

            return read_parquet_stream(cls, p, task=task, target=target, features=features, kind=kind,
                                       categorical=categorical, spill=spill_dir,
                                       distributed=distributed, **kwargs)
        from mtlkit.data.table import read_table

        return read_table(cls, path, task=task, target=target, features=features, kind=kind,
                          categorical=categorical, **kwargs)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        spec = self.spec
        if spec.kind not in KINDS:
            raise DataError(f"unknown task kind {spec.kind!r}")
        if self._xs is not None:
            assert self.ys is not None
            if len(self._xs) != len(self.ys):
                raise DataError(f"{len(self._xs)} feature arrays but {len(self.ys)} label arrays: one of each per task")
            shape = None
            for t, (R, y) in enumerate(zip(self.feature_rows(), self.ys, strict=True)):
                nm = f"task {spec.names[t]!r}"
                if len(R.shape) < 2:
                    raise DataError(f"features of {nm} must be [rows, features...], got shape {R.shape}")
                if len(R) == 0:
                    raise DataError(f"{nm} is empty: it has no rows")
                if len(R) != len(y):
                    raise DataError(f"{nm} has {len(R)} feature rows but {len(y)} labels")
                if shape is None:
                    shape = R.shape[1:]
                elif R.shape[1:] != shape:
                    raise DataError(f"features of {nm} have shape {R.shape[1:]} per row, task "
                                    f"{spec.names[0]!r} has {shape}: all tasks need the same features")
                _check_finite_rows(R, f"features of {nm}", self.feature_names)
                _check_labels(y, spec.kind, spec.n_classes[t], f"labels of {nm}")
        else:
            assert self._x is not None and self.y is not None
            shape = self._x.shape
            if len(shape) < 2:
                raise DataError(f"features must be [rows, features...], got shape {shape}")
            if shape[0] != len(self.y):
                raise DataError(f"{shape[0]} feature rows but {len(self.y)} label rows")
            if shape[0] == 0:
                raise DataError("the data set has no rows")
            _check_finite(self._x.array(), "features", columns=self.feature_names)
            for t in range(spec.n_tasks):
                known = self.label_mask(t)
                if not known.any():
                    raise DataError(f"task {spec.names[t]!r} is empty: every label is missing")
                _check_labels(self.task_labels(t), spec.kind, spec.n_classes[t], f"labels of task {spec.names[t]!r}",
                              rows=np.flatnonzero(known))

    def require_two_classes(self) -> MultiTaskData:
        """Raise a `DataError` naming the first binary/multiclass task whose labels are all one class; done
        whenever the kind was inferred, and by `from_table` always (explicit kinds from arrays allow it)."""
        for t in range(self.n_tasks):
            _check_two_classes(self.task_labels(t), self.kind, self.task_names[t])
        return self

    # ------------------------------------------------------------------ properties
    @property
    def shared(self) -> bool:
        """True for the shared-input layout (one X for all tasks)."""
        return self._x is not None

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
        return tuple(self.feature_rows()[0].shape[1:])

    @property
    def task_sizes(self) -> tuple[int, ...]:
        """Labelled rows per task."""
        if self._xs is not None:
            return tuple(len(v) for v in self._xs)
        if isinstance(self.y, LabelCells):
            return tuple(int(c) for c in self.y.counts())
        return tuple(int(self.label_mask(t).sum()) for t in range(self.n_tasks))

    def label_mask(self, t: int) -> np.ndarray:
        """Shared layout: which rows carry a label for task t."""
        assert self.y is not None
        if isinstance(self.y, LabelCells):
            return self.y.mask(t)
        yt = self.y[:, t]
        return ~np.isnan(yt) if yt.ndim == 1 else ~np.isnan(yt).any(1)

    def task_labels(self, t: int) -> np.ndarray:
        """Task t's labels (missing labels removed), whatever the layout, without reading the features."""
        if self.ys is not None:
            return self.ys[t]
        assert self.y is not None
        if isinstance(self.y, LabelCells):
            return self.y.task_values(t)
        return self.y[self.label_mask(t), t]

    def task_arrays(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Task t's labelled rows and labels (missing labels removed), whatever the layout."""
        if self._xs is not None:
            assert self.ys is not None
            return Rows.of(self._xs[t]).array(), self.ys[t]
        assert self._x is not None and self.y is not None
        return self._x.take(np.flatnonzero(self.label_mask(t))).array(), self.task_labels(t)

    def info(self) -> DataInfo:
        return DataInfo(spec=self.spec, feature_shape=self.feature_shape, shared=self.shared,
                        train_sizes=self.task_sizes)

    def checksum(self) -> str:
        """SHA-256 (first 16 hex digits) of the features, labels and task names: identifies the data. The
        features are hashed block by block (the same bytes as the whole float64 array: the same digest)."""
        h = hashlib.sha256()
        h.update(repr((self.spec.kind, self.spec.names, self.spec.n_classes)).encode())
        labels = list(self.ys) if self.ys is not None else [self.y]
        items: list[Rows | np.ndarray] = [*self.feature_rows(), *labels]
        for a in items:  # shapes too: moving a row from one task to the next changes the data
            h.update(repr(tuple(a.shape)).encode())
            if isinstance(a, LabelCells):  # the dense NaN-filled matrix's bytes, a row block at a time
                blocks: Any = ((0, a.dense(r0, r1)) for r0, r1 in a.row_blocks())
            else:
                blocks = a.blocks() if isinstance(a, Rows) else [(0, a)]
            for _, block in blocks:
                h.update(np.ascontiguousarray(block, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        sizes = self.task_sizes
        layout = "shared input" if self.shared else "heterogeneous"
        return (f"MultiTaskData({self.name!r}, {self.n_tasks} {self.kind} tasks, {layout}, features "
                f"{self.feature_shape}, rows per task {min(sizes)}-{max(sizes)})")

    # ------------------------------------------------------------------ subsets and splits
    def subset(self, indices: Sequence[np.ndarray] | np.ndarray) -> MultiTaskData:
        """Rows by index: one index array per task (heterogeneous) or one row index array (shared). The
        features are not copied: the subset holds an index into these rows (`Rows.take`)."""
        common: dict[str, Any] = dict(name=self.name, feature_names=self.feature_names, notes=self.notes,
                                      validate=False, spill_dir=self.spill_dir)
        if self._xs is not None:
            assert self.ys is not None
            idx = [np.asarray(i, dtype=np.int64) for i in indices]
            xs = [R.take(i) for R, i in zip(self.feature_rows(), idx, strict=True)]
            ys = [y[i] for y, i in zip(self.ys, idx, strict=True)]
            return MultiTaskData(self.spec, xs=xs, ys=ys, **common)
        assert self._x is not None and self.y is not None
        rows = np.asarray(indices, dtype=np.int64)
        return MultiTaskData(self.spec, x=self._x.take(rows), y=self.y[rows], **common)

    def with_features(self, fn: Any) -> MultiTaskData:
        """A copy whose features are ``fn(X)`` (a fitted transform), labels unchanged."""
        common: dict[str, Any] = dict(name=self.name, notes=self.notes, validate=False, spill_dir=self.spill_dir)
        if self._xs is not None:
            return MultiTaskData(self.spec, xs=[fn(R.array()) for R in self.feature_rows()], ys=self.ys, **common)
        assert self._x is not None
        return MultiTaskData(self.spec, x=fn(self._x.array()), y=self.y, **common)

    def map_features(self, fn: Callable[[np.ndarray], np.ndarray]) -> MultiTaskData:
        """Like `with_features` for a row-wise map that keeps each row's shape (standardisation), but computed
        when the rows are read (`Rows.map`): nothing is copied now."""
        common: dict[str, Any] = dict(name=self.name, feature_names=self.feature_names, notes=self.notes,
                                      validate=False, spill_dir=self.spill_dir)
        if self._xs is not None:
            return MultiTaskData(self.spec, xs=[R.map(fn) for R in self.feature_rows()], ys=self.ys, **common)
        assert self._x is not None
        return MultiTaskData(self.spec, x=self._x.map(fn), y=self.y, **common)

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
