"""`mtan`: the Multi-Task Attention Network (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with
Attention", §3.1-3.2), for image rows ``[C, H, W]`` (``[H, W]``: one channel).

A shared convolutional trunk of K stages (``channels``); stage j is two convolutions with the activation,
``u_j = σ(conv(z_{j-1}))`` then ``p_j = σ(conv(u_j))``, and 2×2 max-pooling between stages. Each task t has a soft
attention module at every stage that learns a mask from the shared features and its own previous attended
features (the paper's Eq. 1-2, the authors' ``encoder_att`` / ``encoder_block_att``)::

    a_t^j = sigmoid(h_t^j(σ(g_t^j([u_j ; f^{j-1}(â_t^{j-1})]))))      (j = 1: g_t^1(u_1) alone)
    â_t^j = a_t^j ⊙ p_j
    f^j(â) = pool(σ(conv3×3(â)))                                    (shared by all tasks, C_j → C_{j+1})

``g`` and ``h`` are task-specific 1×1 convolutions, ``f`` a 3×3 convolution shared by the tasks. Task t's head
(``head_hidden`` fully connected layers, then the output) reads its last attended map ``â_t^K``, flattened.

The task axis is never a Python loop: the T attention modules of a stage are `TaskConv2d` layers (one grouped
convolution over the task-folded channels ``[B, T·C, H, W]``). ``g_t`` on the concatenation ``[u ; f]`` is computed
as ``W_u,t * u + W_f,t * f`` (the same linear map, split at the concatenation), so on shared input ``u`` is convolved
once with all T tasks' filters and never copied per task. The shared trunk and ``f`` are ordinary ``nn.Conv2d``
layers applied to task-major rows ``[T·B, C, H, W]`` (per-task input), or to the ``B`` shared rows.

Choices (the paper's SegNet / VGG-16 setting is for dense prediction, with a decoder):

* encoder only: one stage per entry of ``channels`` (two convolutions each, as the paper's VGG blocks' first and
  last layer feed the attention), and task heads on the flattened last attended map instead of the decoder's
  attention modules and dense prediction layers;
* no batch normalisation (the authors' ``att_layer`` / ``conv_layer`` have it): a row's prediction then reads that
  row alone, so the method is row-separable (per-task gradients in one backward pass) and small batches of tabular
  data are not normalised by a few rows;
* a vector row ``[D]`` is read as a 1×1 image with D channels, where the convolutions have 1×1 kernels (a 3×3
  kernel on a zero-padded 1×1 map would use its centre alone): the trunk, ``f`` and the masks become
  fully connected layers and the attention gates features;
* ``g`` is initialised as one convolution on the concatenation (uniform ±1/√fan_in with fan_in = 2·C_j);
* MTAN pairs with Dynamic Weight Average in the paper: ``mtan+dwa`` (any combiner composes, ``METHOD+NAME``).
  MTAN exposes no single shared representation, so ``mtan+mgda-ub`` runs MGDA on the shared parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.hparams import HParam, choice
from mtlkit.methods.base import MethodInfo, MethodParts
from mtlkit.methods.registry import register
from mtlkit.nn import TaskMLP
from mtlkit.nn.task_conv import TaskConv2d, fold_tasks, unfold_tasks
from mtlkit.nn.task_layers import ACTIVATIONS
from mtlkit.nn.task_layers import activation as make_activation

MTAN_PARAMS: tuple[HParam, ...] = (
    HParam("channels", "ints", [16, 32], "channels of each shared trunk stage (two 3×3 convs, 2×2 max-pooling "
           "between stages); every stage has one attention module per task", space=choice([8, 16], [16, 32],
                                                                                            [32, 64])),
    HParam("head_hidden", "ints", [32], "widths of each task head's hidden layers (on its last attended map, "
           "flattened)", space=choice([16], [32], [64])),
    HParam("activation", "str", "relu", "activation of the trunk, the attention modules' first layer and the "
           "heads", choices=tuple(ACTIVATIONS)),
    HParam("dropout", "float", 0.0, "dropout after each hidden layer of the heads", low=0.0, high=1.0,
           high_open=True, space=choice(0.0, 0.2)),
)


def image_shape(feature_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a row: an image ``[C, H, W]``, ``[H, W]`` (one channel) or a vector ``[D]`` (D channels of a
    1×1 map)."""
    fs = tuple(int(s) for s in feature_shape)
    if len(fs) == 3:
        return fs[0], fs[1], fs[2]
    if len(fs) == 2:
        return 1, fs[0], fs[1]
    if len(fs) == 1:
        return fs[0], 1, 1
    raise ValueError(f"mtan needs image rows [C, H, W], [H, W] or vectors [D], got feature shape {fs}")


class MTANNet(nn.Module):
    """The shared trunk with per-task soft attention at every stage, then task heads (see the module docstring).

    Input ``[T, B, ...]`` (per-task rows) or ``[B, ...]`` (shared input); output ``[T, B, P]``."""

    row_separable = True  # no batch statistics, task t's rows reach only task t's attention and head

    def __init__(self, info: DataInfo, channels: list[int], head_hidden: list[int], activation: str,
                 dropout: float) -> None:
        super().__init__()
        if not channels:
            raise ValueError("mtan needs at least one trunk stage (channels=[...])")
        self.shared, self.n_tasks = info.shared, info.n_tasks
        self.image = image_shape(info.feature_shape)
        self.act = make_activation(activation)
        T = info.n_tasks
        c, h, w = self.image
        k = 3 if h * w > 1 else 1
        self.trunk_u, self.trunk_p, self.shared_f = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.att_u, self.att_f, self.att_h = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.pools: list[bool] = []
        for j, cj in enumerate(int(v) for v in channels):
            self.trunk_u.append(nn.Conv2d(c, cj, k, padding=k // 2))
            self.trunk_p.append(nn.Conv2d(cj, cj, k, padding=k // 2))
            self.att_u.append(TaskConv2d(T, cj, cj, 1))
            self.att_h.append(TaskConv2d(T, cj, cj, 1))
            if j > 0:  # g on [u ; f(â^{j-1})]: the f part of the concatenation's weight
                g_f = TaskConv2d(T, cj, cj, 1, bias=False)
                self.att_f.append(g_f)
                bound = 1.0 / math.sqrt(2 * cj)
                with torch.no_grad():
                    for t in (self._task_conv(self.att_u, j).weight, self._task_conv(self.att_u, j).bias, g_f.weight):
                        assert t is not None
                        t.uniform_(-bound, bound)
            if j < len(channels) - 1:
                self.shared_f.append(nn.Conv2d(cj, int(channels[j + 1]), k, padding=k // 2))
                pool = min(h, w) >= 2  # pool while the map is at least 2×2 (tiny images, vectors)
                self.pools.append(pool)
                if pool:
                    h, w = h // 2, w // 2
            c = cj
        self.heads = TaskMLP(T, [c * h * w, *head_hidden, info.spec.n_outputs], activation, dropout)

    def _conv(self, mods: nn.ModuleList, j: int) -> nn.Conv2d:
        m = mods[j]
        assert isinstance(m, nn.Conv2d)
        return m

    def _task_conv(self, mods: nn.ModuleList, j: int) -> TaskConv2d:
        m = mods[j]
        assert isinstance(m, TaskConv2d)
        return m

    def _folded(self, z: torch.Tensor) -> torch.Tensor:
        """Task-major rows ``[T·B, C, H, W]`` → folded ``[B, T·C, H, W]``."""
        T = self.n_tasks
        return fold_tasks(z.reshape(T, z.shape[0] // T, *z.shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.n_tasks
        B = x.shape[0] if self.shared else x.shape[1]
        z = x.reshape(B if self.shared else T * B, *self.image)  # the trunk's rows: shared, or task-major
        prev: torch.Tensor | None = None  # f(â^{j-1}) of every task, task-major rows [T·B, C_j, H, W]
        att = z
        for j in range(len(self.trunk_u)):
            u = self.act(self._conv(self.trunk_u, j)(z))
            p = self.act(self._conv(self.trunk_p, j)(u))
            g_u = self._task_conv(self.att_u, j)
            g = g_u.forward_shared(u) if self.shared else g_u.forward_folded(self._folded(u))  # [B, T·C, H, W]
            if prev is not None:
                g = g + self._task_conv(self.att_f, j - 1).forward_folded(self._folded(prev))
            mask = unfold_tasks(torch.sigmoid(self._task_conv(self.att_h, j).forward_folded(self.act(g))), T)
            att = mask * (p.unsqueeze(0) if self.shared else p.reshape(T, B, *p.shape[1:]))  # [T, B, C, H, W]
            if j < len(self.shared_f):
                prev = self.act(self._conv(self.shared_f, j)(att.reshape(T * B, *att.shape[2:])))
                if self.pools[j]:
                    prev, z = F.max_pool2d(prev, 2), F.max_pool2d(p, 2)
                else:
                    z = p
        return self.heads(att.reshape(T, B, -1))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trunk's and the shared attention convolutions' parameters (the masks and heads are per task)."""
        return [p for mods in (self.trunk_u, self.trunk_p, self.shared_f) for p in mods.parameters()]

    def task_relations(self) -> dict[str, torch.Tensor]:
        """Per stage, the task × task cosine similarity of the attention modules' weights (``g`` and ``h``)."""
        out: dict[str, torch.Tensor] = {}
        for j in range(len(self.att_u)):
            mods = [self._task_conv(self.att_u, j), self._task_conv(self.att_h, j)]
            if j > 0:
                mods.append(self._task_conv(self.att_f, j - 1))
            wt = torch.cat([m.weight.detach().reshape(self.n_tasks, -1) for m in mods], dim=1)
            wt = wt / torch.linalg.vector_norm(wt, dim=1, keepdim=True).clamp_min(1e-12)
            out[f"attention cosine stage {j + 1}"] = wt @ wt.T
        return out


def _shared(model: nn.Module) -> list[nn.Parameter]:
    assert isinstance(model, MTANNet)
    return model.shared_parameters()


def _build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    net = MTANNet(info, list(hp["channels"]), list(hp["head_hidden"]), hp["activation"], hp["dropout"])
    return MethodParts(net, shared_parameters=_shared)


register(MethodInfo(
    name="mtan",
    summary="Multi-task attention network: a shared conv trunk (channels) with a per-task soft attention module at "
            "every stage (masks on the shared features), then task heads (head_hidden); pairs with dwa.",
    paper="Liu, Johns & Davison, CVPR 2019 (End-to-End Multi-Task Learning with Attention)",
    build=_build, params=MTAN_PARAMS, grid={"lr": [1e-3, 1e-2]},
    row_separable=True,
))
