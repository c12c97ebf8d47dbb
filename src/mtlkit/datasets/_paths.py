"""Where real data sets are read from: ``--data-dir``/``data_dir``, else ``$MTLKIT_DATA``. Never the network."""

from __future__ import annotations

import os
from pathlib import Path

from mtlkit.errors import DataDirError

ENV_VAR = "MTLKIT_DATA"


def data_file(data_dir: str | Path | None, relative: str, dataset: str) -> Path:
    """The path of ``relative`` inside the data directory, or an error naming the variable and the file."""
    root = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
    if root is None or str(root) == "":
        raise DataDirError(f"data set {dataset!r} reads {relative} from a data directory: set {ENV_VAR} "
                           f"or pass --data-dir (data_dir=...)")
    path = Path(root).expanduser() / relative
    if not path.is_file():
        raise DataDirError(f"data set {dataset!r}: {path} not found (looked in {ENV_VAR} / --data-dir = "
                           f"{root}); it should hold {relative}")
    return path
