"""What every gradient combiner is: the `Combiner` protocol the Trainer calls, `SumCombiner` (the default: one
backward pass of the objective) and `CombinerSpec`, the typed declaration a named combiner registers with
(`mtlkit.optim.combiners.COMBINERS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from mtlkit.hparams import HParam


class Combiner(Protocol):
    """Turns a step's per-task losses ``[T]`` and total objective into ``.grad`` on the parameters.

    ``weights`` are the task weights ``w`` ``[T]`` of ``total = Σ_t w_t L_t + penalties``; ``features`` the
    model's named intermediate tensors (`ModelOutput.features`), e.g. the shared representation."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None: ...
    # A combiner that takes per-task gradients sets ``per_task_gradients = True`` and accepts ``tape=``: on a
    # row-separable model with per-task input the Trainer runs the forward pass under a `TaskTape` and hands it over.


class SumCombiner:
    """The default: back-propagate the weighted sum of task losses plus penalties, as one objective."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None:
        total.backward()

    def __repr__(self) -> str:
        return "SumCombiner()"


@dataclass(frozen=True)
class CombinerSpec:
    """A named combiner a method can be composed with (``srdml+pcgrad``): its hyper-parameters, declared once as
    typed `HParam`s in ``params`` (``defaults`` is derived from them, as for `MethodInfo`), and a factory."""

    name: str
    summary: str
    paper: str
    make: Callable[[dict[str, Any]], Combiner]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[HParam, ...] = ()
    kind: str = "aggregator"  # "aggregator" (per-task gradients) or "weighting" (task weights): how it is listed
    needs: tuple[str, ...] = ("per-task gradients",)  # what the composed method's `MethodInfo.needs` gains

    def __post_init__(self) -> None:
        declared = {p.name: p.default for p in self.params}
        clash = {k for k in declared if k in self.defaults and self.defaults[k] != declared[k]}
        if len(declared) != len(self.params) or clash:
            raise ValueError(f"combiner {self.name!r}: a hyper-parameter declared twice or defaults that disagree "
                             f"with the declarations ({sorted(clash)})")
        object.__setattr__(self, "defaults", {**declared, **self.defaults})
