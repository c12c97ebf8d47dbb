"""`dselect-k`: DSelect-k (Hazimeh et al., NeurIPS 2021), MMoE whose task gates are differentiable top-k selectors.

Each task's gate is ``Σ_{i=1..k} softmax(w)_i · r(z_i)``: k single-expert selectors, each with ``m = ⌈log₂ E⌉``
logits ``z_i`` put through the cubic smooth-step ``S`` (0 below −γ/2, 1 above γ/2, ``−2t³/γ³ + 3t/(2γ) + ½`` in
between) and read as the bits of an expert index: ``r(z)_e = Π_j (S(z_j) if bit j of e else 1 − S(z_j))``. A
selector's weights sum to 1 over the ``2^m`` codes; with ``E`` not a power of two the codes of absent experts are
dropped and the rest renormalised. Once every ``S(z_j)`` is 0 or 1 a selector picks exactly one expert, so the
gate mixes at most k experts — trained end to end (no top-k sort). The entropy of each selector, weighted by
``entropy_reg`` (a penalty), pushes them there, as in the paper. Per-example gating (``static = false``, the
selector logits and weights are linear maps of the bottom features, as MMoE's gates) or static (one set per task).
The experts, bottom and towers are MMoE's (`mtlkit.methods.tomato_baselines.MMoENet`); like every SGD method it
takes any loss weighting or gradient aggregator (``dselect-k+uw``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import Batch
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty
from mtlkit.methods.baselines import _flatten, _hard_share_arch
from mtlkit.methods.registry import _REGISTRY, register
from mtlkit.methods.tomato_baselines import MMOE_PARAMS, MMoENet, _mmoe_shared
from mtlkit.nn.task_layers import TaskLinear


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """The cubic smooth-step of DSelect-k (their Eq. 2): 0 for t ≤ −γ/2, 1 for t ≥ γ/2, C¹ in between."""
    mid = -2.0 / gamma ** 3 * t ** 3 + 1.5 / gamma * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), mid))


class DSelectKNet(MMoENet):
    """MMoE with DSelect-k gates (see the module docstring); ``forward`` also returns the selectors' expert
    distributions ``features["selectors"]`` ``[T, B or 1, k, E]`` for the entropy penalty."""

    codes: torch.Tensor  # buffer, registered in __init__

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str, dropout: float,
                 n_experts: int, expert_dim: int, k: int, gamma: float, static: bool, backbone: str = "mlp",
                 channels: list[int] | None = None) -> None:
        super().__init__(info, hidden, head_hidden, activation, dropout, n_experts, expert_dim, backbone, channels)
        if k < 1 or gamma <= 0:
            raise ValueError(f"dselect-k needs k >= 1 and gamma > 0, got {k}, {gamma}")
        del self.gate  # MMoE's softmax gates: replaced by the selectors
        T, E = info.n_tasks, n_experts
        self.k, self.gamma, self.static = int(k), float(gamma), bool(static)
        self.m = max(1, math.ceil(math.log2(E))) if E > 1 else 1
        codes = ((torch.arange(E)[:, None] >> torch.arange(self.m)[None, :]) & 1).to(torch.get_default_dtype())
        self.register_buffer("codes", codes, persistent=False)  # [E, m]: bit j of expert e
        width = self.experts.weight.shape[1]
        if self.static:
            self.sel_logits = nn.Parameter(torch.empty(T, self.k, self.m).uniform_(-self.gamma / 2, self.gamma / 2))
            self.sel_weights = nn.Parameter(torch.zeros(T, self.k))
        else:
            self.selector = TaskLinear(T, width, self.k * self.m)
            self.selector_weights = TaskLinear(T, width, self.k)
            with torch.no_grad():  # logits start inside the smooth-step's transition band, as the paper's init
                self.selector.weight.uniform_(-self.gamma / 2 / math.sqrt(width), self.gamma / 2 / math.sqrt(width))
                assert self.selector.bias is not None  # a TaskLinear with a bias
                self.selector.bias.uniform_(-self.gamma / 2, self.gamma / 2)

    def selectors(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each selector's distribution over the experts ``[T, B', k, E]`` and the selector weights ``[T, B', k]``
        (B' = 1 for static gates)."""
        if self.static:
            logits, w = self.sel_logits[:, None], torch.softmax(self.sel_weights, dim=-1)[:, None]
        else:
            logits = self.selector(z)
            logits = logits.reshape(*logits.shape[:-1], self.k, self.m)
            w = torch.softmax(self.selector_weights(z), dim=-1)
        s = smooth_step(logits, self.gamma)[..., None, :]  # [T, B', k, 1, m]
        bits = self.codes.to(s.dtype)
        r = (bits * s + (1 - bits) * (1 - s)).prod(-1)  # [T, B', k, E]
        if self.codes.shape[0] < 2 ** self.m:  # codes of absent experts dropped
            r = r / r.sum(-1, keepdim=True).clamp_min(1e-12)
        return r, w

    def _gates(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r, w = self.selectors(z)
        g = (w[..., None] * r).sum(-2)
        return (g.expand(g.shape[0], z.shape[-2], g.shape[-1]) if self.static else g), r

    def gates(self, z: torch.Tensor) -> torch.Tensor:
        """Task gates ``[T, B, E]`` from bottom features ``z`` (rows sum to 1)."""
        return self._gates(z)[0]

    def _experts(self, z: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return self.expert_act(self.experts(z))
        T, B = z.shape[0], z.shape[1]  # every expert on the task-major rows in one layer call, as MMoE
        f = self.expert_act(self.experts(z.reshape(T * B, z.shape[-1])))
        return f.reshape(f.shape[0], T, B, f.shape[-1]).transpose(0, 1)

    def experts_and_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        return self._experts(z), self.gates(z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        g, r = self._gates(z)
        f = self._experts(z)
        mixed = torch.einsum("tbe,ebd->tbd" if self.shared else "tbe,tebd->tbd", g, f)
        return ModelOutput(self.heads(mixed), features={"shared": f, "selectors": r})


def selector_entropy(weight: float) -> Penalty:
    """``weight`` × the mean entropy of the selectors' expert distributions (summed over tasks and selectors)."""
    def penalty(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        r = out.features["selectors"]
        h = -(r * torch.log(r.clamp_min(1e-12))).sum(-1)  # [T, B', k]
        return weight * h.sum((0, 2)).mean()

    return penalty


DSELECT_PARAMS: tuple[HParam, ...] = (
    *MMOE_PARAMS,
    HParam("k", "int", 2, "selectors per task gate: at most k experts mixed once they are binary", low=1,
           space=choice(1, 2, 4)),
    HParam("step_width", "float", 1.0, "γ: width of the smooth-step's transition band", low=0.0, low_open=True),
    HParam("entropy_reg", "float", 1e-3, "weight of the selectors' entropy penalty (0 = off)", low=0.0,
           space=log_range(1e-5, 1e-1, off=0.0)),
    HParam("static", "bool", False, "one gate per task (true) instead of per-example gates read from φ(x)"),
)


def _build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    model = DSelectKNet(info, **_hard_share_arch(hp), n_experts=int(hp["n_experts"]), expert_dim=int(hp["expert_dim"]),
                        k=int(hp["k"]), gamma=float(hp["step_width"]), static=bool(hp["static"]))
    pen = [selector_entropy(float(hp["entropy_reg"]))] if float(hp["entropy_reg"]) > 0 else []
    return MethodParts(model, penalties=pen, shared_parameters=_mmoe_shared)


register(MethodInfo(
    name="dselect-k",
    summary="DSelect-k: MMoE whose task gates are k differentiable binary-coded expert selectors (smooth-step), "
            "sparse once trained; per-example or static gates, entropy penalty.",
    paper="Hazimeh et al., NeurIPS 2021 (DSelect-k: Differentiable Selection in the Mixture of Experts with "
          "Applications to Multi-Task Learning)",
    build=_build,
    params=DSELECT_PARAMS,
    grid=_REGISTRY["mmoe"].grid,
    row_separable=True,
))
