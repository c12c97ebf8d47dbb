"""The aggregators whose weights are a function of the step's Gram matrix (closed forms, QPs, Newton's method):
UPGrad, DualProj, CAGrad, IMTL-G, Aligned-MTL, Nash-MTL, FairGrad, ConFIG. Registered in `mtlkit.optim.aggregators`,
whose docstring states the conventions they share."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from mtlkit.optim.agg_base import GradientAggregator, _coef, _gram_host
from mtlkit.optim.agg_solvers import (
    ALIGNED_SCALES,
    aligned_mtl_weights,
    cagrad_weights,
    config_weights,
    dualproj_weights,
    fair_weights,
    imtl_g_weights,
    upgrad_weights,
)
from mtlkit.optim.gradients import TaskGradients


class UPGrad(GradientAggregator):
    """UPGrad (Quinton & Rey 2024, Jacobian Descent for Multi-Objective Optimization): each task gradient projected
    onto the dual cone of all of them (so no task's loss increases to first order), averaged (`upgrad_weights`)."""

    name = "upgrad"

    def __init__(self, reg_eps: float = 1e-4, seed: int | None = None) -> None:
        super().__init__(seed)
        self.reg_eps = float(reg_eps)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(upgrad_weights(_gram_host(G), reg_eps=self.reg_eps), losses)


class DualProj(GradientAggregator):
    """DualProj (Quinton & Rey 2024): the mean gradient projected onto the dual cone of the task gradients."""

    name = "dualproj"

    def __init__(self, reg_eps: float = 1e-4, seed: int | None = None) -> None:
        super().__init__(seed)
        self.reg_eps = float(reg_eps)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(dualproj_weights(_gram_host(G), reg_eps=self.reg_eps), losses)


CAGRAD_RESCALES = (0, 1, 2)


class CAGrad(GradientAggregator):
    """CAGrad (Liu et al., NeurIPS 2021, Conflict-Averse Gradient Descent): the update maximising the worst task's
    improvement within a ball of radius ``c‖g_0‖`` around the mean gradient (`cagrad_weights`); ``rescale`` divides
    it by 1 (0), ``1 + c²`` (1, the authors' and LibMTL's default) or ``1 + c`` (2)."""

    name = "cagrad"

    def __init__(self, c: float = 0.4, rescale: int = 1, seed: int | None = None) -> None:
        super().__init__(seed)
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c}")
        if rescale not in CAGRAD_RESCALES:
            raise ValueError(f"CAGrad rescale must be one of {CAGRAD_RESCALES}, got {rescale}")
        self.c, self.rescale = float(c), int(rescale)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        w = cagrad_weights(_gram_host(G), self.c)
        div = {0: 1.0, 1: 1.0 + self.c ** 2, 2: 1.0 + self.c}[self.rescale]
        return _coef(w / div, losses)

    def __repr__(self) -> str:
        return f"CAGrad(c={self.c}, rescale={self.rescale})"


class IMTLG(GradientAggregator):
    """IMTL-G (Liu et al., ICLR 2021, Towards Impartial Multi-task Learning): the convex-sum-to-one combination
    whose projections on every unit task gradient are equal (`imtl_g_weights`)."""

    name = "imtl-g"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(imtl_g_weights(_gram_host(G)), losses)


class AlignedMTL(GradientAggregator):
    """Aligned-MTL (Senushkin et al., CVPR 2023, Independent Component Alignment for Multi-Task Learning): the
    gradients made orthogonal with equal norms by the Gram matrix's eigen-decomposition (`aligned_mtl_weights`)."""

    name = "aligned-mtl"

    def __init__(self, scale_mode: str = "min", seed: int | None = None) -> None:
        super().__init__(seed)
        if scale_mode not in ALIGNED_SCALES:
            raise ValueError(f"Aligned-MTL scale_mode must be one of {ALIGNED_SCALES}, got {scale_mode!r}")
        self.scale_mode = scale_mode

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(aligned_mtl_weights(_gram_host(G), scale_mode=self.scale_mode), losses)


class NashMTL(GradientAggregator):
    """Nash-MTL (Navon et al., ICML 2022, Multi-Task Learning as a Bargaining Game): weights ``α > 0`` with
    ``α_t (Gα)_t = 1`` (`fair_weights` with α = 1, solved exactly by Newton's method where the authors run 20
    steps of a cvxpy sequential convex programme), recomputed every ``update_every`` steps and reused in between
    (on the new gradients), the update ``Σ α_t g_t`` scaled down to norm ``max_norm`` when longer (0: never)."""

    name = "nash-mtl"

    def __init__(self, update_every: int = 1, max_norm: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if update_every < 1:
            raise ValueError(f"Nash-MTL update_every must be >= 1, got {update_every}")
        if max_norm < 0:
            raise ValueError(f"Nash-MTL max_norm must be >= 0, got {max_norm}")
        self.update_every, self.max_norm = int(update_every), float(max_norm)
        self.alpha: np.ndarray | None = None

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        M = _gram_host(G)
        if self.alpha is None or len(self.alpha) != M.shape[0] or self.step % self.update_every == 0:
            self.alpha = fair_weights(M, 1.0)
        a = self.alpha.copy()
        if self.max_norm > 0:
            nrm = math.sqrt(max(float(a @ M @ a), 0.0))
            if nrm > self.max_norm:
                a *= self.max_norm / nrm
        return _coef(a, losses)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self.alpha is None else {"alpha": torch.from_numpy(self.alpha.copy())}

    def load_extra_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.alpha = state["alpha"].detach().cpu().double().numpy().copy() if "alpha" in state else None

    def __repr__(self) -> str:
        return f"NashMTL(update_every={self.update_every}, max_norm={self.max_norm})"


class FairGrad(GradientAggregator):
    """FairGrad (Ban & Ji, ICML 2024, Fair Resource Allocation in Multi-Task Learning): α-fair weights with
    ``(Gw)_t = w_t^{-1/α}`` (`fair_weights`; α = 1 is Nash-MTL's solution, α → ∞ approaches max-min fairness),
    solved afresh each step from the same start, so no state is needed for an exact resume."""

    name = "fairgrad"

    def __init__(self, alpha: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        if alpha < 0:
            raise ValueError(f"FairGrad alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        return _coef(fair_weights(_gram_host(G), self.alpha), losses)

    def __repr__(self) -> str:
        return f"FairGrad(alpha={self.alpha})"


class ConFIG(GradientAggregator):
    """ConFIG (Liu et al. 2024, Towards Conflict-free Training of Physics Informed Neural Networks, Eq. 2): the
    direction with equal cosine to every task gradient, with the length of the gradients' summed projections on it
    (`config_weights`), divided by T (the paper sums)."""

    name = "config"

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor:
        n = sum(b.shape[1] * (1 if k == "dense" else G.n_tasks) for k, b in G.blocks)
        return _coef(config_weights(_gram_host(G), n=n) / G.n_tasks, losses)
