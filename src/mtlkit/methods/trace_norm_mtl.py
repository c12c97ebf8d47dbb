"""Trace-norm regularised deep MTL (Yang & Hospedales, ICLR-W 2017): one network per task, every shareable
layer's T copies stacked on a last task axis and penalised by a tensor trace norm (LAF, Tucker or TT).

The T networks are ONE module: convolutions are `TaskConv2d` (one grouped convolution for all tasks), fully
connected layers `TaskLinear` (one ``bmm``). Shareable layers are all but the output layer (output layers of
tasks with different class counts are not comparable); biases are not regularised. The penalty is
``Σ_l γ_l · tensor_trace_norm(W_l, kind)`` with ``W_l`` in the paper's layout: conv ``(kh, kw, cin, cout, T)``,
fc ``(in, out, T)``; its gradient is the SVD subgradient ``U Vᵀ`` (see `mtlkit.methods.trace_norm`).

Methods: ``trace-norm-laf``, ``trace-norm-tucker``, ``trace-norm-tt`` and ``stl-cnn`` (the same T networks with
no penalty: the paper's STL baseline). Defaults follow the paper's Omniglot CNN: conv 8@5×5, 12@3×3, 16@3×3,
each followed by 2×2 max-pooling, fc 64, fc #classes, tanh, all γ = 0.01. Vector inputs get an MLP instead.

Choices where the paper is silent: 'valid' convolutions (no padding; hp ``padding``), pooling floors odd sizes,
tanh before pooling (the two commute: tanh is monotone). Multiclass tasks with different class counts share
one output width P = max classes; the padded logits are masked out of the softmax by `TaskLoss` (the
`TaskSpec` convention), so they never receive gradient. γ weighs the norms against the SUM of the task
losses, as in the paper's objective ``Σ_t L_t + γ Σ norms``: the Trainer minimises the task mean
``(1/T) Σ_t L_t``, so the penalty added is ``(1/T) Σ_l γ_l ‖W_l‖`` (same minimiser). On tiny data sets the
paper's γ = 0.01 can still dominate (the Tucker and TT norms have 3-5 terms per layer): tune γ on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import Batch
from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty
from mtlkit.methods.registry import register
from mtlkit.methods.trace_norm import KINDS, tensor_trace_norm, to_paper_layout
from mtlkit.nn.task_conv import TaskConv2d, fold_tasks, task_max_pool2d
from mtlkit.nn.task_layers import ACTIVATIONS, TaskLinear
from mtlkit.nn.task_layers import activation as make_activation

ARCH_PARAMS: tuple[HParam, ...] = (
    HParam("backbone", "str", "auto", "cnn (image inputs), mlp (vectors), auto: cnn when rows are images",
           choices=("auto", "cnn", "mlp")),
    HParam("channels", "ints", [8, 12, 16], "conv filters per layer (the paper's Omniglot CNN)"),
    HParam("kernels", "ints", [5, 3, 3], "square kernel sizes, one per conv layer"),
    HParam("pool", "int", 2, "max-pool size after every conv layer (1 = none)", low=1),
    HParam("padding", "int", 0, "conv zero padding ('valid' by default; the paper is silent)", low=0),
    HParam("fc", "ints", [64], "fully connected hidden layers after the convs (cnn backbone)",
           space=choice([32], [64], [128])),
    HParam("hidden", "ints", [64], "hidden layers of the mlp backbone", space=choice([32], [64], [128])),
    HParam("activation", "str", "tanh", "activation of every hidden layer (the paper's tanh)",
           choices=tuple(ACTIVATIONS)),
)
TN_PARAMS: tuple[HParam, ...] = (
    *ARCH_PARAMS,
    # paper: every γ = 0.01 (no grid); the space spans two decades each side, 0 = off is stl-cnn.
    HParam("gamma", "float", 0.01, "γ: weight of the tensor trace norm of every shareable layer, relative to the "
           "sum of the task losses (0 = off: stl-cnn; a list, one per layer, only through the build)", low=0.0,
           space=log_range(1e-4, 1.0, off=0.0)),
)
ARCH_DEFAULTS: dict[str, Any] = {p.name: p.default for p in ARCH_PARAMS}
TN_DEFAULTS: dict[str, Any] = {p.name: p.default for p in TN_PARAMS}
TN_GRID: dict[str, list[Any]] = {"gamma": [1e-3, 1e-2, 1e-1]}
STL_GRID: dict[str, list[Any]] = {"lr": [1e-3, 1e-2]}


_M = TypeVar("_M", bound=nn.Module)


def _entries(mods: nn.ModuleList, cls: type[_M]) -> list[_M]:
    """A ModuleList's entries as a typed list, checking each is a ``cls``."""
    out: list[_M] = []
    for m in mods:
        assert isinstance(m, cls)
        out.append(m)
    return out


class TraceNormNet(nn.Module):
    """T same-architecture networks stacked on the task axis; `shareable_layers` are the ones a trace norm ties.

    Input ``[T, B, ...]`` (heterogeneous) or ``[B, ...]`` (shared input); output ``[T, B, P]``. Image rows are
    ``[C, H, W]`` (or ``[H, W]``, read as one channel).
    """

    def __init__(self, info: DataInfo, backbone: str, channels: Sequence[int], kernels: Sequence[int], pool: int,
                 padding: int, fc: Sequence[int], hidden: Sequence[int], activation: str,
                 kind: str | None = None) -> None:
        super().__init__()
        self.shared, self.n_tasks, self.kind = info.shared, info.n_tasks, kind
        self.feature_shape = tuple(info.feature_shape)
        backbone = _resolve_backbone(backbone, self.feature_shape)
        self.backbone = backbone
        self.act = make_activation(activation)
        T, P = info.n_tasks, info.spec.n_outputs
        self.convs = nn.ModuleList()
        if backbone == "cnn":
            if len(channels) != len(kernels) or not channels:
                raise ValueError(f"the cnn backbone needs as many kernels as channels (at least one), got "
                                 f"channels={list(channels)}, kernels={list(kernels)}")
            if int(pool) < 1:
                raise ValueError(f"pool must be a positive integer (1 = no pooling), got {pool!r}")
            self.pool = int(pool)
            c, h, w = self._image_shape()
            for cout, k in zip(channels, kernels, strict=True):
                self.convs.append(TaskConv2d(T, c, int(cout), int(k), padding=int(padding)))
                pad = int(padding)
                h, w = (h + 2 * pad - int(k) + 1) // self.pool, (w + 2 * pad - int(k) + 1) // self.pool
                if h < 1 or w < 1:
                    raise ValueError(f"images of shape {self.feature_shape} shrink to nothing after conv "
                                     f"{len(self.convs)} (kernel {k}, pool {self.pool}); use larger images or "
                                     "fewer/smaller layers")
                c = int(cout)
            sizes = [c * h * w, *[int(s) for s in fc], P]
        elif backbone == "mlp":
            sizes = [info.n_features, *[int(s) for s in hidden], P]
        else:
            raise ValueError(f"backbone must be 'cnn', 'mlp' or 'auto', got {backbone!r}")
        if any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be positive, got {sizes}")
        self.fcs = nn.ModuleList(TaskLinear(T, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def _image_shape(self) -> tuple[int, int, int]:
        fs = self.feature_shape
        if len(fs) == 2:
            return 1, fs[0], fs[1]
        if len(fs) == 3:
            return fs[0], fs[1], fs[2]
        raise ValueError(f"the cnn backbone needs image rows [C, H, W] or [H, W], got feature shape {fs}")

    def _convs(self) -> list[TaskConv2d]:
        """``self.convs`` typed: every entry is a `TaskConv2d` (built so in ``__init__``)."""
        return _entries(self.convs, TaskConv2d)

    def _fcs(self) -> list[TaskLinear]:
        """``self.fcs`` typed: every entry is a `TaskLinear` (built so in ``__init__``)."""
        return _entries(self.fcs, TaskLinear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.n_tasks
        convs, fcs = self._convs(), self._fcs()
        if self.backbone == "cnn":
            c, h, w = self._image_shape()
            if self.shared:
                z = convs[0].forward_shared(x.reshape(x.shape[0], c, h, w))
            else:
                z = convs[0].forward_folded(fold_tasks(x.reshape(T, x.shape[1], c, h, w)))
            z = task_max_pool2d(self.act(z), self.pool)
            for conv in convs[1:]:
                z = task_max_pool2d(self.act(conv.forward_folded(z)), self.pool)
            B = z.shape[0]
            z = z.reshape(B, T, -1).transpose(0, 1)  # [T, B, C·H·W]
        else:
            z = x.reshape(x.shape[0], -1) if self.shared else x.reshape(T, x.shape[1], -1)
        for fc in fcs[:-1]:
            z = self.act(fc(z))
        return fcs[-1](z)

    def shareable_layers(self) -> dict[str, TaskConv2d | TaskLinear]:
        """The layers a trace norm ties, bottom to top: every conv and fc layer but the output layer."""
        out: dict[str, TaskConv2d | TaskLinear] = {f"conv{i + 1}": m for i, m in enumerate(self._convs())}
        out.update({f"fc{i + 1}": m for i, m in enumerate(self._fcs()[:-1])})
        return out

    def paper_weights(self) -> dict[str, torch.Tensor]:
        """Each shareable layer's stacked weight in the paper's layout: conv (kh, kw, cin, cout, T), fc (in, out, T)."""
        return {name: to_paper_layout(m.weight) for name, m in self.shareable_layers().items()}

    def task_relations(self) -> dict[str, torch.Tensor]:
        """Per shareable layer, the task × task cosine similarity of the tasks' flattened weights."""
        out: dict[str, torch.Tensor] = {}
        for name, m in self.shareable_layers().items():
            w = m.weight.detach().reshape(self.n_tasks, -1)
            w = w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(1e-12)
            out[f"weight cosine {name}"] = w @ w.T
        return out


def _resolve_backbone(backbone: str, feature_shape: tuple[int, ...]) -> str:
    """``auto`` → ``cnn`` for image rows (2 or 3 axes), ``mlp`` for vectors."""
    if backbone == "auto":
        return "cnn" if len(feature_shape) in (2, 3) else "mlp"
    return backbone


def layer_gammas(gamma: float | Sequence[float], n_layers: int) -> list[float]:
    """γ per shareable layer from one float (all layers) or a list (one per layer), all >= 0."""
    if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
        gammas = [float(gamma)] * n_layers
    elif isinstance(gamma, Sequence) and not isinstance(gamma, str):
        gammas = [float(g) for g in gamma]
        if len(gammas) != n_layers:
            raise ValueError(f"gamma has {len(gammas)} values but the network has {n_layers} shareable layers "
                             f"(give one float, or one value per layer)")
    else:
        raise ValueError(f"gamma must be a float or a list of floats (one per shareable layer), got {gamma!r}")
    if any(not g >= 0 for g in gammas):  # also rejects NaN
        raise ValueError(f"gamma must be >= 0, got {gammas}")
    return gammas


def trace_norm_penalty(kind: str, gammas: Sequence[float], scale: float = 1.0) -> Penalty:
    """The Trainer's penalty ``scale · Σ_l γ_l · tensor_trace_norm(W_l, kind)`` over a `TraceNormNet`'s shareable
    layers (the methods use ``scale = 1/T``: γ relative to the sum of the task losses)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tensor trace norm kind {kind!r}; known: {', '.join(KINDS)}")
    gammas = [float(scale) * g for g in gammas]

    def penalty(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, TraceNormNet)
        terms = [g * tensor_trace_norm(W, kind) for g, W in zip(gammas, model.paper_weights().values(), strict=True)
                 if g != 0]
        return torch.stack(terms).sum() if terms else out.pred.new_zeros(())

    return penalty


def _arch(hp: dict[str, Any]) -> dict[str, Any]:
    return {k: hp[k] for k in ARCH_DEFAULTS}


def build_trace_norm(kind: str | None) -> Any:
    """A registry ``build`` for one kind (None: STL, no penalty)."""
    def build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
        model = TraceNormNet(info, **_arch(hp), kind=kind)
        if kind is None:
            return MethodParts(model)
        gammas = layer_gammas(hp["gamma"], len(model.shareable_layers()))
        pen = trace_norm_penalty(kind, gammas, scale=1.0 / info.n_tasks)
        return MethodParts(model, penalties=[pen] if any(gammas) else [])

    return build


# ---------------------------------------------------------------------- analysis
def _net(obj: Any) -> TraceNormNet:
    """The `TraceNormNet` of a model or a `Run`."""
    model = getattr(obj, "model", obj)
    if not isinstance(model, TraceNormNet):
        raise MtlkitError(f"expected a trace-norm network (or a run of one), got {type(model).__name__}")
    return model


@torch.no_grad()
def layer_norms(model: Any, dtype: torch.dtype = torch.float64) -> dict[str, dict[str, float]]:
    """Every tensor trace norm (laf, tucker, tt) of every shareable layer: the paper's Fig. 1 (bottom) curves."""
    return {name: {k: float(tensor_trace_norm(W, k, dtype=dtype)) for k in KINDS}
            for name, W in _net(model).paper_weights().items()}


@torch.no_grad()
def sharing_strength(model_init: Any, model_opt: Any, norm: str | None = None) -> dict[str, float]:
    """Per shareable layer ``1 − ‖θ_opt‖/‖θ_init‖`` (paper Fig. 1, top right), θ the layer's stacked weights.

    θ is the layer's weight tensor stacked over tasks in the paper's layout (biases excluded) and ‖·‖ the
    tensor trace norm the paper plots beside it: ``norm`` = "laf" | "tucker" | "tt" (default: the optimised
    model's own kind, LAF for STL) or "fro" (Frobenius, a plain shrinkage measure). Higher = more shared:
    the stack moved towards low rank, i.e. the tasks' copies of that layer became linear combinations of
    fewer common ones. The paper calls it a rough estimate; it also grows with plain shrinkage.
    """
    a, b = _net(model_init), _net(model_opt)
    key = norm or b.kind or "laf"
    if key not in (*KINDS, "fro"):
        raise ValueError(f"norm must be one of {', '.join((*KINDS, 'fro'))}, got {norm!r}")
    wa, wb = a.paper_weights(), b.paper_weights()
    if {k: v.shape for k, v in wa.items()} != {k: v.shape for k, v in wb.items()}:
        raise MtlkitError("the two networks have different shareable layers")

    def size(W: torch.Tensor) -> float:
        W = W.double()
        return float(torch.linalg.vector_norm(W)) if key == "fro" else float(tensor_trace_norm(W, key))

    out = {}
    for name in wa:
        n0 = size(wa[name])
        if n0 == 0:
            raise MtlkitError(f"layer {name} has all-zero initial weights: sharing strength is undefined")
        out[name] = 1.0 - size(wb[name]) / n0
    return out


_PAPER = "Yang & Hospedales, Trace Norm Regularised Deep Multi-Task Learning (ICLR workshop 2017)"
for _kind, _eq in (("laf", "Eq. 1, last-axis flattening"), ("tucker", "Eq. 2, all mode unfoldings"),
                   ("tt", "Eq. 3, tensor-train unfoldings")):
    register(MethodInfo(
        name=f"trace-norm-{_kind}",
        summary=(f"One network per task (paper CNN for images, MLP for vectors), shareable layers stacked on a task "
                 f"axis and tied by the {_kind.upper()} tensor trace norm ({_eq}) with weight gamma per layer."),
        paper=_PAPER, build=build_trace_norm(_kind), params=TN_PARAMS, grid=TN_GRID,
        row_separable=True,
    ))
register(MethodInfo(
    name="stl-cnn",
    summary="Single-task learning with the trace-norm paper's networks (CNN for images, MLP for vectors), no "
            "penalty: trace-norm-* with gamma = 0.",
    paper=_PAPER + ", STL baseline", build=build_trace_norm(None), params=ARCH_PARAMS, grid=STL_GRID,
    row_separable=True,
))
