"""Gradient combiners: how the per-task losses become gradients of the shared parameters — the registry of named
combiners (`COMBINERS`, ``METHOD+NAME``) and the one import path for every combiner piece.

A combiner's ``backward(losses, total, shared, weights, features)`` receives the step's per-task losses ``[T]``,
the full objective ``total = Σ_t w_t L_t + penalties``, the shared parameters, the task weights ``w`` ``[T]`` and
the model's named features. ``SumCombiner`` back-propagates ``total``. ``PCGrad`` and ``MGDAUB`` take the T
per-task gradients (`task_gradient_parts`) in ONE batched vector-Jacobian product (``is_grads_batched``) or — for a
row-separable method (`MethodInfo.row_separable`: task t's rows reach only L_t) on per-task input, where the
Trainer runs the forward pass under a `TaskTape` and passes it as ``tape`` — from ONE ordinary backward pass (the
per-example-gradient trick with example = task: a shared ``nn.Linear``'s ``∂L_t/∂W = Σ_b δ_{t,b} a_{t,b}ᵀ``, one
``bmm`` over the task axis; task-stacked tensors are reached by task t through slice t only). They combine them
through the T×T Gram matrix only (never T×T products of parameter-sized vectors; a block that only one task reaches
adds just its squared norms), call ``total.backward()`` once (every parameter gets its usual gradient, penalties
included, and DistributedDataParallel all-reduces it), and then replace the task part of the shared gradient by
the combination. Under DDP the per-task gradients (PCGrad, the aggregators) or Gram matrix (MGDA-UB) are
all-reduced first, so every rank combines the same thing.

Where each piece lives (all re-exported here, so ``mtlkit.optim.combiners.X`` keeps working):

* `mtlkit.optim.base`: the `Combiner` protocol, `SumCombiner`, `CombinerSpec`;
* `mtlkit.optim.gradients`: `TaskGradients` (per-task gradients as dense / diagonal blocks), the DDP helpers;
* `mtlkit.optim.tape`: `TaskTape`, `task_tape`, `task_broadcast`, the per-layer one-pass rules;
* `mtlkit.optim.per_task`: `task_gradient_parts` / `task_gradients` (the one-pass route with its first-step check,
  the measured batched-or-loop route);
* `mtlkit.optim.pcgrad`: `PCGrad`; `mtlkit.optim.mgda`: `MGDAUB` and the min-norm solver;
* `mtlkit.optim.aggregators`, `mtlkit.optim.weightings`: the other named aggregators and loss weightings.

A re-export is a second name for the same object: to monkeypatch a function or a module-level table (``_ROUTE``,
``_batched_vjp``, ``pcgrad_coefficients``, ``min_norm_weights``), patch it in its home module, where it is looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtlkit.optim import aggregators as _aggregators
from mtlkit.optim import weightings as _weightings
from mtlkit.optim.base import Combiner, CombinerSpec, SumCombiner
from mtlkit.optim.gradients import TaskGradients, _add_to_grads, _all_reduce, _densify, _world_size
from mtlkit.optim.mgda import (
    MGDA_NORMS,
    MGDA_PARAMS,
    MGDAUB,
    _min_norm_diagonal,
    _min_norm_pairwise,
    min_norm_weights,
)
from mtlkit.optim.pcgrad import (
    PCGrad,
    _pcgrad_coefficients_device,
    _pcgrad_coefficients_host,
    pcgrad_coefficients,
    pcgrad_combine,
    pcgrad_orders,
)
from mtlkit.optim.per_task import _ONE_PASS_STATUS, LOOP_MARGIN, task_gradient_parts, task_gradients
from mtlkit.optim.tape import TaskTape, task_broadcast, task_tape


def _make_mgda(hp: dict[str, Any]) -> Combiner:
    return MGDAUB(normalization=str(hp["mgda_norm"]), iters=hp["mgda_iters"])


COMBINERS: dict[str, CombinerSpec] = {
    "pcgrad": CombinerSpec(
        "pcgrad", "PCGrad on the shared parameters: conflicting task gradients projected onto each other's "
        "normal planes (random order, original gradients), then summed.",
        "Yu et al., NeurIPS 2020 (Gradient Surgery for Multi-Task Learning)", lambda hp: PCGrad()),
    "mgda-ub": CombinerSpec(
        "mgda-ub", "MGDA-UB: min-norm convex combination of the task gradients w.r.t. the shared representation "
        "(Frank-Wolfe on the T×T Gram matrix); shared parameters follow Σ α_t L_t.",
        "Sener & Koltun, NeurIPS 2018 (Multi-Task Learning as Multi-Objective Optimization)", _make_mgda,
        params=MGDA_PARAMS),
}


COMBINERS["ew"] = CombinerSpec(
    "ew", "EW (equal weighting): the plain weighted sum of the task losses, the Trainer's default (any method "
    "without a combiner).", "the baseline of every weighting and aggregator", lambda hp: SumCombiner(),
    kind="weighting", needs=())

COMBINERS.update(_aggregators.SPECS)
COMBINERS.update(_weightings.SPECS)


def combiner_names(kind: str | None = None) -> list[str]:
    """The named combiners (``kind``: only the "aggregator"s or the "weighting"s), in listing order."""
    return [n for n, s in COMBINERS.items() if kind is None or s.kind == kind]


def make_combiner(name: str, hp: Mapping[str, Any] | None = None) -> Combiner:
    """The combiner registered as ``name`` built from ``hp`` (its defaults fill what is missing)."""
    if name not in COMBINERS:
        raise ValueError(f"unknown gradient combiner {name!r}; known: {', '.join(COMBINERS)}")
    spec = COMBINERS[name]
    return spec.make({**spec.defaults, **(hp or {})})


__all__ = ["COMBINERS", "LOOP_MARGIN", "MGDAUB", "MGDA_NORMS", "MGDA_PARAMS", "Combiner", "CombinerSpec", "PCGrad",
           "SumCombiner", "TaskGradients", "TaskTape", "_ONE_PASS_STATUS", "_add_to_grads", "_all_reduce",
           "_densify", "_min_norm_diagonal", "_min_norm_pairwise", "_pcgrad_coefficients_device",
           "_pcgrad_coefficients_host", "_world_size", "combiner_names", "make_combiner", "min_norm_weights",
           "pcgrad_coefficients", "pcgrad_combine", "pcgrad_orders", "task_broadcast", "task_gradient_parts",
           "task_gradients", "task_tape"]
