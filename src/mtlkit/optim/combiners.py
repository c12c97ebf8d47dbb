"""Gradient combiners: how the per-task losses become gradients of the shared parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn


class Combiner(Protocol):
    """Turns a step's per-task losses ``[T]`` and total objective into ``.grad`` on the parameters."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter]) -> None: ...


class SumCombiner:
    """The default: back-propagate the weighted sum of task losses plus penalties, as one objective."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter]) -> None:
        total.backward()

    def __repr__(self) -> str:
        return "SumCombiner()"
