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


class SteppedState:
    """What every stateful combiner shares: a seed, a step counter, random draws seeded by both (the same on every
    rank and after a resume), and checkpoint state under its registry ``name`` (``NAME.step`` plus `extra_state`)."""

    name = "combiner"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = int(torch.initial_seed() if seed is None else seed) % (2 ** 62)
        self.step = 0
        self.last_weights: torch.Tensor | None = None  # the latest step's task coefficients (for inspection)

    def extra_state(self) -> dict[str, torch.Tensor]:
        """State beyond the step counter (keys without the name prefix)."""
        return {}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what `extra_state` returned (keys without the name prefix)."""

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.step) % (2 ** 63))

    def state(self) -> dict[str, torch.Tensor]:
        st = {f"{self.name}.step": torch.tensor(self.step, dtype=torch.int64)}
        st.update({f"{self.name}.{k}": v for k, v in self.extra_state().items()})
        return st

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        pre = f"{self.name}."
        if pre + "step" in state:
            self.step = int(state[pre + "step"])
        self.load_extra_state({k[len(pre):]: v for k, v in state.items() if k.startswith(pre) and k != pre + "step"})

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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
