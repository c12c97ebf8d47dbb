"""Task-stacked convolutions: T independent conv layers held as ONE parameter ``[T, cout, cin, kh, kw]`` and
applied with one grouped ``F.conv2d`` (the task axis folded into the channels, ``groups=T``), never a loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.nn.layouts import to_paper_layout


def fold_tasks(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` → ``[B, T·C, H, W]``: the task axis folded into the channels (task-major)."""
    T, B, C, H, W = x.shape
    return x.transpose(0, 1).reshape(B, T * C, H, W)


def unfold_tasks(x: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """``[B, T·C, H, W]`` → ``[T, B, C, H, W]``, the inverse of `fold_tasks`."""
    B, TC, H, W = x.shape
    return x.reshape(B, n_tasks, TC // n_tasks, H, W).transpose(0, 1)


class TaskConv2d(nn.Module):
    """T independent 2-D convolutions: ``y[t] = conv2d(x[t], weight[t]) + bias[t]``.

    Input ``[T, B, cin, H, W]`` (each task its own images) or ``[B, cin, H, W]`` (shared input, seen by every
    task); output ``[T, B, cout, H', W']``. `forward_folded` works on the folded ``[B, T·cin, H, W]`` form so a
    stack of task convolutions needs no transposes between layers. Each task is initialised like its own
    ``nn.Conv2d`` (uniform ±1/√fan_in).
    """

    def __init__(self, n_tasks: int, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if min(n_tasks, in_channels, out_channels, kh, kw, stride) < 1 or padding < 0:
            raise ValueError(f"TaskConv2d needs positive tasks/channels/kernel/stride and padding >= 0, got "
                             f"T={n_tasks}, cin={in_channels}, cout={out_channels}, kernel={(kh, kw)}, "
                             f"stride={stride}, padding={padding}")
        self.n_tasks, self.in_channels, self.out_channels = n_tasks, in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.weight = nn.Parameter(torch.empty(n_tasks, out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(n_tasks, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's default: kaiming_uniform(a=√5) on the weight, i.e. uniform ±1/√fan_in, and so the bias."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T·cin, H, W]`` → ``[B, T·cout, H', W']`` with one grouped convolution (``groups=T``)."""
        T = self.n_tasks
        w = self.weight.reshape(T * self.out_channels, self.in_channels, *self.kernel_size)
        b = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding, groups=T)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Shared input ``[B, cin, H, W]`` → folded ``[B, T·cout, H', W']``: one ordinary convolution with all
        tasks' filters (no copy of the input per task)."""
        w = self.weight.reshape(self.n_tasks * self.out_channels, self.in_channels, *self.kernel_size)
        b = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return unfold_tasks(self.forward_shared(x), self.n_tasks)
        if x.dim() != 5 or x.shape[0] != self.n_tasks or x.shape[2] != self.in_channels:
            raise ValueError(f"TaskConv2d expects [T={self.n_tasks}, B, cin={self.in_channels}, H, W] or "
                             f"[B, cin, H, W], got {tuple(x.shape)}")
        return unfold_tasks(self.forward_folded(fold_tasks(x)), self.n_tasks)

    def paper_weight(self) -> torch.Tensor:
        """The weight in the trace-norm paper's layout ``(kh, kw, cin, cout, T)`` (a view, gradients flow)."""
        return to_paper_layout(self.weight)

    def extra_repr(self) -> str:
        return (f"tasks={self.n_tasks}, in={self.in_channels}, out={self.out_channels}, kernel={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


def task_max_pool2d(x: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """Max-pooling of folded ``[B, T·C, H, W]`` or stacked ``[T, B, C, H, W]`` maps (floor, like TF 'VALID')."""
    if x.dim() == 4:
        return F.max_pool2d(x, kernel)
    T, B = x.shape[:2]
    y = F.max_pool2d(x.reshape(T * B, *x.shape[2:]), kernel)
    return y.reshape(T, B, *y.shape[1:])
