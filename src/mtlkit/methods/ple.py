"""`ple`: Progressive Layered Extraction (Tang et al., RecSys 2020), a baseline of SRDML's Table 2.

Each of ``levels`` extraction levels holds ``n_task_experts`` experts per task and ``n_shared_experts`` shared
experts (one layer each: relu(h·A + a), all task experts in ONE [T, n_task_experts, in, e] tensor). Task t's
gate ``softmax(h_t·G_t + c_t)`` mixes its own experts and the shared ones into task t's next state; in every
level but the last a shared gate mixes *all* experts (every task's and the shared ones) into the shared
branch's next state. The first level reads the (optional) shared bottom φ(x) in every branch; after the last
level come task towers (``head_hidden``) and outputs. Gates read their own branch's state, as in the paper
(LibMTL omits the shared gate; METHOD_NOTES §6).

Heterogeneous tasks: with two or more levels the shared gate needs every task's experts on every task's rows,
so the task experts of every level but the last run on all T·B rows of the batch (T× a shared-input level: the
architecture's own cost, as cross-stitch's towers), and so do the task gates and mixtures of the levels that feed
another non-final level. The level before the last mixes its task branches on each task's own rows only, and the
last level runs on each task's own rows (task t's branch and the shared experts on task t's rows): what task t's
output reads and no more. With one level nothing crosses tasks and each task runs on its own rows only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.hparams import HParam, choice
from mtlkit.methods.base import MethodInfo, MethodParts
from mtlkit.methods.baselines import BACKBONE_DEFAULTS, BACKBONE_PARAMS, _flatten, arch_params, shared_bottom
from mtlkit.methods.registry import register
from mtlkit.nn import TaskMLP
from mtlkit.nn import activation as make_activation


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class ExtractionLevel(nn.Module):
    """One PLE level: task experts [T, n_te, in, e], shared experts [n_se, in, e], task gates [T, in, n_te +
    n_se] and, unless ``final``, a shared gate [in, T·n_te + n_se] over all experts."""

    def __init__(self, n_tasks: int, in_dim: int, n_task_experts: int, n_shared_experts: int, expert_dim: int,
                 activation: str, dropout: float, final: bool) -> None:
        super().__init__()
        T, k, s, e = n_tasks, n_task_experts, n_shared_experts, expert_dim
        self.n_tasks, self.final = T, final
        self.task_w, self.task_b = _uniform((T, k, in_dim, e), in_dim), _uniform((T, k, e), in_dim)
        self.shared_w, self.shared_b = _uniform((s, in_dim, e), in_dim), _uniform((s, e), in_dim)
        self.gate_w, self.gate_b = _uniform((T, in_dim, k + s), in_dim), _uniform((T, k + s), in_dim)
        if not final:
            self.sgate_w, self.sgate_b = _uniform((in_dim, T * k + s), in_dim), _uniform((T * k + s,), in_dim)
        self.act = nn.Sequential(make_activation(activation), nn.Dropout(dropout) if dropout > 0 else nn.Identity())

    def _task_experts(self, h_task: torch.Tensor) -> torch.Tensor:
        """Every task's experts on ``h_task`` ([N, in]: the same rows for every task, or [T, N, in]): [T, k, N, e]."""
        eq = "bi,tkie->tkbe" if h_task.dim() == 2 else "tbi,tkie->tkbe"
        return self.act(torch.einsum(eq, h_task, self.task_w) + self.task_b[:, :, None, :])

    def _shared_experts(self, h_shared: torch.Tensor) -> torch.Tensor:
        """The shared experts on one set of rows [N, in]: [s, N, e]."""
        return self.act(torch.einsum("bi,sie->sbe", h_shared, self.shared_w) + self.shared_b[:, None, :])

    def _task_mix(self, h_own: torch.Tensor, e_task: torch.Tensor, e_shared: torch.Tensor) -> torch.Tensor:
        """Task t's gate (on its own branch's rows ``h_own`` [T, B, in] or [B, in]) over its experts ``e_task``
        [T, k, B, e] and the shared ones ``e_shared`` ([s, B, e] for all tasks, or [T, s, B, e]): [T, B, e]."""
        geq = "bi,tig->tbg" if h_own.dim() == 2 else "tbi,tig->tbg"
        gate = torch.softmax(torch.einsum(geq, h_own, self.gate_w) + self.gate_b[:, None, :], dim=-1)
        k = e_task.shape[1]
        out = torch.einsum("tbk,tkbe->tbe", gate[..., :k], e_task)
        seq = "tbs,sbe->tbe" if e_shared.dim() == 3 else "tbs,tsbe->tbe"
        return out + torch.einsum(seq, gate[..., k:], e_shared)

    def _shared_mix(self, h_shared: torch.Tensor, e_task: torch.Tensor, e_shared: torch.Tensor) -> torch.Tensor:
        """The shared gate (on ``h_shared`` [N, in]) over every expert, all tasks' [T, k, N, e] and the shared ones
        [s, N, e]: the shared branch's next state [N, e]."""
        sgate = torch.softmax(h_shared @ self.sgate_w + self.sgate_b, dim=-1)  # [N, T·k + s]
        tk = e_task.shape[0] * e_task.shape[1]
        out = torch.einsum("bg,gbe->be", sgate[:, :tk], e_task.reshape(tk, *e_task.shape[2:]))
        return out + torch.einsum("bg,gbe->be", sgate[:, tk:], e_shared)

    def forward(self, h_task: torch.Tensor, h_shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``h_task`` [B, in] (the same rows for every task) or [T, B, in]; ``h_shared`` [B, in], or [T, B, in]
        in a final level. Returns the tasks' next states [T, B, e] and the shared one [B, e] (None if final)."""
        e_task = self._task_experts(h_task)  # [T, k, B, e]
        if h_shared.dim() == 2:
            e_shared = self._shared_experts(h_shared)  # [s, B, e]
            out_task = self._task_mix(h_task, e_task, e_shared)
        else:
            e_shared = None
            e_shared_t = self.act(torch.einsum("tbi,sie->tsbe", h_shared, self.shared_w)
                                  + self.shared_b[None, :, None, :])
            out_task = self._task_mix(h_task, e_task, e_shared_t)
        if self.final:
            return out_task, None
        if e_shared is None:
            raise ValueError("a non-final PLE level needs the shared branch on one set of rows ([B, in])")
        return out_task, self._shared_mix(h_shared, e_task, e_shared)

    def forward_own_rows(self, h_task: torch.Tensor, h_shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A non-final level on T tasks' rows, task-major (``h_shared`` [T·B, in]; ``h_task`` the same [T·B, in] for
        every branch or [T, T·B, in]), whose task branches are read on their own task's rows only (the level before
        the last): every task's experts still run on every row (the shared gate reads them all), the task gates and
        mixtures only on task t's own rows. Returns ([T, B, e], [T·B, e])."""
        if self.final:
            raise ValueError("forward_own_rows is for a non-final level")
        T = self.n_tasks
        e_task = self._task_experts(h_task)  # [T, k, T·B, e]
        e_shared = self._shared_experts(h_shared)  # [s, T·B, e]
        B = h_shared.shape[0] // T
        idx = torch.arange(T, device=h_shared.device)
        own = h_task.reshape(T, B, -1) if h_task.dim() == 2 else h_task.reshape(T, T, B, -1)[idx, idx]
        k, s, e = e_task.shape[1], e_shared.shape[0], e_task.shape[-1]
        own_task = e_task.reshape(T, k, T, B, e)[idx, :, idx]  # task t's experts on task t's rows [T, k, B, e]
        own_shared = e_shared.reshape(s, T, B, e).transpose(0, 1)  # [T, s, B, e]
        return self._task_mix(own, own_task, own_shared), self._shared_mix(h_shared, e_task, e_shared)


class PLENet(nn.Module):
    """Shared bottom φ (`shared_bottom`; with the MLP backbone the identity when ``hidden`` is empty: the paper's
    experts on the raw input; ``backbone="cnn"``: a small CNN), ``levels``
    `ExtractionLevel` s, then per-task towers and outputs (`TaskMLP`)."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str, dropout: float,
                 levels: int, n_shared_experts: int, n_task_experts: int, expert_dim: int, backbone: str = "mlp",
                 channels: list[int] | None = None) -> None:
        super().__init__()
        for nm, v in (("levels", levels), ("n_shared_experts", n_shared_experts),
                      ("n_task_experts", n_task_experts), ("expert_dim", expert_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ple needs {nm} to be a positive integer, got {v!r}")
        T = info.n_tasks
        self.shared, self.n_tasks = info.shared, T
        self.bottom, width = shared_bottom(info, hidden, activation, dropout, backbone, channels)
        self.levels = nn.ModuleList([
            ExtractionLevel(T, width if i == 0 else expert_dim, n_task_experts, n_shared_experts, expert_dim,
                            activation, dropout, final=i == levels - 1) for i in range(levels)])
        self.heads = TaskMLP(T, [expert_dim, *head_hidden, info.spec.n_outputs], activation, dropout)

    def extract(self, z: torch.Tensor) -> torch.Tensor:
        """All levels on bottom features ``z`` ([B, h] shared by the tasks, or [T, B, h] with one level):
        the tasks' final states [T, B, e]."""
        h_task, h_shared = z, z
        for level in self.levels:
            h_task, h_shared = level(h_task, h_shared)
        return h_task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        if self.shared or len(self.levels) == 1:
            return self.heads(self.extract(z))
        T, B = z.shape[0], z.shape[1]
        rows = z.reshape(T * B, -1)  # every task's rows, task-major
        h_task, h_shared = rows, rows
        for level in self.levels[:-2]:  # their task branches feed experts the next shared gate reads on every row
            h_task, h_shared_next = level(h_task, h_shared)
            assert h_shared_next is not None
            h_shared = h_shared_next
        penult = self.levels[-2]
        assert isinstance(penult, ExtractionLevel)
        h_own, h_shared = penult.forward_own_rows(h_task, h_shared)  # [T, B, e], [T·B, e]
        return self.heads(self.levels[-1](h_own, h_shared.reshape(T, B, -1))[0])  # the last level on own rows


def _ple_shared(model: nn.Module) -> list[nn.Parameter]:
    """Parameters more than one task's loss reaches: the bottom, every shared expert, and in non-final levels
    the task experts and shared gate (read by the shared gate) and, two or more levels before the last, the
    task gates (they feed task experts that the next shared gate reads)."""
    assert isinstance(model, PLENet)  # ple's shared_parameters
    out = list(model.bottom.parameters())
    n = len(model.levels)
    for i, lv in enumerate(model.levels):
        assert isinstance(lv, ExtractionLevel)
        out += [lv.shared_w, lv.shared_b]
        if i < n - 1:
            out += [lv.task_w, lv.task_b, lv.sgate_w, lv.sgate_b]
        if i < n - 2:
            out += [lv.gate_w, lv.gate_b]
    return out


_ARCH = {p.name: p for p in arch_params(head_doc="widths of each task tower's hidden layers (after the last level)")}
PLE_PARAMS: tuple[HParam, ...] = (
    HParam("hidden", "ints", [], "optional shared bottom φ before the first level ([] = none: PLE's own layout, the "
           "levels read the input)"),
    _ARCH["head_hidden"], _ARCH["activation"], _ARCH["dropout"],
    HParam("levels", "int", 2, "extraction levels", low=1),
    HParam("n_shared_experts", "int", 2, "shared experts per level", low=1),
    HParam("n_task_experts", "int", 1, "experts per task per level", low=1),
    HParam("expert_dim", "int", 32, "width of every expert (one ReLU layer)", low=1, space=choice(16, 32, 64)),
    *BACKBONE_PARAMS,
)
PLE_DEFAULTS: dict[str, Any] = {p.name: p.default for p in PLE_PARAMS}


def _build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    model = PLENet(info, list(hp["hidden"]), list(hp["head_hidden"]), hp["activation"], float(hp["dropout"]),
                   int(hp["levels"]), int(hp["n_shared_experts"]), int(hp["n_task_experts"]), int(hp["expert_dim"]),
                   str(hp.get("backbone", "mlp")), list(hp.get("channels", BACKBONE_DEFAULTS["channels"])))
    return MethodParts(model, shared_parameters=_ple_shared)


register(MethodInfo(
    name="ple",
    summary="Progressive layered extraction: levels of task-specific and shared experts, per-task gates over "
            "own + shared experts, a shared gate over all experts between levels, then task towers.",
    paper="SRDML (Bai et al., KDD 2022) Table 2 baseline; Tang et al., Progressive Layered Extraction (PLE), "
          "RecSys 2020",
    build=_build,
    params=PLE_PARAMS,
    grid={"lr": [1e-3, 1e-2]},
    row_separable=True,
))
