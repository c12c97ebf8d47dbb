"""What a method is: an architecture + penalties + proximal steps + a gradient combiner (`MethodParts`),
and the registry entry that builds it and describes it (`MethodInfo`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import KINDS, DataInfo
from mtlkit.data.tensors import Batch, DeviceData
from mtlkit.hparams import HParam
from mtlkit.optim.combiners import Combiner, SumCombiner


@dataclass
class ModelOutput:
    """A model's predictions ``pred`` [T, B, P] plus any named intermediate tensors a penalty needs
    (e.g. AMTFL's penultimate features, SRDML's shared feature map)."""

    pred: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


def as_output(out: torch.Tensor | ModelOutput) -> ModelOutput:
    return out if isinstance(out, ModelOutput) else ModelOutput(out)


Penalty = Callable[[nn.Module, ModelOutput, Batch], torch.Tensor]
"""A scalar added to the objective: a function of the parameters and, if needed, the batch's features."""

Prox = Callable[[nn.Module, float], None]
"""A proximal step applied in place after each optimizer step, given the current learning rate."""


@dataclass
class MethodParts:
    """The four pluggable pieces of a method, as the Trainer consumes them (it never reads a name).

    ``state`` / ``load_state`` are optional hooks for training state a method keeps outside its model's
    ``state_dict`` (e.g. a running covariance held by a penalty): a training checkpoint stores what
    ``state()`` returns and a resumed run hands it back to ``load_state``. State kept in module buffers or
    parameters needs no hook — it is already in the model's ``state_dict``.

    ``row_separable``: with per-task input, task t's rows reach only task t's loss (see `MethodInfo.row_separable`,
    which sets it on every build of a registry entry; a model class may also declare ``row_separable = True``).
    """

    model: nn.Module
    penalties: Sequence[Penalty] = ()
    proxes: Sequence[Prox] = ()
    combiner: Combiner = field(default_factory=SumCombiner)
    shared_parameters: Callable[[nn.Module], list[nn.Parameter]] | None = None
    state: Callable[[], dict[str, torch.Tensor]] | None = None
    load_state: Callable[[dict[str, torch.Tensor]], None] | None = None
    warm_start: Callable[[nn.Module], None] | None = None
    row_separable: bool = False


def row_separable(parts: MethodParts) -> bool:
    """Whether the parts or their model's class declare ``row_separable``."""
    return bool(parts.row_separable or getattr(parts.model, "row_separable", False) is True)


Fit = Callable[[MethodParts, DeviceData, dict[str, Any]], None]
"""A non-SGD training routine (closed form, alternating solvers) that sets the model's parameters."""


@dataclass(frozen=True)
class MethodInfo:
    """A registry entry: how to build the method and what a person (and the CLI) should know about it.

    ``params`` declares the method's own hyper-parameters once, typed (`mtlkit.hparams.HParam`: type, default,
    valid range, doc, tuning space); ``defaults`` is derived from it. A method may instead give only
    ``defaults`` (its parameters are then typed from the default values, untuned) or change only the default
    of a Trainer parameter there (``lr``). ``grid`` is the small default grid of ``--grid`` selection.
    ``fit`` replaces SGD training for closed-form or alternating methods. ``pretrain`` names a method that
    is trained first (same data, seed and the hyper-parameters it shares with this one) whenever the built
    parts have a ``MethodParts.warm_start`` hook (a method may offer it through a hyper-parameter, as
    srdml's ``warm_start``); its model is handed to that hook before this method's own training.
    ``row_separable`` declares that, whatever the hyper-parameters, the model's prediction for a row of task t
    depends only on that row (given per-task input, task t's rows reach task t's loss alone: no mixing of tasks'
    rows, no batch statistics); every build of the entry then carries it (`MethodParts.row_separable`), and gradient
    combiners take all T per-task gradients from one backward pass (`mtlkit.optim.combiners.TaskTape`).
    """

    name: str
    summary: str
    paper: str
    build: Callable[[DataInfo, dict[str, Any]], MethodParts]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] | Callable[[str], Mapping[str, Sequence[Any]]] = field(default_factory=dict)
    kinds: tuple[str, ...] = KINDS
    needs: tuple[str, ...] = ()
    fit: Fit | None = None
    aliases: tuple[str, ...] = ()
    pretrain: str | None = None
    params: tuple[HParam, ...] = ()
    row_separable: bool = False

    def __post_init__(self) -> None:
        declared = {p.name: p.default for p in self.params}
        if len(declared) != len(self.params):
            raise ValueError(f"method {self.name!r} declares a hyper-parameter twice")
        clash = {k for k in declared if k in self.defaults and self.defaults[k] != declared[k]}
        if clash:
            raise ValueError(f"method {self.name!r}: defaults disagree with the declarations of {sorted(clash)}")
        object.__setattr__(self, "defaults", {**declared, **self.defaults})

    def grid_for(self, kind: str) -> dict[str, list[Any]]:
        """The default selection grid for tasks of ``kind``."""
        g = self.grid(kind) if callable(self.grid) else self.grid
        return {k: list(v) for k, v in g.items()}

    @property
    def trained_by_sgd(self) -> bool:
        return self.fit is None
