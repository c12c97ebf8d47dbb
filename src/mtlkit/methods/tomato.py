"""TOMATO (Zhang & Lee, CIKM 2020): the topic-wise multi-task architecture with topic-task sparsity,
``tomato-el`` (topic-task-element prox, Eq. 10) and ``tomato-ex`` (topic-task-exclusive prox, Eq. 11-12).

Model (paper Eq. 1, 5-7; MTSEM ``topic_task_sparse_layer_wise`` / ``…_single_layer``), with ``φ`` the shared
bottom MLP (``hidden``), ``h(φ) = softmax(W_h φ + b_h)`` the task-independent topic module over K topics and
``θ_{k,t} = θ⁰ + θˢ_{k,t}`` the parameters of the topic-task module ``g(k, ·, t)`` (θ⁰ one global block shared by
every (k, t), θˢ the topic-task deviations, summed per layer for weights and biases before the forward pass):

* ``m=2``: ``g`` is a 2-layer MLP φ → hd_top (activation) → P; the output is ``Σ_k h_k·g(k, φ, t)``, mixed on the
  pre-softmax logits. θˢ holds both layers' weights and biases.
* ``m=1``: ``g`` is one layer φ → hd_top (activation); the hidden states are mixed, ``Σ_k h_k·g(k, φ, t)``, then
  a task-specific linear ``ψ_t``: hd_top → P gives the output. θˢ holds only that layer's weight and bias.

Training is proximal SGD (Eq. 8-9): the loss has no Ω term; after each optimizer step the θˢ group vectors
(every θˢ tensor of (k, t) flattened and concatenated, weights and biases) are replaced by
``prox_element`` / ``prox_exclusive`` with step ``λ·lr`` (the step's learning rate). Sparsity is exact.

Decisions: θ⁰ and ψ are initialised like ``nn.Linear``, θˢ ~ N(0, 0.01²) (small but non-zero: the topics start
almost identical yet distinguishable, as MTSEM's non-zero init; the prox itself is guarded at ‖θ‖ = 0), the gate
like ``nn.Linear``. Dropout (``dropout``) is really active in training, after the bottom's and the topic-task
hidden layers. The optional ``reg`` is MTSEM's ``regularisation_l2·Σ‖W‖²_F`` over the global block's weights,
ψ's weight and the gate's weight (the gate only if K > 1); it excludes θˢ, the bottom and all biases.
Default optimiser: plain SGD (the prox is the textbook one only for SGD), lr decayed as ``r0·γ^(i/η)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import Batch
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty, Prox
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskLinear
from mtlkit.nn import activation as make_activation
from mtlkit.nn.task_layers import ACTIVATIONS
from mtlkit.optim.combiners import task_broadcast
from mtlkit.optim.prox import prox_element, prox_exclusive

S_INIT_STD = 0.01  # θˢ ~ N(0, S_INIT_STD²)

TOMATO_PARAMS: tuple[HParam, ...] = (
    HParam("hidden", "ints", [64], "widths of the shared bottom φ (at least one layer)",
           space=choice([32], [64], [128])),
    HParam("activation", "str", "relu", "activation of every hidden layer", choices=tuple(ACTIVATIONS)),
    HParam("dropout", "float", 0.0, "dropout after each hidden layer", low=0.0, high=1.0, high_open=True,
           space=choice(0.0, 0.2)),
    HParam("K", "int", 4, "number of topics (the paper tunes it; best K=16 on MNIST-MTL)", low=1,
           space=choice(1, 2, 4, 8, 16)),
    HParam("m", "int", 2, "layers of each topic-task module θ⁰+θˢ_kt (1 or 2)", choices=(1, 2), space=choice(1, 2)),
    HParam("hd_top", "int", 16, "hidden width of the topic-task modules (paper grid {4, …, 64})", low=1,
           space=choice(4, 8, 16, 32, 64)),
    HParam("lam", "float", 1e-3, "λ: step of the element / exclusive prox on the θˢ_kt groups (0 = off)",
           low=0.0, space=log_range(1e-5, 1e-1, off=0.0)),
    HParam("reg", "float", 0.0, "L2 weight on θ⁰, ψ and the gate (paper's λ0 ∈ {0, 0.01, 0.1, 1}; 0 = off)",
           low=0.0, space=log_range(1e-3, 1.0, off=0.0)),
    # The paper trains with plain SGD and a decaying rate; the tuning space lets Adam compete too.
    HParam("optimizer", "str", "sgd", "the optimiser", choices=("adam", "sgd"), space=choice("adam", "sgd")),
    HParam("lr", "float", 0.1, "r0: the initial learning rate (paper grid {0.001, 0.01, 0.1, 1})", low=0.0,
           low_open=True, space=log_range(1e-4, 1.0)),
    HParam("lr_decay", "float", 0.9, "γ in r_i = r0·γ^(i/η) (paper grid {0.8, 0.9})", low=0.0, low_open=True,
           high=1.0, space=choice(0.8, 0.9, 0.95, 1.0)),
    HParam("decay_steps", "int", 1000, "η: steps per decay of the learning rate by γ (paper grid {100, 1000})",
           low=1, space=choice(100, 1000)),
)
TOMATO_GRID: dict[str, list[Any]] = {"lam": [1e-4, 1e-3, 1e-2], "lr": [0.03, 0.1]}
_ARCH_KEYS = ("hidden", "activation", "dropout", "K", "m", "hd_top")


class TomatoNet(nn.Module):
    """Shared bottom φ, topic gate h, K×T topic-task modules ``θ⁰ + θˢ_kt`` mixed by h (and ψ_t when m=1)."""

    def __init__(self, info: DataInfo, hidden: list[int], activation: str = "relu", dropout: float = 0.0,
                 K: int = 4, m: int = 2, hd_top: int = 16) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("TOMATO needs at least one shared hidden layer (hidden=[...])")
        if m not in (1, 2):
            raise ValueError(f"TOMATO's m (layers of the topic-task modules) must be 1 or 2, got {m!r}")
        if K < 1 or hd_top < 1:
            raise ValueError(f"K and hd_top must be positive, got K={K}, hd_top={hd_top}")
        self.shared, self.n_tasks, self.K, self.m = info.shared, info.n_tasks, int(K), int(m)
        T, P, n = info.n_tasks, info.spec.n_outputs, hidden[-1]
        self.bottom = MLP([info.n_features, *hidden], activation, dropout, last_activation=True)
        self.gate = nn.Linear(n, self.K)
        sizes = [n, hd_top, P] if m == 2 else [n, hd_top]
        self.w0 = nn.ParameterList()
        self.b0 = nn.ParameterList()
        self.ws = nn.ParameterList()
        self.bs = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(a)
            self.w0.append(nn.Parameter(torch.empty(a, b).uniform_(-bound, bound)))
            self.b0.append(nn.Parameter(torch.empty(b).uniform_(-bound, bound)))
            self.ws.append(nn.Parameter(torch.randn(self.K, T, a, b) * S_INIT_STD))
            self.bs.append(nn.Parameter(torch.randn(self.K, T, b) * S_INIT_STD))
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.psi = TaskLinear(T, hd_top, P) if m == 1 else None

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The θˢ tensors ``[K, T, ...]`` in group order: per layer its weight then its bias."""
        return [p for w, b in zip(self.ws, self.bs, strict=True) for p in (w, b)]

    def sparse_groups(self) -> torch.Tensor:
        """θˢ as one group vector per (topic, task): ``[K, T, n_params]`` (flattened and concatenated)."""
        return torch.cat([p.reshape(self.K, self.n_tasks, -1) for p in self.sparse_parameters()], dim=-1)

    def set_sparse_groups(self, groups: torch.Tensor) -> None:
        """Write ``[K, T, n_params]`` group vectors back into the θˢ tensors, in place (no grad)."""
        with torch.no_grad():
            i = 0
            for p in self.sparse_parameters():
                n = p[0, 0].numel()
                p.copy_(groups[..., i:i + n].reshape(p.shape))
                i += n
            if i != groups.shape[-1]:
                raise ValueError(f"expected {i} parameters per group, got {groups.shape[-1]}")

    def l2_weights(self) -> list[torch.Tensor]:
        """The weights MTSEM's ``regularisation_l2`` covers: global block, ψ, and the gate if K > 1."""
        out: list[torch.Tensor] = list(self.w0)
        if self.psi is not None:
            out.append(self.psi.weight)
        if self.K > 1:
            out.append(self.gate.weight)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottom(x.reshape(x.shape[0], -1) if self.shared else x.reshape(self.n_tasks, x.shape[1], -1))
        h = torch.softmax(self.gate(z), dim=-1)  # [B, K] or [T, B, K]
        a: torch.Tensor = z
        for j, (w0, b0, ws, bs) in enumerate(zip(self.w0, self.b0, self.ws, self.bs, strict=True)):
            # θ_kt = θ⁰ + θˢ_kt, [K, T, in, out] and [K, T, out]; slice t reaches task t only (per-task input), which
            # lets a per-task-gradient combiner take θ⁰'s T gradients from one backward pass
            w, b = task_broadcast(w0, w0 + ws, 1), task_broadcast(b0, b0 + bs, 1)
            if j > 0:
                a = torch.einsum("ktbi,ktio->ktbo", a, w)
            elif self.shared:
                a = torch.einsum("bi,ktio->ktbo", a, w)
            else:
                a = torch.einsum("tbi,ktio->ktbo", a, w)
            a = a + b[:, :, None, :]
            if j < len(self.ws) - 1 or self.psi is not None:
                a = self.drop(self.act(a))
        mixed = torch.einsum("bk,ktbo->tbo" if self.shared else "tbk,ktbo->tbo", h, a)
        return mixed if self.psi is None else self.psi(mixed)

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The topic × task norms ``‖θˢ_kt‖₂`` of the concatenated θˢ groups (paper Fig. 4/6)."""
        return {"‖θˢ_kt‖ (topic × task)": torch.linalg.vector_norm(self.sparse_groups().detach(), dim=-1)}


def tomato_prox(kind: str, lam: float) -> Prox:
    """The Trainer's ``prox(model, lr)``: the element or exclusive prox of the θˢ groups with step λ·lr."""
    fn = {"element": prox_element, "exclusive": prox_exclusive}[kind]

    def prox(model: nn.Module, lr: float) -> None:
        step = lam * float(lr)
        if step == 0:
            return
        assert isinstance(model, TomatoNet)
        with torch.no_grad():
            model.set_sparse_groups(fn(model.sparse_groups(), step))

    return prox


def l2_penalty(reg: float) -> Penalty:
    """``reg·Σ‖W‖²_F`` over `TomatoNet.l2_weights` (global block, ψ, gate if K > 1)."""

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, TomatoNet)
        return reg * sum((w.pow(2).sum() for w in model.l2_weights()), torch.zeros((), device=out.pred.device))

    return pen


def _shared(model: nn.Module) -> list[nn.Parameter]:
    """Parameters every task uses: the bottom, the gate and the global block θ⁰."""
    assert isinstance(model, TomatoNet)
    return [*model.bottom.parameters(), *model.gate.parameters(), *model.w0, *model.b0]


def _build(kind: str) -> Callable[[DataInfo, dict[str, Any]], MethodParts]:
    def build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
        lam, reg = float(hp["lam"]), float(hp["reg"])
        if not lam >= 0 or not reg >= 0:
            raise ValueError(f"lam and reg must be ≥ 0, got lam={lam}, reg={reg}")
        model = TomatoNet(info, **{k: hp[k] for k in _ARCH_KEYS})
        return MethodParts(model, penalties=[l2_penalty(reg)] if reg > 0 else [],
                           proxes=[tomato_prox(kind, lam)], shared_parameters=_shared)

    return build


_PAPER = "Zhang & Lee, CIKM 2020 (TOMATO): topic-wise multi-task sparsity"
register(MethodInfo(
    name="tomato-el",
    summary="TOMATO with the topic-task-element prox: K×T topic-task modules θ⁰+θˢ_kt mixed by a topic gate; "
            "group soft-thresholding of every θˢ_kt (Eq. 10) after each SGD step.",
    paper=_PAPER, build=_build("element"), params=TOMATO_PARAMS, grid=TOMATO_GRID,
    row_separable=True,
))
register(MethodInfo(
    name="tomato-ex",
    summary="TOMATO with the topic-task-exclusive prox: K×T topic-task modules θ⁰+θˢ_kt mixed by a topic gate; "
            "per topic, tasks compete for deviation (Eq. 11-12, Algorithm 1) after each SGD step.",
    paper=_PAPER, build=_build("exclusive"), params=TOMATO_PARAMS, grid=TOMATO_GRID,
    row_separable=True,
))
