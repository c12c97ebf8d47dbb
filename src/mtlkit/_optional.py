"""Optional dependencies: optuna (tuning and sweeps), matplotlib (figures) and pandas (reading CSV / Parquet tables,
DataFrame outputs) are extras, not core requirements, so a plain ``pip install mtlkit`` can train, predict and run
``mtlkit bench``. Code that needs one calls `require` where the feature starts; a missing package is then one line
naming the extra that installs it, instead of a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from mtlkit.errors import MtlkitError

__all__ = ["EXTRAS", "require"]

# optional package -> the extra of pyproject.toml that installs it (`pip install 'mtlkit[EXTRA]'`; `[all]` has all)
EXTRAS: dict[str, str] = {"optuna": "sweep", "matplotlib": "plot", "pandas": "tables"}


def require(name: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import the optional package ``name`` (or a module in it) for ``purpose`` (what the caller is doing, e.g.
    "equal-budget tuning (--trials)"), or raise a one-line `MtlkitError` saying how to install it: with the
    package's own extra (`EXTRAS`), or ``extra`` when a feature needs several (``"all"``).

    Only the package's own absence becomes that error: an ImportError raised from inside an installed package
    (a broken install, a missing dependency of its own) propagates unchanged, so it is not misreported."""
    top = name.partition(".")[0]
    if top not in EXTRAS:
        raise ValueError(f"{top!r} is not one of mtlkit's optional packages ({', '.join(EXTRAS)})")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.partition(".")[0] != top:
            raise
        how = f"pip install 'mtlkit[{extra or EXTRAS[top]}]'"
        raise MtlkitError(f"{top} is needed for {purpose}; install it with: {how}") from None
