"""Read a user's own multi-task data from a CSV or Parquet table with a task column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.errors import DataError


def _read_frame(path: Path) -> Any:
    import pandas as pd

    if not path.exists():
        raise DataError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise DataError("reading Parquet needs pyarrow: pip install 'mtlkit[parquet]'") from e
    if suffix in (".csv", ".txt", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    raise DataError(f"cannot read {path.name}: expected a .csv, .tsv or .parquet file")


def infer_kind(y: np.ndarray) -> str:
    """binary for {0,1}, multiclass for a few non-negative integers, regression otherwise."""
    vals = np.unique(y[~np.isnan(y)])
    if set(vals.tolist()) <= {0.0, 1.0}:
        return "binary"
    if np.all(vals == np.round(vals)) and vals.min() >= 0 and len(vals) <= 20:
        return "multiclass"
    return "regression"


def read_table(cls: Any, path: str | Path, task: str, target: str, features: Sequence[str] | None = None,
               kind: str | None = None, categorical: bool | Sequence[str] = False, **kwargs: Any) -> Any:
    """See `MultiTaskData.from_table`."""
    import pandas as pd

    path = Path(path)
    df = _read_frame(path)
    cols = list(df.columns)
    missing = [c for c in (task, target, *(features or ())) if c not in df.columns]
    if missing:
        raise DataError(f"{path.name} has no column(s) {', '.join(map(repr, missing))}; "
                        f"its columns are {', '.join(map(str, cols))}")
    feats = list(features) if features is not None else [c for c in cols if c not in (task, target)]
    if not feats:
        raise DataError(f"{path.name} has no feature columns besides {task!r} and {target!r}")
    if categorical is True:
        cat = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    elif categorical is False:
        cat = []
    else:
        cat = list(categorical)
        unknown = [c for c in cat if c not in feats]
        if unknown:
            raise DataError(f"categorical column(s) {unknown} are not feature columns of {path.name}")
    for c in feats:
        if c not in cat and not pd.api.types.is_numeric_dtype(df[c]):
            example = df[c].dropna().iloc[0] if df[c].notna().any() else None
            raise DataError(f"feature column {c!r} of {path.name} is not numeric (e.g. {example!r}); "
                            "encode it, or pass categorical=True (CLI: --categorical) to one-hot it")
    X = pd.get_dummies(df[feats], columns=cat, dtype=np.float64) if cat else df[feats]
    if df[target].isna().any():
        raise DataError(f"target column {target!r} of {path.name} has {int(df[target].isna().sum())} "
                        "missing value(s)")
    if not pd.api.types.is_numeric_dtype(df[target]):
        raise DataError(f"target column {target!r} of {path.name} is not numeric")
    y = df[target].to_numpy(dtype=np.float64)
    kind = kind or infer_kind(y)
    tasks = df[task].astype(str).to_numpy()
    names = list(dict.fromkeys(tasks))  # order of first appearance
    Xv = X.to_numpy(dtype=np.float64)
    Xs = [Xv[tasks == n] for n in names]
    ys = [y[tasks == n] for n in names]
    kwargs.setdefault("name", path.stem)
    return cls.from_tasks(Xs, ys, kind=kind, names=names, feature_names=[str(c) for c in X.columns], **kwargs)
