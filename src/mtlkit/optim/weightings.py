"""Loss weightings: per-step task weights computed from the task losses (no per-task gradients, but GradNorm's norms
of the last shared layer), plugged into the combiner slot so that ``hard-share+uw`` composes like
``hard-share+pcgrad``.

A weighting's ``backward(losses, total, ...)`` computes factors ``λ`` ``[T]`` (detached) and back-propagates
``total + Σ_t (w_t λ_t − w_t) L_t``: the gradient of ``Σ_t w_t λ_t L_t`` plus the penalties, in ONE backward pass.
With the default task weights ``w_t = 1/T``, ``λ = 1`` is hard-share's equal weighting (EW), so every weighting
keeps EW's scale (LibMTL's weights sum to T on a sum of losses: the same update up to the 1/T of the mean). Factors
come from the losses averaged over the ranks of a process group, so every rank weights alike.

Learned weighting parameters (UW's log-variances, FAMO's logits, GradNorm's weights) are tensors of the combiner
with their own Adam optimiser (declared learning rate), updated inside the step from their closed-form gradients;
they and the optimiser's moments are the combiner's ``state()``, so a checkpoint resumes them exactly. Two
optional hooks of the Trainer serve the rest: ``epoch_end(train_loss)`` receives each epoch's mean training loss
per task (DWA's loss ratios, STCH's warm-up and nadir point) and ``after_step(recompute)`` runs after the
optimiser step with a function that recomputes the batch's losses (FAMO's update).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtlkit.hparams import HParam, Space
from mtlkit.optim.base import CombinerSpec, SteppedState
from mtlkit.optim.gradients import _all_reduce
from mtlkit.optim.per_task import task_gradient_parts
from mtlkit.optim.tape import TaskTape


class LossWeighting(SteppedState):
    """Base of the loss weightings (see the module docstring): subclasses set ``name`` (their registry name, the
    prefix of their state keys) and implement `factors`."""

    per_task_gradients = False
    name = "weighting"

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``λ`` ``[T]`` for this step's (rank-averaged, detached) losses and task weights."""
        raise NotImplementedError

    def update(self, losses: torch.Tensor, weights: torch.Tensor) -> None:
        """After the backward pass: the weighting's own parameter step, if it has one."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError(f"{type(self).__name__} needs the task weights w of total = Σ w_t L_t + penalties "
                             "(weights=...)")
        w = weights.detach().to(losses.dtype)
        gl = _all_reduce(losses.detach().clone(), mean=True)
        lam = self.factors(gl, w).detach().to(device=losses.device, dtype=losses.dtype)
        self.last_weights = w * lam
        (total + ((w * lam - w) * losses).sum()).backward()
        self.update(gl, w)
        self.step += 1



class _Learned:
    """A learned ``[T]`` vector with its own Adam optimiser, created at the first step (T and the device known
    then); `state` / `load` carry the vector and Adam's moments."""

    def __init__(self, lr: float, weight_decay: float = 0.0, init: float = 0.0) -> None:
        self.lr, self.weight_decay, self.init = float(lr), float(weight_decay), float(init)
        self.param: torch.Tensor | None = None
        self.opt: torch.optim.Adam | None = None
        self._pending: dict[str, torch.Tensor] = {}

    def get(self, T: int, like: torch.Tensor) -> torch.Tensor:
        if self.param is None or self.param.shape[0] != T:
            self.param = torch.full((T,), self.init, dtype=torch.float32, device=like.device, requires_grad=True)
            self.opt = torch.optim.Adam([self.param], lr=self.lr, weight_decay=self.weight_decay)
            if self._pending:
                self._restore(self._pending)
                self._pending = {}
        return self.param

    def step(self, grad: torch.Tensor) -> None:
        assert self.param is not None and self.opt is not None
        self.param.grad = grad.detach().to(self.param)
        self.opt.step()
        self.param.grad = None

    def state(self, key: str) -> dict[str, torch.Tensor]:
        if self.param is None or self.opt is None:
            return dict(self._pending)
        out = {f"{key}": self.param.detach().clone()}
        st = self.opt.state.get(self.param, {})
        for k in ("step", "exp_avg", "exp_avg_sq"):
            if k in st:
                out[f"{key}_adam_{k}"] = torch.as_tensor(st[k]).detach().clone()
        return out

    def load(self, state: Mapping[str, torch.Tensor], key: str) -> None:
        mine = {k: v for k, v in state.items() if k == key or k.startswith(f"{key}_adam_")}
        if not mine:
            return
        if self.param is None:
            self._pending = {k: v.clone() for k, v in mine.items()}
            T = mine[key].shape[0]
            self.get(T, mine[key])
        else:
            self._restore(mine)

    def _restore(self, mine: Mapping[str, torch.Tensor]) -> None:
        key = next(k for k in mine if "_adam_" not in k)
        assert self.param is not None and self.opt is not None
        with torch.no_grad():
            self.param.copy_(mine[key].to(self.param))
        st: dict[str, torch.Tensor] = {}
        for k in ("step", "exp_avg", "exp_avg_sq"):
            v = mine.get(f"{key}_adam_{k}")
            if v is not None:
                st[k] = v.to(dtype=torch.float32, device=self.param.device if k != "step" else "cpu").clone()
        if st:
            self.opt.state[self.param] = st


class UW(LossWeighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): learned log-variances ``s_t`` (init 0), the
    objective ``Σ_t w_t (e^{-s_t} L_t + s_t)`` (twice the paper's ``½e^{-s}L + ½s``, so that ``s = 0`` is EW):
    factors ``λ_t = e^{-s_t}``, and ``s`` takes one Adam step on ``∂/∂s_t = w_t(1 − e^{-s_t} L_t)`` per step."""

    name = "uw"

    def __init__(self, lr: float = 1e-2, seed: int | None = None) -> None:
        super().__init__(seed)
        self.s = _Learned(lr)

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.s.get(losses.shape[0], losses).detach()).to(losses)

    def update(self, losses: torch.Tensor, weights: torch.Tensor) -> None:
        s = self.s.get(losses.shape[0], losses).detach().to(losses)
        self.s.step(weights * (1.0 - torch.exp(-s) * losses))

    def extra_state(self) -> dict[str, torch.Tensor]:
        return self.s.state("s")

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.s.load(state, "s")


class DWA(LossWeighting):
    """Dynamic weight average (Liu, Johns & Davison, CVPR 2019, End-to-End Multi-Task Learning with Attention):
    ``λ = T·softmax(r/τ)`` with ``r_t`` the ratio of task t's mean training loss in the last two epochs (``λ = 1``
    in the first two). The epochs' losses come from the Trainer's ``epoch_end`` hook and are the state."""

    name = "dwa"

    def __init__(self, temperature: float = 2.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if temperature <= 0:
            raise ValueError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.history: torch.Tensor | None = None  # [≤ 2, T]: the last epochs' mean training losses

    def epoch_end(self, train_loss: torch.Tensor) -> None:
        """The Trainer's hook: the epoch's mean training loss per task ``[T]``."""
        row = train_loss.detach().reshape(1, -1).clone()
        self.history = row if self.history is None else torch.cat([self.history.to(row), row])[-2:]

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        T = losses.shape[0]
        if self.history is None or self.history.shape[0] < 2:
            return torch.ones(T, dtype=losses.dtype, device=losses.device)
        h = self.history.to(losses)
        r = h[1] / h[0]
        return T * torch.softmax(r / self.temperature, dim=0)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.history is None else {"history": self.history.clone()}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.history = state["history"].clone() if "history" in state else None


class RLW(LossWeighting):
    """Random loss weighting (Lin et al., TMLR 2022, Reasonable Effectiveness of Random Weighting): each step
    ``λ = T·softmax(z)``, ``z ~ N(0, I)`` drawn from a generator seeded from (seed, step), identical on every rank."""

    name = "rlw"

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        z = torch.randn(losses.shape[0], generator=self._generator(), dtype=torch.float64)
        return (losses.shape[0] * torch.softmax(z, dim=0)).to(losses)


class GLS(LossWeighting):
    """Geometric loss strategy (Chennupati et al., CVPR-W 2019, MultiNet++): the objective is the (task-weighted)
    geometric mean ``exp(Σ_t ŵ_t log L_t)`` of the losses, whose gradient is ``Σ_t ŵ_t GLS/L_t ∇L_t``: factors
    ``λ_t = (Σw/Σ_{t'∈P} w)·GLS/L_t`` over the tasks P with a positive loss (a task without labels in the batch,
    loss 0 and no gradient, is left out of the mean)."""

    name = "gls"

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        present = losses > 0
        if not bool(present.any()):
            return torch.ones_like(losses)
        wp = torch.where(present, weights, torch.zeros_like(weights))
        w_hat = wp / wp.sum()
        safe = torch.where(present, losses, torch.ones_like(losses))
        gls = torch.exp((w_hat * torch.log(safe)).sum())
        return torch.where(present, (weights.sum() / wp.sum()) * gls / safe, torch.zeros_like(losses))


class FAMO(LossWeighting):
    """FAMO (Liu et al., NeurIPS 2023, Fast Adaptive Multitask Optimization): logits ``ξ`` (init 0) with their own
    Adam (lr, weight decay γ), ``z = softmax(ξ)``; the objective ``Σ_t z_t log(L_t + 1e-8)/c`` with ``c = Σ_t
    z_t/(L_t + 1e-8)``, whose factors are ``λ_t = T z_t / (c (L_t + 1e-8))``. After the optimiser step the batch's
    losses are recomputed (the Trainer's ``after_step`` hook, one forward pass without a graph, as the authors and
    LibMTL do) and ``ξ`` steps along ``J_softmax(ξ)ᵀ (log L_before − log L_after)``. A caller that runs no
    ``after_step`` gets the update at the next step from that step's losses instead."""

    name = "famo"

    def __init__(self, lr: float = 0.025, weight_decay: float = 1e-3, seed: int | None = None) -> None:
        super().__init__(seed)
        self.xi = _Learned(lr, weight_decay)
        self.prev: torch.Tensor | None = None  # losses of the last step, waiting for their update

    def _update(self, new: torch.Tensor) -> None:
        assert self.prev is not None
        xi = self.xi.get(new.shape[0], new)
        delta = torch.log(self.prev.to(new) + 1e-8) - torch.log(new + 1e-8)
        with torch.enable_grad():
            x = xi.detach().clone().requires_grad_(True)
            d = torch.autograd.grad(torch.softmax(x, dim=0), x, grad_outputs=delta.to(x))[0]
        self.xi.step(d)
        self.prev = None

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:  # no after_step ran: update from this step's losses
            self._update(losses)
        z = torch.softmax(self.xi.get(losses.shape[0], losses).detach(), dim=0).to(losses)
        D = losses + 1e-8
        c = (z / D).sum()
        return losses.shape[0] * z / (c * D)

    def update(self, losses: torch.Tensor, weights: torch.Tensor) -> None:
        self.prev = losses.detach().clone()

    def after_step(self, recompute: Callable[[], torch.Tensor]) -> None:
        """The Trainer's hook after the optimiser step: FAMO's logit update from the recomputed losses."""
        if self.prev is None:
            return
        new = _all_reduce(recompute().detach().clone(), mean=True)
        self._update(new)

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = self.xi.state("xi")
        if self.prev is not None:
            st["prev"] = self.prev.clone()
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.xi.load(state, "xi")
        self.prev = state["prev"].clone() if "prev" in state else None


class STCH(LossWeighting):
    """Smooth Tchebycheff scalarisation (Lin et al., ICML 2024), as LibMTL runs it for MTL: for the first
    ``warmup`` epochs the mean of the log-losses (factors ``1/L_t``); the mean training loss of the last warm-up
    epoch (the Trainer's ``epoch_end`` hook) becomes the nadir point ``N``; then the objective is
    ``μ log Σ_t exp(T w_t log(L_t/N_t)/μ)``, factors ``λ_t = T softmax_t / L_t`` (LibMTL's, without its extra
    factor T). Zero losses (no labels in the batch) get factor 0."""

    name = "stch"

    def __init__(self, mu: float = 1.0, warmup: int = 4, seed: int | None = None) -> None:
        super().__init__(seed)
        if mu <= 0 or warmup < 0:
            raise ValueError(f"STCH needs mu > 0 and warmup >= 0 epochs, got {mu}, {warmup}")
        self.mu, self.warmup = float(mu), int(warmup)
        self.epochs = 0
        self.nadir: torch.Tensor | None = None

    def epoch_end(self, train_loss: torch.Tensor) -> None:
        """The Trainer's hook: the epoch's mean training loss per task ``[T]``."""
        self.epochs += 1
        if self.epochs == self.warmup:
            self.nadir = train_loss.detach().clone()

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        T = losses.shape[0]
        present = losses > 0
        safe = torch.where(present, losses, torch.ones_like(losses))
        inv = torch.where(present, 1.0 / safe, torch.zeros_like(losses))
        if (self.nadir is None and self.warmup > 0) or not bool(present.any()):
            return inv
        nadir = self.nadir.to(losses) if self.nadir is not None else safe.detach()
        if self.nadir is None:  # no warm-up: the first step's losses are the nadir
            self.nadir = nadir.clone()
        u = T * weights * torch.log(safe / nadir.clamp_min(1e-20))
        u = torch.where(present, u, torch.full_like(u, float("-inf")))
        return T * torch.softmax(u / self.mu, dim=0) * inv

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = {"epochs": torch.tensor(self.epochs, dtype=torch.int64)}
        if self.nadir is not None:
            st["nadir"] = self.nadir.clone()
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.epochs = int(state["epochs"]) if "epochs" in state else 0
        self.nadir = state["nadir"].clone() if "nadir" in state else None


class GradNorm(LossWeighting):
    """GradNorm (Chen et al., ICML 2018): learned task weights ``λ`` (init 1) balancing the gradient norms
    ``G_t = λ_t‖∇_W L_t‖`` of the last shared layer W (the last shared parameter with ≥ 2 dimensions) towards
    ``Ḡ·r_t^α`` with ``r_t`` task t's inverse training rate (``L_t/L_t(0)`` over its mean; ``L(0)`` the first step's
    losses): one Adam step on ``Σ_t |G_t − Ḡ r_t^α|`` (targets constant, gradient ``sign(·)‖∇_W L_t‖``), then
    ``λ`` renormalised to sum T. Only W's per-task gradients are taken (the batched product, or the one-pass
    rule on a row-separable model)."""

    name = "gradnorm"
    per_task_gradients = True  # the last shared layer's per-task gradients (a TaskTape on row-separable models)

    def __init__(self, alpha: float = 1.5, lr: float = 0.025, seed: int | None = None) -> None:
        super().__init__(seed)
        if alpha < 0:
            raise ValueError(f"GradNorm alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.lam = _Learned(lr, init=1.0)
        self.initial: torch.Tensor | None = None
        self._norms: torch.Tensor | None = None

    @staticmethod
    def last_layer(shared: Sequence[nn.Parameter]) -> list[nn.Parameter]:
        """W: the last shared parameter with at least 2 dimensions (the last parameter when none has)."""
        params = [p for p in shared if p.requires_grad]
        mats = [p for p in params if p.dim() >= 2]
        return [mats[-1]] if mats else params[-1:]

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        W = self.last_layer(shared)
        if not W:
            raise ValueError("GradNorm needs a shared parameter that requires grad")
        G = task_gradient_parts(losses, W, tape=tape)
        G.all_reduce(mean=True)
        self._norms = sum(b.pow(2).sum(1) for _, b in G.blocks).sqrt().detach()  # type: ignore[union-attr]
        super().backward(losses, total, shared, weights, features)

    def factors(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.lam.get(losses.shape[0], losses).detach().to(losses)

    def update(self, losses: torch.Tensor, weights: torch.Tensor) -> None:
        assert self._norms is not None
        T = losses.shape[0]
        lam = self.lam.get(T, losses)
        if self.initial is None:
            self.initial = losses.detach().clone()
        norms = self._norms.to(losses)
        Gt = lam.detach().to(losses) * norms
        ratio = losses / self.initial.to(losses).clamp_min(1e-20)
        r = ratio / ratio.mean().clamp_min(1e-20)
        target = Gt.mean() * r.pow(self.alpha)
        self.lam.step(torch.sign(Gt - target) * norms)
        with torch.no_grad():
            lam.clamp_(min=0.0)
            s = lam.sum()
            if float(s) > 0:
                lam.mul_(T / s)
            else:
                lam.fill_(1.0)

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = self.lam.state("lambda")
        if self.initial is not None:
            st["initial"] = self.initial.clone()
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.lam.load(state, "lambda")
        self.initial = state["initial"].clone() if "initial" in state else None


# ---------------------------------------------------------------------- registry entries

WEIGHTING_PARAMS: dict[str, tuple[HParam, ...]] = {
    "uw": (HParam("uw_lr", "float", 1e-2, "Adam learning rate of the log-variances", low=0.0, low_open=True,
                  space=Space("log", 1e-4, 1e-1)),),
    "dwa": (HParam("dwa_temperature", "float", 2.0, "τ: softmax temperature of the loss ratios", low=0.0,
                   low_open=True, space=Space("log", 0.5, 10.0)),),
    "rlw": (),
    "gls": (),
    "famo": (
        HParam("famo_lr", "float", 0.025, "Adam learning rate of the logits", low=0.0, low_open=True,
               space=Space("log", 1e-3, 0.1)),
        HParam("famo_decay", "float", 1e-3, "γ: weight decay of the logits", low=0.0),
    ),
    "stch": (
        HParam("stch_mu", "float", 1.0, "μ: smoothing of the Tchebycheff max", low=0.0, low_open=True,
               space=Space("log", 0.01, 10.0)),
        HParam("stch_warmup", "int", 4, "warm-up epochs on the mean log-loss; the last one's losses are the nadir "
               "point (LibMTL's default 4)", low=0),
    ),
    "gradnorm": (
        HParam("gradnorm_alpha", "float", 1.5, "α: strength of the pull towards equal training rates", low=0.0,
               space=Space("uniform", 0.0, 3.0)),
        HParam("gradnorm_lr", "float", 0.025, "Adam learning rate of the task weights", low=0.0, low_open=True),
    ),
}

_MAKERS: dict[str, Callable[[dict[str, Any]], LossWeighting]] = {
    "uw": lambda hp: UW(lr=hp["uw_lr"]),
    "dwa": lambda hp: DWA(temperature=hp["dwa_temperature"]),
    "rlw": lambda hp: RLW(),
    "gls": lambda hp: GLS(),
    "famo": lambda hp: FAMO(lr=hp["famo_lr"], weight_decay=hp["famo_decay"]),
    "stch": lambda hp: STCH(mu=hp["stch_mu"], warmup=hp["stch_warmup"]),
    "gradnorm": lambda hp: GradNorm(alpha=hp["gradnorm_alpha"], lr=hp["gradnorm_lr"]),
}

_TEXT: dict[str, tuple[str, str]] = {
    "uw": ("UW: learned homoscedastic-uncertainty weights e^(-s_t) with the regulariser s_t.",
           "Kendall, Gal & Cipolla, CVPR 2018 (Multi-Task Learning Using Uncertainty to Weigh Losses for Scene "
           "Geometry and Semantics)"),
    "dwa": ("DWA: T·softmax of the ratio of each task's mean training loss in the last two epochs over τ.",
            "Liu, Johns & Davison, CVPR 2019 (End-to-End Multi-Task Learning with Attention)"),
    "rlw": ("RLW: random weights T·softmax(z), z ~ N(0, I) drawn each step.",
            "Lin et al., TMLR 2022 (Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task "
            "Learning)"),
    "gls": ("GLS: the geometric mean of the task losses as the objective.",
            "Chennupati et al., CVPR Workshops 2019 (MultiNet++: Multi-Stream Feature Aggregation and Geometric "
            "Loss Strategy for Multi-Task Learning)"),
    "famo": ("FAMO: softmax weights of the log-losses whose logits follow each task's loss decrease (one extra "
             "forward pass per step, no per-task gradients).",
             "Liu et al., NeurIPS 2023 (FAMO: Fast Adaptive Multitask Optimization)"),
    "stch": ("STCH: smooth Tchebycheff scalarisation of the log-losses relative to a nadir point from warm-up "
             "epochs.",
             "Lin et al., ICML 2024 (Smooth Tchebycheff Scalarization for Multi-Objective Optimization)"),
    "gradnorm": ("GradNorm: learned weights that equalise the tasks' gradient norms on the last shared layer, "
                 "scaled by their relative training rates.",
                 "Chen et al., ICML 2018 (GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep "
                 "Multitask Networks)"),
}

SPECS: dict[str, CombinerSpec] = {
    name: CombinerSpec(name, _TEXT[name][0], _TEXT[name][1], make, params=WEIGHTING_PARAMS[name], kind="weighting",
                       needs=("last-layer per-task gradients",) if name == "gradnorm" else ())
    for name, make in _MAKERS.items()
}
"""The named loss weightings (`mtlkit.optim.combiners.COMBINERS` includes them): ``METHOD+NAME``."""

__all__ = ["DWA", "FAMO", "GLS", "RLW", "SPECS", "STCH", "UW", "GradNorm", "LossWeighting"]
