"""mtlkit: multi-task learning in PyTorch, with the task axis first and batched.

    import mtlkit
    data = mtlkit.datasets.load("digits")
    split = data.split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("hard-share", split, seed=0)
    print(run.evaluate("test"))

The names below are imported on first use (PEP 562 ``__getattr__``), so ``import mtlkit`` (and the
``mtlkit`` command's start) does not pay for torch, scipy, pandas, matplotlib or optuna.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mtlkit._version import __version__

# public name -> (module, attribute in it; None: the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "datasets": ("mtlkit.datasets", None),
    "methods": ("mtlkit.methods", None),
    "MultiTaskData": ("mtlkit.data.multitask", "MultiTaskData"),
    "Split": ("mtlkit.data.splits", "Split"),
    "TaskSpec": ("mtlkit.data.spec", "TaskSpec"),
    "DataError": ("mtlkit.errors", "DataError"),
    "MtlkitError": ("mtlkit.errors", "MtlkitError"),
    "UnknownNameError": ("mtlkit.errors", "UnknownNameError"),
    "Evaluation": ("mtlkit.train.run", "Evaluation"),
    "Run": ("mtlkit.train.run", "Run"),
    "load": ("mtlkit.train.run", "load"),
    "train": ("mtlkit.train.run", "train"),
    "affinity": ("mtlkit.experiments.affinity", "affinity"),
    "group_tasks": ("mtlkit.analysis.grouping", "group_tasks"),
}

__all__ = ["DataError", "Evaluation", "MtlkitError", "MultiTaskData", "Run", "Split", "TaskSpec",
           "UnknownNameError", "__version__", "affinity", "datasets", "group_tasks", "load", "methods", "train"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these come from __getattr__
    from mtlkit import datasets, methods
    from mtlkit.data import MultiTaskData, Split, TaskSpec
    from mtlkit.errors import DataError, MtlkitError, UnknownNameError
    from mtlkit.train import Evaluation, Run, load, train


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it in the module (later look-ups are plain)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'mtlkit' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Mtlkit(ModuleType):
    """``mtlkit.train`` is the function `mtlkit.train.run.train`, as it was when the package imported everything
    eagerly, although a sub-package of the same name exists: importing ``mtlkit.train.<anything>`` makes the
    import system set the attribute ``train`` of ``mtlkit`` to the sub-package, which this property ignores."""

    @property
    def train(self) -> Any:
        fn = self.__dict__.get("train")
        if fn is None or isinstance(fn, ModuleType):
            from mtlkit.train.run import train as fn

            self.__dict__["train"] = fn
        return fn

    @train.setter
    def train(self, value: Any) -> None:
        if not (isinstance(value, ModuleType) and value.__name__ == "mtlkit.train"):
            self.__dict__["train"] = value  # e.g. a test's monkeypatch


sys.modules[__name__].__class__ = _Mtlkit
