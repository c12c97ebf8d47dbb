"""TOMATO's Table-3 neural baselines on the shared-bottom layout: `inter-task-l2`, `cross-stitch`, `mmoe`
and `mrn` (see METHOD_NOTES §1 "Baselines as implemented" and §6 for where we follow the papers rather
than MTSEM's code). Every task-specific piece is one task-stacked tensor; no step loops over tasks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import Batch
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput
from mtlkit.methods.baselines import (
    ARCH_GRID,
    HARD_SHARE_PARAMS,
    HardShareNet,
    _arch,
    _flatten,
    _hard_share_arch,
    _shared_bottom,
    arch_params,
    shared_bottom,
)
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskLinear, TaskMLP
from mtlkit.nn import activation as make_activation


# ---------------------------------------------------------------------- inter-task-l2
def pairwise_sq_distance_sum(w: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} ‖w_i − w_j‖² over the rows of ``w`` [T, n] (unordered pairs), as T·Σ_i ‖w_i − w̄‖².

    That equals the Gram form T·Σ‖w_i‖² − ‖Σw_i‖² exactly; centring first avoids its cancellation."""
    c = w - w.mean(0, keepdim=True)
    return w.shape[0] * (c * c).sum()


def _task_vectors(layer: TaskLinear) -> torch.Tensor:
    """One layer's weights and bias flattened per task: [T, in·out (+ out)]."""
    w = layer.weight.reshape(layer.n_tasks, -1)
    return w if layer.bias is None else torch.cat([w, layer.bias], dim=1)


def inter_task_l2(model: nn.Module) -> torch.Tensor:
    """Σ over the task-specific layers of Σ_{i<j} ‖W_i − W_j‖² (weights and biases), unscaled."""
    heads: TaskMLP = model.heads  # type: ignore[assignment]
    return torch.stack([pairwise_sq_distance_sum(_task_vectors(layer)) for layer in heads.linear_layers()]).sum()


def _build_inter_task_l2(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    mu = float(hp["mu"])

    def penalty(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """μ·Σ_{i<j}‖W_i − W_j‖²: pulls the task heads towards each other (TOMATO's Inter-task-l2)."""
        return mu * inter_task_l2(model)

    return MethodParts(HardShareNet(info, **_hard_share_arch(hp)), penalties=(penalty,) if mu else (),
                       shared_parameters=_shared_bottom)


# ---------------------------------------------------------------------- cross-stitch
class CrossStitchNet(nn.Module):
    """Shared bottom φ, per-task towers (``head_hidden``), a per-unit cross-stitch unit, per-task output.

    Misra et al. (2016), per-unit form: for hidden unit u of the towers' top layer, x̃_i[u] = Σ_j α[u, i, j]
    x_j[u], where x_j is task j's tower applied to the *same* input (task i's rows for heterogeneous data).
    α [hd, T, T] starts at 0.9 on the diagonal and 0.1 off it, as in the paper. MTSEM instead mixes all units
    with one dense (T·hd)² matrix initialised to I, and LibMTL initialises α to ones; neither is offered.
    The paper's ~10³ learning-rate multiplier on α is not applied.
    Heterogeneous inputs cost T× the towers' work: every tower runs on every task's rows ([T, T, B, hd]).
    """

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float, backbone: str = "mlp", channels: list[int] | None = None) -> None:
        super().__init__()
        if not head_hidden:
            raise ValueError("cross-stitch mixes the towers' top hidden layer: it needs head_hidden=[...]")
        T = info.n_tasks
        self.shared, self.n_tasks = info.shared, T
        self.bottom, width = shared_bottom(info, hidden, activation, dropout, backbone, channels)
        self.towers = TaskMLP(T, [width, *head_hidden], activation, dropout, last_activation=True)
        hd = head_hidden[-1]
        alpha = torch.full((T, T), 0.1)
        alpha.fill_diagonal_(0.9)
        self.alpha = nn.Parameter(alpha.expand(hd, T, T).clone())
        self.out = TaskLinear(T, hd, info.spec.n_outputs)

    def stitched(self, x: torch.Tensor) -> torch.Tensor:
        """The towers' mixed top hidden activations x̃ [T, B, hd]."""
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        if self.shared:  # every tower on the one input: [T_j, B, hd]
            return torch.einsum("uij,jbu->ibu", self.alpha, self.towers(z))
        T, B = z.shape[0], z.shape[1]
        h = self.towers(z.reshape(T * B, -1)).reshape(T, T, B, -1)  # (tower j, input task s, B, hd)
        return torch.einsum("uij,jibu->ibu", self.alpha, h)  # target task i reads its own input s = i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.stitched(x))

    def task_relations(self) -> dict[str, torch.Tensor]:
        """α averaged over hidden units: how much task i reads from task j's tower."""
        return {"cross-stitch α (mean over units)": self.alpha.mean(0)}


def _stitch_shared(model: nn.Module) -> list[nn.Parameter]:
    """Parameters every task's loss reaches: the bottom and (through α) all towers."""
    return [*model.get_submodule("bottom").parameters(), *model.get_submodule("towers").parameters()]


# ---------------------------------------------------------------------- MMoE
class MMoENet(nn.Module):
    """Multi-gate mixture of experts (Ma et al. 2018) on a shared bottom, as MTSEM builds it.

    Experts e: relu(φ(x)·A_e + a_e), all E in one [E, h, expert_dim] parameter; task gates
    g_t = softmax(φ(x)·G_t + c_t) over experts ([T, h, E]); then task towers (``head_hidden``) and outputs.
    The gates read φ(x) (MTSEM); ``hidden=[]`` makes φ the identity: the paper's gates on the raw input.
    """

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float, n_experts: int, expert_dim: int, backbone: str = "mlp",
                 channels: list[int] | None = None) -> None:
        super().__init__()
        if n_experts < 1 or expert_dim < 1:
            raise ValueError(f"mmoe needs n_experts >= 1 and expert_dim >= 1, got {n_experts}, {expert_dim}")
        T = info.n_tasks
        self.shared, self.n_tasks = info.shared, T
        self.bottom, width = shared_bottom(info, hidden, activation, dropout, backbone, channels)
        self.experts = TaskLinear(n_experts, width, expert_dim)  # the "task" axis here is the expert axis
        self.expert_act = nn.Sequential(make_activation(activation),
                                        nn.Dropout(dropout) if dropout > 0 else nn.Identity())
        self.gate = TaskLinear(T, width, n_experts)
        self.heads = TaskMLP(T, [expert_dim, *head_hidden, info.spec.n_outputs], activation, dropout)

    def gates(self, z: torch.Tensor) -> torch.Tensor:
        """Task gates [T, B, E] from bottom features ``z`` ([B, h] or [T, B, h]); rows sum to 1."""
        return torch.softmax(self.gate(z), dim=-1)

    def experts_and_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts' outputs — ``[E, B, d]`` on shared input, ``[T, E, B, d]`` on per-task input (every expert on
        task t's rows) — and the task gates ``[T, B, E]``."""
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        g = self.gates(z)
        if self.shared:
            return self.expert_act(self.experts(z)), g
        # every expert on every task's rows, as one layer call on the task-major rows [T·B, h] → [E, T·B, d] (so a
        # per-task-gradient combiner's TaskTape takes the experts' T gradients from one backward pass)
        T, B = z.shape[0], z.shape[1]
        f = self.expert_act(self.experts(z.reshape(T * B, z.shape[-1])))
        return f.reshape(f.shape[0], T, B, f.shape[-1]).transpose(0, 1), g

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_e g_t(x)_e f_e(x) per task: [T, B, expert_dim]."""
        f, g = self.experts_and_gates(x)
        return torch.einsum("tbe,ebd->tbd" if self.shared else "tbe,tebd->tbd", g, f)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f, g = self.experts_and_gates(x)
        mixed = torch.einsum("tbe,ebd->tbd" if self.shared else "tbe,tebd->tbd", g, f)
        # the last shared tensor, MGDA-UB's representation: the experts' outputs (task axis first on per-task input)
        return ModelOutput(self.heads(mixed), features={"shared": f})


def _mmoe_shared(model: nn.Module) -> list[nn.Parameter]:
    """Parameters every task's loss reaches: the bottom and the experts."""
    return [*model.get_submodule("bottom").parameters(), *model.get_submodule("experts").parameters()]


# ---------------------------------------------------------------------- MRN
def mrn_precision(sigma: torch.Tensor, threshold: float = 0.1, max_trace: float = 3000.0) -> torch.Tensor:
    """MRN's task precision from a covariance: U·diag(f(s))·Vᵀ with f(s) = 1/s if s > threshold else s,
    rescaled to trace ``max_trace`` when above it (thuml/MTlearn; METHOD_NOTES §6-7)."""
    u, s, vh = torch.linalg.svd(sigma)
    f = torch.where(s > threshold, 1.0 / s.clamp_min(threshold), s)
    omega = (u * f) @ vh
    tr = torch.diagonal(omega).sum()
    return torch.where(tr > max_trace, omega * (max_trace / tr), omega)


class MRNNet(HardShareNet):
    """Hard-share with MRN's tensor-normal prior on the last task-specific layer's weights W [T, in, out].

    Penalty tr(Ω_T·G), G[i, j] = ⟨W_i, W_j⟩, i.e. vec(W)ᵀ(Ω_T⊗I⊗I)vec(W) with the feature and class
    covariances fixed at I as the official code leaves them. Every ``update_every`` training steps
    Ω_T ← `mrn_precision`(W_(1)W_(1)ᵀ + 1e-5·I). Ω_T, Σ_T and the step count are buffers, so saved runs and
    checkpoints keep them; a host-side copy of the count decides when to update without a device sync.
    """

    omega: torch.Tensor  # buffers, registered in __init__
    sigma: torch.Tensor
    steps: torch.Tensor

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float, update_every: int, backbone: str = "mlp", channels: list[int] | None = None) -> None:
        super().__init__(info, hidden, head_hidden, activation, dropout, backbone, channels)
        if update_every < 1:
            raise ValueError(f"mrn needs update_every >= 1, got {update_every}")
        T = info.n_tasks
        self.update_every = int(update_every)
        self.register_buffer("omega", torch.eye(T))
        self.register_buffer("sigma", torch.eye(T))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self._steps = 0
        self.register_load_state_dict_post_hook(_sync_steps)

    def last_weight(self) -> torch.Tensor:
        """The prior's tensor: the last task-specific layer's weights flattened per task, [T, in·out]."""
        layer = self.heads.linear_layers()[-1]
        return layer.weight.reshape(layer.n_tasks, -1)

    @torch.no_grad()
    def update_prior(self) -> None:
        """Re-estimate Σ_T = W_(1)W_(1)ᵀ + 1e-5·I and Ω_T from the current weights (float64 SVD)."""
        w = self.last_weight().double()
        sigma = w @ w.T + 1e-5 * torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        self.sigma.copy_(sigma)
        self.omega.copy_(mrn_precision(sigma))

    def prior_penalty(self) -> torch.Tensor:
        """tr(Ω_T·W Wᵀ) for one training step; counts the step and refreshes Ω_T every ``update_every``."""
        self._steps += 1
        self.steps.fill_(self._steps)
        if self._steps % self.update_every == 0:
            self.update_prior()
        w = self.last_weight()
        return (self.omega * (w @ w.T)).sum()

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The estimated task covariance Σ_T and precision Ω_T."""
        return {"MRN task covariance Σ_T": self.sigma, "MRN task precision Ω_T": self.omega}


def _sync_steps(module: nn.Module, incompatible: Any) -> None:
    """After ``load_state_dict``: the host-side step count follows the loaded buffer (a one-off sync)."""
    assert isinstance(module, MRNNet)  # the hook is registered on MRNNet only
    module._steps = int(module.steps)


def _build_mrn(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    trade_off = float(hp["trade_off"])
    model = MRNNet(info, **_hard_share_arch(hp), update_every=int(hp["update_every"]))

    def penalty(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """trade_off·tr(Ω_T W Wᵀ): MRN's tensor-normal prior on the last task-specific layer."""
        return trade_off * model.prior_penalty()  # type: ignore[operator]

    return MethodParts(model, penalties=(penalty,) if trade_off else (), shared_parameters=_shared_bottom)


# ---------------------------------------------------------------------- registry
# Spaces follow TOMATO §5.3's model-specific grids (inter-task ℓ2 and MRN's prior weight {0, 1e-4 … 1}, MRN's
# update frequency {30, 100}, MMoE's experts {1, 2, 4, 8}); the architecture and dropout spaces are the
# hard-share family's (`baselines.ARCH_PARAMS`).
INTER_TASK_L2_PARAMS: tuple[HParam, ...] = (
    *HARD_SHARE_PARAMS,
    HParam("mu", "float", 1e-2, "μ: weight of Σ_{i<j}‖W_i − W_j‖² over the task heads (0 = off: hard-share)",
           low=0.0, space=log_range(1e-4, 1.0, off=0.0)),
)
MMOE_PARAMS: tuple[HParam, ...] = (
    *HARD_SHARE_PARAMS,
    HParam("n_experts", "int", 4, "shared experts every task's gate mixes", low=1, space=choice(1, 2, 4, 8)),
    HParam("expert_dim", "int", 32, "width of each expert (one ReLU layer on φ)", low=1, space=choice(16, 32, 64)),
)
MRN_PARAMS: tuple[HParam, ...] = (
    *HARD_SHARE_PARAMS,
    HParam("trade_off", "float", 1e-2, "weight of the task-covariance prior tr(Ω_T W Wᵀ) (0 = off: hard-share)",
           low=0.0, space=log_range(1e-4, 1.0, off=0.0)),
    HParam("update_every", "int", 100, "training steps between re-estimates of Ω_T", low=1, space=choice(30, 100)),
)
DMTRL_PARAMS: tuple[HParam, ...] = (
    *arch_params(head_doc="width of the one task-specific hidden layer, the Tucker-factorised one (one entry)"),
    HParam("eps", "float", 0.1, "relative precision of the warm start's truncated HOSVD: singular values below "
           "eps × the largest are dropped (0 = off: full ranks, no low-rank tie)", low=0.0, high=1.0,
           high_open=True, space=log_range(1e-2, 0.5, off=0.0)),
)

_PAPER = "TOMATO (Wang et al.) Table 3 baseline; "
register(MethodInfo(
    name="inter-task-l2",
    summary="Hard-share + μ·Σ_{i<j}‖W_i − W_j‖² over the task heads' weights and biases (unordered pairs).",
    paper=_PAPER + "Evgeniou & Pontil 2004 style mean-regularised MTL (TOMATO's [7])",
    build=_build_inter_task_l2,
    params=INTER_TASK_L2_PARAMS, grid={**ARCH_GRID, "mu": [1e-3, 1e-2]},
    row_separable=True,
))
register(MethodInfo(
    name="cross-stitch",
    summary="Hard-share whose per-task towers are mixed per hidden unit by learned T×T cross-stitch units α.",
    paper=_PAPER + "Misra et al., Cross-stitch networks for multi-task learning, CVPR 2016",
    build=lambda info, hp: MethodParts(CrossStitchNet(info, **_hard_share_arch(hp)),
                                       shared_parameters=_stitch_shared),
    params=HARD_SHARE_PARAMS, grid=ARCH_GRID,
    row_separable=True,
))
register(MethodInfo(
    name="mmoe",
    summary="Multi-gate mixture of experts on a shared bottom: per-task softmax gates over shared experts.",
    paper=_PAPER + "Ma et al., Modeling task relationships in multi-task learning with MMoE, KDD 2018",
    build=lambda info, hp: MethodParts(MMoENet(info, **_hard_share_arch(hp), n_experts=int(hp["n_experts"]),
                                               expert_dim=int(hp["expert_dim"])), shared_parameters=_mmoe_shared),
    params=MMOE_PARAMS, grid=ARCH_GRID,
    row_separable=True,
))
register(MethodInfo(
    name="mrn",
    summary="Hard-share + MRN's task-covariance prior trade_off·tr(Ω_T W Wᵀ) on the last head layer, "
            "Ω_T re-estimated every update_every steps.",
    paper=_PAPER + "Long et al., Learning multiple tasks with multilinear relationship networks, NeurIPS 2017",
    build=_build_mrn,
    params=MRN_PARAMS,
    grid={**ARCH_GRID, "trade_off": [1e-3, 1e-2]},
    row_separable=True,
))


# ---------------------------------------------------------------------- dmtrl-tucker
def hosvd(W: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Truncated higher-order SVD of a 3-way tensor: ``W ≈ core ×₀ U₀ ×₁ U₁ ×₂ U₂``.

    Mode m keeps the left singular vectors of its unfolding whose singular value exceeds ``eps`` times the
    largest (``eps=0``: all, an exact decomposition) — the relative-precision rule of DMTRL's
    ``interpolative.svd(eps_or_k=0.1)``. Computed in float64; returned in ``W``'s dtype."""
    if W.dim() != 3:
        raise ValueError(f"hosvd expects a 3-way tensor, got shape {tuple(W.shape)}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must lie in [0, 1), got {eps}")
    X = W.detach().double()
    us = []
    for m in range(3):
        unf = X.movedim(m, 0).reshape(X.shape[m], -1)
        u, s, _ = torch.linalg.svd(unf, full_matrices=False)
        keep = max(1, int((s > eps * s[0]).sum())) if s[0] > 0 else 1
        us.append(u[:, :keep])
    core = torch.einsum("abc,ai,bj,ck->ijk", X, *us)
    return core.to(W.dtype), [u.to(W.dtype) for u in us]


class DMTRLTuckerNet(nn.Module):
    """Shared bottom φ, then the task-specific hidden layer whose weights ``W [T, in, hd]`` are a Tucker
    product ``core ×₀ U_task ×₁ U_in ×₂ U_out`` (all trainable, recomposed every forward pass; per-task
    biases), then per-task output layers (not factorised). Yang & Hospedales' DMTRL as TOMATO runs it
    (METHOD_NOTES §1): `warm_start` factorises a trained hard-share model's first head layer by truncated
    HOSVD at relative precision ``eps`` and copies its bottom and output layers."""

    def __init__(self, info: DataInfo, hidden: list[int], head_hidden: list[int], activation: str,
                 dropout: float, eps: float) -> None:
        super().__init__()
        if not hidden or len(head_hidden) != 1:
            raise ValueError("dmtrl-tucker needs a shared bottom (hidden=[...]) and exactly one task-specific "
                             f"hidden layer (head_hidden=[hd]); got hidden={hidden}, head_hidden={head_hidden}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"dmtrl-tucker's eps (relative precision of the Tucker factorisation) must lie in "
                             f"[0, 1), got {eps}")
        self.shared, self.n_tasks, self.eps = info.shared, info.n_tasks, float(eps)
        T, n, hd = info.n_tasks, hidden[-1], head_hidden[0]
        self.bottom = MLP([info.n_features, *hidden], activation, dropout, last_activation=True)
        init = TaskLinear(T, n, hd)  # like hard-share's head layer, factorised exactly (full ranks)
        assert init.bias is not None  # TaskLinear's default bias=True
        self.bias = nn.Parameter(init.bias.detach().clone())
        self._set_factors(init.weight.detach(), 0.0)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = TaskLinear(T, hd, info.spec.n_outputs)

    def _set_factors(self, W: torch.Tensor, eps: float) -> None:
        core, (u_task, u_in, u_out) = hosvd(W, eps)
        self.core = nn.Parameter(core)
        self.u_task, self.u_in, self.u_out = nn.Parameter(u_task), nn.Parameter(u_in), nn.Parameter(u_out)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # A saved model's Tucker ranks come from its warm start: take the stored shapes before loading.
        for name in ("core", "u_task", "u_in", "u_out"):
            v = state_dict.get(prefix + name)
            p = getattr(self, name)
            if v is not None and v.shape != p.shape:
                setattr(self, name, nn.Parameter(torch.empty(v.shape, dtype=p.dtype, device=p.device)))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def ranks(self) -> tuple[int, int, int]:
        """Tucker ranks (task, input, output)."""
        return tuple(self.core.shape)  # type: ignore[return-value]

    def hidden_weight(self) -> torch.Tensor:
        """The recomposed task-specific weights ``[T, in, hd]``."""
        return torch.einsum("abc,ta,ib,oc->tio", self.core, self.u_task, self.u_in, self.u_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottom(_flatten(x, self.shared, self.n_tasks))
        W = self.hidden_weight()
        h = torch.einsum("bi,tio->tbo" if z.dim() == 2 else "tbi,tio->tbo", z, W) + self.bias[:, None, :]
        return self.out(self.drop(self.act(h)))

    @torch.no_grad()
    def warm_start(self, pre: nn.Module) -> None:
        """Initialise from a trained hard-share model: its bottom and output layers, and the Tucker factors
        of its first head layer at relative precision ``eps`` (the ranks shrink accordingly)."""
        if not isinstance(pre, HardShareNet):
            raise TypeError(f"dmtrl-tucker warm-starts from a hard-share model, got {type(pre).__name__}")
        layers = pre.heads.linear_layers()
        if len(layers) != 2:
            raise ValueError("the hard-share model must have exactly one head hidden layer")
        self.bottom.load_state_dict(pre.bottom.state_dict())
        first, last = layers
        dev = self.core.device
        self._set_factors(first.weight.detach().to(dev), self.eps)
        assert first.bias is not None, "hard-share's head layers have a bias"
        self.bias.copy_(first.bias)
        self.out.load_state_dict(last.state_dict())

    def task_relations(self) -> dict[str, torch.Tensor]:
        """Cosine similarity of the tasks' rows of the task factor U_task: tasks the factorisation groups."""
        u = torch.nn.functional.normalize(self.u_task.detach(), dim=1)
        return {"DMTRL task-factor cosine similarity": u @ u.T}


def _build_dmtrl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    model = DMTRLTuckerNet(info, **_arch(hp), eps=float(hp["eps"]))
    return MethodParts(model, shared_parameters=_shared_bottom, warm_start=model.warm_start)


register(MethodInfo(
    name="dmtrl-tucker",
    summary="Deep multi-task representation learning: the task-specific hidden layer as a trainable Tucker "
            "factorisation, initialised by truncated HOSVD (relative precision eps) of a trained hard-share model.",
    paper=_PAPER + "Yang & Hospedales, Deep multi-task representation learning: a tensor factorisation "
                   "approach, ICLR 2017",
    build=_build_dmtrl, pretrain="hard-share",
    params=DMTRL_PARAMS, grid=ARCH_GRID,
    row_separable=True,
))
