"""The shallow baselines of Deep-AMTFL's Table 1 (Lee, Yang & Hwang, AAAI 2018): ``go-mtl``, ``amtl``, ``nn``,
``mt-nn`` (``stl-linear`` is `mtlkit.methods.linear`).

* ``nn`` — the paper's NN: one hidden layer shared by all tasks, a linear output per task. Its loss is the
  plain sum over all training rows, so large tasks weigh more: ``Σ_t (N_t / Σ_s N_s) L_t`` with ``L_t`` the
  task's mean loss (the Trainer's ``(1/T) Σ_t L_t`` plus a re-weighting penalty). ``lam``: ``(λ/T)‖L‖²_F`` on
  the hidden weights.
* ``mt-nn`` — the same network with every task's loss divided by ``N_t`` (the Trainer's per-task means: every
  task counts equally) and ``(μ/T)‖S‖₁`` on the last layer (sub-gradient), plus ``(λ/T)‖L‖²``. This is AMTFL
  with α = γ = δ = 0 (same `AmtflNet`, no feedback).
* ``go-mtl`` — Kumar & Daumé (ICML 2012), paper Eq. 3: ``W = LS``, ``min Σ_t L_t(L s_t) + μ‖S‖₁ + λ‖L‖²_F``
  with ``L_t`` the task's *mean* loss (squared for regression, logistic for binary tasks) and an unpenalised
  intercept per task. Own solver (`go_mtl_fit`), alternating: the S-step solves the T ℓ1 problems together by
  FISTA (soft-thresholding prox, step 1/Lipschitz); the L-step is the closed form
  ``vec(L) = (λI + Σ_t s_t s_tᵀ ⊗ C_t)⁻¹ Σ_t vec(r_t s_tᵀ)`` (``C_t = X_tᵀX_t/N_t``, ``r_t = X_tᵀy_t/N_t`` on
  task-centred data) for regression, accelerated gradient on the smooth logistic objective for binary tasks.
  L starts from the top-k left singular vectors of the per-task ridge solution (ridge on the 0/1 labels for
  binary tasks), S from ``Lᵀ W_stl``.
* ``amtl`` — Lee, Yang & Hwang (ICML 2016), paper Eq. 4:
  ``Σ_t (1 + μ‖b_t^o‖₁) L_t(w_t) + λ‖W − WB‖²_F`` with ``B_tt = 0`` and, when ``nonneg``, ``B ≥ 0``; ``b_t^o`` is
  row t of B (task t's *outgoing* transfer, as the paper and the authors' regression code; their
  classification code uses the column). Choices (METHOD_NOTES §4): a linear model per task with an unpenalised
  intercept; μ is the notes' constant ``c`` (no ``sf/N_t^σ`` schedule); W and B are trained jointly by the
  Trainer with the objective divided by T, B projected (diagonal 0, clamp ≥ 0) after every step; B starts at 0
  and W like ``nn.Linear`` (not the authors' alternating MATLAB solver with STL warm start, Frank-Wolfe B-step
  and ``ΣB = T`` renormalisation).
* ``deep-amtl`` — the paper's Table 2 baseline "Deep-AMTL": AMTL's objective on the *last layer* of a deep network
  (MT-CNN with the AMTL loss). The backbone is ``deep-amtfl``'s (``backbone`` mlp / cnn, ``hidden``,
  ``channels``, ``activation``; no feedback autoencoder), the task weights ``S`` [k, T] play AMTL's ``W`` and the
  Trainer minimises ``(1/T)[Σ_t (1 + μ‖b_t^o‖₁)(L_t + δ/√N_t) + λ_B‖S − SB‖²_F + λ Σ_l ‖W_l‖²_F]``: ``mu`` the
  loss-weighted ℓ1 on B's rows, ``lam_b`` the reconstruction weight λ_B, ``lam`` the backbone's ℓ2 and
  ``delta`` the ``δ/√N_t`` proxy with N_t from ``DataInfo.train_sizes`` or ``task_sizes`` (all as in
  ``deep-amtfl``; the paper's Eq. 4 has no δ term, Deep-AMTL inherits it from the deep objective it compares against).
  B starts at 0, is learned jointly and projected (diagonal 0, ≥ 0 when ``nonneg``) after every step. No ℓ1 on S (the
  AMTL objective *replaces* MT-CNN's loss). ``task_relations()`` → B.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch, DeviceData
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.amtfl import (
    DEEP_BACKBONE_PARAMS,
    TASK_SIZES_PARAM,
    AmtflNet,
    TaskLossOn,
    _check_kind,
    _check_nonneg,
    _Proxy,
    _sizes,
    amtfl_penalty,
    deep_backbone,
    l2_sum,
    mlp_backbone,
    soft_threshold,
)
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty, Prox
from mtlkit.methods.registry import register
from mtlkit.nn import TaskLinear
from mtlkit.nn.task_layers import ACTIVATIONS

_PAPER = "Baseline of Lee, Yang & Hwang, AAAI 2018 (Deep-AMTFL) Table 1"


def _flat(x: torch.Tensor, shared: bool, n_tasks: int) -> torch.Tensor:
    return x.reshape(x.shape[0], -1) if shared else x.reshape(n_tasks, x.shape[1], -1)


def _hidden(hp: dict[str, Any], method: str) -> int:
    k = hp["hidden"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{method}'s hidden (units of the one hidden layer) must be a positive int, got {k!r}")
    return k


# ---------------------------------------------------------------------- nn / mt-nn
def pooled_weighting(spec: TaskSpec, sizes: torch.Tensor, lam: float) -> Penalty:
    """Turns the Trainer's ``(1/T) Σ_t L_t`` into the pooled ``Σ_t (N_t/ΣN) L_t``, plus ``(λ/T)‖L‖²``."""
    task_loss = TaskLossOn(spec)
    T = spec.n_tasks
    extra = sizes / sizes.mean() - 1.0  # (1/T)(N_t/N̄ − 1): added to the Trainer's 1/T
    cache: dict[tuple[Any, Any], torch.Tensor] = {}

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, AmtflNet)
        key = (out.pred.device, out.pred.dtype)
        if key not in cache:
            cache[key] = extra.to(device=out.pred.device, dtype=out.pred.dtype)
        total = (cache[key] * task_loss(out.pred, batch)).sum()
        if lam:
            total = total + lam * l2_sum(model)
        return total / T

    return pen


def _backbone_params(model: nn.Module) -> list[nn.Parameter]:
    """The shared parameters of the NN / MT-NN / deep-AMTL family: its backbone's."""
    return list(model.get_submodule("backbone").parameters())


def build_nn(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """The paper's NN: shared hidden layer + per-task linear outputs, loss pooled over all rows."""
    _check_nonneg(hp, ("lam",))
    k = _hidden(hp, "nn")
    model = AmtflNet(info, mlp_backbone(info, [k], hp["activation"]), k, hp["activation"], feedback=False)
    return MethodParts(model, penalties=[pooled_weighting(info.spec, _sizes(info), float(hp["lam"]))],
                       shared_parameters=_backbone_params)


def build_mt_nn(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """MT-NN: NN with per-task mean losses (divided by N_t) and ℓ1 μ on the last layer."""
    _check_nonneg(hp, ("mu", "lam"))
    k = _hidden(hp, "mt-nn")
    model = AmtflNet(info, mlp_backbone(info, [k], hp["activation"]), k, hp["activation"], feedback=False)
    pen = amtfl_penalty(info.spec, _sizes(info), 0.0, 0.0, float(hp["mu"]), float(hp["lam"]), 0.0)
    return MethodParts(model, penalties=[pen], shared_parameters=_backbone_params)


# ---------------------------------------------------------------------- AMTL
class AmtlNet(nn.Module):
    """A linear model per task (``W`` [d, T] as `TaskLinear` weights) and the task-to-task transfer ``B`` [T, T]
    (row t: task t's outgoing transfer; ``w_s ≈ Σ_t B_ts w_t``)."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        if info.spec.n_outputs != 1:
            raise ValueError("amtl handles regression or binary tasks (one output per task)")
        self.shared, self.n_tasks = info.shared, info.n_tasks
        self.linear = TaskLinear(info.n_tasks, info.n_features, 1)
        self.B = nn.Parameter(torch.zeros(info.n_tasks, info.n_tasks))

    @property
    def W(self) -> torch.Tensor:
        """Task weights as the paper's ``W`` [d, T]."""
        return self.linear.weight[..., 0].T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_flat(x, self.shared, self.n_tasks))

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The learned asymmetric transfer ``B`` (row: from task, column: to task)."""
        return {"AMTL transfer B (from × to)": self.B.detach()}


def amtl_penalty(spec: TaskSpec, mu: float, lam: float) -> Penalty:
    """``(1/T)[Σ_t μ‖b_t^o‖₁ L_t + λ‖W − WB‖²_F]``: with the Trainer's ``(1/T) Σ_t L_t``, Eq. 4 divided by T."""
    task_loss = TaskLossOn(spec)
    T = spec.n_tasks

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, AmtlNet)
        total = torch.zeros((), dtype=out.pred.dtype, device=out.pred.device)
        if mu:
            total = total + mu * (model.B.abs().sum(1) * task_loss(out.pred, batch)).sum()
        if lam:
            W = model.W
            total = total + lam * (W - W @ model.B).pow(2).sum()
        return total / T

    return pen


def amtl_projection(nonneg: bool) -> Prox:
    """After each step: ``B_tt = 0`` and, when ``nonneg``, ``B ≥ 0`` (`AmtlNet` or `DeepAmtlNet`)."""

    def prox(model: nn.Module, lr: float) -> None:
        assert isinstance(model, (AmtlNet, DeepAmtlNet))
        if nonneg:
            model.B.clamp_(min=0.0)
        model.B.fill_diagonal_(0.0)

    return prox


def _check_nonneg_flag(hp: dict[str, Any], method: str) -> None:
    if not isinstance(hp["nonneg"], bool):
        raise ValueError(f"{method}'s nonneg must be True or False, got {hp['nonneg']!r}")


def build_amtl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """AMTL (Eq. 4) trained jointly by the Trainer with a projection of B after each step."""
    _check_nonneg(hp, ("mu", "lam"))
    _check_nonneg_flag(hp, "amtl")
    model = AmtlNet(info)
    return MethodParts(model, penalties=[amtl_penalty(info.spec, float(hp["mu"]), float(hp["lam"]))],
                       proxes=[amtl_projection(hp["nonneg"])])


# ---------------------------------------------------------------------- Deep-AMTL
class DeepAmtlNet(AmtflNet):
    """`AmtflNet` without feedback plus AMTL's task-to-task transfer ``B`` [T, T] on the last layer's ``S``
    (``s_j ≈ Σ_t B_tj s_t``; row t: task t's outgoing transfer)."""

    def __init__(self, info: DataInfo, backbone: nn.Module, k: int, activation: str = "relu",
                 flatten: bool = True) -> None:
        if info.spec.n_outputs != 1:
            raise ValueError("deep-amtl handles regression or binary tasks (one output per task)")
        super().__init__(info, backbone, k, activation, feedback=False, flatten=flatten)
        self.B = nn.Parameter(torch.zeros(info.n_tasks, info.n_tasks))

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The learned asymmetric transfer ``B`` between the last layer's task weights (row: from, column: to)."""
        return {"Deep-AMTL transfer B (from × to)": self.B.detach()}


def deep_amtl_penalty(spec: TaskSpec, sizes: torch.Tensor, mu: float, lam_b: float, lam: float,
                      delta: float) -> Penalty:
    """Beyond the Trainer's ``(1/T) Σ_t L_t``: ``(1/T)[Σ_t μ‖b_t^o‖₁(L_t + δ/√N_t) + δ/√N_t + λ_B‖S − SB‖²_F
    + λ Σ_l ‖W_l‖²_F]`` (the δ/√N_t without μ is a constant, kept so the objective reads as deep-amtfl's)."""
    task_loss = TaskLossOn(spec)
    proxy = _Proxy(delta, sizes)
    T = spec.n_tasks

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, DeepAmtlNet)
        d = proxy.on(out.pred)
        total = d.sum()
        if mu:
            total = total + mu * (model.B.abs().sum(1) * (task_loss(out.pred, batch) + d)).sum()
        if lam_b:
            S = model.S
            total = total + lam_b * (S - S @ model.B).pow(2).sum()
        if lam:
            total = total + lam * l2_sum(model)
        return total / T

    return pen


def build_deep_amtl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """Deep-AMTL: deep-amtfl's backbone, no feedback, AMTL's B on the last layer's S (projected after each step)."""
    _check_kind(info, "deep-amtl")
    _check_nonneg(hp, ("mu", "lam_b", "lam", "delta"))
    _check_nonneg_flag(hp, "deep-amtl")
    backbone, k, flat = deep_backbone(info, hp)
    model = DeepAmtlNet(info, backbone, k, hp["activation"], flatten=flat)
    pen = deep_amtl_penalty(info.spec, _sizes(info, hp), float(hp["mu"]), float(hp["lam_b"]), float(hp["lam"]),
                            float(hp["delta"]))
    return MethodParts(model, penalties=[pen], proxes=[amtl_projection(hp["nonneg"])],
                       shared_parameters=_backbone_params)


# ---------------------------------------------------------------------- Go-MTL
class GoMtlNet(nn.Module):
    """Linear task predictors ``W = LS`` (``L`` [d, k] shared bases, ``S`` [k, T] sparse codes) + intercepts."""

    def __init__(self, info: DataInfo, k: int) -> None:
        super().__init__()
        if info.spec.n_outputs != 1:
            raise ValueError("go-mtl handles regression or binary tasks (one output per task)")
        if k > info.n_features:
            raise ValueError(f"go-mtl's k={k} exceeds the {info.n_features} input features")
        self.shared, self.n_tasks, self.kind = info.shared, info.n_tasks, info.spec.kind
        self.L = nn.Parameter(torch.zeros(info.n_features, k))
        self.S = nn.Parameter(torch.zeros(k, info.n_tasks))
        self.bias = nn.Parameter(torch.zeros(info.n_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W = self.L @ self.S  # [d, T]
        x = _flat(x, self.shared, self.n_tasks)
        eq = "bd,dt->tb" if self.shared else "tbd,dt->tb"
        return (torch.einsum(eq, x, W) + self.bias[:, None])[..., None]

    def task_relations(self) -> dict[str, torch.Tensor]:
        """|S| (basis × task): which latent bases each task uses."""
        return {"Go-MTL |S| (basis × task)": self.S.detach().abs()}


def go_mtl_l_step(C: torch.Tensor, R: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Closed-form L-step of squared-loss Go-MTL: ``argmin_L Σ_t (s_tᵀLᵀC_tLs_t − 2 r_tᵀLs_t) + λ‖L‖²_F``
    (i.e. ``Σ_t (1/N_t)‖y_t − X_tLs_t‖² + λ‖L‖²`` with ``C_t = X_tᵀX_t/N_t``, ``r_t = X_tᵀy_t/N_t``).

    ``C`` [T, d, d], ``R`` [T, d], ``S`` [k, T]; returns L [d, k] from the (dk × dk) normal equations
    ``(λI + Σ_t C_t ⊗ s_ts_tᵀ) vec_row(L) = vec_row(Σ_t r_t s_tᵀ)`` (row-major vec: the notes' formula, transposed).
    """
    d, k = C.shape[-1], S.shape[0]
    M = torch.einsum("tab,it,jt->aibj", C, S, S).reshape(d * k, d * k)
    rhs = torch.einsum("ta,it->ai", R, S).reshape(d * k)
    M = M + lam * torch.eye(d * k, dtype=C.dtype, device=C.device)
    sol = torch.linalg.solve(M, rhs) if lam > 0 else torch.linalg.lstsq(M, rhs[:, None]).solution[:, 0]
    return sol.reshape(d, k)


def _lasso_fista(G: torch.Tensor, h: torch.Tensor, s0: torch.Tensor, mu: float, iters: int) -> torch.Tensor:
    """T lasso problems at once: ``argmin_s sᵀG_ts − 2h_tᵀs + μ‖s‖₁`` (``G`` [T, k, k], ``h`` [T, k]) by FISTA."""
    lip = 2.0 * torch.linalg.eigvalsh(G)[:, -1].clamp_min(1e-12)  # [T]
    step = (1.0 / lip)[:, None]
    s, y, t = s0.clone(), s0.clone(), 1.0
    for _ in range(iters):
        grad = 2.0 * (torch.einsum("tij,tj->ti", G, y) - h)
        s_new = soft_threshold(y - step * grad, mu * step)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        y = s_new + ((t - 1.0) / t_new) * (s_new - s)
        s, t = s_new, t_new
    return s


def _masked_design(train: DeviceData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 ``X`` [T, N, d] (rows outside the mask zeroed), ``y`` [T, N], mask [T, N] (float), ``n`` [T]."""
    T = train.n_tasks
    x = _flat(train.x, train.shared, T).double()
    if train.shared:
        x = x.expand(T, *x.shape)
    m = train.mask.double()
    return x * m[..., None], train.y.double() * m, m, m.sum(1).clamp_min(1.0)


def _logistic_loss(z: torch.Tensor, y: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-task mean logistic loss [T] of logits ``z`` [T, N]."""
    return (F.binary_cross_entropy_with_logits(z, y, reduction="none") * m).sum(1) / n


def go_mtl_fit(train: DeviceData, kind: str, k: int, mu: float, lam: float, iters: int = 20,
               inner: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alternating Go-MTL (see the module docstring) on padded training tensors; returns float64
    ``L`` [d, k], ``S`` [k, T], intercepts [T]."""
    x, y, m, n = _masked_design(train)
    d = x.shape[-1]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    # task-centred data: the regression problem (intercepts drop out); for binary tasks only the initial
    # ridge on the 0/1 labels uses it
    xm, ym = x.sum(1) / n[:, None], y.sum(1) / n
    xc, yc = (x - xm[:, None, :]) * m[..., None], (y - ym[:, None]) * m
    C = xc.transpose(1, 2) @ xc / n[:, None, None]
    R = torch.einsum("tnd,tn->td", xc, yc) / n[:, None]
    W_stl = torch.linalg.solve(C + max(lam, 1e-3) * eye, R[..., None])[..., 0].T  # [d, T]
    U = torch.linalg.svd(W_stl, full_matrices=True)[0]
    L = U[:, :k].clone()
    S = L.T @ W_stl
    if kind == "regression":
        for _ in range(iters):
            G = torch.einsum("dk,tde,ej->tkj", L, C, L)
            h = R @ L
            S = _lasso_fista(G, h, S.T, mu, inner).T
            L = go_mtl_l_step(C, R, S, lam)
        b = ym - torch.einsum("td,dt->t", xm, L @ S)
        return L, S, b
    b = torch.logit((y.sum(1) / n).clamp(1e-3, 1 - 1e-3))
    for _ in range(iters):
        S, b = _logistic_s_step(x, y, m, n, L, S, b, mu, inner)
        L = _logistic_l_step(x, y, m, n, L, S, b, lam, inner)
    return L, S, b


def _logistic_s_step(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, n: torch.Tensor, L: torch.Tensor,
                     S: torch.Tensor, b: torch.Tensor, mu: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FISTA on ``Σ_t ℓ_t(XLs_t + b_t) + μ‖S‖₁`` over (S, b), all tasks at once; step 1/Lipschitz per task."""
    z = x @ L  # [T, N, k]
    zb = torch.cat([z, m[..., None]], -1)  # intercept column
    lip = 0.25 * torch.linalg.eigvalsh(zb.transpose(1, 2) @ zb / n[:, None, None])[:, -1].clamp_min(1e-12)
    step = (1.0 / lip)[:, None]
    theta = torch.cat([S.T, b[:, None]], 1)  # [T, k+1]
    prev, yv, t = theta.clone(), theta.clone(), 1.0
    for _ in range(iters):
        logits = torch.einsum("tnk,tk->tn", zb, yv)
        g = torch.einsum("tnk,tn->tk", zb, (torch.sigmoid(logits) - y) * m) / n[:, None]
        cur = yv - step * g
        cur = torch.cat([soft_threshold(cur[:, :-1], mu * step), cur[:, -1:]], 1)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        yv = cur + ((t - 1.0) / t_new) * (cur - prev)
        prev, t = cur, t_new
    return prev[:, :-1].T.contiguous(), prev[:, -1].contiguous()


def _logistic_l_step(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, n: torch.Tensor, L: torch.Tensor,
                     S: torch.Tensor, b: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Nesterov-accelerated gradient on the smooth ``Σ_t ℓ_t(X_tLs_t + b_t) + λ‖L‖²`` over L."""
    lmax = torch.linalg.eigvalsh(x.transpose(1, 2) @ x / n[:, None, None])[:, -1]  # [T]
    lip = float(0.25 * (lmax * S.pow(2).sum(0)).sum() + 2.0 * lam)
    step = 1.0 / max(lip, 1e-12)
    prev, yv, t = L.clone(), L.clone(), 1.0
    for _ in range(iters):
        logits = torch.einsum("tnd,dk,kt->tn", x, yv, S) + b[:, None]
        r = (torch.sigmoid(logits) - y) * m / n[:, None]  # [T, N]
        g = torch.einsum("tnd,tn,kt->dk", x, r, S) + 2.0 * lam * yv
        cur = yv - step * g
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        yv = cur + ((t - 1.0) / t_new) * (cur - prev)
        prev, t = cur, t_new
    return prev


def go_mtl_objective(train: DeviceData, kind: str, L: torch.Tensor, S: torch.Tensor, b: torch.Tensor, mu: float,
                     lam: float) -> torch.Tensor:
    """Eq. 3 with per-task mean losses: ``Σ_t L_t(Ls_t, b_t) + μ‖S‖₁ + λ‖L‖²_F``."""
    x, y, m, n = _masked_design(train)
    logits = torch.einsum("tnd,dt->tn", x, L @ S) + b[:, None]
    loss = ((logits - y).pow(2) * m).sum(1) / n if kind == "regression" else _logistic_loss(logits, y, m, n)
    return loss.sum() + mu * S.abs().sum() + lam * L.pow(2).sum()


def _go_mtl_train(parts: MethodParts, train: DeviceData, hp: dict[str, Any]) -> None:
    model = parts.model
    assert isinstance(model, GoMtlNet)
    L, S, b = go_mtl_fit(train, model.kind, model.L.shape[1], float(hp["mu"]), float(hp["lam"]), int(hp["iters"]),
                         int(hp["inner"]))
    with torch.no_grad():
        model.L.copy_(L.to(model.L))
        model.S.copy_(S.to(model.S))
        model.bias.copy_(b.to(model.bias))


def build_go_mtl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """Go-MTL's model; its parameters are set by `go_mtl_fit` (the registry's ``fit``)."""
    _check_nonneg(hp, ("mu", "lam"))
    for name in ("k", "iters", "inner"):
        v = hp[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"go-mtl's {name} must be a positive int, got {v!r}")
    return MethodParts(GoMtlNet(info, int(hp["k"])))


# ---------------------------------------------------------------------- declarations
# Grids are not in the paper ("found with a separate validation set"); every weight's space spans the default
# selection grid by at least a decade on each side and, where the objective stays well posed, includes 0 = off.
_ACTIVATION = HParam("activation", "str", "relu", "activation of the hidden layers", choices=tuple(ACTIVATIONS))
_HIDDEN = HParam("hidden", "int", 32, "units of the one shared hidden layer", low=1, space=choice(16, 32, 64, 128))
_LAM_L2 = HParam("lam", "float", 1e-4, "λ: ℓ2 (λ/T)‖L‖²_F on the hidden layer's weights (0 = off)", low=0.0,
                 space=log_range(1e-6, 1e-2, off=0.0))
NN_PARAMS: tuple[HParam, ...] = (_HIDDEN, _ACTIVATION, _LAM_L2)
MT_NN_PARAMS: tuple[HParam, ...] = (
    _HIDDEN, _ACTIVATION,
    HParam("mu", "float", 1e-4, "μ: ℓ1 (μ/T)‖S‖₁ on the last layer's task weights (0 = off)", low=0.0,
           space=log_range(1e-6, 1e-1, off=0.0)),
    _LAM_L2,
)
GO_MTL_PARAMS: tuple[HParam, ...] = (
    HParam("k", "int", 5, "number of latent bases (columns of L; at most the number of features); chosen by "
           "validation in Kumar & Daumé", low=1, space=choice(2, 5, 10, 20)),
    HParam("mu", "float", 1e-2, "μ: ℓ1 μ‖S‖₁ on the task codes (0 = off)", low=0.0,
           space=log_range(1e-4, 1.0, off=0.0)),
    HParam("lam", "float", 1e-2, "λ: ℓ2 λ‖L‖²_F on the bases. Its space has no off value: with λ = 0 the L-step "
           "(λI + Σ_t s_t s_tᵀ ⊗ C_t) is singular once a code s_t is zero, and the logistic L-step unbounded",
           low=0.0, space=log_range(1e-4, 1.0)),
    HParam("iters", "int", 20, "alternations of S-step and L-step", low=1),
    HParam("inner", "int", 100, "FISTA (S-step) and accelerated-gradient (logistic L-step) iterations per step",
           low=1),
)
_NONNEG = HParam("nonneg", "bool", True, "keep the transfer B ≥ 0 (projected after every step)")
AMTL_PARAMS: tuple[HParam, ...] = (
    HParam("mu", "float", 0.1, "μ: loss-weighted ℓ1 (1 + μ‖b_t^o‖₁)L_t on B's rows, task t's outgoing transfer "
           "(0 = off)", low=0.0, space=log_range(1e-3, 10.0, off=0.0)),
    HParam("lam", "float", 1.0, "λ: weight of ‖W − WB‖²_F, the tasks' reconstruction from each other (0 = off: "
           "nothing ties the tasks)", low=0.0, space=log_range(1e-2, 100.0, off=0.0)),
    _NONNEG,
)
DEEP_AMTL_PARAMS: tuple[HParam, ...] = (
    *(_ACTIVATION if p.name == "activation" else p for p in DEEP_BACKBONE_PARAMS),
    HParam("mu", "float", 0.1, "μ: loss-weighted ℓ1 μ‖b_t^o‖₁(L_t + δ/√N_t) on B's rows (0 = off)", low=0.0,
           space=log_range(1e-3, 10.0, off=0.0)),
    HParam("lam_b", "float", 0.1, "λ_B: weight of ‖S − SB‖²_F on the last layer's task weights (0 = off)",
           low=0.0, space=log_range(1e-3, 10.0, off=0.0)),
    HParam("lam", "float", 1e-4, "λ: ℓ2 on the backbone's weights, biases excluded (0 = off)", low=0.0,
           space=log_range(1e-6, 1e-2, off=0.0)),
    HParam("delta", "float", 0.1, "δ: the bound proxy δ/√N_t inside μ's weight (0 = off)", low=0.0,
           space=log_range(1e-3, 1.0, off=0.0)),
    TASK_SIZES_PARAM,
    _NONNEG,
)

register(MethodInfo(
    name="nn",
    summary="NN: one hidden layer shared by all tasks + a linear output per task; loss pooled over all rows "
            "(large tasks weigh more).",
    paper=_PAPER, build=build_nn, params=NN_PARAMS,
    grid={"hidden": [16, 64], "lr": [1e-3, 1e-2]}, kinds=("regression", "binary", "multiclass"),
    row_separable=True,
))
register(MethodInfo(
    name="mt-nn",
    summary="MT-NN: NN with each task's loss divided by N_t (tasks count equally) and ℓ1 (mu) on the last layer.",
    paper=_PAPER, build=build_mt_nn, params=MT_NN_PARAMS,
    grid={"mu": [1e-4, 1e-2], "lr": [1e-3, 1e-2]}, kinds=("regression", "binary", "multiclass"),
    row_separable=True,
))
register(MethodInfo(
    name="go-mtl",
    summary="Go-MTL (Kumar & Daumé 2012): W = LS with ℓ1 (mu) on S and ℓ2 (lam) on L; alternating FISTA "
            "S-step and closed-form (squared loss) or accelerated-gradient (logistic) L-step.",
    paper="Kumar & Daumé, ICML 2012; " + _PAPER, build=build_go_mtl,
    params=GO_MTL_PARAMS,
    grid={"mu": [1e-3, 1e-2, 1e-1], "lam": [1e-3, 1e-1]}, kinds=("regression", "binary"), fit=_go_mtl_train,
))
register(MethodInfo(
    name="amtl",
    summary="AMTL (Lee et al. 2016): linear tasks, W ≈ WB with a sparse asymmetric transfer B (zero diagonal, "
            "optionally ≥ 0); outgoing transfer penalised in proportion to the task's loss (1+mu‖b_t^o‖₁)L_t.",
    paper="Lee, Yang & Hwang, ICML 2016; " + _PAPER, build=build_amtl,
    params=AMTL_PARAMS,
    grid={"mu": [0.01, 0.1, 1.0], "lam": [0.1, 1.0, 10.0]}, kinds=("regression", "binary"),
    row_separable=True,
))
register(MethodInfo(
    name="deep-amtl",
    summary="Deep-AMTL: AMTL on the last layer of an MLP or small CNN backbone (deep-amtfl's, no feedback): "
            "S ≈ SB with a sparse asymmetric B (zero diagonal, ≥ 0), outgoing transfer penalised by the task's "
            "loss μ‖b_t^o‖₁(L_t+δ/√N_t), reconstruction weight lam_b.",
    paper="Lee, Yang & Hwang, ICML 2016; Table 2 baseline of Lee, Yang & Hwang, AAAI 2018", build=build_deep_amtl,
    params=DEEP_AMTL_PARAMS,
    grid={"mu": [0.01, 0.1, 1.0], "lam_b": [0.01, 0.1, 1.0]}, kinds=("regression", "binary"),
    row_separable=True,
))
