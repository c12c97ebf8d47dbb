"""Gradient combiners: how the per-task losses become gradients of the shared parameters.

A combiner's ``backward(losses, total, shared, weights, features)`` receives the step's per-task losses ``[T]``,
the full objective ``total = Σ_t w_t L_t + penalties``, the shared parameters, the task weights ``w`` ``[T]`` and
the model's named features. ``SumCombiner`` back-propagates ``total``. ``PCGrad`` and ``MGDAUB`` compute the T
per-task gradients in ONE batched vector-Jacobian product (`task_gradients`, ``is_grads_batched``), combine them
through the T×T Gram matrix only (never T×T products of parameter-sized vectors), call ``total.backward()`` once
(every parameter gets its usual gradient, penalties included, and DistributedDataParallel all-reduces it), and
then replace the task part of the shared gradient by the combination:

* ``PCGrad`` (Yu et al., NeurIPS 2020): per-task gradients of the *weighted* losses ``w_t L_t`` w.r.t. the shared
  parameters; each ``g_i`` is projected, in a random order over the other tasks ``j ≠ i``, onto the normal plane
  of every *original* ``g_j`` it conflicts with (``g_iᵖᶜ·g_j < 0``); the update is ``Σ_i g_iᵖᶜ``. The shared
  ``.grad`` receives ``Σ_i g_iᵖᶜ − Σ_i g_i`` on top of the plain backward.
* ``MGDAUB`` (Sener & Koltun, NeurIPS 2018, the upper-bound variant): per-task gradients of the raw losses
  ``L_t`` w.r.t. the shared representation ``Z = features["shared"]``; the min-norm point ``α`` of their convex
  hull by (pairwise) Frank-Wolfe on the T×T Gram matrix, on the device (at most ``iters`` steps, stopping once the
  pairwise gap vanishes; on an accelerator the gap is read every 25 steps, so a step syncs with the host rarely); the
  shared parameters then receive the gradient of ``(Σ_t w_t)·Σ_t α_t L_t`` — exactly MGDA-UB's ``Σ_t α_t L_t``
  under the default weights ``w_t = 1/T`` (they sum to 1); other weights keep their total, MGDA picks the split.
  This is done with a hook on ``Z`` that adds ``Σ_t ((Σw)·α_t − w_t)·∂L_t/∂Z`` to the gradient reaching it.
  Task-specific parameters keep their plain gradients ``w_t ∂L_t/∂θ_t``. A model that exposes no
  ``features["shared"]`` falls back (with a warning, once) to plain MGDA on the shared *parameters*.

Distributed data parallel (``torch.distributed`` initialised, world size > 1): PCGrad averages the per-task
gradient matrix over ranks before combining, so every rank combines the same (global) gradients; MGDA-UB sums the
representation Gram matrix over ranks (each rank holds different rows of Z, so the global Gram is the sum of the
local ones) and averages the losses its normalisation uses. PCGrad's random order comes from a CPU generator
seeded from (seed, step counter), identical on every rank; the counter is saved by ``state()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from mtlkit.hparams import HParam

MGDA_NORMS = ("none", "l2", "loss", "loss+")


class Combiner(Protocol):
    """Turns a step's per-task losses ``[T]`` and total objective into ``.grad`` on the parameters.

    ``weights`` are the task weights ``w`` ``[T]`` of ``total = Σ_t w_t L_t + penalties``; ``features`` the
    model's named intermediate tensors (`ModelOutput.features`), e.g. the shared representation."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None: ...


class SumCombiner:
    """The default: back-propagate the weighted sum of task losses plus penalties, as one objective."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None:
        total.backward()

    def __repr__(self) -> str:
        return "SumCombiner()"


# ---------------------------------------------------------------------- batched per-task gradients
def task_gradients(losses: torch.Tensor, inputs: torch.Tensor | Sequence[torch.Tensor],
                   weights: torch.Tensor | None = None, retain_graph: bool = True,
                   create_graph: bool = False) -> torch.Tensor:
    """Gradients of the T task losses (times ``weights`` if given) w.r.t. ``inputs`` in ONE batched
    vector-Jacobian product: the ``[T, n]`` matrix whose row t is ``∂(w_t L_t)/∂inputs``, flattened and
    concatenated (an input a loss does not reach contributes zeros)."""
    if losses.dim() != 1:
        raise ValueError(f"losses must be a [T] vector, got shape {tuple(losses.shape)}")
    xs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    T = losses.shape[0]
    eye = torch.eye(T, dtype=losses.dtype, device=losses.device)
    gout = eye if weights is None else eye * weights.to(losses.dtype)[:, None]
    grads = torch.autograd.grad(losses, xs, grad_outputs=gout, is_grads_batched=True, retain_graph=retain_graph,
                                create_graph=create_graph, allow_unused=True)
    rows = [(g if g is not None else torch.zeros(T, *x.shape, dtype=losses.dtype, device=losses.device))
            .reshape(T, -1) for g, x in zip(grads, xs, strict=True)]
    return torch.cat(rows, dim=1)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce(t: torch.Tensor, mean: bool) -> torch.Tensor:
    """Sum (or mean) of ``t`` over the ranks of an initialised process group; ``t`` itself when there is none."""
    world = _world_size()
    if world <= 1:
        return t
    t = t.contiguous()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / world if mean else t


def _add_to_grads(params: Sequence[nn.Parameter], delta: torch.Tensor) -> None:
    """Add the flat vector ``delta`` (parameters concatenated in order) to the parameters' ``.grad``."""
    i = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            d = delta[i:i + n].reshape(p.shape).to(p.dtype)
            if p.grad is None:
                p.grad = d.clone()
            else:
                p.grad.add_(d)
            i += n


# ---------------------------------------------------------------------- PCGrad
def pcgrad_orders(n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """One random order over the other tasks per task: ``[T, T-1]``, row i a permutation of ``{j ≠ i}``."""
    keys = torch.rand(n_tasks, n_tasks, generator=generator)
    keys.fill_diagonal_(2.0)  # task i sorts last, then is cut off
    return torch.argsort(keys, dim=1)[:, : n_tasks - 1]


def pcgrad_coefficients(gram: torch.Tensor, orders: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PCGrad's projections in the basis of the original gradients: ``C`` ``[T, T]`` with ``g_iᵖᶜ = Σ_k C_ik g_k``,
    computed from the Gram matrix ``G Gᵀ`` alone. ``orders[i]`` is the order in which ``g_i`` meets the others.

    The T-1 projection rounds are sequential by definition (each sees the previous result); each round is
    vectorised over all T tasks on T×T tensors."""
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


class PCGrad:
    """Projecting conflicting gradients (Yu et al. 2020) on the shared parameters; see the module docstring.

    ``seed`` (default: ``torch.initial_seed()`` at construction, i.e. the run's seed) and a step counter seed
    the random projection order, so all ranks of a distributed run use the same order."""

    def __init__(self, seed: int | None = None, eps: float = 1e-8) -> None:
        self.seed = int(torch.initial_seed() if seed is None else seed) % (2 ** 62)
        self.eps = float(eps)
        self.step = 0

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.step) % (2 ** 63))

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None:
        if weights is None:
            raise ValueError("PCGrad needs the task weights w of total = Σ w_t L_t + penalties (weights=...)")
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise ValueError("PCGrad needs at least one shared parameter that requires grad")
        T = losses.shape[0]
        G = task_gradients(losses, params, weights=weights.detach())  # rows ∂(w_t L_t)/∂θ_shared
        G = _all_reduce(G, mean=True)
        with torch.no_grad():
            C = pcgrad_coefficients(G @ G.T, pcgrad_orders(T, self._generator()), self.eps)
            delta = (C.sum(0) - 1.0) @ G  # Σ_i g_iᵖᶜ − Σ_i g_i
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


# ---------------------------------------------------------------------- MGDA-UB
def min_norm_weights(gram: torch.Tensor, iters: int = 250, tol: float = 1e-10) -> torch.Tensor:
    """The min-norm point of the convex hull of T vectors from their Gram matrix: ``argmin_{α∈Δ} αᵀ M α``.

    From the uniform weights, ``iters`` pairwise Frank-Wolfe steps with exact line search (Lacoste-Julien & Jaggi
    2015): mass moves from the support vertex with the largest gradient to the vertex with the smallest. It
    converges linearly, where the plain Frank-Wolfe step of Sener & Koltun's solver converges as O(1/k) and
    zig-zags on faces (at T = 40, 250 plain steps leave ~20% excess norm², pairwise ones ~1e-5). Two tasks are
    solved exactly by one step. Everything stays on ``gram``'s device. The loop stops early once the pairwise gap
    ``(Mα)_v − (Mα)_s`` (zero exactly at the optimum) falls below ``tol`` times the largest diagonal entry; the test
    costs a host sync, so on an accelerator it is made only every 25 steps, on the CPU after every step."""
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square [T, T] matrix, got shape {tuple(gram.shape)}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    T = gram.shape[0]
    M = gram.double()
    if T == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    eye = torch.eye(T, dtype=M.dtype, device=M.device)
    alpha = torch.full((T,), 1.0 / T, dtype=M.dtype, device=M.device)
    neg_inf = torch.tensor(float("-inf"), dtype=M.dtype, device=M.device)
    stop = tol * float(M.diagonal().max().clamp_min(1e-300))
    check_every = 1 if M.device.type == "cpu" else 25
    for i in range(iters):  # pairwise steps: mass moves from the worst support vertex v to the best vertex s
        Ma = M @ alpha  # half the gradient of αᵀMα
        s = torch.argmin(Ma)
        v = torch.argmax(torch.where(alpha > 0, Ma, neg_inf))
        if i % check_every == 0 and float(Ma[v] - Ma[s]) <= stop:
            break
        curv = (M[s, s] + M[v, v] - 2 * M[s, v]).clamp_min(1e-30)
        step = torch.minimum(((Ma[v] - Ma[s]) / curv).clamp_min(0), alpha[v])  # exact line search on [0, α_v]
        alpha = alpha + step * (eye[s] - eye[v])
    return alpha.to(gram.dtype)


class MGDAUB:
    """MGDA-UB (Sener & Koltun 2018): min-norm task weights from the gradients w.r.t. the shared representation
    ``features["shared"]``; see the module docstring for the mechanics, scaling and DDP handling.

    ``normalization``: scale each task gradient before the min-norm problem by 1 (``none``), ``‖g_t‖`` (``l2``),
    ``L_t`` (``loss``) or ``L_t‖g_t‖`` (``loss+``); the weights then apply to the raw losses, as Sener & Koltun
    and LibMTL do."""

    def __init__(self, normalization: str = "none", iters: int = 250) -> None:
        if normalization not in MGDA_NORMS:
            raise ValueError(f"MGDA-UB normalization must be one of {', '.join(MGDA_NORMS)}, got {normalization!r}")
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"MGDA-UB iters must be a non-negative integer, got {iters!r}")
        self.normalization, self.iters = normalization, iters
        self._warned = False
        self.last_weights: torch.Tensor | None = None  # α of the latest step (on the device)

    def _weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        gram = gram.detach()
        if self.normalization == "none":
            scale = torch.ones_like(losses)
        else:
            gn = gram.diagonal().clamp_min(0).sqrt()
            ls = _all_reduce(losses.detach().clone(), mean=True)
            scale = {"l2": gn, "loss": ls, "loss+": ls * gn}[self.normalization]
        scale = scale.clamp_min(1e-12)
        return min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.iters)

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None:
        if weights is None:
            raise ValueError("MGDA-UB needs the task weights w of total = Σ w_t L_t + penalties (weights=...)")
        w = weights.detach().to(losses.dtype)
        z = (features or {}).get("shared")
        if z is not None and z.requires_grad:
            Gz = task_gradients(losses, z)  # [T, rows·dims]: this rank's rows of Z
            with torch.no_grad():
                alpha = self._weights(_all_reduce(Gz @ Gz.T, mean=False), losses)
                coef = w.sum() * alpha - w
                delta = (coef @ Gz).reshape(z.shape)
            self.last_weights = alpha
            handle = z.register_hook(lambda g: g + delta.to(g.dtype))
            try:
                total.backward()
            finally:
                handle.remove()
            return
        if not self._warned:
            warnings.warn("MGDA-UB: the model exposes no features['shared'] representation; falling back to MGDA "
                          "on the gradients of the shared parameters", stacklevel=2)
            self._warned = True
        params = [p for p in shared if p.requires_grad]
        G = _all_reduce(task_gradients(losses, params), mean=True)
        with torch.no_grad():
            alpha = self._weights(G @ G.T, losses)
            delta = (w.sum() * alpha - w) @ G
        self.last_weights = alpha
        total.backward()
        _add_to_grads(params, delta)

    def __repr__(self) -> str:
        return f"MGDAUB(normalization={self.normalization!r}, iters={self.iters})"


# ---------------------------------------------------------------------- named combiners (for `method+combiner`)
@dataclass(frozen=True)
class CombinerSpec:
    """A named combiner a method can be composed with (``srdml+pcgrad``): its hyper-parameters, declared once as
    typed `HParam`s in ``params`` (``defaults`` is derived from them, as for `MethodInfo`), and a factory."""

    name: str
    summary: str
    paper: str
    make: Callable[[dict[str, Any]], Combiner]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[HParam, ...] = ()

    def __post_init__(self) -> None:
        declared = {p.name: p.default for p in self.params}
        clash = {k for k in declared if k in self.defaults and self.defaults[k] != declared[k]}
        if len(declared) != len(self.params) or clash:
            raise ValueError(f"combiner {self.name!r}: a hyper-parameter declared twice or defaults that disagree "
                             f"with the declarations ({sorted(clash)})")
        object.__setattr__(self, "defaults", {**declared, **self.defaults})


def _make_mgda(hp: dict[str, Any]) -> Combiner:
    return MGDAUB(normalization=str(hp["mgda_norm"]), iters=hp["mgda_iters"])


MGDA_PARAMS: tuple[HParam, ...] = (
    HParam("mgda_norm", "str", "none", "scaling of each task gradient before the min-norm problem: none, l2 ‖g_t‖, "
           "loss L_t, loss+ L_t‖g_t‖ (Sener & Koltun's options)", choices=MGDA_NORMS),
    HParam("mgda_iters", "int", 250, "Frank-Wolfe iterations of the min-norm solver at most (LibMTL's MAX_ITER; "
           "it stops early once converged)", low=1),
)


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


def make_combiner(name: str, hp: Mapping[str, Any] | None = None) -> Combiner:
    """The combiner registered as ``name`` built from ``hp`` (its defaults fill what is missing)."""
    if name not in COMBINERS:
        raise ValueError(f"unknown gradient combiner {name!r}; known: {', '.join(COMBINERS)}")
    spec = COMBINERS[name]
    return spec.make({**spec.defaults, **(hp or {})})
