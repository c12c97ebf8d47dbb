"""The sharing spectrum's three reference points: `stl` (nothing shared), `hard-share` (shared bottom,
task heads; TOMATO's Shared-bottom) and `single` (everything shared, one network for all tasks).

The shared bottom φ of the hard-share family (`hard-share`, `inter-task-l2`, `mrn`, `cross-stitch`, `mmoe`, `ple`,
`pcgrad`, `mgda-ub`) comes from `shared_bottom`: an MLP (``backbone="mlp"``, layers ``hidden``) or, for image
rows, a small CNN (``backbone="cnn"``: `ConvBottom`, 3×3 convs ``channels`` then the fully connected ``hidden``,
which may be empty). Either maps flattened rows ``[..., n_features]`` to ``[..., width]``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskMLP
from mtlkit.nn.conv import ConvBottom

ARCH_DEFAULTS: dict[str, Any] = {"hidden": [64], "head_hidden": [32], "activation": "relu", "dropout": 0.0}
ARCH_GRID: dict[str, list[Any]] = {"lr": [1e-3, 1e-2]}
BACKBONE_DEFAULTS: dict[str, Any] = {"backbone": "mlp", "channels": [16, 32]}
HARD_SHARE_DEFAULTS: dict[str, Any] = {**ARCH_DEFAULTS, **BACKBONE_DEFAULTS}
BACKBONES = ("mlp", "cnn")


def shared_bottom(info: DataInfo, hidden: list[int], activation: str, dropout: float, backbone: str = "mlp",
                  channels: list[int] | None = None) -> tuple[nn.Module, int]:
    """The shared bottom φ and its output width. ``mlp``: ``hidden`` layers (none: the identity on the flattened
    row); ``cnn``: `ConvBottom` on image rows (``channels`` 3×3 convs, then the ``hidden`` layers)."""
    if backbone == "mlp":
        return MLP([info.n_features, *hidden], activation, dropout, last_activation=True), \
            (hidden[-1] if hidden else info.n_features)
    if backbone == "cnn":
        if len(info.feature_shape) not in (2, 3):
            raise ValueError(f"backbone='cnn' needs image rows [C, H, W] or [H, W], got feature shape "
                             f"{tuple(info.feature_shape)}; use backbone='mlp' for vector features")
        net = ConvBottom(info.feature_shape, list(channels or []), hidden, activation, dropout)
        return net, net.out_features
    raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")


def _flatten(x: torch.Tensor, shared: bool, n_tasks: int) -> torch.Tensor:
    """Vector features: [B, d] (shared) or [T, B, d] (heterogeneous), whatever the raw feature shape."""
    return x.reshape(x.shape[0], -1) if shared else x.reshape(n_tasks, x.shape[1], -1)


class STLNet(nn.Module):
    """One MLP per task, stacked on the task axis (``TaskMLP``), never T separate modules."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float) -> None:
        super().__init__()
        self.shared, self.n_tasks = info.shared, info.n_tasks
        sizes = [info.n_features, *hidden, *head_hidden, info.spec.n_outputs]
        self.net = TaskMLP(info.n_tasks, sizes, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_flatten(x, self.shared, self.n_tasks))


class SingleNet(nn.Module):
    """One MLP for all tasks: every task gets the same function of its input."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float) -> None:
        super().__init__()
        self.shared, self.n_tasks = info.shared, info.n_tasks
        self.net = MLP([info.n_features, *hidden, *head_hidden, info.spec.n_outputs], activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(_flatten(x, self.shared, self.n_tasks))
        return out.expand(self.n_tasks, *out.shape) if self.shared else out


class HardShareNet(nn.Module):
    """Shared bottom ``φ`` (`shared_bottom`: an MLP ``hidden`` or a small CNN) then task-specific heads
    (``head_hidden`` then the output). The forward pass also returns the shared representation
    ``features["shared"] = φ(x)``, the point MGDA-UB differentiates against (``hard-share+mgda-ub``)."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float, backbone: str = "mlp", channels: list[int] | None = None) -> None:
        super().__init__()
        if not hidden and backbone != "cnn":
            raise ValueError("hard-share needs at least one shared hidden layer (hidden=[...])")
        self.shared, self.n_tasks = info.shared, info.n_tasks
        self.bottom, width = shared_bottom(info, hidden, activation, dropout, backbone, channels)
        self.heads = TaskMLP(info.n_tasks, [width, *head_hidden, info.spec.n_outputs], activation, dropout)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        return ModelOutput(self.heads(z), features={"shared": z})


def _arch(hp: dict[str, Any]) -> dict[str, Any]:
    return {k: hp[k] for k in ARCH_DEFAULTS}


def _hard_share_arch(hp: dict[str, Any]) -> dict[str, Any]:
    """`_arch` plus the backbone choice of the hard-share family (absent in runs saved before it existed: the MLP)."""
    return {**_arch(hp), **{k: hp.get(k, v) for k, v in BACKBONE_DEFAULTS.items()}}


def _shared_bottom(model: nn.Module) -> list[nn.Parameter]:
    return list(model.bottom.parameters())


register(MethodInfo(
    name="stl",
    summary="Single-task learning: an independent MLP per task (hidden + head_hidden), stacked on the task axis.",
    paper="Baseline of every paper (TOMATO's 'Separate', SRDML's 'STL', AMTFL's 'NN' per task)",
    build=lambda info, hp: MethodParts(STLNet(info, **_arch(hp))),
    defaults=ARCH_DEFAULTS, grid=ARCH_GRID, aliases=("separate",),
))
register(MethodInfo(
    name="single",
    summary="One MLP shared by all tasks (no task-specific parameters): the fully shared end of the spectrum.",
    paper="TOMATO (Zhang & Lee, CIKM 2020) Table 3 'Single'",
    build=lambda info, hp: MethodParts(SingleNet(info, **_arch(hp))),
    defaults=ARCH_DEFAULTS, grid=ARCH_GRID,
))
register(MethodInfo(
    name="hard-share",
    summary="Hard parameter sharing: shared bottom (MLP hidden, or backbone=cnn: 3×3 convs channels then hidden) + "
            "task-specific MLP heads (head_hidden).",
    paper="Caruana 1997; TOMATO's 'Shared-bottom', SRDML's 'Hard-Share'",
    build=lambda info, hp: MethodParts(HardShareNet(info, **_hard_share_arch(hp)), shared_parameters=_shared_bottom),
    defaults=HARD_SHARE_DEFAULTS, grid=ARCH_GRID, aliases=("shared-bottom",),
))
