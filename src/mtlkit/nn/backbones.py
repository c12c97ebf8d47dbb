"""Shared backbones: modules applied identically to every task's rows (any leading axes)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mtlkit.nn.task_layers import activation


class MLP(nn.Sequential):
    """A plain MLP over the last axis: ``sizes = [in, h1, ..., out]``; works on ``[..., in]`` so a
    ``[T, B, in]`` batch passes through in one call. Activation (and dropout) after every layer
    but the last unless ``last_activation``."""

    def __init__(self, sizes: Sequence[int], activation_name: str = "relu", dropout: float = 0.0,
                 last_activation: bool = False) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2 or last_activation:
                layers.append(activation(activation_name))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        super().__init__(*layers)
        self.sizes = list(sizes)
