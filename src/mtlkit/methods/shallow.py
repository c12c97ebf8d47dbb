"""Shallow (linear) MTL baselines of SRDML's Table 2, solved by accelerated proximal gradient (`optim.apg`):

* ``lasso`` — ``Σ_t L_t(w_t, b_t) + lam·Σ_t ‖w_t‖₁`` (Tibshirani 1996, per task; the tasks do not interact);
* ``l21`` — ``Σ_t L_t + lam·Σ_j ‖W_{:, j}‖₂``: joint feature selection, a feature is used by all tasks or by
  none (Argyriou et al. 2008; MALSAR Least_L21 / Logistic_L21);
* ``rmtl`` — robust MTL (Chen, Zhou & Ye, KDD 2011): ``W = L + S``, ``Σ_t L_t(l_t + s_t) + lam_l·‖L‖_* +
  lam_s·Σ_t ‖s_t‖₂``, a low-rank part shared by related tasks and a task-wise group-sparse part that lets
  outlier tasks leave it.

W is [T, d] (task axis first), biases b [T] are unpenalised. ``L_t`` is task t's loss averaged over its
labelled rows — squared error ``(x·w_t + b_t − y)²`` (regression; no ½, like `TaskLoss`) or logistic loss
(binary) — and the tasks' losses are summed, so every task counts equally whatever its size (MALSAR sums
unnormalised squared errors instead; our ``lam`` is on the per-row-mean scale). Only regression and binary
tasks are handled. The solver starts from W = 0 (MALSAR's RMTL starts S from L0, a quirk not copied).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import DeviceData
from mtlkit.hparams import HParam, log_range
from mtlkit.methods.base import MethodInfo, MethodParts
from mtlkit.methods.linear import LinearNet
from mtlkit.methods.registry import register
from mtlkit.optim.apg import APGResult, apg, power_lipschitz, prox_group, prox_trace, soft_threshold

SOLVER_PARAMS: tuple[HParam, ...] = (
    HParam("max_iter", "int", 2000, "FISTA iterations at most", low=1),
    HParam("tol", "float", 1e-6, "FISTA stops once a step moves the parameters by ≤ tol·max(1, ‖p‖)", low=0.0),
)
SOLVER_DEFAULTS: dict[str, Any] = {p.name: p.default for p in SOLVER_PARAMS}
LAM_GRID = [1e-3, 1e-2, 3e-2, 1e-1, 3e-1]
LASSO_PARAMS: tuple[HParam, ...] = (
    HParam("lam", "float", 1e-2, "ℓ1 weight lam·Σ_t ‖w_t‖₁ on the per-row-mean loss scale (0 = off)", low=0.0,
           space=log_range(1e-4, 3.0, off=0.0)),
    *SOLVER_PARAMS,
)
L21_PARAMS: tuple[HParam, ...] = (
    HParam("lam", "float", 1e-2, "ℓ2,1 weight lam·Σ_j ‖W[:, j]‖₂ over features (0 = off)", low=0.0,
           space=log_range(1e-4, 3.0, off=0.0)),
    *SOLVER_PARAMS,
)
RMTL_PARAMS: tuple[HParam, ...] = (
    HParam("lam_l", "float", 1e-1, "trace-norm weight lam_l·‖L‖_* on the shared low-rank part (0 = off)", low=0.0,
           space=log_range(1e-3, 10.0, off=0.0)),
    HParam("lam_s", "float", 1e-1, "group weight lam_s·Σ_t ‖s_t‖₂ on the task-wise outlier part (0 = off)",
           low=0.0, space=log_range(1e-3, 10.0, off=0.0)),
    *SOLVER_PARAMS,
)


class RMTLNet(LinearNet):
    """A linear model per task whose weights are ``L + S``; the two parts are kept as buffers ``low_rank``
    and ``sparse`` [T, d] (saved with the model) so the decomposition can be inspected."""

    low_rank: Tensor  # buffers, registered in __init__
    sparse: Tensor

    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.register_buffer("low_rank", torch.zeros(info.n_tasks, info.n_features))
        self.register_buffer("sparse", torch.zeros(info.n_tasks, info.n_features))

    def task_relations(self) -> dict[str, Tensor]:
        """Cosine similarity of the tasks' low-rank parts (0 for a task with none) and, as a [1, T] row, each
        task's ‖s_t‖₂: how far it leaves the shared subspace (RMTL's outlier tasks)."""
        L = self.low_rank.double()
        n = torch.linalg.vector_norm(L, dim=1)
        inv = torch.where(n > 0, 1.0 / n.clamp_min(1e-300), torch.zeros_like(n))
        return {"RMTL low-rank part: task cosine similarity": (L @ L.T) * inv[:, None] * inv[None, :],
                "RMTL group-sparse part: ||s_t||": torch.linalg.vector_norm(self.sparse.double(), dim=1)[None, :]}


# ---------------------------------------------------------------------- the smooth part
class TaskLossSum:
    """``Σ_t (1/n_t) Σ_i ℓ(x_ti·w_t + b_t, y_ti)`` on a whole training part, float64, batched over tasks.

    ``x`` [T, N, d] or shared [N, d], ``y`` [T, N], ``mask`` [T, N]; ``kind`` is regression (squared error)
    or binary (logistic loss on logits)."""

    def __init__(self, x: Tensor, y: Tensor, mask: Tensor, kind: str) -> None:
        if kind not in ("regression", "binary"):
            raise ValueError(f"the shallow solvers handle regression and binary tasks, not {kind!r}")
        self.x, self.y, self.kind = x.double(), y.double(), kind
        m = mask.double()
        self.w = m / m.sum(1, keepdim=True).clamp_min(1.0)  # row weights 1/n_t on labelled rows

    def predict(self, W: Tensor, b: Tensor) -> Tensor:
        """Linear predictions (logits for binary) [T, N]."""
        z = (self.x @ W.T).T if self.x.dim() == 2 else torch.bmm(self.x, W.unsqueeze(-1)).squeeze(-1)
        return z + b[:, None]

    def __call__(self, W: Tensor, b: Tensor) -> Tensor:
        z = self.predict(W, b)
        per_row = (z - self.y) ** 2 if self.kind == "regression" else F.softplus(z) - self.y * z
        return (self.w * per_row).sum()

    def gradient(self, W: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """∂/∂W [T, d] and ∂/∂b [T] in closed form (used by the optimality checks)."""
        z = self.predict(W, b)
        r = 2.0 * (z - self.y) if self.kind == "regression" else torch.sigmoid(z) - self.y
        r = self.w * r
        gW = r @ self.x if self.x.dim() == 2 else torch.bmm(r.unsqueeze(1), self.x).squeeze(1)
        return gW, r.sum(1)

    def lipschitz(self) -> float:
        """An upper bound of the gradient's Lipschitz constant in (W, b): c·max_t λmax(Z_tᵀ diag(w_t) Z_t),
        Z = [X, 1], c = 2 (squared error) or ¼ (logistic)."""
        T = self.w.shape[0]
        x = self.x.expand(T, *self.x.shape) if self.x.dim() == 2 else self.x
        z = torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)
        c = 2.0 if self.kind == "regression" else 0.25
        if z.shape[-1] <= 256:  # small d: the exact largest eigenvalue of the [T, d+1, d+1] weighted Gram
            gram = z.transpose(1, 2) @ (self.w.unsqueeze(-1) * z)
            return c * float(torch.linalg.eigvalsh(gram)[:, -1].max()) * 1.01
        return c * float(power_lipschitz(z, self.w).max())


def design(train: DeviceData) -> Tensor:
    """The training features flattened to vectors: [N, d] (shared input) or [T, N, d]."""
    x = train.x
    return x.reshape(x.shape[0], -1) if train.shared else x.reshape(train.n_tasks, x.shape[1], -1)


# ---------------------------------------------------------------------- solvers
def _check_hp(hp: dict[str, Any], penalties: tuple[str, ...]) -> None:
    for k in penalties:
        if not float(hp[k]) >= 0:
            raise ValueError(f"{k} must be >= 0, got {hp[k]!r}")
    if not isinstance(hp["max_iter"], int) or hp["max_iter"] < 1:
        raise ValueError(f"max_iter must be a positive integer, got {hp['max_iter']!r}")
    if not float(hp["tol"]) >= 0:
        raise ValueError(f"tol must be >= 0, got {hp['tol']!r}")


def solve_lasso(loss: TaskLossSum, lam: float, max_iter: int = 2000, tol: float = 1e-6) -> APGResult:
    """``min Σ_t L_t + lam·‖W‖₁`` over (W [T, d], b [T]) from zeros."""
    T, d = loss.w.shape[0], loss.x.shape[-1]
    z = (torch.zeros(T, d, dtype=torch.float64, device=loss.x.device),
         torch.zeros(T, dtype=torch.float64, device=loss.x.device))
    return apg(lambda p: loss(*p), lambda p, s: (soft_threshold(p[0], s * lam), p[1]), z,
               penalty=lambda p: lam * p[0].abs().sum(), lipschitz=loss.lipschitz(), max_iter=max_iter, tol=tol)


def solve_l21(loss: TaskLossSum, lam: float, max_iter: int = 2000, tol: float = 1e-6) -> APGResult:
    """``min Σ_t L_t + lam·Σ_j ‖W_{:, j}‖₂`` (ℓ2,1 over feature rows shared by all tasks) from zeros."""
    T, d = loss.w.shape[0], loss.x.shape[-1]
    z = (torch.zeros(T, d, dtype=torch.float64, device=loss.x.device),
         torch.zeros(T, dtype=torch.float64, device=loss.x.device))
    return apg(lambda p: loss(*p), lambda p, s: (prox_group(p[0], s * lam, dim=0), p[1]), z,
               penalty=lambda p: lam * torch.linalg.vector_norm(p[0], dim=0).sum(), lipschitz=loss.lipschitz(),
               max_iter=max_iter, tol=tol)


def solve_rmtl(loss: TaskLossSum, lam_l: float, lam_s: float, max_iter: int = 2000,
               tol: float = 1e-6) -> APGResult:
    """``min Σ_t L_t(l_t + s_t) + lam_l·‖L‖_* + lam_s·Σ_t ‖s_t‖₂`` over (L, S [T, d], b [T]) from zeros;
    the gradient of the loss is the same for L and S, so its Lipschitz bound doubles."""
    T, d = loss.w.shape[0], loss.x.shape[-1]
    f64, dev = torch.float64, loss.x.device
    z = (torch.zeros(T, d, dtype=f64, device=dev), torch.zeros(T, d, dtype=f64, device=dev),
         torch.zeros(T, dtype=f64, device=dev))

    def prox(p: tuple[Tensor, ...], s: float) -> tuple[Tensor, ...]:
        return prox_trace(p[0], s * lam_l), prox_group(p[1], s * lam_s, dim=1), p[2]

    def penalty(p: tuple[Tensor, ...]) -> Tensor:
        return lam_l * torch.linalg.svdvals(p[0]).sum() + lam_s * torch.linalg.vector_norm(p[1], dim=1).sum()

    return apg(lambda p: loss(p[0] + p[1], p[2]), prox, z, penalty=penalty, lipschitz=2.0 * loss.lipschitz(),
               max_iter=max_iter, tol=tol)


def _set_linear(model: LinearNet, W: Tensor, b: Tensor) -> None:
    lin = model.linear
    assert lin.bias is not None  # LinearNet's layer has a bias
    with torch.no_grad():
        lin.weight.copy_(W[..., None].to(lin.weight))
        lin.bias.copy_(b[:, None].to(lin.bias))


def _fit(name: str) -> Any:
    def fit(parts: MethodParts, train: DeviceData, hp: dict[str, Any]) -> None:
        model = parts.model
        assert isinstance(model, LinearNet)
        loss = TaskLossSum(design(train), train.y, train.mask, model.kind)
        it, tol = int(hp["max_iter"]), float(hp["tol"])
        if name == "rmtl":
            assert isinstance(model, RMTLNet)
            res = solve_rmtl(loss, float(hp["lam_l"]), float(hp["lam_s"]), it, tol)
            Lr, S, b = res.params
            with torch.no_grad():
                model.low_rank.copy_(Lr.to(model.low_rank))
                model.sparse.copy_(S.to(model.sparse))
            _set_linear(model, Lr + S, b)
        else:
            solver = solve_lasso if name == "lasso" else solve_l21
            res = solver(loss, float(hp["lam"]), it, tol)
            _set_linear(model, *res.params)
        model.solver_info = {"n_iter": res.n_iter, "converged": res.converged}  # type: ignore[assignment]

    fit.__doc__ = f"Fit `{name}` by accelerated proximal gradient on the whole training part."
    return fit


def _build(name: str) -> Any:
    def build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
        _check_hp(hp, ("lam_l", "lam_s") if name == "rmtl" else ("lam",))
        if info.spec.kind not in ("regression", "binary"):
            raise ValueError(f"{name} handles regression and binary tasks, not {info.spec.kind!r}")
        model: nn.Module = RMTLNet(info) if name == "rmtl" else LinearNet(info)
        return MethodParts(model)

    return build


_PAPER = "SRDML (Bai et al., KDD 2022) Table 2 shallow baseline (MALSAR); "
_KINDS = ("regression", "binary")
register(MethodInfo(
    name="lasso",
    summary="A linear model per task with an l1 penalty lam·||w_t||_1 (squared or logistic loss), solved by FISTA.",
    paper=_PAPER + "Tibshirani, Regression shrinkage and selection via the lasso, 1996",
    build=_build("lasso"), fit=_fit("lasso"), kinds=_KINDS,
    params=LASSO_PARAMS, grid={"lam": LAM_GRID},
))
register(MethodInfo(
    name="l21",
    summary="Joint feature selection: linear models with lam·sum_j ||W[:, j]||_2 over features (all tasks' "
            "weights of a feature as one group), solved by FISTA.",
    paper=_PAPER + "Argyriou, Evgeniou & Pontil, Convex multi-task feature learning, 2008 (MALSAR Least_L21)",
    build=_build("l21"), fit=_fit("l21"), kinds=_KINDS,
    params=L21_PARAMS, grid={"lam": LAM_GRID},
))
register(MethodInfo(
    name="rmtl",
    summary="Robust MTL: W = L + S with a trace norm lam_l·||L||_* and a task-wise group norm "
            "lam_s·sum_t ||s_t||_2, solved by FISTA.",
    paper=_PAPER + "Chen, Zhou & Ye, Integrating low-rank and group-sparse structures for robust multi-task "
                   "learning, KDD 2011 (MALSAR Least_RMTL)",
    build=_build("rmtl"), fit=_fit("rmtl"), kinds=_KINDS,
    params=RMTL_PARAMS,
    grid={"lam_l": [1e-2, 1e-1, 1.0], "lam_s": [1e-2, 1e-1, 1.0]},
))
