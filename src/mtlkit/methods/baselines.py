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
from mtlkit.hparams import HParam, choice
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskMLP
from mtlkit.nn.conv import ConvBottom
from mtlkit.nn.task_layers import ACTIVATIONS

BACKBONES = ("mlp", "cnn")


def arch_params(hidden_doc: str = "widths of the shared bottom φ's hidden layers",
                head_doc: str = "widths of each task head's hidden layers (after φ, before the output)"
                ) -> tuple[HParam, ...]:
    """The MLP declarations of the sharing spectrum and the hard-share family (``hidden``, ``head_hidden``,
    ``activation``, ``dropout``), with each method's own words for what the two widths are."""
    return (
        HParam("hidden", "ints", [64], hidden_doc, space=choice([32], [64], [128])),
        HParam("head_hidden", "ints", [32], head_doc, space=choice([16], [32], [64])),
        HParam("activation", "str", "relu", "activation of every hidden layer", choices=tuple(ACTIVATIONS)),
        HParam("dropout", "float", 0.0, "dropout after each hidden layer", low=0.0, high=1.0, high_open=True,
               space=choice(0.0, 0.2)),
    )


ARCH_PARAMS: tuple[HParam, ...] = arch_params()
BACKBONE_PARAMS: tuple[HParam, ...] = (
    HParam("backbone", "str", "mlp", "the shared bottom: mlp (layers hidden) or cnn (3×3 convs channels, then "
           "hidden; image rows only)", choices=BACKBONES),
    HParam("channels", "ints", [16, 32], "conv channels of the cnn backbone (unused by mlp)"),
)
HARD_SHARE_PARAMS: tuple[HParam, ...] = (*ARCH_PARAMS, *BACKBONE_PARAMS)
ARCH_DEFAULTS: dict[str, Any] = {p.name: p.default for p in ARCH_PARAMS}
ARCH_GRID: dict[str, list[Any]] = {"lr": [1e-3, 1e-2]}
BACKBONE_DEFAULTS: dict[str, Any] = {p.name: p.default for p in BACKBONE_PARAMS}
HARD_SHARE_DEFAULTS: dict[str, Any] = {**ARCH_DEFAULTS, **BACKBONE_DEFAULTS}


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
    ``features["shared"] = φ(x)``, the point MGDA-UB differentiates against (``hard-share+mgda-ub``).
    ``row_separable``: a row's prediction reads that row alone, whichever method builds the network (`MethodParts`)."""

    row_separable = True

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
    return list(model.get_submodule("bottom").parameters())


register(MethodInfo(
    name="stl",
    summary="Single-task learning: an independent MLP per task (hidden + head_hidden), stacked on the task axis.",
    paper="Baseline of every paper (TOMATO's 'Separate', SRDML's 'STL', AMTFL's 'NN' per task)",
    build=lambda info, hp: MethodParts(STLNet(info, **_arch(hp))),
    params=arch_params("widths of each task's first hidden layers (nothing is shared)",
                       "widths of each task's further hidden layers (after hidden, before the output)"),
    grid=ARCH_GRID, aliases=("separate",),
    row_separable=True,
))
register(MethodInfo(
    name="single",
    summary="One MLP shared by all tasks (no task-specific parameters): the fully shared end of the spectrum.",
    paper="TOMATO (Zhang & Lee, CIKM 2020) Table 3 'Single'",
    build=lambda info, hp: MethodParts(SingleNet(info, **_arch(hp))),
    params=arch_params("widths of the one network's first hidden layers (shared by every task)",
                       "widths of its further hidden layers (also shared; before the one output)"),
    grid=ARCH_GRID,
    row_separable=True,
))
register(MethodInfo(
    name="hard-share",
    summary="Hard parameter sharing: shared bottom (MLP hidden, or backbone=cnn: 3×3 convs channels then hidden) + "
            "task-specific MLP heads (head_hidden).",
    paper="Caruana 1997; TOMATO's 'Shared-bottom', SRDML's 'Hard-Share'",
    build=lambda info, hp: MethodParts(HardShareNet(info, **_hard_share_arch(hp)), shared_parameters=_shared_bottom),
    params=HARD_SHARE_PARAMS, grid=ARCH_GRID, aliases=("shared-bottom",),
    row_separable=True,
))
