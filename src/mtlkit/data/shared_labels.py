"""A shared-input label matrix held as its labelled cells (issue 18): 1,000 tasks x 1M rows with 1 % labelled is
10M cells (~160 MB), not a dense ``[N, T]`` float64 matrix (8 GB).

`LabelCells` is what `MultiTaskData.y` holds when `MultiTaskData.from_shared` is given a scipy.sparse label
matrix with ``unstored="missing"`` or COO triples (``cells=``). It answers what the library asks of ``y``
(`counts`, `mask`, `task_values`, row subsets, the dense NaN-filled block of some tasks) without the dense
matrix, and `to_device_data` builds its device store (sparse or dense) from the cells directly, so the batches
are those of the same labels given dense.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mtlkit.errors import DataError

#: Dense cells (float64) one block of `LabelCells.row_blocks` holds: 8 MiB.
BLOCK_CELLS = 1 << 20


class LabelCells:
    """The labelled cells of an ``[N, T]`` label matrix, by row (CSR): row ``r``'s cells are
    ``indptr[r]:indptr[r + 1]``, tasks ascending, each with its ``task`` (int32) and label ``value`` (float64).
    Unlabelled cells are missing labels (NaN in the dense matrix it stands for)."""

    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, indptr: np.ndarray, task: np.ndarray, value: np.ndarray, n_tasks: int) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.task = np.asarray(task, dtype=np.int32)
        self.value = np.asarray(value, dtype=np.float64)
        self.n_tasks = int(n_tasks)
        self._by_task: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_coo(cls, rows: Any, tasks: Any, values: Any, shape: tuple[int, int]) -> LabelCells:
        """From COO triples: label ``values[i]`` at row ``rows[i]`` of task ``tasks[i]``, in any order; a cell
        given twice, an index outside ``shape`` or a non-numeric value is a `DataError`."""
        N, T = int(shape[0]), int(shape[1])
        r, t = np.asarray(rows), np.asarray(tasks)
        v = np.asarray(values)
        if r.ndim != 1 or t.ndim != 1 or v.ndim != 1 or not len(r) == len(t) == len(v):
            raise DataError(f"label cells need rows, tasks and values of one length each, got shapes {r.shape}, "
                            f"{t.shape}, {v.shape}")
        for nm, a in (("rows", r), ("tasks", t)):
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise DataError(f"label cells: {nm} must be integers, got dtype {a.dtype}")
        if v.dtype == object or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            raise DataError(f"label cells: values must be numeric, got dtype {v.dtype}")
        r, t, v = r.astype(np.int64), t.astype(np.int64), v.astype(np.float64)
        if r.size and (r.min() < 0 or r.max() >= N):
            raise DataError(f"label cells: a row index is outside 0..{N - 1} (the rows of X)")
        if t.size and (t.min() < 0 or t.max() >= T):
            raise DataError(f"label cells: a task index is outside 0..{T - 1}")
        order = np.lexsort((t, r))  # by row, then task: the CSR order of the dense matrix's cells
        r, t, v = r[order], t[order], v[order]
        dup = (r[1:] == r[:-1]) & (t[1:] == t[:-1])
        if dup.any():
            i = int(np.argmax(dup))
            raise DataError(f"label cells: row {r[i]}, task {t[i]} is given twice")
        indptr = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=N), out=indptr[1:])
        return cls(indptr, t, v, T)

    @classmethod
    def from_scipy(cls, Y: Any) -> LabelCells:
        """From a scipy.sparse matrix ``[N, T]`` whose stored entries (explicit zeros included) are the labels."""
        coo = Y.tocoo()
        return cls.from_coo(coo.row, coo.col, coo.data, coo.shape)

    @classmethod
    def from_dense(cls, Y: np.ndarray) -> LabelCells:
        """From a dense ``[N, T]`` matrix with NaN where a label is missing."""
        Y = np.asarray(Y, dtype=np.float64)
        r, t = np.nonzero(~np.isnan(Y))
        return cls.from_coo(r, t, Y[r, t], Y.shape)

    # ------------------------------------------------------------------ sizes
    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.indptr) - 1, self.n_tasks)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def cell_rows(self) -> np.ndarray:
        """Each cell's row [nnz]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))

    def counts(self) -> np.ndarray:
        """Labelled cells per task [T]."""
        return np.bincount(self.task, minlength=self.n_tasks).astype(np.int64)

    def _task_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Cells grouped by task (rows ascending within a task) and where each task starts."""
        if self._by_task is None:
            order = np.argsort(self.task, kind="stable")
            starts = np.zeros(self.n_tasks + 1, dtype=np.int64)
            np.cumsum(self.counts(), out=starts[1:])
            self._by_task = (order, starts)
        return self._by_task

    def task_cells(self, t: int) -> np.ndarray:
        """Task ``t``'s cells, rows ascending."""
        order, starts = self._task_index()
        return order[starts[t]:starts[t + 1]]

    def task_rows(self, t: int) -> np.ndarray:
        """The rows labelled for task ``t``, ascending."""
        cells = self.task_cells(t)
        return np.searchsorted(self.indptr, cells, side="right") - 1

    def task_values(self, t: int) -> np.ndarray:
        """Task ``t``'s labels, rows ascending (the dense column ``t`` without its NaN)."""
        return self.value[self.task_cells(t)]

    def mask(self, t: int) -> np.ndarray:
        """``[N]`` True where task ``t`` has a label."""
        m = np.zeros(len(self), dtype=bool)
        m[self.task_rows(t)] = True
        return m

    # ------------------------------------------------------------------ derived matrices
    def take(self, rows: np.ndarray) -> LabelCells:
        """Rows ``rows`` (in that order), cells and all."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lens = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        n = int(indptr[-1])
        cells = np.repeat(starts - indptr[:-1], lens) + np.arange(n, dtype=np.int64)
        return LabelCells(indptr, self.task[cells], self.value[cells], self.n_tasks)

    def map_values(self, fn: Callable[[np.ndarray], np.ndarray]) -> LabelCells:
        """The same cells with labels ``fn(values)`` (e.g. standardised regression targets)."""
        return LabelCells(self.indptr, self.task, np.asarray(fn(self.value), dtype=np.float64), self.n_tasks)

    def dense(self, r0: int = 0, r1: int | None = None, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """The dense float64 block ``[r0:r1, t0:t1]`` of the matrix, NaN where a label is missing."""
        r1 = len(self) if r1 is None else r1
        t1 = self.n_tasks if t1 is None else t1
        out = np.full((r1 - r0, t1 - t0), np.nan)
        a, b = int(self.indptr[r0]), int(self.indptr[r1])
        rows = np.repeat(np.arange(r1 - r0), np.diff(self.indptr[r0:r1 + 1]))
        t = self.task[a:b]
        keep = (t >= t0) & (t < t1)
        out[rows[keep], t[keep] - t0] = self.value[a:b][keep]
        return out

    def row_blocks(self) -> Iterator[tuple[int, int]]:
        """Row ranges whose dense block holds at most `BLOCK_CELLS` cells."""
        step = max(1, BLOCK_CELLS // max(1, self.n_tasks))
        for s in range(0, len(self), step):
            yield s, min(s + step, len(self))

    def __getitem__(self, key: Any) -> Any:
        """``y[rows]`` (an index array or slice: `LabelCells`), ``y[:, t]`` / ``y[:, t0:t1]`` (dense, NaN where
        missing: what code written for the dense matrix reads, one column block at a time)."""
        if isinstance(key, tuple):
            rk, ck = key
            if isinstance(ck, (int, np.integer)):
                return self[rk].dense(t0=int(ck), t1=int(ck) + 1)[:, 0] if not _all(rk) else self._column(int(ck))
            if isinstance(ck, slice):
                t0, t1, step = ck.indices(self.n_tasks)
                if step != 1:
                    raise IndexError("label cells: task slices must be contiguous")
                return (self if _all(rk) else self[rk]).dense(t0=t0, t1=t1)
            raise IndexError(f"label cells: unsupported index {key!r}")
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        return self.take(np.asarray(key))

    def _column(self, t: int) -> np.ndarray:
        out = np.full(len(self), np.nan)
        out[self.task_rows(t)] = self.task_values(t)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole dense matrix (``N x T`` float64 cells: only for small data)."""
        out = self.dense()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        N, T = self.shape
        return f"LabelCells({N} rows x {T} tasks, {self.nnz} labelled cells)"


def _all(key: Any) -> bool:
    return isinstance(key, slice) and key == slice(None)


def from_cells(cls: Any, X: Any, Y: Any, cells: tuple[Any, Any, Any] | None, kind: str | None,
               names: Any, n_classes: Any, max_dense_bytes: int | None, labels: tuple[float, ...] | None,
               **kwargs: Any) -> Any:
    """`MultiTaskData.from_shared` for labels given as cells: a scipy.sparse ``Y`` whose stored entries are the
    labels, or COO triples ``cells``; the kind is resolved from the labelled values as for a dense ``Y``."""
    from mtlkit.data.checks import _as_float_array
    from mtlkit.data.kinds import log, resolve_kind
    from mtlkit.data.multitask import _class_counts, _task_names
    from mtlkit.data.spec import TaskSpec

    x = _as_float_array(X, "features", max_dense_bytes)
    N = len(x)
    if cells is not None:
        if Y is not None:
            raise DataError("give the labels as Y or as cells=(rows, tasks, values), not both")
        if len(cells) != 3:
            raise DataError("cells must be (rows, tasks, values)")
        r, t, v = cells
        t_arr = np.asarray(t)
        T = len(names) if names is not None else (int(t_arr.max()) + 1 if t_arr.size else 0)
        y = LabelCells.from_coo(r, t_arr, v, (N, T))
    else:
        if Y.ndim != 2 or Y.shape[0] != N:
            raise DataError(f"sparse labels must be [N, T] with the N={N} rows of X, got shape {Y.shape}")
        y = LabelCells.from_scipy(Y)
    if kind == "distribution":
        raise DataError("labels given as cells hold one value per cell: not for distribution (soft-label) tasks")
    inferred = kind is None
    if kind is None or kind == "binary":
        kind, (vals,), note, mapped = resolve_kind(kind, [y.value])
        y = LabelCells(y.indptr, y.task, vals, y.n_tasks)
        labels = labels or mapped
        if note:
            kwargs["notes"] = [*kwargs.get("notes", ()), note]
    log.debug("shared labels held as %d cells of %d x %d", y.nnz, N, y.n_tasks)
    T = y.n_tasks
    names = _task_names(names, T)
    per_task = [y.task_values(t) for t in range(T)]
    spec = TaskSpec(kind, tuple(names), _class_counts(kind, n_classes, per_task, T), labels)
    data = cls(spec, x=x, y=y, **kwargs)
    return data.require_two_classes() if inferred and kwargs.get("validate", True) else data
