"""Covariance alignment (Wu, Zhang & Ré, ICLR 2020, Algorithm 1): a per-task alignment matrix ``R_i`` (d × d)
applied to task i's input embedding before the shared module, ``Z_i = X_i R_i``, so that tasks whose data are
poorly aligned (different covariance geometry) can be rotated / rescaled into a common frame.

* `Alignment`: all ``R_i`` as ONE parameter ``[T, d, d]``, initialised to the identity (the paper is silent; the
  identity reproduces the un-aligned model exactly at the start — METHOD_NOTES §5).
* `AlignedHardShareNet` / method ``hard-share-align``: hard-share (`methods.baselines.HardShareNet`) with ``R``
  before the shared bottom. ``attach_alignment`` adds the same to any model with a named shared module.
* Phases (hp ``align_phase``; `set_align_phase`):
  - ``"fixed"`` — Algorithm 1 step 3: the shared module B is frozen; R_1..R_k are trained jointly with the heads.
  - ``"joint"`` — the joint variant: R, B and heads trained together (the registry default, from scratch).
  hp ``align`` (default True): False freezes R at the identity — the same model and phase without alignment,
  the comparison the paper makes. ``mtlkit.train("hard-share-align", ..., {"align_phase": "fixed"})`` from
  scratch freezes B at its random initialisation; the fixed phase is meant for a trained B
  (`mtlkit.experiments.alignment.align_run`).
* Algorithm 1 as the paper runs it is two-phase: first train the plain model (``hard-share``), then fix B and train
  R + heads. Those runs, and transfer (paper §3.2), train models, so they live above the Trainer in
  `mtlkit.experiments.alignment` (`align_run`, `align_transfer`); this module keeps the method's build.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, Space
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput
from mtlkit.methods.baselines import ARCH_DEFAULTS, ARCH_GRID, ARCH_PARAMS, HardShareNet, _flatten
from mtlkit.methods.registry import register

ALIGN_PHASES = ("joint", "fixed")
ALIGN_PARAMS: tuple[HParam, ...] = (
    *ARCH_PARAMS,
    HParam("align", "bool", True, "train the alignment matrices R_t (False: R = I, the same model without "
           "alignment, the paper's comparison); tuning tries both, so alignment is switched off when it does not "
           "help on validation", space=Space("choice", choices=(True, False))),
    HParam("align_phase", "str", "joint", "joint: R, bottom and heads trained together; fixed: the bottom frozen, "
           "R + heads trained (Algorithm 1 step 3, meant for a trained bottom: align_run)", choices=ALIGN_PHASES),
)
ALIGN_DEFAULTS: dict[str, Any] = {p.name: p.default for p in ALIGN_PARAMS}


class Alignment(nn.Module):
    """Per-task alignment matrices ``R`` [T, d, d] (identity at start): ``[T, B, d] → [T, B, d]``, ``Z_t = X_t R_t``.

    A shared input ``[B, d]`` is seen by every task and becomes ``[T, B, d]``.
    """

    def __init__(self, n_tasks: int, dim: int) -> None:
        super().__init__()
        if n_tasks < 1 or dim < 1:
            raise ValueError(f"Alignment needs n_tasks >= 1 and dim >= 1, got {n_tasks}, {dim}")
        self.n_tasks, self.dim = n_tasks, dim
        self.R = nn.Parameter(torch.eye(dim).expand(n_tasks, dim, dim).clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.dim:
            raise ValueError(f"Alignment expects features of size {self.dim}, got {tuple(z.shape)}")
        if z.dim() == 2:
            return torch.einsum("bi,tij->tbj", z, self.R)
        if z.dim() != 3 or z.shape[0] != self.n_tasks:
            raise ValueError(f"Alignment expects [T={self.n_tasks}, B, d] or [B, d], got {tuple(z.shape)}")
        return torch.bmm(z, self.R)

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """A forward pre-hook for a shared module: align its first input (see `attach_alignment`)."""
        return (self(args[0]), *args[1:])

    def extra_repr(self) -> str:
        return f"tasks={self.n_tasks}, dim={self.dim}"


def attach_alignment(model: nn.Module, n_tasks: int, dim: int, module: str = "bottom") -> Alignment:
    """Add `Alignment` (as ``model.alignment``) before ``model.<module>``, any shared-module method's shared part.

    A forward pre-hook aligns the module's input, which must end in ``d = dim`` features; what follows the module
    must accept task-stacked features ``[T, B, ...]`` (task heads do).
    """
    target = getattr(model, module, None)
    if not isinstance(target, nn.Module):
        raise MtlkitError(f"{type(model).__name__} has no shared module {module!r} to align")
    if hasattr(model, "alignment"):
        raise MtlkitError(f"{type(model).__name__} already has an alignment module")
    al = Alignment(n_tasks, dim)
    ref = next(target.parameters(), None)
    if ref is not None:
        al.to(device=ref.device, dtype=ref.dtype)
    model.add_module("alignment", al)
    target.register_forward_pre_hook(al.pre_hook)
    return al


class AlignedHardShareNet(HardShareNet):
    """Hard-share with covariance alignment: ``heads_t(bottom(x_t R_t))``; R = I gives `HardShareNet` exactly
    (same seed, same initial bottom and heads: R is created last and draws no random numbers)."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float) -> None:
        super().__init__(info, hidden, head_hidden, activation, dropout)
        self.alignment = Alignment(info.n_tasks, info.n_features)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.bottom(self.alignment(_flatten(x, self.shared, self.n_tasks)))
        return ModelOutput(self.heads(z), features={"shared": z})

    def task_relations(self) -> dict[str, torch.Tensor]:
        """Task × task cosine similarity of the alignment matrices R_t (all 1 at the identity start)."""
        r = self.alignment.R.detach().reshape(self.n_tasks, -1)
        r = r / torch.linalg.vector_norm(r, dim=1, keepdim=True).clamp_min(1e-12)
        return {"alignment R cosine": r @ r.T}


def set_align_phase(model: nn.Module, phase: str, align: bool = True, shared: str = "bottom") -> None:
    """Which parameters train: ``fixed`` freezes the shared module, ``joint`` trains it; ``align=False`` freezes R."""
    if phase not in ALIGN_PHASES:
        raise ValueError(f"align_phase must be one of {', '.join(ALIGN_PHASES)}, got {phase!r}")
    if not isinstance(align, bool):
        raise ValueError(f"align must be True or False, got {align!r}")
    al = getattr(model, "alignment", None)
    if not isinstance(al, Alignment):
        raise MtlkitError(f"{type(model).__name__} has no alignment module")
    for p in model.parameters():
        p.requires_grad_(True)
    if phase == "fixed":
        for p in getattr(model, shared).parameters():
            p.requires_grad_(False)
    if not align:
        al.R.requires_grad_(False)


def trainable_bottom(model: nn.Module) -> list[nn.Parameter]:
    """The shared bottom's parameters that train in the model's phase (the combiner's shared parameters)."""
    return [p for p in model.get_submodule("bottom").parameters() if p.requires_grad]


def arch_hparams(hp: dict[str, Any]) -> dict[str, Any]:
    """The architecture's hyper-parameters (hidden sizes, activation, dropout) out of a full set."""
    return {k: hp[k] for k in ARCH_DEFAULTS}


def build_hard_share_align(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """The registry build: `AlignedHardShareNet` with the phase's trainable parameters."""
    model = AlignedHardShareNet(info, **arch_hparams(hp))
    set_align_phase(model, hp["align_phase"], hp["align"])
    return MethodParts(model, shared_parameters=trainable_bottom)


register(MethodInfo(
    name="hard-share-align",
    summary="Hard-share with covariance alignment (Algorithm 1): a per-task d x d matrix R_t (identity at start) "
            "on the input before the shared bottom; align_phase joint (R, bottom, heads together) | fixed "
            "(bottom frozen: R + heads); align=False freezes R = I. The two-phase recipe: train hard-share, then "
            "mtlkit.experiments.alignment.align_run(run, phase='fixed').",
    paper="Wu, Zhang & Ré, Understanding and Improving Information Transfer in Multi-Task Learning (ICLR 2020)",
    build=build_hard_share_align, params=ALIGN_PARAMS, grid=ARCH_GRID,
    row_separable=True,
))
