"""The aggregators that draw random choices or carry state across steps: GradVac (random order, EMA target
cosines), GradDrop (random signs), MoDo, SDMGrad and MoCo (task weights, MoCo's tracked gradients), ExcessMTL and
DB-MTL (running gradient statistics). Registered in `mtlkit.optim.aggregators`, whose docstring states the
conventions they share (the state goes through ``state()`` / ``load_state`` for an exact resume)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mtlkit.optim.agg_base import (
    GradientAggregator,
    _BlockState,
    _coef,
    _combine_blocks,
    _gram_blocks,
    _gram_host,
    _row_norms2,
)
from mtlkit.optim.agg_solvers import graddrop_combine, gradvac_coefficients, project_simplex, sdmgrad_weights
from mtlkit.optim.gradients import TaskGradients
from mtlkit.optim.pcgrad import pcgrad_orders


class GradVac(GradientAggregator):
    """GradVac (Wang et al., ICLR 2021, Gradient Vaccine): each task gradient, in a random order over the others,
    lifted towards an EMA target cosine with each of them (`gradvac_coefficients`), summed and divided by T. The
    targets ``φ̂`` and the step counter (the order's seed) are the state."""

    name = "gradvac"

    def __init__(self, beta: float = 0.5, eps: float = 1e-8, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac beta must be in [0, 1], got {beta}")
        self.beta, self.eps = float(beta), float(eps)
        self.phi: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        if self.phi is None or self.phi.shape != (T, T):
            self.phi = np.zeros((T, T))
        orders = pcgrad_orders(T, self._generator()).numpy()
        C = gradvac_coefficients(M, self.phi, orders, self.beta, self.eps)
        return _coef(C.sum(0) / T, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.phi is None else {"phi": torch.from_numpy(self.phi.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.phi = state["phi"].detach().cpu().double().numpy().copy() if "phi" in state else None

    def __repr__(self) -> str:
        return f"GradVac(beta={self.beta})"


class GradDrop(GradientAggregator):
    """GradDrop (Chen et al., NeurIPS 2020, Just Pick a Sign): per coordinate of the shared parameters, keep the
    tasks' components of one sign, drawn with the positive-sign purity as probability (`graddrop_combine`), summed
    and divided by T. Applied to the parameter gradients, as torchjd does (the paper applies it to the gradients of
    an activation layer)."""

    name = "graddrop"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        n = sum(b.shape[1] for k, b in G.blocks if k == "dense")
        U = torch.rand(n, generator=self._generator(), dtype=torch.float64)
        dev = G.blocks[0][1].device if G.blocks else torch.device("cpu")
        out = graddrop_combine(G.blocks, U.to(dev))
        T = G.n_tasks
        return [o / T for o in out]


class MoDo(GradientAggregator):
    """MoDo (Chen et al., NeurIPS 2023 / JMLR 2024, Three-Way Trade-Off in Multi-Objective Learning): simplex weights
    updated by one projected step ``λ ← Π_Δ(λ − γ(Gλ + ρλ))`` per training step, the update ``Σ λ_t g_t``. The paper
    takes ``G = J₁J₂ᵀ`` from two independent batches; here (as LibMTL with one batch) the step's Gram matrix."""

    name = "modo"

    def __init__(self, gamma: float = 0.1, rho: float = 0.1, seed: int | None = None) -> None:
        super().__init__(seed)
        if gamma <= 0 or rho < 0:
            raise ValueError(f"MoDo needs gamma > 0 and rho >= 0, got {gamma}, {rho}")
        self.gamma, self.rho = float(gamma), float(rho)
        self.lam: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        lam = np.full(T, 1.0 / T) if self.lam is None or len(self.lam) != T else self.lam
        self.lam = project_simplex(lam - self.gamma * (M @ lam + self.rho * lam))
        return _coef(self.lam, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.lam is None else {"lambda": torch.from_numpy(self.lam.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.lam = state["lambda"].detach().cpu().double().numpy().copy() if "lambda" in state else None


class SDMGrad(GradientAggregator):
    """SDMGrad (Xiao et al., NeurIPS 2023, Direction-oriented Multi-objective Learning): simplex weights ``w`` kept
    across steps and refined by ``iters`` projected momentum steps on ``½‖J(w + λw̃)‖²`` (`sdmgrad_weights`), the
    update ``J(w + λw̃)/(1 + λ)`` with the mean ``w̃ = 1/T`` as preference. One batch's Gram matrix stands for the
    paper's ``J₁J₂ᵀ`` of two independent batches."""

    name = "sdmgrad"

    def __init__(self, lam: float = 0.3, lr: float = 10.0, momentum: float = 0.5, iters: int = 20,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        if lam < 0 or lr <= 0 or not 0 <= momentum < 1 or iters < 1:
            raise ValueError(f"SDMGrad needs lam >= 0, lr > 0, 0 <= momentum < 1, iters >= 1; got {lam}, {lr}, "
                             f"{momentum}, {iters}")
        self.lam, self.lr, self.momentum, self.iters = float(lam), float(lr), float(momentum), int(iters)
        self.w: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        T = M.shape[0]
        w0 = np.full(T, 1.0 / T) if self.w is None or len(self.w) != T else self.w
        self.w, coef = sdmgrad_weights(M, w0, self.lr, self.momentum, self.iters, self.lam)
        return _coef(coef, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.w is None else {"w": torch.from_numpy(self.w.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.w = state["w"].detach().cpu().double().numpy().copy() if "w" in state else None


class MoCo(GradientAggregator):
    """MoCo (Fernando et al., ICLR 2023, Mitigating Gradient Bias in Multi-objective Learning): tracked gradients
    ``Y ← Y − β_k(Y − J)`` (the state, ``[T, n]`` kept in the gradients' block structure), simplex weights
    ``λ ← Π_Δ(λ − γ_k(YYᵀ + ρI)λ)``, the update ``Σ λ_t y_t``; ``β_k = β/k^{σ_β}``, ``γ_k = γ/k^{σ_γ}`` (LibMTL's
    decay; the paper's projection onto the simplex where LibMTL takes a softmax)."""

    name = "moco"

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
                 rho: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0 < beta <= 1 or gamma <= 0 or rho < 0 or beta_sigma < 0 or gamma_sigma < 0:
            raise ValueError("MoCo needs 0 < beta <= 1, gamma > 0, rho >= 0 and non-negative decay exponents")
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = (
            float(beta), float(beta_sigma), float(gamma), float(gamma_sigma), float(rho))
        self.y: list[tuple[str, torch.Tensor]] | None = None
        self.lam: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        T = G.n_tasks
        k = self.step + 1
        beta = self.beta / k ** self.beta_sigma
        gamma = self.gamma / k ** self.gamma_sigma
        if not _BlockState.compatible(self.y, G):
            self.y = [(kind, torch.zeros_like(b)) for kind, b in G.blocks]
        assert self.y is not None
        self.y = [(kind, y - beta * (y - g)) for (kind, y), (_, g) in zip(_BlockState.match(self.y, G), G.blocks,
                                                                           strict=True)]
        M = self._host(_gram_blocks(self.y))
        lam = np.full(T, 1.0 / T) if self.lam is None or len(self.lam) != T else self.lam
        self.lam = project_simplex(lam - gamma * ((M + self.rho * np.eye(T)) @ lam))
        coef = _coef(self.lam, G.blocks[0][1])
        self.last_weights = coef
        return _combine_blocks(self.y, coef)

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = _BlockState.save(self.y, "y")
        if self.lam is not None:
            st["lambda"] = torch.from_numpy(self.lam.copy())
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.y = _BlockState.load(state, "y")
        self.lam = state["lambda"].detach().cpu().double().numpy().copy() if "lambda" in state else None


class ExcessMTL(GradientAggregator):
    """ExcessMTL (He et al., ICML 2024, Robust Multi-Task Learning with Excess Risks): simplex task weights moved by
    exponentiated gradient steps towards tasks with a large excess-risk estimate ``Σ g_t²/√(Σ_steps g_t² + 1e-7)``
    (a diagonal AdaGrad Hessian; Eqs. 6-9), each estimate divided by the first step's (the baseline); the update
    ``Σ w_t g_t``. The squared-gradient sums (``[T, n]``, block structure), weights and baseline are the state."""

    name = "excess-mtl"

    def __init__(self, step_size: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if step_size <= 0:
            raise ValueError(f"ExcessMTL step size must be > 0, got {step_size}")
        self.step_size = float(step_size)
        self.sq: list[tuple[str, torch.Tensor]] | None = None
        self.w: torch.Tensor | None = None
        self.initial: torch.Tensor | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        T = G.n_tasks
        ref = G.blocks[0][1]
        if not _BlockState.compatible(self.sq, G):
            self.sq = [(k, torch.zeros_like(b)) for k, b in G.blocks]
            self.w, self.initial = None, None
        assert self.sq is not None
        self.sq = [(k, s + g.pow(2)) for (k, s), (_, g) in zip(_BlockState.match(self.sq, G), G.blocks, strict=True)]
        risk = sum(((g.pow(2) / torch.sqrt(s + 1e-7)).sum(1) for (_, s), (_, g) in zip(self.sq, G.blocks,
                                                                                       strict=True)),
                   torch.zeros(T, dtype=ref.dtype, device=ref.device))
        if self.initial is None:
            self.initial = risk.clone()
        else:
            risk = risk / (self.initial.to(risk) + 1e-7)
        w = torch.full((T,), 1.0 / T, dtype=ref.dtype, device=ref.device) if self.w is None else self.w.to(ref)
        self.w = torch.softmax(torch.log(w) + self.step_size * risk, dim=0)
        return self.w.clone()

    def extra_state(self) -> dict[str, torch.Tensor]:
        st = _BlockState.save(self.sq, "sq")
        if self.w is not None:
            st["w"] = self.w.detach().clone()
        if self.initial is not None:
            st["initial"] = self.initial.detach().clone()
        return st

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.sq = _BlockState.load(state, "sq")
        self.w = state["w"].clone() if "w" in state else None
        self.initial = state["initial"].clone() if "initial" in state else None


class DBMTL(GradientAggregator):
    """DB-MTL (Lin et al. 2023, Dual-Balancing Multi-Task Learning): loss-scale balancing by the logarithm of each
    loss (gradients ``∇L_t/(L_t + 1e-8)``) and gradient-magnitude balancing: an EMA ``ĝ_t ← g_t + β_k(ĝ_t − g_t)``
    (``β_k = β/k^σ``; the state, block structure) and the update ``Σ_t w_t (max_u‖ĝ_u‖/‖ĝ_t‖) ĝ_t`` — every task at
    the largest task's gradient norm (LibMTL's sum, divided by T under the default weights)."""

    name = "db-mtl"

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0 <= beta <= 1 or beta_sigma < 0:
            raise ValueError(f"DB-MTL needs 0 <= beta <= 1 and beta_sigma >= 0, got {beta}, {beta_sigma}")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.buf: list[tuple[str, torch.Tensor]] | None = None
        self._w: torch.Tensor | None = None

    def row_scale(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        self._w = weights
        return 1.0 / (losses + 1e-8)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> list[torch.Tensor]:
        k = self.step + 1
        beta = self.beta / k ** self.beta_sigma
        if not _BlockState.compatible(self.buf, G) or self.step == 0:
            self.buf = [(kind, torch.zeros_like(b)) for kind, b in G.blocks]
        assert self.buf is not None
        self.buf = [(kind, g + beta * (y - g)) for (kind, y), (_, g) in zip(_BlockState.match(self.buf, G), G.blocks,
                                                                            strict=True)]
        norms = _row_norms2(self.buf).sqrt()
        alpha = norms.max() / (norms + 1e-8)
        w = self._w if self._w is not None else torch.full_like(alpha, 1.0 / G.n_tasks)
        coef = alpha * w.to(alpha)
        self.last_weights = coef
        return _combine_blocks(self.buf, coef)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return _BlockState.save(self.buf, "buf")

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.buf = _BlockState.load(state, "buf")
