"""Device tensors without padding, and the `[T, B, ...]` batches every training and evaluation step reads.

A data part is held on its device as its rows, never padded to the largest task:

* heterogeneous tasks: every task's rows concatenated, ``x_rows [N_total + 1, ...]`` and ``y_rows
  [N_total + 1(, P)]``, task ``t`` owning rows ``offsets[t]:offsets[t + 1]``; the one extra, last row is
  zeros (what a padding position reads);
* shared input: ``x_rows [N, ...]`` once, and the label matrix either dense (``[T, N(, P)]`` + mask) or, when
  large and mostly missing, only its labelled cells (`SparseLabels`, CSR by row).

Batches are gathered from these rows with one index per step, so they are exactly the slices of the padded
``[T, max_n, ...]`` layout that the library used before (issue 18): the same values, the same shapes. The
padded layout itself is still available as ``DeviceData.x / .y / .mask`` (built on access, for closed-form
solvers and analysis code), but training, validation and evaluation never build it.

On the CPU the feature rows are not even copied: `SourceRows` reads each gather from the source arrays (through a
split's index) and standardises the gathered rows there, with the ops and casts the stored copy was made with, so
the host holds the raw data once (another device keeps its copy: that memory is the device's).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.normalize import _standardize
from mtlkit.data.rows import Rows
from mtlkit.data.shared_labels import LabelCells

#: Input elements one evaluation forward may gather: ``T x width x (row elements)`` (heterogeneous) or
#: ``width x (row elements + T)`` (shared input) stays under it (8 MiB of float32), see `DeviceData.chunk_width`.
EVAL_ELEMENTS = 1 << 21
#: Widest evaluation chunk in positions (the chunk the padded implementation always used).
MAX_CHUNK = 65536
#: Most input elements a balanced part's single evaluation chunk may hold (64 MiB of float32): beyond it, balanced
#: data are chunked like unbalanced ones, so evaluation memory stays bounded however large the data (streamed).
MAX_SINGLE_CHUNK = 1 << 24
#: Shared-input label matrices with at least this many cells are stored sparse when mostly missing.
SPARSE_MIN_CELLS = 1 << 22
#: ... and "mostly missing" means at most this fraction of the cells is labelled.
SPARSE_MAX_DENSITY = 0.25
#: Host rows converted at a time when building a shared-input label store (bounds the temporaries).
_BLOCK_CELLS = 1 << 22
#: Feature elements a CPU store reads and standardises at a time within one gather (`SourceRows.rows`): bounds the
#: float64 temporaries of a large batch (T x B rows) to 16 MiB.
GATHER_ELEMENTS = 1 << 21
#: CPU stores read their features from the source rows per gather (`SourceRows`) instead of holding a standardised
#: copy; False restores the copy (the same bits either way: tests compare the two).
READ_FROM_SOURCE = True


@dataclass
class Batch:
    """One batch: ``x`` [T, B, ...] (heterogeneous) or [B, ...] (shared input), ``y`` [T, B] or
    [T, B, P] (soft labels), ``mask`` [T, B] marks rows that carry a label."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    shared: bool


class DenseLabels:
    """A shared-input label matrix held whole: ``y`` [T, N(, P)] (0 where missing) and ``mask`` [T, N], both
    laid out row by row in memory (the ``[N, T]`` matrix transposed, as the data give it)."""

    sparse = False

    def __init__(self, y: torch.Tensor, mask: torch.Tensor) -> None:
        self.y, self.mask = y, mask

    def gather(self, rows: torch.Tensor, host_rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and mask of rows ``rows`` [B]: ``[T, B(, P)]``, ``[T, B]``."""
        return self.y[:, rows], self.mask[:, rows]

    def span(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.y[:, start:stop], self.mask[:, start:stop]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"y": self.y, "mask": self.mask}


class SparseLabels:
    """A shared-input label matrix held as its labelled cells only, by row (CSR): row ``r``'s cells are
    ``indptr[r]:indptr[r + 1]``, each with its ``task`` (int32) and label ``y`` [nnz(, P)]. ``gather`` and
    ``span`` give the same dense ``[T, B]`` blocks as `DenseLabels` (0 and mask False where missing)."""

    sparse = True

    def __init__(self, n_tasks: int, indptr: np.ndarray, task: torch.Tensor, y: torch.Tensor) -> None:
        self.n_tasks = n_tasks
        self.host_indptr = indptr  # [N + 1] on the host: batch sizes without a device sync
        self.indptr = torch.as_tensor(indptr, device=y.device)
        self.task, self.y = task, y

    @property
    def nnz(self) -> int:
        return int(self.host_indptr[-1])

    def _place(self, cells: torch.Tensor, cols: torch.Tensor, width: int, by_row: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, width(, P)]`` labels and mask holding ``cells`` at columns ``cols``; ``by_row``: laid out row by
        row in memory (``[width, T]`` transposed), as a column slice of the dense store is."""
        t = self.task[cells].long()
        if by_row:
            y = torch.zeros((width, self.n_tasks, *self.y.shape[1:]), dtype=self.y.dtype, device=self.y.device)
            mask = torch.zeros((width, self.n_tasks), dtype=torch.bool, device=self.y.device)
            y[cols, t] = self.y[cells]
            mask[cols, t] = True
            return y.movedim(1, 0), mask.t()
        y = torch.zeros((self.n_tasks, width, *self.y.shape[1:]), dtype=self.y.dtype, device=self.y.device)
        mask = torch.zeros((self.n_tasks, width), dtype=torch.bool, device=self.y.device)
        y[t, cols] = self.y[cells]
        mask[t, cols] = True
        return y, mask

    def gather(self, rows: torch.Tensor, host_rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and mask of rows ``rows`` [B] (``host_rows``: the same indices on the host, which give the
        number of cells without reading the device)."""
        if host_rows is None:
            host_rows = rows.cpu().numpy()
        n = int((self.host_indptr[host_rows + 1] - self.host_indptr[host_rows]).sum())
        starts = self.indptr[rows]
        lens = self.indptr[rows + 1] - starts
        cols = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lens, output_size=n)
        first = torch.cumsum(lens, 0) - lens  # each row's first cell in the output
        cells = starts[cols] + torch.arange(n, device=rows.device) - first[cols]
        return self._place(cells, cols, len(rows))

    def span(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = int(self.host_indptr[start]), int(self.host_indptr[stop])
        lens = self.indptr[start + 1:stop + 1] - self.indptr[start:stop]
        cols = torch.repeat_interleave(torch.arange(stop - start, device=lens.device), lens, output_size=b - a)
        return self._place(torch.arange(a, b, device=lens.device), cols, stop - start, by_row=True)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"indptr": self.indptr, "task": self.task, "y": self.y}


class SourceRows:
    """A CPU part's feature store read from its source (issue 18): row ``i`` is ``fn(base[index[i]])`` of the
    part's `Rows`, cast as `to_device_data` casts its staged copy, computed per gather; the heterogeneous
    store's extra last row is zeros. No standardised copy of the rows is held, only the source and one int64
    index per row (into the source's rows); each gather computes exactly the ops (and dtype casts) the stored
    copy was made with, so it gives the same bits."""

    def __init__(self, parts: list[Rows], pad: bool, host: Any, dtype: Any) -> None:
        self.parts = parts
        self.fn = parts[0].fn
        self.host, self.dtype, self.pad = host, dtype, pad
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.n_data = int(self.starts[-1])
        self.feature_shape = tuple(parts[0].shape[1:])
        self.raw_dtype = parts[0].base.dtype
        self.base = parts[0].base if all(p.base is parts[0].base for p in parts) else None
        # each store row's row in its base (None: the store is the single base's rows in order)
        self.index: np.ndarray | None = None
        if not (len(parts) == 1 and parts[0].index is None):
            self.index = np.concatenate([np.arange(len(p), dtype=np.int64) if p.index is None else p.index
                                         for p in parts])
        self._bases = [p.base for p in parts]

    @staticmethod
    def eligible(parts: list[Rows]) -> bool:
        """Plain numeric arrays, in memory or memory-mapped (a streamed table: the gathers read its file, whose
        pages the machine's ranks share), one dtype and one map for every part."""
        if not parts:
            return False
        first = parts[0]
        return all(type(p.base) in (np.ndarray, np.memmap) and p.base.dtype == first.base.dtype and p.fn is first.fn
                   and p.base.dtype.kind in "fiu" for p in parts)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_data + int(self.pad), *self.feature_shape)

    @property
    def nbytes_held(self) -> int:
        """Bytes this store adds to its source: the index."""
        return 0 if self.index is None else int(self.index.nbytes)

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        """Source rows of store rows ``rows`` (all < ``n_data``), gathered into a new array."""
        src = rows if self.index is None else self.index[rows]
        if self.base is not None:
            return self.base[src]
        raw = np.empty((len(rows), *self.feature_shape), dtype=self.raw_dtype)
        pid = np.searchsorted(self.starts, rows, side="right") - 1  # a base per task: one take per run of a task
        cuts = [0, *(np.flatnonzero(pid[1:] != pid[:-1]) + 1).tolist(), len(rows)]
        bases = self._bases
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):
            np.take(bases[pid[a]], src[a:b], axis=0, out=raw[a:b])
        return raw

    def _mapped(self, raw: np.ndarray, out: np.ndarray) -> None:
        """Write ``fn(raw)`` cast to ``host`` (what staging wrote) into ``out``. Standardisation runs in place on
        the float64 copy, the ops ``(X - mean) / std`` make (numpy casts X to float64 first), the last one writing
        ``out``."""
        fn = self.fn
        if (isinstance(fn, functools.partial) and fn.func is _standardize and not fn.args
                and set(fn.keywords) == {"mean", "std"}):
            mean, std = np.asarray(fn.keywords["mean"]), np.asarray(fn.keywords["std"])
            if np.result_type(raw.dtype, mean.dtype, std.dtype) == np.float64:
                d = raw if raw.dtype == np.float64 else np.empty(raw.shape, dtype=np.float64)
                np.subtract(raw, mean, out=d)  # X cast to float64 by the ufunc, as in ``X - mean``
                np.divide(d, std, out=out, casting="same_kind")
                return
        out[...] = np.asarray(raw if fn is None else fn(raw), dtype=self.host)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` [M] (int64) of the store on the host, as ``host`` dtype ``[M, ...]``. Read and mapped
        `GATHER_ELEMENTS` at a time into the output, so a large batch (T x B rows) costs its own size, not three
        times it in float64 temporaries."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.feature_shape), dtype=self.host)
        if self.pad and len(rows) and int(rows.max()) >= self.n_data:
            valid = rows < self.n_data  # padding positions read the zero row: only the others are read and mapped
            out[~valid] = 0
            if valid.any():
                out[valid] = self.rows(rows[valid])
            return out
        step = max(1, GATHER_ELEMENTS // max(1, int(np.prod(self.feature_shape, dtype=np.int64))))
        for i in range(0, len(rows), step):
            self._mapped(self._raw(rows[i:i + step]), out[i:i + step])
        return out

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` [M] of the store as a ``[M, ...]`` tensor of ``dtype``."""
        return torch.as_tensor(self.rows(rows.numpy()), dtype=self.dtype)

    def span(self, start: int, stop: int) -> torch.Tensor:
        return torch.as_tensor(self.rows(np.arange(start, stop, dtype=np.int64)), dtype=self.dtype)

    def materialize(self) -> torch.Tensor:
        """The whole store as one tensor (built now, what `to_device_data` held before)."""
        return self.span(0, self.shape[0])

class DeviceData:
    """A data part on a device, stored without padding (see the module's docstring).

    ``counts`` [T]: labelled rows per task (host). Heterogeneous: ``x_rows`` / ``y_rows`` hold every task's
    rows concatenated plus one zero row, ``offsets`` [T + 1] (host) where each task starts. Shared input:
    ``x_rows`` [N, ...] and ``labels`` (`DenseLabels` or `SparseLabels`).

    ``positions(start, stop)`` / ``chunks(width)`` give the padded layout's columns ``start:stop`` of every
    task (evaluation); `TaskBatchSampler` gathers training batches. ``x``, ``y``, ``mask``, ``full()``: the
    whole padded layout, built on each access (``T x max_n`` rows): for small data and closed-form solvers.

    ``DeviceData(x, y, mask, shared, counts)`` builds one from that padded layout (task ``t``'s rows are the
    positions where ``mask[t]`` is True); `to_device_data` builds the store directly.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, shared: bool,
                 counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        if shared:
            self._init(shared=True, counts=counts, x_rows=x, labels=DenseLabels(y, mask))
            return
        sel = mask.reshape(-1).nonzero()[:, 0]
        x_rows = torch.cat([x.reshape(-1, *x.shape[2:])[sel], x.new_zeros((1, *x.shape[2:]))])
        y_rows = torch.cat([y.reshape(-1, *y.shape[2:])[sel], y.new_zeros((1, *y.shape[2:]))])
        self._init(shared=False, counts=mask.sum(1).cpu().numpy().astype(np.int64), x_rows=x_rows, y_rows=y_rows)

    def _init(self, *, shared: bool, counts: np.ndarray, x_rows: torch.Tensor | SourceRows,
              y_rows: torch.Tensor | None = None, labels: DenseLabels | SparseLabels | None = None) -> None:
        self.shared = shared
        self.counts = counts
        self._x, self.y_rows, self.labels = x_rows, y_rows, labels
        dev = x_rows.device if isinstance(x_rows, torch.Tensor) else torch.device("cpu")
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._offsets = torch.as_tensor(self.offsets[:-1], device=dev)
        self._counts = torch.as_tensor(counts, dtype=torch.int64, device=dev)

    @classmethod
    def from_store(cls, *, shared: bool, counts: np.ndarray, x_rows: torch.Tensor | SourceRows,
                   y_rows: torch.Tensor | None = None, labels: DenseLabels | SparseLabels | None = None) -> DeviceData:
        """From the unpadded store itself (``x_rows`` with its trailing zero row when heterogeneous)."""
        self = cls.__new__(cls)
        self._init(shared=shared, counts=np.asarray(counts, dtype=np.int64), x_rows=x_rows, y_rows=y_rows,
                   labels=labels)
        return self

    # ------------------------------------------------------------------ the feature rows
    @property
    def x_rows(self) -> torch.Tensor:
        """The feature store ``[N_total + 1, ...]`` / ``[N, ...]`` as a tensor: the one held, or, for a CPU part
        read from its source (`SourceRows`), built on access."""
        return self._x if isinstance(self._x, torch.Tensor) else self._x.materialize()

    @property
    def from_source(self) -> bool:
        """True when the features are read from the source on each gather (no copy held, `SourceRows`)."""
        return not isinstance(self._x, torch.Tensor)

    def gather_x(self, rows: torch.Tensor) -> torch.Tensor:
        """Feature rows ``rows`` [M] of the store: ``[M, ...]`` (what every batch and evaluation chunk reads)."""
        return self._x.index_select(0, rows) if isinstance(self._x, torch.Tensor) else self._x.gather(rows)

    def span_x(self, start: int, stop: int) -> torch.Tensor:
        """Feature rows ``start:stop`` of the store."""
        return self._x[start:stop] if isinstance(self._x, torch.Tensor) else self._x.span(start, stop)

    # ------------------------------------------------------------------ sizes
    @property
    def n_tasks(self) -> int:
        return len(self.counts)

    @property
    def n_rows(self) -> int:
        """Width of the padded layout: the largest task (heterogeneous) or N (shared input)."""
        if self.shared:
            return int(self._x.shape[0])
        return int(self.counts.max()) if len(self.counts) else 0

    @property
    def n_total(self) -> int:
        """Rows held: all tasks' rows (heterogeneous) or N (shared input)."""
        return int(self.offsets[-1]) if not self.shared else int(self._x.shape[0])

    @property
    def device(self) -> torch.device:
        return self._x.device if isinstance(self._x, torch.Tensor) else torch.device("cpu")

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self._x.shape[1:])

    def _label_tail(self) -> tuple[int, ...]:
        """The labels' trailing shape: ``(P,)`` for soft labels, else ``()``."""
        if not self.shared:
            assert self.y_rows is not None
            return tuple(self.y_rows.shape[1:])
        assert self.labels is not None
        return tuple(self.labels.y.shape[1:]) if self.labels.sparse else tuple(self.labels.y.shape[2:])

    @property
    def x_shape(self) -> list[int]:
        """Shape of the padded layout's ``x`` (what checkpoints' fingerprints record)."""
        lead = [self.n_rows] if self.shared else [self.n_tasks, self.n_rows]
        return lead + list(self.feature_shape)

    @property
    def y_shape(self) -> list[int]:
        return [self.n_tasks, self.n_rows] + list(self._label_tail())

    def storage(self) -> dict[str, torch.Tensor]:
        """Every tensor this part holds on its device, by name (features read from the source: their index)."""
        out = {"offsets": self._offsets, "counts": self._counts}
        if isinstance(self._x, torch.Tensor):
            out["x_rows"] = self._x
        elif self._x.index is not None:
            out["x_index"] = torch.from_numpy(self._x.index)
        if self.y_rows is not None:
            out["y_rows"] = self.y_rows
        if self.labels is not None:
            out.update({f"labels.{k}": v for k, v in self.labels.tensors().items()})
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.storage().values())

    # ------------------------------------------------------------------ the padded layout, piecewise
    def positions(self, start: int, stop: int) -> Batch:
        """Columns ``start:stop`` of the padded layout for every task: ``x`` [T, C, ...] (zeros past a task's
        end) or [C, ...] (shared input), ``y``, ``mask``; gathered with one index, never padding the rest."""
        if self.shared:
            assert self.labels is not None
            y, mask = self.labels.span(start, stop)
            return Batch(x=self.span_x(start, stop), y=y, mask=mask, shared=True)
        assert self.y_rows is not None
        pos = torch.arange(start, stop, device=self.device)
        mask = pos[None, :] < self._counts[:, None]  # [T, C]
        rows = torch.where(mask, self._offsets[:, None] + pos[None, :], self.n_total)  # padding: the zero row
        flat = rows.reshape(-1)
        T, C = mask.shape
        x = self.gather_x(flat).view(T, C, *self.feature_shape)
        y = self.y_rows.index_select(0, flat).view(T, C, *self._label_tail())
        return Batch(x=x, y=y, mask=mask, shared=False)

    def chunk_width(self, max_elements: int = EVAL_ELEMENTS, limit: int = MAX_CHUNK, at_least: int = 1) -> int:
        """Positions per evaluation chunk (at least ``at_least`` and 1, at most ``limit`` and the positions).

        Heterogeneous tasks: the whole padded width (the padded implementation's one chunk, so the same numbers)
        when ``T x max_n`` rows hold at most ``max(max_elements, min(2 x the rows held, MAX_SINGLE_CHUNK))``
        elements: small data, or tasks balanced enough that padding at most doubles them (up to 64 MiB of input);
        otherwise as many positions as ``max_elements`` allows (unbalanced or very large data: memory bounded
        whatever the data). Shared input: as many rows as ``max_elements`` allows, counting each row's features
        and its T labels. ``at_least``: e.g. the training batch size, so that a chunk is no smaller than a
        training batch (whose memory the training step takes anyway): with many tasks the budget alone would allow
        a few positions per chunk, and a model's per-forward cost (e.g. TOMATO's T topic-task weights) would be
        paid thousands of times per evaluation."""
        per_row = int(np.prod(self.feature_shape)) if self.feature_shape else 1
        N = max(1, self.n_rows)
        floor = max(1, min(limit, N, at_least))
        if self.shared:
            return max(floor, min(limit, N, max_elements // (per_row + self.n_tasks)))
        T = max(1, self.n_tasks)
        if T * N * per_row <= max(max_elements, min(2 * self.n_total * per_row, MAX_SINGLE_CHUNK)):
            return min(limit, N)
        return max(floor, min(limit, N, max_elements // (T * per_row)))

    def chunks(self, size: int | None = None) -> Iterator[Batch]:
        """Full-data evaluation in padded-column chunks of ``size`` positions (all at once when None or <= 0)."""
        N = self.n_rows
        size = N if size is None or size <= 0 else size
        for s in range(0, N, max(1, size)):
            yield self.positions(s, min(s + size, N))

    def full(self) -> Batch:
        """The whole padded layout as one batch (built now: ``T x max_n`` rows)."""
        return self.positions(0, self.n_rows)

    @property
    def x(self) -> torch.Tensor:
        """Padded ``x`` [T, max_n, ...] (built on access) or the shared ``[N, ...]`` rows (no copy)."""
        return self.x_rows if self.shared else self.full().x

    @property
    def y(self) -> torch.Tensor:
        """Padded ``y`` [T, max_n(, P)] or the shared ``[T, N(, P)]`` (built on access unless held dense)."""
        if self.shared and isinstance(self.labels, DenseLabels):
            return self.labels.y
        return self.full().y

    @property
    def mask(self) -> torch.Tensor:
        """``[T, max_n]`` / ``[T, N]``: True where a position holds a labelled row (built on access)."""
        if self.shared and isinstance(self.labels, DenseLabels):
            return self.labels.mask
        return self.full().mask

    def task_counts(self) -> torch.Tensor:
        """``counts`` as an int64 tensor [T] on the device."""
        return self._counts


def _host_dtype(dtype: Any) -> Any:
    return np.float64 if dtype == torch.float64 else np.float32  # staging arrays must not round float64 data


def to_device_data(data: MultiTaskData, device: Any = None, dtype: Any = None, labels: str = "auto") -> DeviceData:
    """Move ``data`` to ``device`` (float32 unless ``dtype``) without padding (see `DeviceData`).

    ``labels`` (shared input): ``"dense"`` keeps the ``[T, N]`` label matrix, ``"sparse"`` only its labelled
    cells, ``"auto"`` sparse when the matrix has at least `SPARSE_MIN_CELLS` cells of which at most
    `SPARSE_MAX_DENSITY` are labelled. Batches are the same either way.

    On the CPU, features are not copied: the store reads them from the source rows on each gather (in memory, or the
    memory-mapped file of a streamed table) and standardises the gathered rows there (`SourceRows`: the same bits as
    a stored copy). Another device (CUDA) holds a copy, since its memory is the device's, not the host's; streamed
    data stage it through a memory-mapped file, so the host never holds the part in its own memory."""
    if labels not in ("auto", "dense", "sparse"):
        raise ValueError(f"labels must be 'auto', 'dense' or 'sparse', got {labels!r}")
    dtype = dtype or torch.float32
    host = _host_dtype(dtype)
    label_tail = (data.spec.n_outputs,) if data.kind == "distribution" else ()
    parts = data.feature_rows()
    spill = data.spill_dir  # where a streamed part stages on its way to another device
    lazy = READ_FROM_SOURCE and torch.device(device if device is not None else "cpu").type == "cpu" \
        and SourceRows.eligible(parts)
    if not data.shared:
        assert data.ys is not None
        counts = np.array([len(R) for R in parts], dtype=np.int64)
        n = int(counts.sum())
        y = np.zeros((n + 1, *label_tail), dtype=host)
        o = 0
        for yt in data.ys:
            y[o:o + len(yt)] = yt
            o += len(yt)
        x_rows = SourceRows(parts, True, host, dtype) if lazy else \
            torch.as_tensor(_stage(parts, n + 1, host, spill), dtype=dtype, device=device)  # + the zero row
        return DeviceData.from_store(shared=False, counts=counts, x_rows=x_rows,
                                     y_rows=torch.as_tensor(y, dtype=dtype, device=device))
    assert data.y is not None
    x_rows = SourceRows(parts, False, host, dtype) if lazy else \
        torch.as_tensor(_stage(parts, len(parts[0]), host, spill), dtype=dtype, device=device)
    if isinstance(data.y, LabelCells):
        return DeviceData.from_store(shared=True, counts=data.y.counts(), x_rows=x_rows,
                                     labels=_cells_store(data.y, host, dtype, device, labels))
    return DeviceData.from_store(shared=True, counts=_label_counts(data.y),
                                 x_rows=x_rows, labels=_label_store(data.y, data.n_tasks, host, dtype, device, labels))


def _sparse_wanted(how: str, nnz: int, cells: int) -> bool:
    return how == "sparse" or (how == "auto" and cells >= SPARSE_MIN_CELLS and nnz <= SPARSE_MAX_DENSITY * cells)


def _cells_store(Y: LabelCells, host: Any, dtype: Any, device: Any, how: str) -> DenseLabels | SparseLabels:
    """The device store of labels held as cells: the same `SparseLabels` (or `DenseLabels`) that
    `_label_store` builds from the dense matrix with NaN where they are missing."""
    N, T = Y.shape
    if _sparse_wanted(how, Y.nnz, N * T):
        return SparseLabels(T, Y.indptr, torch.as_tensor(Y.task, device=device),
                            torch.as_tensor(Y.value.astype(host), dtype=dtype, device=device))
    y = np.zeros((N, T), dtype=host)
    mask = np.zeros((N, T), dtype=bool)
    rows = Y.cell_rows()
    y[rows, Y.task] = Y.value
    mask[rows, Y.task] = True
    return DenseLabels(torch.as_tensor(np.moveaxis(y, 1, 0), dtype=dtype, device=device),
                       torch.as_tensor(mask.T, device=device))


def _stage(parts: list[Rows], n: int, host: Any, spill: str | None = None) -> np.ndarray:
    """The rows of ``parts`` one after another in a new host array ``[n, ...]`` of dtype ``host`` (zeros past
    them), written block by block: rows held by reference (a split's part, standardised when read) are gathered
    and mapped a block at a time, so nothing but the staging array grows with the data. ``spill``: a directory
    where the array is a memory-mapped temporary file instead (data larger than memory, `streaming`)."""
    shape = (n, *parts[0].shape[1:])
    if spill is not None:
        from mtlkit.data.streaming import spill_array

        x = spill_array(shape, host, spill)
    else:
        x = np.empty(shape, dtype=host)
    o = 0
    for R in parts:
        for s, block in R.blocks():
            x[o + s:o + s + len(block)] = block
        o += len(R)
    x[o:] = 0
    return x


def _row_blocks(Y: np.ndarray) -> Iterator[tuple[int, int]]:
    N = len(Y)
    step = max(1, _BLOCK_CELLS // max(1, int(np.prod(Y.shape[1:]))))
    for s in range(0, N, step):
        yield s, min(s + step, N)


def _present(block: np.ndarray) -> np.ndarray:
    """[rows, T] True where a label is present (no NaN; soft labels: no NaN in the row's P values)."""
    nan = np.isnan(block)
    return ~(nan if nan.ndim == 2 else nan.any(-1))


def _label_counts(Y: np.ndarray) -> np.ndarray:
    counts = np.zeros(Y.shape[1], dtype=np.int64)
    for s, e in _row_blocks(Y):
        counts += _present(Y[s:e]).sum(0)
    return counts


def _label_store(Y: np.ndarray, T: int, host: Any, dtype: Any, device: Any, how: str) -> DenseLabels | SparseLabels:
    """Shared-input labels ``Y`` [N, T(, P)] (NaN = missing) as a dense or sparse store, built in row blocks."""
    N = len(Y)
    tail = Y.shape[2:]
    nnz_rows = np.zeros(N + 1, dtype=np.int64)
    for s, e in _row_blocks(Y):
        nnz_rows[s + 1:e + 1] = _present(Y[s:e]).sum(1)
    indptr = np.cumsum(nnz_rows)
    nnz = int(indptr[-1])
    if not _sparse_wanted(how, nnz, N * T):  # [N, T] in memory, seen as [T, N]: the reductions' order as before
        y = np.empty((N, T, *tail), dtype=host)
        mask = np.empty((N, T), dtype=bool)
        for s, e in _row_blocks(Y):
            mask[s:e] = _present(Y[s:e])
            y[s:e] = np.nan_to_num(Y[s:e], nan=0.0)
        return DenseLabels(torch.as_tensor(np.moveaxis(y, 1, 0), dtype=dtype, device=device),
                           torch.as_tensor(mask.T, device=device))
    task = np.empty(nnz, dtype=np.int32)
    vals = np.empty((nnz, *tail), dtype=host)
    for s, e in _row_blocks(Y):
        r, t = np.nonzero(_present(Y[s:e]))  # row-major: by row, then task (the CSR order)
        a, b = int(indptr[s]), int(indptr[e])
        task[a:b] = t
        vals[a:b] = Y[s:e][r, t]
    return SparseLabels(T, indptr, torch.as_tensor(task, device=device), torch.as_tensor(vals, dtype=dtype,
                                                                                         device=device))
