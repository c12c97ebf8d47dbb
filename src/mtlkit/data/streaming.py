"""Data larger than memory (issue 18): a Parquet data set (a folder of files, or one file) read once, batch by
batch, with `pyarrow.dataset`, into a memory-mapped float64 feature file; the tasks' rows are indices into it.

Everything downstream already reads features block by block (`mtlkit.data.rows.Rows`): `Normalizer.fit` streams
them, a split's parts are index arrays, and `to_device_data` writes a part's standardised rows into a
memory-mapped store (``MultiTaskData.spill_dir``) whose tensor the sampler gathers each `[T, B, ...]` batch from.
So the process holds O(rows) numbers (labels, task ids, indices) and blocks, never the feature matrix: the
pages of the mapped files are the kernel's cache, written back and dropped under memory pressure. The values,
hence the batches and a training run, are those of the in-memory `read_table` on the same table (the same
float64 features, the same row order within each task).

Categorical feature columns (``categorical``) take one more pass, over those columns alone, for each one's
sorted categories; the feature pass then writes their one-hot columns, named and ordered as pandas'
``get_dummies`` names and orders them for the in-memory reader.

Reading holds one Parquet row group's decoded columns at a time (a few times the row group's size: write data
meant to stream with row groups of tens of MB, e.g. ``row_group_size=16384`` rows of 100 float64 features).

Read by the ranks of a data-parallel run together (``distributed=True``, what `mtlkit train --distributed` asks
for): every rank reads the task and target columns of all rows (what every rank needs to draw the global batches:
a few numbers per row), but the features only of its share of the row groups (`row_group_owners`), into one file
the ranks of its machine map together (`mtlkit.data.ranks`). So each rank reads and writes 1/k of the features of
a machine with k ranks, the machine's page cache holds them once, and every rank ends with the same data as a
single process's read (so DDP's global-batch equivalence holds unchanged). A failure on any rank is raised on
every rank (the first in data-row order, as one process would report it).

Memory-mapped files are unlinked temporary files in ``spill_dir`` (default: the system's temporary directory,
``$MTLKIT_SPILL_DIR`` to change it): their disk space returns when the arrays are collected.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.ranks import Ranks

#: Rows one Parquet batch read holds.
BATCH_ROWS = 65536


def spill_dir(path: str | Path | None = None) -> str:
    """Where memory-mapped arrays go: ``path``, else ``$MTLKIT_SPILL_DIR``, else the temporary directory."""
    d = str(path or os.environ.get("MTLKIT_SPILL_DIR") or tempfile.gettempdir())
    if not os.path.isdir(d):
        raise DataError(f"spill directory {d} does not exist")
    return d


def spill_array(shape: tuple[int, ...], dtype: Any, directory: str) -> np.ndarray:
    """A zero-filled array of ``shape`` backed by an unlinked temporary file in ``directory`` (a shared, writable
    memory map: its pages are the kernel's page cache, not the process's private memory)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    with tempfile.TemporaryFile(dir=directory, prefix="mtlkit-") as f:
        return np.memmap(f, dtype=dtype, mode="w+", shape=shape)


def _text(values: np.ndarray) -> np.ndarray:
    """Task ids as text, as pandas' ``astype(str)`` gives them for the in-memory reader."""
    return np.asarray(values).astype(str)


def _blank(col: Any, values: np.ndarray) -> np.ndarray:
    """Cells of an Arrow column with no value: null, or text that is only whitespace (``values``: its numpy form)."""
    blank = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if values.dtype == object:
        blank |= np.array([isinstance(v, str) and not v.strip() for v in values], dtype=bool)
    return blank


def row_group_owners(starts: np.ndarray, n: int) -> np.ndarray:
    """Which of ``n`` readers reads each row group's features (row groups starting at rows ``starts[:-1]`` of
    ``starts[-1]``): reader i the consecutive groups starting in rows ``[i N/n, (i+1) N/n)``, so each reads about
    N/n rows, in file order."""
    N = max(int(starts[-1]), 1)
    return np.minimum(starts[:-1] * n // N, n - 1).astype(np.int64)


def _categories(plan: _Plan, scan: dict[str, Any]) -> list[np.ndarray]:
    """Each categorical column's sorted distinct values (the order of pandas' ``get_dummies``), read from every row
    group; a `DataError` naming the first column with a blank cell (null, NaN, or text that is only whitespace),
    its count and first data row."""
    seen: list[Any] = [None] * len(plan.categorical)
    blanks = [0] * len(plan.categorical)
    first = [0] * len(plan.categorical)
    for (group, _), o in zip(plan.groups, plan.starts[:-1].tolist(), strict=True):
        for batch in group.to_batches(columns=plan.categorical, **scan):
            for k in range(len(plan.categorical)):
                col = batch.column(k)
                v = col.to_numpy(zero_copy_only=False)
                blank = _blank(col, v)
                if v.dtype.kind == "f":  # NaN: no value (pandas' isna), not a category
                    blank |= np.isnan(v)
                if blank.any():
                    if not blanks[k]:
                        first[k] = o + int(np.argmax(blank)) + 1
                    blanks[k] += int(blank.sum())
                    continue
                u = np.unique(v)
                seen[k] = u if seen[k] is None else np.union1d(seen[k], u)
            o += batch.num_rows
    for k, c in enumerate(plan.categorical):
        if blanks[k]:
            raise DataError(f"categorical column {c!r} of {plan.where} has {blanks[k]} blank cell(s); the first is in "
                            f"data row {first[k]}")
    return [s if s is not None else np.array([]) for s in seen]


def _read_row_group(group: Any, columns: list[str], o: int, scan: dict[str, Any], where: str, codes: np.ndarray,
                    ids: dict[str, int], y: np.ndarray, X: np.ndarray,
                    onehot: Sequence[tuple[np.ndarray, int]] = ()) -> None:
    """Read one row group (data rows ``o + 1, ...``) batch by batch: check every cell of ``columns`` (the task
    column, the target, and the features when they are in it: the numeric ones, then the categorical ones, whose
    sorted categories and first column in ``X`` are ``onehot``), code the task ids (new ones in order of first
    appearance), and write the targets into ``y`` and the features into ``X`` (a categorical column as a 1 in its
    value's column; its cells were checked by `_categories`)."""
    task = columns[0]
    n_plain = len(columns) - len(onehot)
    for batch in group.to_batches(columns=columns, **scan):
        n = batch.num_rows
        if n == 0:
            continue
        tcol = batch.column(0)
        tv = tcol.to_numpy(zero_copy_only=False)
        blank = _blank(tcol, tv)
        if blank.any():
            raise DataError(f"the task column {task!r} of {where} has a blank cell in data row "
                            f"{o + int(np.argmax(blank)) + 1}")
        names, first, inv = np.unique(_text(tv), return_index=True, return_inverse=True)
        local = np.empty(len(names), dtype=np.int64)
        for i in np.argsort(first, kind="stable"):  # new tasks in order of first appearance
            local[i] = ids.setdefault(str(names[i]), len(ids))
        codes[o:o + n] = local[inv]
        for k, (cats, col0) in enumerate(onehot):
            v = batch.column(n_plain + k).to_numpy(zero_copy_only=False)
            X[np.arange(o, o + n), col0 + np.searchsorted(cats, v)] = 1.0
        for j, c in enumerate(columns[1:n_plain]):
            col = batch.column(1 + j)
            nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            what = "target column" if j == 0 else "feature column"
            if nulls.any():
                raise DataError(f"{what} {c!r} of {where} has a blank cell in data row {o + int(np.argmax(nulls)) + 1}")
            v = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
            bad = ~np.isfinite(v)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{what} {c!r} of {where} holds {v[i]:g} in data row {o + i + 1}; values must be "
                                "finite")
            if j == 0:
                y[o:o + n] = v
            else:
                X[o:o + n, j - 1] = v
        o += n


@dataclass
class _Plan:
    """What reading a Parquet data set needs, known before any row is read (the same on every rank)."""

    dset: Any
    where: str
    numeric: list[str]  # numeric feature columns, in the table's (or the feature list's) order
    categorical: list[str]  # feature columns to one-hot encode, in the order given (or the table's)
    groups: list[tuple[Any, int]]  # each row group's fragment and rows, in the data set's order
    starts: np.ndarray  # each row group's first row, and N
    directory: str


def _plan(path: Path, task: str, target: str, features: Sequence[str] | None, categorical: bool | Sequence[str],
          spill: str | Path | None) -> _Plan:
    """Open the data set and check what can be checked without reading rows: the columns (present, unique,
    numeric), the row groups (at least one row), the spill directory. A `DataError` otherwise."""
    try:
        import pyarrow as pa
        import pyarrow.dataset as pads
    except ImportError as e:
        raise DataError("reading Parquet needs pyarrow: pip install 'mtlkit[parquet]'") from e
    from mtlkit.data.table import _check_unique_columns, categorical_columns

    where = path.name
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if task == target:
        raise DataError(f"the task and the target name the same column {task!r}")
    try:
        dset = pads.dataset(str(path), format="parquet")
        schema = dset.schema
    except Exception as e:  # pyarrow's errors for a damaged or foreign file: one line
        raise DataError(f"cannot read {where} as Parquet: {str(e).splitlines()[0] if str(e) else e!r}") from e
    cols = list(schema.names)
    _check_unique_columns(cols, where)
    missing = [c for c in (task, target, *(features or ())) if c not in cols]
    if missing:
        raise DataError(f"{where} has no column(s) {', '.join(map(repr, missing))}; its columns are {', '.join(cols)}")
    feats = list(features) if features is not None else [c for c in cols if c not in (task, target)]
    if features is not None:
        _check_unique_columns(feats, "the feature list")
        clash = [c for c in feats if c in (task, target)]
        if clash:
            raise DataError(f"the feature list names the {'task' if clash[0] == task else 'target'} column "
                            f"{clash[0]!r}")
    if not feats:
        raise DataError(f"{where} has no feature columns besides {task!r} and {target!r}")
    def is_numeric(c: str) -> bool:
        t = schema.field(c).type
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))

    cat = categorical_columns(categorical, feats, is_numeric, where)
    if not is_numeric(target):
        raise DataError(f"target column {target!r} of {where} is not numeric (Parquet type "
                        f"{schema.field(target).type}); encode it first")
    for c in feats:
        if c not in cat and not is_numeric(c):
            raise DataError(f"feature column {c!r} of {where} is not numeric (Parquet type {schema.field(c).type}); "
                            "encode it, or pass categorical=True (CLI: --categorical) to one-hot it")
    try:  # the data set's row groups, in the order of its files (the order the in-memory reader concatenates)
        groups = [(g, g.row_groups[0].num_rows) for frag in dset.get_fragments() for g in frag.split_by_row_group()]
    except Exception as e:
        raise DataError(f"cannot read {where} as Parquet: {str(e).splitlines()[0] if str(e) else e!r}") from e
    starts = np.concatenate([[0], np.cumsum([n for _, n in groups], dtype=np.int64)]).astype(np.int64)
    if int(starts[-1]) == 0:
        raise DataError(f"{where} has columns but no rows")
    return _Plan(dset, where, [c for c in feats if c not in cat], cat, groups, starts, spill_dir(spill))


def read_parquet_stream(cls: Any, path: str | Path, task: str, target: str, features: Sequence[str] | None = None,
                        kind: str | None = None, categorical: bool | Sequence[str] = False,
                        spill: str | Path | None = None, distributed: bool | Ranks = False,
                        **kwargs: Any) -> Any:
    """`MultiTaskData.from_table(..., stream=True)` on a Parquet file or folder: one pass over the record batches
    validates every cell (numeric, finite, no blanks; data rows counted from 1 across the files in the data set's
    order), collects the task ids and targets, and writes the features to a memory-mapped float64 file.
    ``distributed``: the ranks of the initialised ``torch.distributed`` group (True) or the given `Ranks` read it
    together (a collective: every rank calls this), each the features of its share of the row groups into its
    machine's one shared file. A rank's error (a folder missing on one machine, a bad cell in its share) is raised
    on every rank, so none is left waiting for the others."""
    from mtlkit.data.kinds import resolve_kind
    from mtlkit.data.multitask import _class_counts
    from mtlkit.data.ranks import raise_any, resolve_ranks
    from mtlkit.data.rows import Rows
    from mtlkit.data.spec import TaskSpec

    path = Path(path)
    ranks = resolve_ranks(distributed)
    if ranks is None:
        plan = _plan(path, task, target, features, categorical, spill)
    else:
        try:
            plan, problem = _plan(path, task, target, features, categorical, spill), None
        except DataError as e:
            problem = str(e)
        raise_any(ranks, problem)
    where, numeric, groups, starts, directory = plan.where, plan.numeric, plan.groups, plan.starts, plan.directory
    N = int(starts[-1])
    # one batch at a time, no prefetching threads, column chunks streamed (not pre-buffered): memory is bounded
    # by a row group's decoded columns, not by pyarrow's read-ahead
    import pyarrow.dataset as pads  # present: _plan checked

    options = pads.ParquetFragmentScanOptions(pre_buffer=False, use_buffered_stream=True, buffer_size=1 << 20)
    scan = dict(schema=plan.dset.schema, batch_size=BATCH_ROWS, batch_readahead=0, fragment_readahead=0,
                use_threads=False, fragment_scan_options=options)
    cats: list[np.ndarray] = []
    if plan.categorical:  # a first pass over the categorical columns (every rank: all need the same columns)
        try:
            cats, problem = _categories(plan, scan), None
        except Exception as e:  # pyarrow's errors as one line, like the feature pass's
            problem = str(e) if isinstance(e, DataError) else \
                f"cannot read {where} as Parquet: {str(e).splitlines()[0] if str(e) else e!r}"
            if ranks is None:
                if isinstance(e, DataError):
                    raise
                raise DataError(problem) from e
        if ranks is not None:
            raise_any(ranks, problem)
    names = [*numeric, *(f"{c}_{v}" for c, cs in zip(plan.categorical, cats, strict=True) for v in cs)]
    bases = np.cumsum([len(numeric), *(len(cs) for cs in cats)])[:-1].tolist()
    onehot = list(zip(cats, bases, strict=True))
    if ranks is None:
        X = spill_array((N, len(names)), np.float64, directory)
        mine = np.ones(len(groups), dtype=bool)
    else:
        from mtlkit.data.ranks import shared_spill_array

        X = shared_spill_array((N, len(names)), np.float64, directory, ranks)
        mine = row_group_owners(starts, len(ranks.local)) == ranks.local_index
    y = np.empty(N)
    codes = np.empty(N, dtype=np.int64)
    ids: dict[str, int] = {}
    failure: tuple[tuple[int, int], str] | None = None
    for g, (group, _) in enumerate(groups):
        try:
            if mine[g]:
                _read_row_group(group, [task, target, *numeric, *plan.categorical], int(starts[g]), scan, where,
                                codes, ids, y, X, onehot)
            else:
                _read_row_group(group, [task, target], int(starts[g]), scan, where, codes, ids, y, X)
        except Exception as e:  # every rank learns of any rank's failure (no rank is left waiting for another)
            msg = str(e) if isinstance(e, DataError) else \
                f"cannot read {where} as Parquet: {str(e).splitlines()[0] if str(e) else e!r}"
            failure = ((g, 0 if mine[g] else 1), msg)  # in a row group, its reader of features reports first
            break
    failures = [failure] if ranks is None else ranks.gather(failure)  # after every rank's writes
    found = [f for f in failures if f is not None]
    if found:
        raise DataError(min(found)[1])
    kind, (y,), note, labels = resolve_kind(kind, [y], what=f"the target column {target!r}")
    if note:
        kwargs["notes"] = [*kwargs.get("notes", ()), note]
    T = len(ids)
    order = np.argsort(codes, kind="stable")  # each task's rows, in file order
    starts = np.zeros(T + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=T), out=starts[1:])
    index = [order[starts[t]:starts[t + 1]] for t in range(T)]
    ys = [y[i] for i in index]
    spec = TaskSpec(kind, tuple(ids), _class_counts(kind, None, ys, T), labels)
    kwargs.setdefault("name", path.stem)
    data = cls(spec, xs=[Rows(X, i) for i in index], ys=ys, feature_names=[str(c) for c in names],
               spill_dir=directory, **kwargs)
    return data.require_two_classes()
