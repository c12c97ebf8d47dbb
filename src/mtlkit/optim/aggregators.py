"""Gradient aggregators on the T per-task gradients of the shared parameters (the batched `task_gradient_parts`),
each working in Gram space (the ``T×T`` matrix ``G Gᵀ``) where its math allows: the per-task gradients once
(one batched vector-Jacobian product, or one backward pass for a row-separable model on per-task input), the Gram
matrix once (``O(T²·n)``), a small ``T×T`` problem on the host in float64 numpy (``O(T³)``: no Python loop over
tasks of n-dimensional vectors), and the update as one combination ``Σ_t c_t g_t`` of the gradients.

Conventions (shared by every aggregator here, and PCGrad's):

* **Input.** The Jacobian ``J'`` whose row t is ``T·w_t·∇L_t`` for the step's task weights ``w`` (the objective's
  ``Σ_t w_t L_t``; default ``w_t = 1/T``, so ``J'`` is the plain per-task gradients), under DDP averaged over ranks
  first so that every rank aggregates the same matrix.
* **Scale.** An aggregator the paper (or torchjd) defines as a *sum* over tasks (GradVac, GradDrop, ConFIG) is
  divided by T, one defined as a *mean* or convex combination (UPGrad, CAGrad, IMTL-G, Aligned-MTL, …) is taken as
  is; so with agreeing gradients every update is the mean gradient, hard-share's scale, and the learning rates of
  hard-share carry over. Nash-MTL and FairGrad are scale-free by construction (their weights scale as 1/‖g‖).
* **Update.** ``total.backward()`` runs once (task-specific parameters and penalties get their usual gradients,
  DistributedDataParallel all-reduces them), then the shared parameters' ``.grad`` receives the aggregate minus
  the plain ``Σ_t w_t ∇L_t`` it already holds.
* **State.** Stateful aggregators (GradVac's EMA targets, Nash-MTL's weights and update counter, MoCo's tracked
  gradients, SDMGrad's and MoDo's weights, ExcessMTL's and DB-MTL's running statistics, the random draws' step
  counter) return it from ``state()`` under keys prefixed by the registry name, and take it back in
  ``load_state``, so a resumed run continues exactly. Random choices (GradVac's order, GradDrop's thresholds) come
  from a CPU generator seeded from (seed, step), identical on every rank.

Oracles (tests/test_aggregators.py): torchjd's implementation where it has the method (`torchjd.aggregation`),
scipy's solvers (SLSQP, least squares, bounded least squares) where torchjd needs cvxpy or quadprog, the paper's
equations otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtlkit.hparams import HParam, Space
from mtlkit.optim.agg_base import GradientAggregator
from mtlkit.optim.agg_gram import (
    CAGRAD_RESCALES,
    IMTLG,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    NashMTL,
    UPGrad,
)
from mtlkit.optim.agg_solvers import (
    ALIGNED_SCALES,
    aligned_mtl_weights,
    bound_qp,
    cagrad_weights,
    config_weights,
    dualproj_weights,
    fair_weights,
    graddrop_combine,
    gradvac_coefficients,
    imtl_g_weights,
    project_simplex,
    sdmgrad_weights,
    upgrad_weights,
)
from mtlkit.optim.agg_stateful import DBMTL, ExcessMTL, GradDrop, GradVac, MoCo, MoDo, SDMGrad
from mtlkit.optim.base import CombinerSpec

# ---------------------------------------------------------------------- registry entries

AGGREGATOR_PARAMS: dict[str, tuple[HParam, ...]] = {
    "upgrad": (),
    "dualproj": (),
    "cagrad": (
        HParam("cagrad_c", "float", 0.4, "c: radius of the ball around the mean gradient, relative to its norm",
               low=0.0, space=Space("uniform", 0.1, 0.9)),
        HParam("cagrad_rescale", "int", 1, "divide the update by 1 (0), 1 + c² (1) or 1 + c (2)",
               choices=CAGRAD_RESCALES),
    ),
    "imtl-g": (),
    "aligned-mtl": (
        HParam("aligned_scale", "str", "min", "eigenvalue that sets the aligned gradients' norm: min (the paper), "
               "median, rmse (the mean, the authors' code)", choices=ALIGNED_SCALES),
    ),
    "nash-mtl": (
        HParam("nash_update_every", "int", 1, "recompute the bargaining weights every this many steps", low=1),
        HParam("nash_max_norm", "float", 1.0, "scale the update down to this norm when longer (0: never)", low=0.0),
    ),
    "fairgrad": (
        HParam("fairgrad_alpha", "float", 1.0, "α of α-fairness (1 = Nash-MTL's proportional fairness, 0 = equal "
               "weights)", low=0.0, space=Space("log", 0.1, 10.0)),
    ),
    "config": (),
    "gradvac": (
        HParam("gradvac_beta", "float", 0.5, "β: EMA rate of the target cosine similarities", low=0.0, high=1.0,
               space=Space("log", 1e-3, 1.0)),
    ),
    "graddrop": (),
    "moco": (
        HParam("moco_beta", "float", 0.5, "β: tracking rate of the gradients (β/k^σβ at step k)", low=0.0,
               low_open=True, high=1.0, space=Space("log", 0.01, 1.0)),
        HParam("moco_beta_sigma", "float", 0.5, "σβ: decay exponent of β", low=0.0),
        HParam("moco_gamma", "float", 0.1, "γ: step size of the task weights (γ/k^σγ at step k)", low=0.0,
               low_open=True, space=Space("log", 1e-3, 10.0)),
        HParam("moco_gamma_sigma", "float", 0.5, "σγ: decay exponent of γ", low=0.0),
        HParam("moco_rho", "float", 0.0, "ρ: ℓ2 regularisation of the task weights' update", low=0.0),
    ),
    "sdmgrad": (
        HParam("sdmgrad_lambda", "float", 0.3, "λ: pull of the direction towards the mean gradient", low=0.0,
               space=Space("uniform", 0.1, 1.0)),
        HParam("sdmgrad_lr", "float", 10.0, "step size of the inner weight solver", low=0.0, low_open=True),
        HParam("sdmgrad_momentum", "float", 0.5, "momentum of the inner weight solver", low=0.0, high=1.0,
               high_open=True),
        HParam("sdmgrad_iters", "int", 20, "inner solver steps per training step", low=1),
    ),
    "modo": (
        HParam("modo_gamma", "float", 0.1, "γ: step size of the task weights", low=0.0, low_open=True,
               space=Space("log", 1e-3, 1.0)),
        HParam("modo_rho", "float", 0.1, "ρ: ℓ2 regularisation of the task weights", low=0.0),
    ),
    "excess-mtl": (
        HParam("excess_step", "float", 1.0, "η: step size of the exponentiated weight update", low=0.0,
               low_open=True, space=Space("log", 0.01, 10.0)),
    ),
    "db-mtl": (
        HParam("dbmtl_beta", "float", 0.9, "β: EMA rate of the log-loss gradients (β/k^σ at step k)", low=0.0,
               high=1.0, space=Space("uniform", 0.5, 0.99)),
        HParam("dbmtl_beta_sigma", "float", 0.0, "σ: decay exponent of β", low=0.0),
    ),
}

_MAKERS: dict[str, Callable[[dict[str, Any]], GradientAggregator]] = {
    "upgrad": lambda hp: UPGrad(),
    "dualproj": lambda hp: DualProj(),
    "cagrad": lambda hp: CAGrad(c=hp["cagrad_c"], rescale=hp["cagrad_rescale"]),
    "imtl-g": lambda hp: IMTLG(),
    "aligned-mtl": lambda hp: AlignedMTL(scale_mode=hp["aligned_scale"]),
    "nash-mtl": lambda hp: NashMTL(update_every=hp["nash_update_every"], max_norm=hp["nash_max_norm"]),
    "fairgrad": lambda hp: FairGrad(alpha=hp["fairgrad_alpha"]),
    "config": lambda hp: ConFIG(),
    "gradvac": lambda hp: GradVac(beta=hp["gradvac_beta"]),
    "graddrop": lambda hp: GradDrop(),
    "moco": lambda hp: MoCo(beta=hp["moco_beta"], beta_sigma=hp["moco_beta_sigma"], gamma=hp["moco_gamma"],
                            gamma_sigma=hp["moco_gamma_sigma"], rho=hp["moco_rho"]),
    "sdmgrad": lambda hp: SDMGrad(lam=hp["sdmgrad_lambda"], lr=hp["sdmgrad_lr"], momentum=hp["sdmgrad_momentum"],
                                  iters=hp["sdmgrad_iters"]),
    "modo": lambda hp: MoDo(gamma=hp["modo_gamma"], rho=hp["modo_rho"]),
    "excess-mtl": lambda hp: ExcessMTL(step_size=hp["excess_step"]),
    "db-mtl": lambda hp: DBMTL(beta=hp["dbmtl_beta"], beta_sigma=hp["dbmtl_beta_sigma"]),
}

_TEXT: dict[str, tuple[str, str]] = {
    "upgrad": ("UPGrad: each task gradient projected onto the dual cone of all of them (no task's loss rises to "
               "first order), averaged; T box-constrained T×T QPs by block principal pivoting.",
               "Quinton & Rey 2024 (Jacobian Descent for Multi-Objective Optimization); torchjd"),
    "dualproj": ("DualProj: the mean gradient projected onto the dual cone of the task gradients (one T×T QP).",
                 "Quinton & Rey 2024 (Jacobian Descent for Multi-Objective Optimization); torchjd"),
    "cagrad": ("CAGrad: the update within a ball around the mean gradient that maximises the worst task's "
               "improvement (simplex problem on the Gram matrix, accelerated projected gradient).",
               "Liu et al., NeurIPS 2021 (Conflict-Averse Gradient Descent for Multi-task Learning)"),
    "imtl-g": ("IMTL-G: the combination (weights summing to 1) with equal projections on every unit task "
               "gradient (pseudo-inverse of the Gram matrix).",
               "Liu et al., ICLR 2021 (Towards Impartial Multi-task Learning)"),
    "aligned-mtl": ("Aligned-MTL: task gradients made orthogonal with equal norms through the Gram matrix's "
                    "eigen-decomposition (stable condition number), then averaged.",
                    "Senushkin et al., CVPR 2023 (Independent Component Alignment for Multi-Task Learning)"),
    "nash-mtl": ("Nash-MTL: the Nash bargaining solution, weights α with α_t (Gα)_t = 1 (Newton's method on the "
                 "T×T Gram matrix), update clipped to max_norm.",
                 "Navon et al., ICML 2022 (Multi-Task Learning as a Bargaining Game)"),
    "fairgrad": ("FairGrad: α-fair task weights, (Gw)_t = w_t^(-1/α) (Newton's method on the Gram matrix).",
                 "Ban & Ji, ICML 2024 (Fair Resource Allocation in Multi-Task Learning)"),
    "config": ("ConFIG: the conflict-free direction with equal cosine to every task gradient, with the length of "
               "their summed projections (pseudo-inverse of the unit gradients' Gram matrix).",
               "Liu et al., ICLR 2025 (ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks)"),
    "gradvac": ("GradVac: each task gradient lifted towards an EMA target cosine with the others (random order, "
                "closed-form corrections on the Gram matrix), summed.",
                "Wang et al., ICLR 2021 (Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
                "Massively Multilingual Models)"),
    "graddrop": ("GradDrop: per coordinate of the shared parameters, only the task components of one randomly "
                 "drawn sign (probability: the sign purity) are kept.",
                 "Chen et al., NeurIPS 2020 (Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
                 "Dropout)"),
    "moco": ("MoCo: tracked (bias-corrected) task gradients and simplex weights updated by one projected step "
             "each training step.",
             "Fernando et al., ICLR 2023 (Mitigating Gradient Bias in Multi-objective Learning: A Provably "
             "Convergent Approach)"),
    "sdmgrad": ("SDMGrad: MGDA-like simplex weights regularised towards the mean direction, refined by a few "
                "projected momentum steps per training step.",
                "Xiao et al., NeurIPS 2023 (Direction-oriented Multi-objective Learning: Simple and Provable "
                "Stochastic Algorithms)"),
    "modo": ("MoDo: simplex weights updated by one projected gradient step on the Gram matrix per training step.",
             "Chen et al., NeurIPS 2023 (Three-Way Trade-Off in Multi-Objective Learning: Optimization, "
             "Generalization and Conflict-Avoidance)"),
    "excess-mtl": ("ExcessMTL: simplex task weights raised for tasks with a large excess-risk estimate (diagonal "
                   "AdaGrad Hessian of the per-task gradients), by exponentiated gradient steps.",
                   "He et al., ICML 2024 (Robust Multi-Task Learning with Excess Risks)"),
    "db-mtl": ("DB-MTL: log-loss gradients (loss-scale balancing), EMA-smoothed, each scaled to the largest task's "
               "gradient norm (gradient-magnitude balancing).",
               "Lin et al. 2023 (Dual-Balancing for Multi-Task Learning)"),
}

KINDS = {name: ("weighting" if name in ("excess-mtl", "db-mtl") else "aggregator") for name in _MAKERS}
"""How `mtlkit methods` lists each entry: ExcessMTL and DB-MTL are loss weightings (LibMTL's) computed from
per-task gradients."""

SPECS: dict[str, CombinerSpec] = {
    name: CombinerSpec(name, _TEXT[name][0], _TEXT[name][1], make, params=AGGREGATOR_PARAMS[name],
                       kind=KINDS[name])
    for name, make in _MAKERS.items()
}
"""The named aggregators (`mtlkit.optim.combiners.COMBINERS` includes them): ``METHOD+NAME``."""


def aggregator_names() -> list[str]:
    """The registered aggregator names, in listing order."""
    return list(SPECS)


__all__ = ["SPECS", "AlignedMTL", "CAGrad", "ConFIG", "DBMTL", "DualProj", "ExcessMTL", "FairGrad", "GradDrop",
           "GradVac", "GradientAggregator", "IMTLG", "MoCo", "MoDo", "NashMTL", "SDMGrad", "UPGrad",
           "aligned_mtl_weights", "bound_qp", "cagrad_weights", "config_weights", "dualproj_weights", "fair_weights",
           "gradvac_coefficients", "graddrop_combine", "imtl_g_weights", "project_simplex", "sdmgrad_weights",
           "upgrad_weights"]
