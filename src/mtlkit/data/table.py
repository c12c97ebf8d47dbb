"""Read a user's own multi-task data from a CSV or Parquet table with a task column.

Every problem with the file is one `DataError` line naming the column (and the data row, counted from 1
after the header) and the offending value; nothing is dropped, renamed or guessed silently: the task kind,
when not given, is inferred by `mtlkit.data.multitask.infer_kind` with a note (see `read_table`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import infer_kind, resolve_kind
from mtlkit.errors import DataError

__all__ = ["infer_kind", "read_table"]


def _csv_header(path: Path, sep: str) -> list[str] | None:
    """The first non-blank row of the file as csv reads it (None: the file holds no text)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        for row in csv.reader(f, delimiter=sep):
            if any(cell.strip() for cell in row):
                return row
    return None


def categorical_columns(categorical: bool | Sequence[str], feats: Sequence[str], is_numeric: Callable[[str], bool],
                        where: str) -> list[str]:
    """The feature columns to one-hot encode: the non-numeric ones (``True``), none (``False``), or those named
    (each must be a feature column of ``where``). Shared by the in-memory and the streaming reader."""
    if categorical is True:
        return [c for c in feats if not is_numeric(c)]
    if categorical is False:
        return []
    cat = list(categorical)
    unknown = [c for c in cat if c not in feats]
    if unknown:
        raise DataError(f"categorical column(s) {unknown} are not feature columns of {where}")
    return cat


def _check_unique_columns(names: Sequence[Any], where: str) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = str(n)
        if key == "":
            continue  # pandas names blank headers "Unnamed: i"
        if key in seen:
            raise DataError(f"{where} has the column name {key!r} twice (columns {seen[key] + 1} and {i + 1}); "
                            "column names must be unique")
        seen[key] = i


def _read_frame(path: Path) -> Any:
    import pandas as pd

    if not path.exists():
        raise DataError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if path.is_dir():  # a Parquet data set (a folder of files), read whole (MultiTaskData.from_table streams it)
        if not any(path.rglob("*.parquet")) and not any(path.rglob("*.pq")):
            raise DataError(f"{path} is a directory without .parquet files, not a .csv, .tsv or .parquet file")
        suffix = ".parquet"
    elif suffix in (".parquet", ".pq") and path.stat().st_size == 0:
        raise DataError(f"{path.name}: the file is empty")
    if suffix in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except ImportError as e:
            raise DataError("reading Parquet needs pyarrow: pip install 'mtlkit[parquet]'") from e
        except Exception as e:  # pyarrow's errors for a damaged file: one line
            raise DataError(f"cannot read {path.name} as Parquet: {str(e).splitlines()[0] if str(e) else e!r}") from e
        _check_unique_columns(list(df.columns), path.name)
        if len(df.columns) == 0:
            raise DataError(f"{path.name} has no columns")
        if len(df) == 0:
            raise DataError(f"{path.name} has columns but no rows")
        return df
    if suffix in (".csv", ".txt", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        header = _csv_header(path, sep)
        if header is None:
            raise DataError(f"{path.name}: the file is empty")
        _check_unique_columns(header, path.name)  # pandas would rename a second 'f0' to 'f0.1'
        try:
            df = pd.read_csv(path, sep=sep)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path.name}: the file is empty") from None
        except pd.errors.ParserError as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else "malformed rows"
            raise DataError(f"cannot parse {path.name}: {msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path.name} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        if len(df) == 0:
            raise DataError(f"{path.name}: the CSV has a header but no rows")
        return df
    raise DataError(f"cannot read {path.name}: expected a .csv, .tsv or .parquet file")


def _blank(col: Any) -> np.ndarray:
    """Cells with no value: NaN/None, or text that is only whitespace."""
    na = col.isna().to_numpy()
    if col.dtype == object:
        na |= np.array([isinstance(v, str) and not v.strip() for v in col], dtype=bool)
    return na


def _first_non_numeric(col: Any) -> tuple[int, Any] | None:
    """(position, value) of the first non-blank cell that is not a number, or None."""
    import pandas as pd

    num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(num) & ~_blank(col)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return i, col.iloc[i]


def _numeric_column(df: Any, c: str, what: str, where: str, hint: str = "") -> np.ndarray:
    """Column ``c`` as float64, or a `DataError` naming it, the row and the real offending value."""
    import pandas as pd

    col = df[c]
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        first = _first_non_numeric(col)
        if first is not None:
            i, v = first
            raise DataError(f"{what} {c!r} of {where} is not numeric: data row {i + 1} holds {v!r}{hint}")
    blank = _blank(col)
    if blank.any():
        raise DataError(f"{what} {c!r} of {where} has {int(blank.sum())} blank cell(s); the first is in data row "
                        f"{int(np.argmax(blank)) + 1}")
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    inf = ~np.isfinite(values)
    if inf.any():
        i = int(np.argmax(inf))
        raise DataError(f"{what} {c!r} of {where} holds {values[i]:g} in data row {i + 1}; values must be finite")
    return values


def read_table(cls: Any, path: str | Path, task: str, target: str, features: Sequence[str] | None = None,
               kind: str | None = None, categorical: bool | Sequence[str] = False, **kwargs: Any) -> Any:
    """See `MultiTaskData.from_table`. Data rows are counted from 1 after the header."""
    from mtlkit._optional import require

    pd = require("pandas", "reading a CSV / Parquet table")

    path = Path(path)
    if task == target:
        raise DataError(f"the task and the target name the same column {task!r}")
    df = _read_frame(path)
    where = path.name
    cols = list(df.columns)
    missing = [c for c in (task, target, *(features or ())) if c not in df.columns]
    if missing:
        raise DataError(f"{where} has no column(s) {', '.join(map(repr, missing))}; "
                        f"its columns are {', '.join(map(str, cols))}")
    if features is not None:
        feats = list(features)
        _check_unique_columns(feats, "the feature list")
        clash = [c for c in feats if c in (task, target)]
        if clash:
            raise DataError(f"the feature list names the {'task' if clash[0] == task else 'target'} column "
                            f"{clash[0]!r}")
    else:
        feats = [c for c in cols if c not in (task, target)]
    if not feats:
        raise DataError(f"{where} has no feature columns besides {task!r} and {target!r}")

    blank = _blank(df[task])
    if blank.any():
        raise DataError(f"the task column {task!r} of {where} has a blank cell in data row {int(np.argmax(blank)) + 1}"
                        + (f" (and {int(blank.sum()) - 1} more)" if blank.sum() > 1 else ""))

    cat = categorical_columns(categorical, feats,
                              lambda c: pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]),
                              where)
    hint = "; encode it, or pass categorical=True (CLI: --categorical) to one-hot it"
    numeric = {c: _numeric_column(df, c, "feature column", where, hint) for c in feats if c not in cat}
    for c in cat:
        b = _blank(df[c])
        if b.any():
            raise DataError(f"categorical column {c!r} of {where} has {int(b.sum())} blank cell(s); the first is "
                            f"in data row {int(np.argmax(b)) + 1}")
    X = pd.get_dummies(df[feats], columns=cat, dtype=np.float64) if cat else pd.DataFrame(numeric)[feats]
    y = _numeric_column(df, target, "target column", where)

    kind, (y,), note, labels = resolve_kind(kind, [y], what=f"the target column {target!r}")
    if note:
        kwargs["notes"] = [*kwargs.get("notes", ()), note]
    tasks = df[task].astype(str).to_numpy()
    names = list(dict.fromkeys(tasks))  # order of first appearance
    Xv = X.to_numpy(dtype=np.float64)
    Xs = [Xv[tasks == n] for n in names]
    ys = [y[tasks == n] for n in names]
    kwargs.setdefault("name", path.stem)
    data = cls.from_tasks(Xs, ys, kind=kind, names=names, feature_names=[str(c) for c in X.columns], labels=labels,
                          **kwargs)
    return data.require_two_classes()
