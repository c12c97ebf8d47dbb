"""Feature rows held by reference: a split part or a standardised copy is an index into its source's rows (and
a row-wise map), gathered block by block when read, so memory follows the source data, not the number of
parts and copies made of it (issue 18).

`Rows` is one array's rows; `TaskRows` is the per-task list `MultiTaskData.xs` returns, which gathers a task's
rows when indexed (a plain `list` of arrays behaves the same). `pairwise_sum` and `sequential_sum` reproduce
numpy's float64 sums over the rows of a concatenation without building it (what `Normalizer.fit` needs to
give exactly the statistics of the concatenated training rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np

#: Elements (of float64) one block read holds: 8 MiB.
BLOCK_ELEMENTS = 1 << 20
#: numpy's pairwise summation adds blocks of at most this many elements with 8 accumulators (no split).
_PW_BLOCK = 128


class Rows:
    """Rows ``fn(base[index])`` of a feature array (all of ``base`` when ``index`` is None; ``fn`` a row-wise,
    shape-preserving map such as standardisation, or None), computed only when read: `array` all of them,
    `block` a range, `take` a subset (another index into the same ``base``, nothing copied)."""

    __slots__ = ("base", "fn", "index")

    def __init__(self, base: np.ndarray, index: np.ndarray | None = None,
                 fn: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.base = base
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.fn = fn

    @classmethod
    def of(cls, a: Rows | np.ndarray) -> Rows:
        """``a`` itself when it is `Rows`, else all rows of the array ``a``."""
        return a if isinstance(a, Rows) else cls(np.asarray(a))

    @property
    def plain(self) -> bool:
        """True when these are ``base`` itself (no index, no map): reading them copies nothing."""
        return self.index is None and self.fn is None

    def __len__(self) -> int:
        return len(self.base) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.base.shape[1:])

    @property
    def row_size(self) -> int:
        """Elements per row."""
        return int(np.prod(self.base.shape[1:], dtype=np.int64))

    def block_rows(self, elements: int | None = None) -> int:
        """Rows per block read so that a block holds about ``elements`` (default `BLOCK_ELEMENTS`) elements (at
        least one row)."""
        return max(1, (elements or BLOCK_ELEMENTS) // max(1, self.row_size))

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (a view of ``base`` when `plain`, else gathered and mapped now)."""
        x = self.base[start:stop] if self.index is None else self.base[self.index[start:stop]]
        return x if self.fn is None else self.fn(x)

    def array(self) -> np.ndarray:
        """All rows (``base`` itself when `plain`)."""
        return self.block(0, len(self))

    def blocks(self, elements: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` in order, each block holding about ``elements`` elements."""
        step = self.block_rows(elements)
        for s in range(0, len(self), step):
            yield s, self.block(s, min(s + step, len(self)))

    def take(self, index: np.ndarray) -> Rows:
        """Rows ``index`` of these rows, as an index into the same ``base`` (the map kept)."""
        idx = np.asarray(index, dtype=np.int64)
        return Rows(self.base, idx if self.index is None else self.index[idx], self.fn)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Rows:
        """These rows through ``fn`` too (after any map already set), still computed when read."""
        inner = self.fn
        return Rows(self.base, self.index, fn if inner is None else (lambda x: fn(inner(x))))

    @property
    def nbytes_held(self) -> int:
        """Bytes of the index these rows add to their ``base``."""
        return 0 if self.index is None else int(self.index.nbytes)


class TaskRows(Sequence[np.ndarray]):
    """The per-task feature arrays of a `MultiTaskData` whose rows are held by reference: ``xs[t]`` gathers task
    ``t``'s rows (a new array each time); ``len``, iteration, slicing and ``+`` behave as on a list of arrays."""

    def __init__(self, rows: Sequence[Rows]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, t: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, t: slice) -> list[np.ndarray]: ...

    def __getitem__(self, t: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(t, slice):
            return [r.array() for r in self.rows[t]]
        return self.rows[t].array()

    def __add__(self, other: Sequence[Any]) -> list[Any]:
        return [*self, *other]

    def __radd__(self, other: Sequence[Any]) -> list[Any]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"TaskRows({len(self)} tasks, rows held by reference)"


# ---------------------------------------------------------------------- numpy's sums, streamed
def pairwise_sum(read: Callable[[int, int], np.ndarray], n: int, leaf: int | None = None) -> float:
    """``np.add.reduce`` of the flat float64 sequence whose elements ``lo:hi`` ``read(lo, hi)`` returns, bit for
    bit, reading at most ``leaf`` elements at a time: numpy's pairwise summation splits ``n`` elements into
    ``n2 = n // 2 - (n // 2) % 8`` and the rest, and a contiguous sub-range sums exactly as that sub-tree."""
    leaf = max(leaf or BLOCK_ELEMENTS, _PW_BLOCK)

    def rec(lo: int, m: int) -> float:
        if m <= leaf:
            return float(np.add.reduce(np.ascontiguousarray(read(lo, lo + m), dtype=np.float64)))
        m2 = m // 2
        m2 -= m2 % 8
        return rec(lo, m2) + rec(lo + m2, m - m2)

    return rec(0, n) if n > 0 else 0.0


def sequential_sum(blocks: Iterator[np.ndarray], width: int) -> np.ndarray:
    """``np.add.reduce(rows, axis=0)`` of float64 rows ``[n, width]`` given block by block, bit for bit when
    ``width >= 2`` (numpy then adds row after row; ``width == 1`` reduces pairwise, see `pairwise_sum`)."""
    acc: np.ndarray | None = None
    for b in blocks:
        b = np.asarray(b, dtype=np.float64).reshape(len(b), width)
        if not len(b):
            continue
        acc = np.add.reduce(b, axis=0) if acc is None else np.add.reduce(np.concatenate([acc[None], b]), axis=0)
    return np.zeros(width) if acc is None else acc


class FlatReader:
    """The elements ``lo:hi`` of the virtual concatenation of several `Rows`, flattened, as float64 (optionally
    through ``fn``): what `pairwise_sum` reads."""

    def __init__(self, parts: Sequence[Rows], fn: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.parts = [p for p in parts if len(p)]
        self.k = self.parts[0].row_size if self.parts else 1
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)
        self.fn = fn

    @property
    def size(self) -> int:
        return int(self.starts[-1]) * self.k

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        k = self.k
        r0, r1 = lo // k, -(-hi // k)
        pieces = []
        i = int(np.searchsorted(self.starts, r0, side="right")) - 1
        r = r0
        while r < r1:
            p, s = self.parts[i], int(self.starts[i])
            e = min(r1, int(self.starts[i + 1]))
            x = np.asarray(p.block(r - s, e - s), dtype=np.float64).reshape(e - r, k)
            pieces.append(self.fn(x) if self.fn is not None else x)
            r, i = e, i + 1
        flat = (np.concatenate(pieces) if len(pieces) > 1 else pieces[0]).reshape(-1)
        return flat[lo - r0 * k:hi - r0 * k]
