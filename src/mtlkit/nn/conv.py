"""A small LeNet-style convolutional backbone shared by all tasks (Deep-AMTFL's MNIST network, scaled down)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """LeNet-style feature extractor: per entry of ``channels`` a 5×5 conv (padding 2) → ReLU → 2×2 max-pool,
    then fully connected ReLU layers of widths ``hidden``; the output (width ``hidden[-1]``) is the features.

    ``in_shape`` is ``(C, H, W)`` or ``(H, W)`` (one channel). Inputs may carry any leading axes
    (``[B, *in_shape]`` or ``[T, B, *in_shape]``); they are flattened for the convolutions and restored.
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int] = (20, 50), hidden: Sequence[int] = (500,),
                 kernel: int = 5) -> None:
        super().__init__()
        shape = tuple(int(s) for s in in_shape)
        self.in_ndim = len(shape)  # the raw per-row shape's rank: what trails the leading axes of an input
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"SmallCNN needs an image shape (C, H, W) or (H, W), got {tuple(in_shape)}")
        if not channels or min(channels) < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"channels and hidden must be non-empty positive widths, got {channels}, {hidden}")
        self.in_shape = shape
        c, h, w = shape
        convs: list[nn.Module] = []
        for out_c in channels:
            convs += [nn.Conv2d(c, int(out_c), kernel, padding=kernel // 2), nn.ReLU()]
            if min(h, w) >= 2:  # pool while the map is at least 2×2 (tiny images such as 8×8 digits)
                convs.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = int(out_c)
        self.convs = nn.Sequential(*convs)
        fcs: list[nn.Module] = []
        n = c * h * w
        for width in hidden:
            fcs += [nn.Linear(n, int(width)), nn.ReLU()]
            n = int(width)
        self.fcs = nn.Sequential(*fcs)
        self.out_features = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - self.in_ndim]
        img = x.reshape(-1, *self.in_shape)
        feats = self.fcs(self.convs(img).flatten(1))
        return feats.reshape(*lead, self.out_features)
