"""AMTFL and Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018): asymmetric multi-task feature learning.

Model (paper Eq. 6 / 7). A shared network maps a row to its penultimate features ``Z`` (width k): one hidden
layer ``Z = σ(XL + b)`` for ``amtfl``, any backbone (an MLP, or a small LeNet-style CNN) for ``deep-amtfl``.
Task t predicts ``o_t = Z s_t + b_t`` (``S`` [k, T], a task-stacked `TaskLinear`). The feedback matrix
``A`` [T, k] (plus a bias) reconstructs the features from *all* task outputs of the same row,
``Ẑ = σ(f(ZS) A + b_A)`` with ``f`` the prediction link (identity for regression, sigmoid for binary tasks)
and ``σ`` the hidden activation (ReLU). The objective the Trainer minimises is Eq. 6 divided by T::

    (1/T) [ Σ_t (1 + α‖a_t‖₁)(L_t + δ/√N_t) + μ‖S‖₁ + γ·R + λ Σ_l ‖W_l‖²_F ]

where ``L_t`` is task t's mean loss on the batch, ``a_t`` row t of A (the *outgoing* transfer of task t), ``N_t``
task t's number of training rows (``DataInfo.train_sizes``; or the ``task_sizes`` hyper-parameter, e.g. the
positives of one-vs-all tasks as in the authors' code), ``R`` the reconstruction error ``Σ_k (z−ẑ)²`` averaged
over the batch's labelled rows (a row of a heterogeneous task t is one row of the paper's stacked X), and ``W_l``
the backbone's weight matrices / conv kernels (``L`` for ``amtfl``; biases, S and A excluded).
The Trainer supplies ``(1/T) Σ_t L_t``; everything else is one penalty (``amtfl_penalty``), which recomputes the
batch's per-task losses from ``out.pred`` with `TaskLoss`. Dividing the whole of Eq. 6 by T keeps α, μ, λ and δ
at their meaning relative to the paper's sum over tasks, but **not γ**: Eq. 6's ``‖Z − σ(f(ZS)A)‖²_F`` *sums* over
the N stacked training rows while ``R`` here is their *mean* (the authors' code, ``reduce_mean`` over the batch).
So ``γ`` here is ``N·γ_paper`` — and, since regression targets are standardised by the Trainer (pooled
``y_std``) while Eq. 6's losses are in raw units, ``N·γ_paper / y_std²`` for regression. On School
(N ≈ 9.2k, y_std ≈ 12.7) that is ≈ 57·γ_paper; on the synthetic data ≈ 7·γ_paper. Too small a γ against α's
loss-weighted ℓ1 leaves A in the ℓ1 dead zone (every |A_ij| ~ the optimiser's jitter, no reconstruction, the
model is MT-NN): check `reconstruction_share` before reading ``AS`` as transfer.

Decisions where the paper is silent or its code differs (METHOD_NOTES §4):

* Joint training of all parameters by the Trainer (Adam by default), as the authors' code does; Z is not
  detached, so the reconstruction term shapes the features too.
* Reconstruction from ``f(ZS)`` (the paper); ``recon="logits"`` feeds the raw outputs (the authors' code).
* ``N_t`` in the paper's form ``δ/√N_t`` (the code's normalised ``δ·√(N̄/N_t)`` is ``δ' = δ/√N̄``).
* ``‖S‖₁`` by its sub-gradient (the authors' code) unless ``prox=True``: then a soft-threshold step with the
  step's learning rate (``μ·lr/T``) after each optimiser step gives exact zeros (textbook only with SGD).
  The ℓ1 on A always goes through the gradient (its weight depends on the batch's losses).
* λ covers weights, not biases (the paper's ``‖L‖²`` / ``Σ_l ‖W^(l)‖²``; the code also decays biases).
* Tasks must be regression or binary (one output each; multi-class data as one-vs-rest binary tasks, e.g. the
  ``digits`` / ``mnist-mtl`` data sets, is the paper's one-vs-all form).
* Initialisation: backbone and S like ``nn.Linear``; A ~ N(0, 0.01²) and ``b_A`` = 0 (the code's scale).
* ``activation`` is the hidden layer's σ and also the reconstruction's; ``activation="identity"`` is the paper's
  synthetic-data variant (no ReLU at the hidden layer, so a linear reconstruction).
* ``deep-amtfl``'s ``backbone="cnn"`` is `SmallCNN` (5×5 conv → ReLU → 2×2 pool per entry of ``channels``, then
  ReLU layers ``hidden``; LeNet is ``channels=[20, 50], hidden=[500]``) for image rows ``[C, H, W]`` / ``[H, W]``.

``task_relations()`` gives the transfer matrix ``AS`` (T × T): entry (i, j) is how much task i's output feeds,
through the features it reconstructs, task j's predictor (paper Fig. 4h).

The same network without feedback is the paper's ``NN`` / ``MT-NN`` baselines, and with AMTL's ``S ≈ SB`` on its
last layer instead the Table 2 baseline ``deep-amtl`` (`mtlkit.methods.amtfl_baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.hparams import HParam, choice, log_range
from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput, Penalty, Prox
from mtlkit.methods.registry import register
from mtlkit.nn import MLP, TaskLinear
from mtlkit.nn import activation as make_activation
from mtlkit.nn.conv import SmallCNN
from mtlkit.nn.losses import TaskLoss
from mtlkit.nn.task_layers import ACTIVATIONS
from mtlkit.optim.apg import soft_threshold  # the ℓ1 prox (also imported from here by amtfl_baselines)

A_INIT_STD = 0.01
_PAPER = "Lee, Yang & Hwang, AAAI 2018 (Deep Asymmetric Multi-task Feature Learning)"

# The paper gives no grids ("all hyper-parameters are found with a separate validation set"); the spaces span the
# authors' code values (α = 0.1, γ = 0.01, μ = λ = 1e-4) by two decades or more on each side, each with 0 = off.
ACTIVATION_PARAM = HParam("activation", "str", "relu", "σ of the hidden layers and of the reconstruction "
                          "(identity: the paper's linear variant for linear synthetic features)",
                          choices=tuple(ACTIVATIONS))
TASK_SIZES_PARAM = HParam(
    "task_sizes", "ints", [], "N_t of each task in δ/√N_t ([]: the task's labelled training rows; one-vs-all tasks "
    "on shared input all have the same rows, so the authors' code counts each class's positives: pass them here)")
AMTFL_PENALTY_PARAMS: tuple[HParam, ...] = (
    HParam("alpha", "float", 0.1, "α: loss-weighted ℓ1 (1 + α‖a_t‖₁)(L_t + δ/√N_t) on the feedback A's rows, "
           "task t's outgoing transfer (0 = off)", low=0.0, space=log_range(1e-3, 10.0, off=0.0)),
    # Our reconstruction is a mean over rows of standardised targets, the paper's Eq. 6 a sum over N raw rows: our
    # γ ≈ N·γ_paper/y_std² (about 57·γ_paper on School), so the space reaches 1e3 (School selects γ = 100).
    HParam("gamma", "float", 0.01, "γ: weight of the reconstruction ‖Z − σ(f(ZS)A)‖², a mean over rows (≈ N·γ of "
           "the paper's summed Eq. 6 on standardised targets; 0 = off)", low=0.0,
           space=log_range(1e-3, 1e3, off=0.0)),
    HParam("mu", "float", 1e-4, "μ: ℓ1 on the task weights S (0 = off)", low=0.0,
           space=log_range(1e-6, 1e-2, off=0.0)),
    HParam("lam", "float", 1e-4, "λ: ℓ2 on the backbone's weights, biases excluded (0 = off)", low=0.0,
           space=log_range(1e-6, 1e-2, off=0.0)),
    HParam("delta", "float", 0.1, "δ: the bound proxy δ/√N_t added to each task's loss inside α's weight, so that "
           "α also penalises small tasks' transfer (0 = off)", low=0.0, space=log_range(1e-3, 1.0, off=0.0)),
    TASK_SIZES_PARAM,
    HParam("recon", "str", "link", "reconstruct Z from f(ZS) (link: the paper) or from the raw outputs ZS "
           "(logits: the authors' code)", choices=("link", "logits")),
    HParam("prox", "bool", False, "ℓ1 on S by a soft-threshold step after each optimiser step (exact zeros) "
           "instead of its sub-gradient"),
)
AMTFL_PARAMS: tuple[HParam, ...] = (
    HParam("hidden", "int", 32, "k: units of the one hidden layer Z = σ(XL)", low=1, space=choice(16, 32, 64, 128)),
    ACTIVATION_PARAM,
    *AMTFL_PENALTY_PARAMS,
)
DEEP_BACKBONE_PARAMS: tuple[HParam, ...] = (
    HParam("backbone", "str", "mlp", "mlp (layers hidden) or cnn (5×5 conv + 2×2 pool per channels entry, then "
           "hidden; image rows only)", choices=("mlp", "cnn")),
    HParam("hidden", "ints", [64], "widths of the backbone's hidden layers; the last is k, the width of Z",
           space=choice([32], [64], [128])),
    HParam("channels", "ints", [8, 16], "conv channels of the cnn backbone (unused by mlp)"),
    ACTIVATION_PARAM,
)
DEEP_AMTFL_PARAMS: tuple[HParam, ...] = (*DEEP_BACKBONE_PARAMS, *AMTFL_PENALTY_PARAMS)
AMTFL_DEFAULTS: dict[str, Any] = {p.name: p.default for p in AMTFL_PARAMS}
DEEP_AMTFL_DEFAULTS: dict[str, Any] = {p.name: p.default for p in DEEP_AMTFL_PARAMS}
KINDS = ("regression", "binary")
AMTFL_GRID: dict[str, list[Any]] = {"alpha": [0.01, 0.1, 1.0], "gamma": [0.01, 1.0, 100.0]}


def _check_nonneg(hp: dict[str, Any], names: Sequence[str]) -> None:
    for n in names:
        v = float(hp[n])
        if not v >= 0:
            raise ValueError(f"hyper-parameter {n} must be ≥ 0, got {hp[n]!r}")


def _check_kind(info: DataInfo, method: str) -> None:
    if info.spec.kind not in ("regression", "binary"):
        raise ValueError(f"{method} handles regression or binary tasks (one output per task; multi-class data as "
                         f"one-vs-rest binary tasks), got {info.spec.kind!r}")


class AmtflNet(nn.Module):
    """Shared backbone ``Z = φ(x)`` (width k), task outputs ``ZS + b`` (`TaskLinear` [T, k, P]) and, with
    ``feedback``, the task-to-feature matrix ``A`` [T, k] reconstructing ``Ẑ = σ(f(ZS)A + b_A)``.

    ``backbone`` maps raw rows (any leading axes) to ``[..., k]``; ``flatten`` flattens the per-row feature
    shape first (vector backbones). ``forward`` returns ``ModelOutput(pred [T, B, P], {"z": Z})``.
    """

    def __init__(self, info: DataInfo, backbone: nn.Module, k: int, activation: str = "relu",
                 feedback: bool = True, recon: str = "link", flatten: bool = True) -> None:
        super().__init__()
        if recon not in ("link", "logits"):
            raise ValueError(f"recon must be 'link' (f(ZS), the paper) or 'logits' (raw ZS), got {recon!r}")
        self.shared, self.n_tasks, self.kind = info.shared, info.n_tasks, info.spec.kind
        self.feature_ndim, self.flatten, self.recon = len(info.feature_shape), flatten, recon
        self.backbone = backbone
        self.head = TaskLinear(info.n_tasks, k, info.spec.n_outputs)
        self.act = make_activation(activation)
        if feedback:
            if info.spec.n_outputs != 1:
                raise ValueError("the AMTFL feedback needs one output per task (regression or binary tasks)")
            self.A = nn.Parameter(torch.randn(info.n_tasks, k) * A_INIT_STD)
            self.bias_A = nn.Parameter(torch.zeros(k))
        else:
            self.register_parameter("A", None)
            self.register_parameter("bias_A", None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features Z: ``[B, k]`` (shared input) or ``[T, B, k]``."""
        if self.flatten:
            lead = x.shape[: x.dim() - self.feature_ndim]
            x = x.reshape(*lead, -1)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.features(x)
        return ModelOutput(self.head(z), {"z": z})

    @property
    def S(self) -> torch.Tensor:
        """The task weights as the paper's ``S`` [k, T] (single-output tasks)."""
        return self.head.weight[..., 0].T

    def all_outputs(self, z: torch.Tensor) -> torch.Tensor:
        """Every task's output for every row: ``ZS + b``, ``[B, T]`` or ``[T_rows, B, T]``."""
        assert self.head.bias is not None  # a TaskLinear with a bias
        w, b = self.head.weight[..., 0], self.head.bias[:, 0]  # [T, k], [T]
        return torch.einsum("...k,tk->...t", z, w) + b

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """``Ẑ = σ(f(ZS) A + b_A)`` with f the link (sigmoid for binary tasks) unless ``recon='logits'``."""
        if self.A is None:
            raise ValueError("this network has no feedback matrix A")
        o = self.all_outputs(z)
        if self.recon == "link" and self.kind == "binary":
            o = torch.sigmoid(o)
        return self.act(o @ self.A + self.bias_A)

    def l2_weights(self) -> list[torch.Tensor]:
        """The matrices λ covers: the backbone's weights and conv kernels (no biases, not S, not A)."""
        return [p for p in self.backbone.parameters() if p.dim() >= 2]

    def task_relations(self) -> dict[str, torch.Tensor]:
        """The learned task-to-task transfer ``AS`` [T, T] through the features (paper Fig. 4h)."""
        if self.A is None:
            return {}
        return {"transfer AS (task × task)": (self.A @ self.S).detach()}


def _sizes(info: DataInfo, hp: dict[str, Any] | None = None) -> torch.Tensor:
    """N_t per task: the hyper-parameter ``task_sizes`` when given (non-empty), else ``DataInfo.train_sizes`` (all
    1 when unknown: δ/√N_t is then the same δ for every task)."""
    given = list((hp or {}).get("task_sizes") or [])
    if given:
        if len(given) != info.n_tasks:
            raise ValueError(f"task_sizes has {len(given)} values for {info.n_tasks} tasks")
        return torch.as_tensor([max(int(n), 1) for n in given], dtype=torch.float64)
    if info.train_sizes and len(info.train_sizes) != info.n_tasks:
        raise ValueError(f"DataInfo has {len(info.train_sizes)} train sizes for {info.n_tasks} tasks")
    sizes = info.train_sizes or (1,) * info.n_tasks
    return torch.as_tensor([max(int(n), 1) for n in sizes], dtype=torch.float64)


def _rows_mask(batch: Batch, z: torch.Tensor) -> torch.Tensor:
    """Which rows of Z carry a label: ``[B]`` (shared input: any task) or ``[T, B]``."""
    m = batch.mask.any(0) if z.dim() == 2 else batch.mask
    return m.to(z.dtype)


def reconstruction_error(model: AmtflNet, z: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``R = Σ_k (z − ẑ)²`` averaged over the batch's labelled rows."""
    m = _rows_mask(batch, z)
    err = (z - model.reconstruct(z)).pow(2).sum(-1)
    return (err * m).sum() / m.sum().clamp_min(1.0)


@torch.no_grad()
def reconstruction_share(model: AmtflNet, z: torch.Tensor) -> float:
    """How much of the features' spread the feedback reconstructs: ``1 − Σ‖z − ẑ‖² / Σ‖z − z̄‖²`` over the rows
    of ``z`` ([..., k], flattened over the leading axes; z̄ the column means). 1: ``Ẑ = Z``; ≤ 0: no better than
    the constant z̄ that ``b_A`` alone gives, i.e. the feedback is off (A in the ℓ1 dead zone) and ``AS`` is
    noise, not transfer."""
    z = z.reshape(-1, z.shape[-1])
    err = (z - model.reconstruct(z)).pow(2).sum()
    spread = (z - z.mean(0)).pow(2).sum()
    return float(1.0 - err / spread) if float(spread) > 0 else float("nan")


def l2_sum(model: AmtflNet) -> torch.Tensor:
    """``Σ_l ‖W_l‖²_F`` over `AmtflNet.l2_weights`."""
    ws = model.l2_weights()
    if not ws:
        return torch.zeros((), device=model.head.weight.device, dtype=model.head.weight.dtype)
    return torch.stack([w.pow(2).sum() for w in ws]).sum()


class TaskLossOn:
    """`TaskLoss` for a spec, built once per device (its class mask must live where the predictions are)."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._by_device: dict[Any, TaskLoss] = {}

    def __call__(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-task mean loss [T] of the batch (see `TaskLoss.__call__`)."""
        if pred.device not in self._by_device:
            self._by_device[pred.device] = TaskLoss(self.spec, pred.device)
        return self._by_device[pred.device](pred, batch)


class _Proxy:
    """``δ/√N_t`` [T] on the prediction's device and dtype, built once per (device, dtype)."""

    def __init__(self, delta: float, sizes: torch.Tensor) -> None:
        self.values = delta / sizes.sqrt()
        self._cache: dict[tuple[Any, Any], torch.Tensor] = {}

    def on(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = self.values.to(device=like.device, dtype=like.dtype)
        return self._cache[key]


def amtfl_penalty(spec: TaskSpec, sizes: torch.Tensor, alpha: float, gamma: float, mu: float, lam: float,
                  delta: float, l1_in_loss: bool = True) -> Penalty:
    """Everything of Eq. 6 / 7 (divided by T) beyond the Trainer's ``(1/T) Σ_t L_t``:
    ``(1/T)[Σ_t α‖a_t‖₁(L_t + δ/√N_t) + δ/√N_t + μ‖S‖₁ + γR + λΣ‖W_l‖²]`` (μ left out when ``l1_in_loss`` is
    False: a prox handles it)."""
    task_loss = TaskLossOn(spec)
    proxy = _Proxy(delta, sizes)
    T = spec.n_tasks

    def pen(model: nn.Module, out: ModelOutput, batch: Batch) -> torch.Tensor:
        assert isinstance(model, AmtflNet)
        pred = out.pred
        d = proxy.on(pred)
        total = d.sum()
        if alpha and model.A is not None:
            losses = task_loss(pred, batch)
            total = total + alpha * (model.A.abs().sum(1) * (losses + d)).sum()
        if gamma and model.A is not None:
            total = total + gamma * reconstruction_error(model, out.features["z"], batch)
        if mu and l1_in_loss:
            total = total + mu * model.head.weight.abs().sum()
        if lam:
            total = total + lam * l2_sum(model)
        return total / T

    return pen


def s_l1_prox(mu: float, n_tasks: int) -> Prox:
    """Soft-threshold of S (the head's weights) with step ``μ·lr/T`` after each optimiser step."""

    def prox(model: nn.Module, lr: float) -> None:
        assert isinstance(model, AmtflNet)
        thr = mu * float(lr) / n_tasks
        if thr > 0:
            model.head.weight.copy_(soft_threshold(model.head.weight, thr))

    return prox


def mlp_backbone(info: DataInfo, hidden: Sequence[int], activation: str) -> MLP:
    """A shared MLP ``[d, *hidden]`` with the activation after every layer (its output is Z)."""
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden must hold positive layer widths, got {hidden!r}")
    return MLP([info.n_features, *(int(h) for h in hidden)], activation, last_activation=True)


def _shared(model: nn.Module) -> list[nn.Parameter]:
    assert isinstance(model, AmtflNet)
    return list(model.backbone.parameters())


def _parts(info: DataInfo, model: AmtflNet, hp: dict[str, Any]) -> MethodParts:
    _check_nonneg(hp, ("alpha", "gamma", "mu", "lam", "delta"))
    prox = bool(hp["prox"])
    pen = amtfl_penalty(info.spec, _sizes(info, hp), float(hp["alpha"]), float(hp["gamma"]), float(hp["mu"]),
                        float(hp["lam"]), float(hp["delta"]), l1_in_loss=not prox)
    proxes = [s_l1_prox(float(hp["mu"]), info.n_tasks)] if prox and float(hp["mu"]) > 0 else []
    return MethodParts(model, penalties=[pen], proxes=proxes, shared_parameters=_shared)


def build_amtfl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """Shallow AMTFL (Eq. 6): one hidden layer of ``hidden`` = k units on flattened inputs."""
    _check_kind(info, "amtfl")
    k = hp["hidden"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"amtfl's hidden (k, the number of latent features) must be a positive int, got {k!r}")
    model = AmtflNet(info, mlp_backbone(info, [k], hp["activation"]), k, hp["activation"], recon=hp["recon"])
    return _parts(info, model, hp)


def deep_backbone(info: DataInfo, hp: dict[str, Any]) -> tuple[nn.Module, int, bool]:
    """The backbone of ``deep-amtfl`` (or of a deep NN baseline): ``(module, k, flatten_inputs)``."""
    hidden = hp["hidden"]
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    if hp["backbone"] == "mlp":
        return mlp_backbone(info, hidden, hp["activation"]), int(hidden[-1]), True
    if hp["backbone"] == "cnn":
        if len(info.feature_shape) not in (2, 3):
            raise ValueError(f"the cnn backbone needs image rows [C, H, W] or [H, W], got {info.feature_shape}")
        cnn = SmallCNN(info.feature_shape, list(hp["channels"]), hidden)
        return cnn, cnn.out_features, False
    raise ValueError(f"backbone must be 'mlp' or 'cnn', got {hp['backbone']!r}")


def build_deep_amtfl(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """Deep-AMTFL (Eq. 7): the feedback at the penultimate layer of an MLP or small CNN backbone."""
    _check_kind(info, "deep-amtfl")
    backbone, k, flat = deep_backbone(info, hp)
    model = AmtflNet(info, backbone, k, hp["activation"], recon=hp["recon"], flatten=flat)
    return _parts(info, model, hp)


register(MethodInfo(
    name="amtfl",
    summary="Asymmetric multi-task feature learning: one hidden layer Z = σ(XL), task weights S, feedback A "
            "reconstructing Z from the task outputs; loss-weighted ℓ1 (1+α‖a_t‖₁)(L_t+δ/√N_t) on A (Eq. 6).",
    paper=_PAPER, build=build_amtfl, params=AMTFL_PARAMS, grid=AMTFL_GRID, kinds=KINDS,
    needs=("features",),
    row_separable=True,
))
register(MethodInfo(
    name="deep-amtfl",
    summary="Deep-AMTFL: the AMTFL feedback autoencoder at the penultimate layer of an MLP or small CNN backbone "
            "(Eq. 7).",
    paper=_PAPER, build=build_deep_amtfl, params=DEEP_AMTFL_PARAMS, grid=AMTFL_GRID, kinds=KINDS,
    needs=("features",),
    row_separable=True,
))
