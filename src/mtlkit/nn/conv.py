"""Small convolutional backbones shared by all tasks: `SmallCNN` (LeNet-style, Deep-AMTFL's MNIST network scaled
down), `ConvMap` (3×3 convs whose last feature map is the output; SRDML's backbone) and `ConvBottom` (a `ConvMap`
behind the MLP bottom's ``[..., n_features]`` contract, the ``backbone="cnn"`` of the hard-share family)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtlkit.nn.backbones import MLP
from mtlkit.nn.task_layers import activation


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


class ConvMap(nn.Sequential):
    """3×3 convolutions (padding 1), each followed by the activation, with 2×2 max-pooling between them (not after
    the last): the output is the last convolutional feature map, the map Grad-CAM (and SRDML's saliency) reads."""

    def __init__(self, in_channels: int, channels: Sequence[int], activation_name: str = "relu") -> None:
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"a conv backbone needs positive conv channels (channels=[...]), got {list(channels)}")
        layers: list[nn.Module] = []
        c = int(in_channels)
        for i, out in enumerate(channels):
            layers += [nn.Conv2d(c, int(out), 3, padding=1), activation(activation_name)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c = int(out)
        super().__init__(*layers)


class ConvBottom(nn.Module):
    """A shared bottom for image tasks that keeps the MLP bottom's contract: ``[..., n_features]`` (flattened
    image rows, any leading axes) → ``[..., out_features]``. The rows are viewed as images ``feature_shape``
    (``(C, H, W)`` or ``(H, W)``), go through a `ConvMap`, are flattened and then through the fully connected
    layers ``hidden`` (each with the activation; none: the flattened map is the representation)."""

    def __init__(self, feature_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int] = (),
                 activation_name: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        shape = tuple(int(s) for s in feature_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"backbone='cnn' needs image rows [C, H, W] or [H, W], got feature shape "
                             f"{tuple(feature_shape)}")
        self.image_shape = shape
        self.map = ConvMap(shape[0], channels, activation_name)
        with torch.no_grad():
            n = int(self.map(torch.zeros(1, *shape)).numel())
        self.fc = MLP([n, *[int(h) for h in hidden]], activation_name, dropout, last_activation=True)
        self.out_features = int(hidden[-1]) if hidden else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        a = self.map(x.reshape(-1, *self.image_shape))
        return self.fc(a.flatten(1)).reshape(*lead, self.out_features)
