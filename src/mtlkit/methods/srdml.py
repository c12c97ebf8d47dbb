"""SRDML (Bai & Zhao, KDD 2022): saliency-regularised deep MTL, and the hard-share baselines trained with the
gradient combiners ``pcgrad`` and ``mgda-ub`` (SRDML's Table 2 baselines).

Model: a shared bottom ``h`` (an MLP, or ``backbone="cnn"``: a small CNN for image inputs ``[C, H, W]``) gives the
feature map ``A = h(x)``; task heads ``f_t`` (one `TaskMLP`: flatten → ``head_hidden`` → output) predict from it.
Objective (Eq. 4): ``Σ_t w_t L_t + λ Σ_{i<j} (ω_ij / Σ_{i<j} ω_ij) · dist(∇_A f_i, ∇_A f_j)``.

* Saliency: for every task and sample, the input gradient of the head's output w.r.t. that sample's ``A`` (for
  the CNN summed over space to a channel vector, as Grad-CAM's weights, Z = 1). All T saliencies come from ONE
  backward pass: the heads are applied to a task-axis copy ``A[None].expand(T, ...)``, so the gradient of
  ``Σ_{t,e} f_t(e)`` w.r.t. the copy is, row by row, ``∂f_t(e)/∂A_e`` (heads act per sample). It is taken with
  ``create_graph=True``, so the regulariser is second order and trains the heads (and ω).
* ``dist="l1"`` (the authors' choice): ``‖s_i(e) − s_j(e)‖₁``; ``dist="l2"``: squared Euclidean, through the
  Laplacian form ``Σ_e tr(S_eᵀ L S_e) = Σ_{t,u} L_tu ⟨S_t, S_u⟩`` with ``L`` the Laplacian of ω (no T×T×C tensor).
* ω: a learnable ``[T, T]`` parameter initialised to 1 whose strict upper triangle holds ω_ij (i < j); after every
  optimizer step a prox clamps it to ≥ 0 (the authors' ReLU projection). The normaliser ``Σ ω_ij`` is guarded by
  ``1e-12``. The penalty is invariant to scaling ω; `SRDMLNet.task_relations` gives the learned ω as a heatmap.

Decisions where the paper is silent: the distance is averaged over the batch's samples (``reduction="mean"``; the
authors' code sums, ``reduction="sum"``, which ties λ to the batch size); with heterogeneous inputs (each task its
own rows) the saliencies of all heads are compared on the pooled labelled rows of the batch — at most
``saliency_rows`` of them (32, the default batch size), drawn at random each step, so the pass costs O(T²·m), not
O(T³·B) (the paper assumes one input shared by all tasks and says nothing of this case; a uniform row sample keeps
the penalty unbiased, where comparing per-task mean saliencies would change what is measured); tasks must have one
output (regression or binary: the head's logit is the score whose saliency is taken). ``learn_omega=False`` keeps
ω = 1 (Table 4's "without ω" ablation). ``warm_start=True`` follows the authors' two phases: hard-share is trained
first with the same hyper-parameters (their ``pretrain.py``) and SRDML starts from its bottom and heads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.distributed as dist_
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import Batch
from mtlkit.hparams import HParam, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty, Prox
from mtlkit.methods.baselines import (
    ARCH_GRID,
    ARCH_PARAMS,
    BACKBONE_PARAMS,
    HARD_SHARE_PARAMS,
    HardShareNet,
    _hard_share_arch,
    _shared_bottom,
)
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskMLP
from mtlkit.nn.conv import ConvBottom, ConvMap
from mtlkit.optim.combiners import COMBINERS, MGDAUB, PCGrad

OMEGA_EPS = 1e-12  # guard of the normaliser Σ_{i<j} ω_ij
DISTS = ("l1", "l2")
REDUCTIONS = ("mean", "sum")

_ARCH = {p.name: p for p in (*ARCH_PARAMS, *BACKBONE_PARAMS)}
SRDML_PARAMS: tuple[HParam, ...] = (
    dataclasses.replace(_ARCH["backbone"], doc="the shared bottom h: mlp (layers hidden) or cnn (3×3 convs "
                        "channels, then hidden, possibly []; image rows only); its output is A"),
    dataclasses.replace(_ARCH["hidden"], doc="widths of the bottom's fully connected layers (the last gives A)"),
    _ARCH["channels"],
    dataclasses.replace(_ARCH["head_hidden"], doc="widths of each task head f_t's hidden layers (on A)"),
    _ARCH["activation"], _ARCH["dropout"],
    # paper: λ grid {1e-3, 5e-3, …, 0.5, 1} (best ≈ 0.5 on synthetic data, λ = 0.1 in the authors' CIFAR run)
    HParam("lam", "float", 0.1, "λ: weight of the saliency-similarity regulariser (0 = off: hard-share)", low=0.0,
           space=log_range(1e-4, 10.0, off=0.0)),
    HParam("dist", "str", "l1", "distance between two tasks' saliencies: l1 (the authors') or l2 (squared)",
           choices=DISTS),
    HParam("reduction", "str", "mean", "the regulariser over a batch's samples: mean, or sum (the authors' code; "
           "ties λ to the batch size)", choices=REDUCTIONS),
    HParam("saliency_rows", "int", 32, "per-task input only: the tasks' saliencies are compared on at most this "
           "many rows of the pooled T·B batch, drawn at random each step (0 = every row: O(T²·B) head passes and "
           "O(T³·B) distances). The default is the default batch size, so per-task input costs what shared input "
           "(the paper's setting, B rows) costs; shared input always uses the batch's B rows", low=0),
    HParam("learn_omega", "bool", True, "learn the task graph ω ≥ 0 (False: ω = 1, Table 4's ablation)"),
    HParam("warm_start", "bool", False, "the authors' two phases: train hard-share first with the same "
           "hyper-parameters and start from it"),
)
SRDML_DEFAULTS: dict[str, Any] = {p.name: p.default for p in SRDML_PARAMS}
SRDML_GRID: dict[str, list[Any]] = {"lam": [0.01, 0.1, 0.5], "lr": [1e-3, 1e-2]}
_ARCH_KEYS = ("backbone", "hidden", "channels", "head_hidden", "activation", "dropout")


class SRDMLNet(nn.Module):
    """Shared bottom (MLP or small CNN) giving ``A``, task heads on ``A``, and the task graph ω ``[T, T]``."""

    def __init__(self, info: DataInfo, backbone: str = "mlp", hidden: list[int] | None = None,
                 channels: list[int] | None = None, head_hidden: list[int] | None = None, activation: str = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if info.spec.n_outputs != 1:
            raise ValueError(f"SRDML takes the saliency of one score per task: it needs regression or binary tasks, "
                             f"got {info.spec.kind} tasks with {info.spec.n_outputs} outputs")
        self.shared, self.n_tasks, self.backbone = info.shared, info.n_tasks, backbone
        hidden, channels, head_hidden = list(hidden or []), list(channels or []), list(head_hidden or [])
        if backbone == "mlp":
            if not hidden:
                raise ValueError("SRDML's MLP backbone needs at least one shared hidden layer (hidden=[...])")
            self.bottom: nn.Module = MLP([info.n_features, *hidden], activation, dropout, last_activation=True)
            self.map_dims = 1
            feat = hidden[-1]
        elif backbone == "cnn":
            if len(info.feature_shape) != 3:
                raise ValueError(f"backbone='cnn' needs image features [C, H, W], got shape {info.feature_shape}")
            self.bottom = ConvMap(info.feature_shape[0], channels, activation)
            self.map_dims = 3
            with torch.no_grad():
                feat = int(self.bottom(torch.zeros(1, *info.feature_shape)).numel())
        else:
            raise ValueError(f"SRDML backbone must be 'mlp' or 'cnn', got {backbone!r}")
        self.heads = TaskMLP(info.n_tasks, [feat, *head_hidden, 1], activation, dropout)
        self.omega = nn.Parameter(torch.ones(info.n_tasks, info.n_tasks))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``A = h(x)``: ``[B, ...]`` for shared input, ``[T, B, ...]`` for heterogeneous tasks."""
        lead = x.shape[:1] if self.shared else x.shape[:2]
        if self.backbone == "mlp":
            return self.bottom(x.flatten(start_dim=len(lead)))
        a = self.bottom(x.reshape(-1, *x.shape[len(lead):]))
        return a.reshape(*lead, *a.shape[1:])

    def head(self, a: torch.Tensor) -> torch.Tensor:
        """All task heads on a feature map: ``[B, ...]`` (every head on the same rows) or ``[T, B, ...]`` (head t
        on row block t) → ``[T, B, 1]``."""
        return self.heads(a.flatten(start_dim=a.dim() - self.map_dims))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        a = self.feature_map(x)
        return ModelOutput(self.head(a), features={"shared": a})

    def pair_weights(self) -> torch.Tensor:
        """ω_ij for i < j as a strictly upper-triangular ``[T, T]`` matrix (the rest of the parameter is unused)."""
        return torch.triu(self.omega, diagonal=1)

    @torch.no_grad()
    def warm_start(self, pre: nn.Module) -> None:
        """Start from a trained hard-share model (the authors' phase 1, ``pretrain.py``): its bottom (for the CNN,
        its convolutions) and its heads; ω stays at 1."""
        if not isinstance(pre, HardShareNet):
            raise TypeError(f"srdml warm-starts from a hard-share model, got {type(pre).__name__}")
        bottom = pre.bottom.map if isinstance(pre.bottom, ConvBottom) else pre.bottom
        if isinstance(pre.bottom, ConvBottom) and len(pre.bottom.fc) > 0:
            raise ValueError("srdml's CNN warm start needs a hard-share model without fully connected bottom layers")
        self.bottom.load_state_dict(bottom.state_dict())
        self.heads.load_state_dict(pre.heads.state_dict())

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The learned task graph ω, symmetric with a zero diagonal (the paper's task-relation heatmap)."""
        w = self.pair_weights().detach()
        return {"ω (task × task)": w + w.T}


def saliency(model: SRDMLNet, a: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Every task's saliency on every row of the feature map ``a`` in ONE backward pass: ``[T, M, C]`` with
    ``M`` the rows (all leading axes of ``a`` pooled) and ``C`` the channels (the CNN's map summed over space)."""
    T, k = model.n_tasks, model.map_dims
    rows = a.reshape(-1, *a.shape[a.dim() - k:])
    rep = rows.unsqueeze(0).expand(T, *rows.shape)  # head t sees its own copy: ∂/∂rep[t] is task t's gradient
    f = model.head(rep)[..., 0]  # [T, M]
    (g,) = torch.autograd.grad(f.sum(), rep, create_graph=create_graph)
    return g.sum(dim=(-2, -1)) if k == 3 else g


def pair_distances(s: torch.Tensor, row_weights: torch.Tensor, dist: str) -> torch.Tensor:
    """``D[i, j] = Σ_e r_e · dist(s_i(e), s_j(e))`` for saliencies ``s`` ``[T, M, C]`` and row weights ``r`` [M]."""
    if dist == "l1":
        d = torch.cdist(s.transpose(0, 1).contiguous(), s.transpose(0, 1).contiguous(), p=1)  # [M, T, T]
        return torch.einsum("mtu,m->tu", d, row_weights)
    if dist == "l2":
        gram = torch.einsum("tmc,umc,m->tu", s, s, row_weights)
        dg = gram.diagonal()
        return dg[:, None] + dg[None, :] - 2 * gram
    raise ValueError(f"SRDML dist must be one of {', '.join(DISTS)}, got {dist!r}")


def srdml_regularizer(model: SRDMLNet, s: torch.Tensor, row_weights: torch.Tensor, dist: str) -> torch.Tensor:
    """``Σ_{i<j} (ω_ij / Σω) · Σ_e r_e dist(s_i(e), s_j(e))`` (Eq. 4 without λ); ``l2`` via ``tr(Sᵀ L S)``."""
    w = model.pair_weights()
    norm = w.sum().clamp_min(OMEGA_EPS)
    if dist == "l2":
        sym = w + w.T
        lap = torch.diag(sym.sum(1)) - sym
        gram = torch.einsum("tmc,umc,m->tu", s, s, row_weights)
        return (lap * gram).sum() / norm
    return (w * pair_distances(s, row_weights, dist)).sum() / norm


def srdml_penalty(lam: float, dist: str = "l1", reduction: str = "mean", saliency_rows: int = 0) -> Penalty:
    """The Trainer's penalty ``λ·R``: saliencies of the batch's feature map ``out.features["shared"]``.

    On per-task input every head is compared on the pooled rows of all tasks; with ``saliency_rows = m > 0`` and
    more than m pooled rows, on m rows drawn uniformly without replacement (torch's global generator, so a seed
    fixes them), weighted so that the penalty is an unbiased estimate of the all-rows one: the heads then run on
    T·m rows and the distances cost O(T²·m) instead of O(T²·T·B)."""
    if saliency_rows < 0:
        raise ValueError(f"SRDML saliency_rows must be ≥ 0, got {saliency_rows}")
    if dist not in DISTS:
        raise ValueError(f"SRDML dist must be one of {', '.join(DISTS)}, got {dist!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"SRDML reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, SRDMLNet)
        a = out.features["shared"]
        if model.shared:
            s = saliency(model, a)
            r = torch.ones(s.shape[1], dtype=s.dtype, device=s.device)
        else:  # pooled rows of all tasks: padding rows count 0
            rows = a.reshape(-1, *a.shape[2:])
            r = batch.mask.reshape(-1).to(a.dtype)
            n_rows = rows.shape[0]
            if 0 < saliency_rows < n_rows:
                pick = torch.randperm(n_rows, device=a.device)[:saliency_rows]
                rows, r = rows[pick], r[pick]
                if reduction == "sum":  # Σ over the sample · n/m estimates the sum over all rows
                    r = r * (n_rows / saliency_rows)
            s = saliency(model, rows)
        world = _world_size()
        if world > 1:  # DDP averages the ranks' gradients: weight rows as the single-process global batch would
            n = r.sum()
            if reduction == "mean":
                dist_.all_reduce(n, op=dist_.ReduceOp.SUM)
            r = r * world / (n.clamp_min(1) if reduction == "mean" else 1)
        elif reduction == "mean":
            r = r / r.sum().clamp_min(1)
        return lam * srdml_regularizer(model, s, r, dist)

    return pen


def _world_size() -> int:
    return dist_.get_world_size() if dist_.is_available() and dist_.is_initialized() else 1


def omega_prox(model: nn.Module, lr: float) -> None:
    """Project ω onto ω ≥ 0 after each step (SRDML's ReLU projection)."""
    assert isinstance(model, SRDMLNet)
    with torch.no_grad():
        model.omega.clamp_(min=0.0)


def _build_srdml(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    lam = float(hp["lam"])
    if not lam >= 0:
        raise ValueError(f"SRDML lam must be ≥ 0, got {hp['lam']!r}")
    warm = bool(hp.get("warm_start", False))
    if warm and hp["backbone"] == "cnn" and hp["hidden"]:
        raise ValueError("srdml's warm start trains hard-share first with the same hyper-parameters; with "
                         "backbone='cnn' set hidden=[] so that hard-share's network is SRDML's (its heads read the "
                         f"last conv map), got hidden={hp['hidden']}")
    model = SRDMLNet(info, **{k: hp[k] for k in _ARCH_KEYS})
    pen = srdml_penalty(lam, str(hp["dist"]), str(hp["reduction"]), int(hp["saliency_rows"]))
    if lam == 0 or not hp["learn_omega"]:
        model.omega.requires_grad_(False)  # fixed at 1 (and never handed to the optimizer)
    prox: list[Prox] = [omega_prox] if model.omega.requires_grad else []
    return MethodParts(model, penalties=[pen] if lam > 0 else [], proxes=prox,
                       shared_parameters=lambda m: list(m.get_submodule("bottom").parameters()),
                       warm_start=model.warm_start if warm else None)


def _build_pcgrad(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    comb = PCGrad()
    return MethodParts(HardShareNet(info, **_hard_share_arch(hp)), combiner=comb, shared_parameters=_shared_bottom,
                       state=comb.state, load_state=comb.load_state)


def _build_mgda(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    comb = MGDAUB(normalization=str(hp["mgda_norm"]), iters=hp["mgda_iters"])
    return MethodParts(HardShareNet(info, **_hard_share_arch(hp)), combiner=comb, shared_parameters=_shared_bottom)


register(MethodInfo(
    name="srdml",
    summary="Saliency-regularised deep MTL: shared bottom (MLP or small CNN) + task heads; penalty λ Σ_{i<j} "
            "(ω_ij/Σω)·dist(∇_A f_i, ∇_A f_j) on the heads' input gradients, with a learned task graph ω ≥ 0.",
    paper="Bai & Zhao, KDD 2022 (Saliency-Regularized Deep Multi-Task Learning), Eq. 4",
    build=_build_srdml, params=SRDML_PARAMS, grid=SRDML_GRID, kinds=("regression", "binary"), pretrain="hard-share",
    needs=("features", "second-order gradients"),
))
register(MethodInfo(
    name="pcgrad",
    summary="Hard-share trained with PCGrad on the shared bottom: conflicting task gradients projected onto each "
            "other's normal planes (random order), then summed.",
    paper=COMBINERS["pcgrad"].paper + "; SRDML's Table 2 baseline",
    build=_build_pcgrad, params=HARD_SHARE_PARAMS, grid=ARCH_GRID, needs=("per-task gradients",),
))
register(MethodInfo(
    name="mgda-ub",
    summary="Hard-share trained with MGDA-UB: min-norm convex combination of the task gradients w.r.t. the shared "
            "representation (Frank-Wolfe on the T×T Gram matrix).",
    paper=COMBINERS["mgda-ub"].paper + "; SRDML's Table 2 baseline",
    build=_build_mgda, params=(*HARD_SHARE_PARAMS, *COMBINERS["mgda-ub"].params), grid=ARCH_GRID,
    needs=("features", "per-task gradients"),
))
