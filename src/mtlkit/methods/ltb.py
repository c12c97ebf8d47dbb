"""`ltb`: Learning to Branch (Guo, Lee & Ulbricht, ICML 2020, "Learning to Branch for Multi-Task Learning"): a
tree-structured network whose branching is learned with the weights, end to end, by Gumbel-softmax sampling.

Design space (the paper's §3): layers l = 1..L of K_l nodes each (node = one fully connected layer of width
``hidden[l]`` with the activation), then T leaves (task t's head: ``head_hidden`` layers and the output). Every
child node c at layer l ≥ 2, and every leaf, has learnable branching logits ``θ_c`` over the K_{l-1} nodes of the
layer below and reads the mixture of their outputs (L = 1: only the leaves branch)

    x_c = Σ_i d_ci · y_i,       d_c = softmax((θ_c + G_c) / τ),   G_c i.i.d. Gumbel(0, 1),

a relaxed sample of "c picks one parent"; the first layer's nodes all read the input (the root). One sample is
drawn per training step for the whole batch, so the gradients reach the weights and θ together, on the training
loss. In evaluation (``model.eval()``) every child takes its most probable parent, ``argmax θ_c``: the network is
the learned tree, deterministic, and tasks whose paths meet share the layers below the meeting point.

The task axis is never a Python loop: the K_l nodes of a layer are one `TaskLinear` with K_l maps applied to the
stacked ``[K_l, N, in]`` mixtures, the mixtures one ``einsum`` with ``d``, the T leaves one `TaskMLP`. Per-task input
``[T, B, ...]`` runs every node on all ``T·B`` rows (leaf t reads its tasks' rows only), shared input ``[B, ...]`` on
the B rows.

Choices (the paper's experiments use ResNet blocks on CelebA / Taskonomy; this is the fully connected form):

* K_l = ``min(T, max_nodes)`` nodes per layer (the design space's widest tree has T nodes everywhere, so that any
  task can own a branch from the first layer up); ``max_nodes`` bounds the cost, which grows as K·T·B per layer on
  per-task input;
* the temperature anneals per training step, ``τ_k = max(τ_min, tau · tau_decay^k)`` with ``τ_min = 0.1`` (the step
  count k is a buffer of the model, so a resumed run continues the schedule), and θ starts at zero (every parent
  equally likely);
* the paper then retrains the selected tree from scratch; here training simply goes on while τ falls (the samples
  approach one-hot vectors) and early stopping keeps the state whose learned tree (evaluation mode) has the best
  validation loss, so the model evaluated is the tree;
* weights and θ share the Trainer's optimiser and learning rate (one objective, no bi-level split);
* a row reaches only its own task's loss (no batch statistics), but the nodes' stacked ``[K, N, in]`` inputs are
  indexed by node, not by task, which the one-pass per-task gradient rules would misread when K = T; so the method
  does not declare row-separability, and an aggregator's per-task gradients come from the batched
  vector-Jacobian product. ``task_relations`` gives the fraction of layers two tasks share in the learned tree.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts
from mtlkit.methods.registry import register
from mtlkit.nn import TaskMLP
from mtlkit.nn.task_layers import ACTIVATIONS, TaskLinear
from mtlkit.nn.task_layers import activation as make_activation

TAU_MIN = 0.1

LTB_PARAMS: tuple[HParam, ...] = (
    HParam("hidden", "ints", [64, 64], "width of the nodes of each layer (the first layer's nodes read the input; "
           "each later layer's nodes and the task leaves pick their parents)", space=choice([32, 32], [64, 64],
                                                                                             [64, 64, 64])),
    HParam("head_hidden", "ints", [32], "widths of each task leaf's hidden layers (before its output)",
           space=choice([16], [32], [64])),
    HParam("activation", "str", "relu", "activation of every node and hidden layer", choices=tuple(ACTIVATIONS)),
    HParam("dropout", "float", 0.0, "dropout after each hidden layer of the leaves", low=0.0, high=1.0,
           high_open=True, space=choice(0.0, 0.2)),
    HParam("max_nodes", "int", 4, "nodes per branching layer at most (min(T, max_nodes) each)", low=1,
           space=choice(2, 4, 8)),
    HParam("tau", "float", 1.0, "initial Gumbel-softmax temperature τ", low=0.0, low_open=True,
           space=log_range(0.3, 5.0)),
    HParam("tau_decay", "float", 0.999, "factor on τ after each training step (τ stops at 0.1)", low=0.0,
           low_open=True, high=1.0),
)


class LTBNet(nn.Module):
    """The branching network (see the module docstring). ``forward_with(x, mixes)`` runs it with given mixing
    matrices (``mixes[l]``: ``[K_{l+1}, K_l]`` rows on the simplex for the layers above the first, the last one the
    leaves' ``[T, K_L]``); ``forward`` draws them (`mixing`)."""

    steps: torch.Tensor  # buffer: training steps taken, the temperature schedule's clock (saved with the model)

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str, dropout: float,
                 max_nodes: int, tau: float, tau_decay: float) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("ltb needs at least one layer of nodes (hidden=[w1, ...])")
        if not tau > 0 or not 0 < tau_decay <= 1:
            raise ValueError(f"ltb needs tau > 0 and 0 < tau_decay <= 1, got {tau}, {tau_decay}")
        self.shared, self.n_tasks = info.shared, info.n_tasks
        self.tau, self.tau_decay = float(tau), float(tau_decay)
        T = info.n_tasks
        self.n_nodes = [min(T, int(max_nodes))] * len(hidden)
        sizes = [info.n_features, *[int(h) for h in hidden]]
        self.nodes = nn.ModuleList(TaskLinear(k, a, b) for k, a, b in zip(self.n_nodes, sizes[:-1], sizes[1:],
                                                                             strict=True))
        children = [*self.n_nodes[1:], T]
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(c, p)) for c, p in zip(children, self.n_nodes,
                                                                                       strict=True))
        self.act = make_activation(activation)
        self.heads = TaskMLP(T, [sizes[-1], *head_hidden, info.spec.n_outputs], activation, dropout)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def temperature(self) -> float:
        """τ at the current training step."""
        return max(TAU_MIN, self.tau * self.tau_decay ** int(self.steps))

    def mixing(self) -> list[torch.Tensor]:
        """The mixing matrices of this forward pass: Gumbel-softmax samples at the current τ in training (one per
        child, the step counter advanced), the learned tree's one-hot parents in evaluation."""
        if self.training:
            tau = self.temperature()
            if torch.is_grad_enabled():
                self.steps.add_(1)
            return [F.gumbel_softmax(th, tau=tau, hard=False, dim=-1) for th in self.logits]
        return [F.one_hot(th.argmax(-1), th.shape[-1]).to(th.dtype) for th in self.logits]

    def parents(self) -> list[list[int]]:
        """The learned tree: for each layer above the first, and then for the leaves, each child's parent index."""
        return [th.detach().argmax(-1).tolist() for th in self.logits]

    def _node(self, j: int) -> TaskLinear:
        m = self.nodes[j]
        assert isinstance(m, TaskLinear)
        return m

    def forward_with(self, x: torch.Tensor, mixes: list[torch.Tensor]) -> torch.Tensor:
        T = self.n_tasks
        B = x.shape[0] if self.shared else x.shape[1]
        rows = x.reshape(B if self.shared else T * B, -1)  # every node on every row: shared, or task-major
        y = self.act(self._node(0)(rows))  # [K_1, N, h_1]
        for j in range(1, len(self.nodes)):
            y = self.act(self._node(j)(torch.einsum("ck,knh->cnh", mixes[j - 1].to(y.dtype), y)))
        d = mixes[-1].to(y.dtype)
        if self.shared:
            leaf = torch.einsum("tk,kbh->tbh", d, y)
        else:  # leaf t reads task t's rows of its parents
            leaf = torch.einsum("tk,ktbh->tbh", d, y.reshape(y.shape[0], T, B, y.shape[-1]))
        return self.heads(leaf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with(x, self.mixing())

    def shared_parameters(self) -> list[nn.Parameter]:
        """The nodes and the branching logits between them (the leaves' logits and heads are per task)."""
        return [*self.nodes.parameters(), *list(self.logits)[:-1]]

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The fraction of the branching layers two tasks share in the learned tree (1: the same path to the top)."""
        par = self.parents()
        node = torch.tensor(par[-1])  # each task's node in the top layer
        shared = torch.zeros(self.n_tasks, self.n_tasks)
        for layer in range(len(self.nodes) - 1, -1, -1):  # walk down from the top layer to the first
            shared += (node[:, None] == node[None, :]).float()
            if layer > 0:
                node = torch.tensor(par[layer - 1])[node]
        return {"shared layers (learned tree)": shared / len(self.nodes)}


def _shared(model: nn.Module) -> list[nn.Parameter]:
    assert isinstance(model, LTBNet)
    return model.shared_parameters()


def _build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    net = LTBNet(info, list(hp["hidden"]), list(hp["head_hidden"]), hp["activation"], hp["dropout"],
                 hp["max_nodes"], hp["tau"], hp["tau_decay"])
    return MethodParts(net, shared_parameters=_shared)


register(MethodInfo(
    name="ltb",
    summary="Learning to branch: layers of candidate nodes (hidden, min(T, max_nodes) each), every child picking a "
            "parent by Gumbel-softmax (τ annealed), task leaves (head_hidden); evaluated as the learned tree.",
    paper="Guo, Lee & Ulbricht, ICML 2020 (Learning to Branch for Multi-Task Learning)",
    build=_build, params=LTB_PARAMS, grid={"lr": [1e-3, 1e-2]},
))
