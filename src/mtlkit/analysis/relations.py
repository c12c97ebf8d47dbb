"""The task-relation hook: a model that learns how tasks relate (SRDML's ω, AMTFL's AS, TOMATO's ‖θˢ_kt‖,
MRN's task covariance, Cross-stitch units) exposes it as ``task_relations() -> {name: matrix}``, and
`task_relations` reads it from a model or a `Run` as numpy arrays, for plots and reports."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from mtlkit.errors import MtlkitError


@runtime_checkable
class HasTaskRelations(Protocol):
    """A model with learned task relations: name -> 2-D matrix (``[T, T]``, or ``[K, T]`` topics × tasks)."""

    def task_relations(self) -> dict[str, np.ndarray | torch.Tensor]:
        """The learned relation matrices by name, e.g. ``{"ω": [T, T]}``."""
        ...


def _model_of(obj: Any) -> Any:
    """The model inside a `Run` (anything with a ``model`` attribute that is an ``nn.Module``), else ``obj``."""
    inner = getattr(obj, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else obj


def task_relations(run_or_model: Any) -> dict[str, np.ndarray]:
    """The learned task-relation matrices of a run or model as float64 numpy arrays; ``{}`` when it has none.

    Each matrix must be 2-D; 1-D and 3-D+ results are a `MtlkitError` naming the method's matrix.
    """
    model = _model_of(run_or_model)
    hook = getattr(model, "task_relations", None)
    if hook is None or not callable(hook):
        return {}
    with torch.no_grad():
        raw = hook()
    if not isinstance(raw, dict):
        raise MtlkitError(f"{type(model).__name__}.task_relations() must return a dict name -> matrix, "
                          f"got {type(raw).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, m in raw.items():
        arr = m.detach().cpu().double().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64)
        if arr.ndim != 2:
            raise MtlkitError(f"task relation {name!r} of {type(model).__name__} must be a 2-D matrix, "
                              f"got shape {arr.shape}")
        out[str(name)] = arr
    return out


def axis_labels(n: int, task_names: tuple[str, ...] | list[str], other: str = "") -> list[str]:
    """Labels for one axis of a relation matrix: the task names when it has T entries, else ``other`` + 1..n."""
    if n == len(task_names):
        return list(task_names)
    return [f"{other}{i + 1}" for i in range(n)]
