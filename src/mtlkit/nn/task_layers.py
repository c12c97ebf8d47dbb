"""Task-stacked layers: T tasks' weights in ONE parameter `[T, in, out]`, applied by one batched matmul."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    """An activation module by name (relu, tanh, sigmoid, gelu, identity)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


class TaskLinear(nn.Module):
    """T independent linear maps: ``y[t] = x[t] @ weight[t] + bias[t]``.

    Input ``[T, B, in]`` (each task its own rows) or ``[B, in]`` (shared input, broadcast to all
    tasks); output ``[T, B, out]``. Each task is initialised like its own ``nn.Linear``.
    """

    def __init__(self, n_tasks: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.n_tasks, self.in_features, self.out_features = n_tasks, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_tasks, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_tasks, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)  # nn.Linear's kaiming_uniform(a=√5) bound
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # shared input [B, in]
            out = torch.einsum("bi,tio->tbo", x, self.weight)
            return out if self.bias is None else out + self.bias[:, None, :]
        if x.shape[0] != self.n_tasks:
            raise ValueError(f"TaskLinear has {self.n_tasks} tasks but the input's task axis is {x.shape[0]}")
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)

    def extra_repr(self) -> str:
        return f"tasks={self.n_tasks}, in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


class TaskMLP(nn.Module):
    """T independent MLPs stacked on the task axis: ``sizes = [in, h1, ..., out]``.

    Hidden layers use ``activation`` (and dropout); the last layer is linear unless
    ``last_activation`` is set. Input ``[T, B, in]`` or shared ``[B, in]``; output ``[T, B, out]``.
    """

    def __init__(self, n_tasks: int, sizes: Sequence[int], activation_name: str = "relu",
                 dropout: float = 0.0, last_activation: bool = False) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"TaskMLP needs at least [in, out] sizes, got {list(sizes)}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(TaskLinear(n_tasks, a, b))
            if i < len(sizes) - 2 or last_activation:
                layers.append(activation(activation_name))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.sizes = list(sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def linear_layers(self) -> list[TaskLinear]:
        return [m for m in self.layers if isinstance(m, TaskLinear)]
