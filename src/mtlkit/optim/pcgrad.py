"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning") on the shared parameters.

Per-task gradients of the *weighted* losses ``w_t L_t`` w.r.t. the shared parameters (`task_gradient_parts`: one
batched vector-Jacobian product, or one backward pass through a `TaskTape`); each ``g_i`` is projected, in a random
order over the other tasks ``j ≠ i``, onto the normal plane of every *original* ``g_j`` it conflicts with
(``g_iᵖᶜ·g_j < 0``); the update is ``Σ_i g_iᵖᶜ``. Everything goes through the T×T Gram matrix (`pcgrad_coefficients`:
the projections in the basis of the original gradients). ``total.backward()`` runs once, then the shared ``.grad``
receives ``Σ_i g_iᵖᶜ − Σ_i g_i`` on top of the plain backward. The T-1 projection rounds run on the host for a CPU
Gram matrix (numpy), on the device otherwise.

Distributed data parallel: the per-task gradient matrix is averaged over ranks before combining, so every rank
combines the same (global) gradients. The random order comes from a CPU generator seeded from (seed, step counter),
identical on every rank; the counter is saved by ``state()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mtlkit.optim.gradients import _add_to_grads
from mtlkit.optim.per_task import task_gradient_parts
from mtlkit.optim.tape import TaskTape


def pcgrad_orders(n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """One random order over the other tasks per task: ``[T, T-1]``, row i a permutation of ``{j ≠ i}``."""
    keys = torch.rand(n_tasks, n_tasks, generator=generator)
    keys.fill_diagonal_(2.0)  # task i sorts last, then is cut off
    return torch.argsort(keys, dim=1)[:, : n_tasks - 1]


def pcgrad_coefficients(gram: torch.Tensor, orders: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PCGrad's projections in the basis of the original gradients: ``C`` ``[T, T]`` with ``g_iᵖᶜ = Σ_k C_ik g_k``,
    computed from the Gram matrix ``G Gᵀ`` alone. ``orders[i]`` is the order in which ``g_i`` meets the others.

    The T-1 projection rounds are sequential by definition (each sees the previous result); each round is
    vectorised over all T tasks. ``D = C·(G Gᵀ)`` is kept up to date, so a round reads the T inner products
    ``g_iᵖᶜ·g_{j_i} = D[i, j_i]`` and updates only the rows of the tasks in conflict. A CPU Gram matrix is worked
    on the host (numpy: the rounds are many tiny operations), any other device's on the device."""
    if gram.device.type == "cpu" and gram.shape[0] > 1:
        return torch.from_numpy(_pcgrad_coefficients_host(gram.detach().numpy(), orders.cpu().numpy(), eps))
    return _pcgrad_coefficients_device(gram, orders, eps)


def _pcgrad_coefficients_device(gram: torch.Tensor, orders: torch.Tensor, eps: float) -> torch.Tensor:
    """`pcgrad_coefficients` with torch operations on ``gram``'s device (each round reads T×T products)."""
    T = gram.shape[0]
    C = torch.eye(T, dtype=gram.dtype, device=gram.device)
    rows = torch.arange(T, device=gram.device)
    orders = orders.to(gram.device)
    diag = gram.diagonal()
    for k in range(orders.shape[1]):
        j = orders[:, k]
        dots = (C * gram[j]).sum(1)  # g_iᵖᶜ · g_{j_i} = Σ_m C_im ⟨g_m, g_{j_i}⟩
        coef = dots.clamp_max(0) / (diag[j] + eps)
        C = C.index_put((rows, j), -coef, accumulate=True)
    return C


def _pcgrad_coefficients_host(gram: np.ndarray, orders: np.ndarray, eps: float) -> np.ndarray:
    """`pcgrad_coefficients` in numpy, in the Gram matrix's dtype."""
    T = gram.shape[0]
    C = np.eye(T, dtype=gram.dtype)
    D = gram.copy()  # C · gram
    diag = np.diagonal(gram) + gram.dtype.type(eps)
    rows = np.arange(T)
    for k in range(orders.shape[1]):
        j = orders[:, k]
        dots = D[rows, j]
        hit = dots < 0
        if not hit.any():
            continue
        i, jj = rows[hit], j[hit]
        coef = dots[hit] / diag[jj]
        C[i, jj] -= coef
        D[i] -= coef[:, None] * gram[jj]
    return C


class PCGrad:
    """Projecting conflicting gradients (Yu et al. 2020) on the shared parameters; see the module docstring.

    ``seed`` (default: ``torch.initial_seed()`` at construction, i.e. the run's seed) and a step counter seed
    the random projection order, so all ranks of a distributed run use the same order."""

    per_task_gradients = True  # the Trainer records a `TaskTape` for it on row-separable models

    def __init__(self, seed: int | None = None, eps: float = 1e-8) -> None:
        self.seed = int(torch.initial_seed() if seed is None else seed) % (2 ** 62)
        self.eps = float(eps)
        self.step = 0

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.step) % (2 ** 63))

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError("PCGrad needs the task weights w of total = Σ w_t L_t + penalties (weights=...)")
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise ValueError("PCGrad needs at least one shared parameter that requires grad")
        T = losses.shape[0]
        G = task_gradient_parts(losses, params, weights=weights.detach(), tape=tape)  # rows ∂(w_t L_t)/∂θ_shared
        G.all_reduce(mean=True)
        with torch.no_grad():
            C = pcgrad_coefficients(G.gram(), pcgrad_orders(T, self._generator()), self.eps)
            delta = G.combine((C.sum(0) - 1.0).to(losses.device))  # Σ_i g_iᵖᶜ − Σ_i g_i
        self.step += 1
        total.backward()
        _add_to_grads(params, delta)

    def state(self) -> dict[str, torch.Tensor]:
        return {"pcgrad.step": torch.tensor(self.step, dtype=torch.int64)}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if "pcgrad.step" in state:
            self.step = int(state["pcgrad.step"])

    def __repr__(self) -> str:
        return f"PCGrad(seed={self.seed})"


def pcgrad_combine(G: torch.Tensor, generator: torch.Generator, eps: float = 1e-8) -> torch.Tensor:
    """``Σ_i g_iᵖᶜ`` for a ``[T, n]`` gradient matrix (the PCGrad update), via `pcgrad_coefficients`."""
    C = pcgrad_coefficients(G @ G.T, pcgrad_orders(G.shape[0], generator), eps)
    return C.sum(0) @ G
