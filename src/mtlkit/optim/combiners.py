"""Gradient combiners: how the per-task losses become gradients of the shared parameters.

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
the combination:

* ``PCGrad`` (Yu et al., NeurIPS 2020): per-task gradients of the *weighted* losses ``w_t L_t`` w.r.t. the shared
  parameters; each ``g_i`` is projected, in a random order over the other tasks ``j ≠ i``, onto the normal plane
  of every *original* ``g_j`` it conflicts with (``g_iᵖᶜ·g_j < 0``); the update is ``Σ_i g_iᵖᶜ``. The shared
  ``.grad`` receives ``Σ_i g_iᵖᶜ − Σ_i g_i`` on top of the plain backward. The T-1 projection rounds run on the
  host for a CPU Gram matrix (numpy), on the device otherwise.
* ``MGDAUB`` (Sener & Koltun, NeurIPS 2018, the upper-bound variant): per-task gradients of the raw losses
  ``L_t`` w.r.t. the shared representation ``Z = features["shared"]``; the min-norm point ``α`` of their convex
  hull by (pairwise) Frank-Wolfe on the T×T Gram matrix, on the device (at most ``iters`` steps, stopping once the
  pairwise gap vanishes; on an accelerator the gap is read every 25 steps, so a step syncs with the host rarely); the
  shared parameters then receive the gradient of ``(Σ_t w_t)·Σ_t α_t L_t`` — exactly MGDA-UB's ``Σ_t α_t L_t``
  under the default weights ``w_t = 1/T`` (they sum to 1); other weights keep their total, MGDA picks the split.
  This is done with a hook on ``Z`` that adds ``Σ_t ((Σw)·α_t − w_t)·∂L_t/∂Z`` to the gradient reaching it.
  Task-specific parameters keep their plain gradients ``w_t ∂L_t/∂θ_t``. A model that exposes no
  ``features["shared"]`` falls back (with a warning, once) to plain MGDA on the shared *parameters*. On per-task
  input a row-separable model's representation gradients do not overlap: the Gram matrix is diagonal and the same
  Frank-Wolfe steps run on the host with heaps (bit for bit the dense loop's result).

Distributed data parallel (``torch.distributed`` initialised, world size > 1): PCGrad averages the per-task
gradient matrix over ranks before combining, so every rank combines the same (global) gradients; MGDA-UB sums the
representation Gram matrix over ranks (each rank holds different rows of Z, so the global Gram is the sum of the
local ones) and averages the losses its normalisation uses. PCGrad's random order comes from a CPU generator
seeded from (seed, step counter), identical on every rank; the counter is saved by ``state()``.
"""

from __future__ import annotations

import heapq
import math
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.grad  # torch.nn.grad.conv2d_weight (imported by torch, but not declared to type checkers)
from torch import nn

from mtlkit.hparams import HParam

MGDA_NORMS = ("none", "l2", "loss", "loss+")


class Combiner(Protocol):
    """Turns a step's per-task losses ``[T]`` and total objective into ``.grad`` on the parameters.

    ``weights`` are the task weights ``w`` ``[T]`` of ``total = Σ_t w_t L_t + penalties``; ``features`` the
    model's named intermediate tensors (`ModelOutput.features`), e.g. the shared representation."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None: ...
    # A combiner that takes per-task gradients sets ``per_task_gradients = True`` and accepts ``tape=``: on a
    # row-separable model with per-task input the Trainer runs the forward pass under a `TaskTape` and hands it over.


class SumCombiner:
    """The default: back-propagate the weighted sum of task losses plus penalties, as one objective."""

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None) -> None:
        total.backward()

    def __repr__(self) -> str:
        return "SumCombiner()"


# ---------------------------------------------------------------------- per-task gradients
class TaskGradients:
    """The T per-task gradients of a list of inputs (the rows of the ``[T, n]`` matrix `task_gradients` returns),
    kept as one block per input, in order, so that the structure a row-separable model gives is never expanded:

    * ``dense``: ``[T, n_i]``, row t the flattened gradient of task t;
    * ``diag``: ``[T, m_i]`` for an input of ``T·m_i`` elements whose row t (viewed ``[T, m_i]``, task axis first)
      only task t's loss reaches: task t's gradient is block row t there and zero elsewhere (a task-stacked
      parameter, or the representation of per-task rows).

    The combiners need only `gram` (``G Gᵀ``), `combine` (``c G``, split back into the inputs' shapes) and, under
    DDP, `all_reduce` (the average over ranks, one collective)."""

    def __init__(self, n_tasks: int, blocks: list[tuple[str, torch.Tensor]], shapes: list[torch.Size],
                 rules: list[str] | None = None) -> None:
        self.n_tasks, self.blocks, self.shapes = n_tasks, blocks, shapes
        self.rules = rules if rules is not None else ["vjp"] * len(blocks)  # how each block was obtained

    def gram(self) -> torch.Tensor:
        """``G Gᵀ`` ``[T, T]``: a dense block adds its Gram matrix, a diagonal block its squared row norms."""
        out: torch.Tensor | None = None
        for kind, b in self.blocks:
            g = b @ b.T if kind == "dense" else torch.diag(b.pow(2).sum(1))
            out = g if out is None else out + g
        if out is None:
            raise ValueError("no inputs")
        return out

    def combine(self, coef: torch.Tensor) -> list[torch.Tensor]:
        """``Σ_t coef_t g_t``, one tensor per input in its own shape."""
        out = []
        for (kind, b), shape in zip(self.blocks, self.shapes, strict=True):
            c = coef.to(b.dtype)
            v = c @ b if kind == "dense" else c[:, None] * b
            out.append(v.reshape(shape))
        return out

    def dense(self) -> torch.Tensor:
        """The ``[T, n]`` matrix (inputs flattened and concatenated): a diagonal block becomes block rows."""
        return torch.cat([_densify(kind, b, self.n_tasks) for kind, b in self.blocks], dim=1)

    def all_reduce(self, mean: bool) -> None:
        """Sum (or average) every block over the ranks of an initialised process group, in one collective."""
        if _world_size() <= 1 or not self.blocks:
            return
        flat = _all_reduce(torch.cat([b.reshape(-1) for _, b in self.blocks]), mean=mean)
        i = 0
        for k, (kind, b) in enumerate(self.blocks):
            self.blocks[k] = (kind, flat[i:i + b.numel()].reshape(b.shape))
            i += b.numel()


class TaskTape:
    """Records, during ONE forward pass of a row-separable model on per-task input, what gives all T per-task
    gradients of the shared parameters from ONE backward pass (the per-example-gradient trick with example = task).

    Row-separable (`MethodInfo.row_separable`): task t's rows reach task t's loss only (models may mix tasks'
    *towers or experts* on a row, as cross-stitch, MMoE and PLE do, but never tasks' rows). Then the output gradient
    ``δ`` of any layer, taken for ``Σ_t c_t L_t``, is on task t's rows exactly ``c_t ∂L_t/∂(output)``, so

    * an ``nn.Linear`` applied to rows whose leading axis is the task axis (``[T, B, in]``, or ``[T·B, in]`` task-major)
      has ``∂(c_t L_t)/∂W = Σ_b δ_{t,b} a_{t,b}ᵀ`` (one ``bmm`` over the task axis) and ``Σ_b δ_{t,b}`` for the bias;
    * an ``nn.Conv2d`` on task-major images ``[T·B, C, H, W]`` gets its T weight gradients from one grouped weight
      gradient (`torch.nn.grad.conv2d_weight` with the task axis folded into the channels, ``groups = T·groups``);
    * a `TaskLinear` with T maps on ``[T, B, in]`` gives task t the slice t of its gradient; one with n maps on
      task-major rows ``[T·B, in]`` (each map on every row: cross-stitch's towers) ``Σ_{b∈t} a_b δ_{·,b}ᵀ``;
    * a `TaskConv2d` with T tasks and the representation of per-task rows (``[T, ...]``) are reached by task t
      through their slice t only: block row t of the plain gradient.

    Within the `with` block a forward hook on every such layer keeps the layer's input (which autograd saves anyway)
    and output; `task_gradient_parts` then asks autograd for the gradient of ``Σ_t c_t L_t`` w.r.t. those outputs
    and the task-stacked tensors in one call. A shared parameter P that a model uses only through tensors it
    broadcasts over a task axis (TOMATO's θ⁰ in ``θ⁰ + θˢ_kt``, ``[K, T, in, out]``) is declared by the model with
    `task_broadcast` during the forward pass: slice t of such a tensor reaches only L_t, so task t's gradient of P is
    the gradient of the tensor at slice t summed over the other broadcast axes. Any other shared parameter takes the
    batched vector-Jacobian product, so the result is always the full ``[T, n]`` gradient matrix. So does a layer
    never called under the tape, called on rows whose leading axis is not a multiple of T, or whose output was
    changed in place afterwards.

    The first time a model takes this path (per set of inputs) its result is compared with one autograd pass of
    ``Σ_t u_t c_t L_t`` for a fixed random sign vector u (which a model that mixes tasks' rows, or a layer whose
    weight is also used outside the layer, fails); a mismatch warns once and the model keeps the batched
    vector-Jacobian product for good. The check is decided alike on every rank of a process group."""

    def __init__(self, model: nn.Module, params: Sequence[torch.Tensor], n_tasks: int) -> None:
        from mtlkit.nn.task_conv import TaskConv2d  # lazy: mtlkit.nn imports the methods package
        from mtlkit.nn.task_layers import TaskLinear

        self.model, self.n_tasks = model, int(n_tasks)
        wanted = {id(p) for p in params}
        owners: dict[int, list[tuple[nn.Module, str]]] = {}
        for m in model.modules():
            for name, p in m.named_parameters(recurse=False):
                if id(p) in wanted:
                    owners.setdefault(id(p), []).append((m, name))
        self.layer_of: dict[int, tuple[nn.Module, str]] = {}  # param id -> (hooked layer, "weight" | "bias")
        self.stacked: set[int] = set()  # parameters of a TaskConv2d with T tasks, [T, ...]
        for pid, own in owners.items():
            if len(own) != 1:  # tied weights: no single rule
                continue
            m, name = own[0]
            if _per_row_layer(m) or (isinstance(m, TaskLinear) and type(m).forward is TaskLinear.forward):
                self.layer_of[pid] = (m, name)
            elif isinstance(m, TaskConv2d) and m.n_tasks == self.n_tasks:
                self.stacked.add(pid)
        self.layers = list(dict.fromkeys(m for m, _ in self.layer_of.values()))
        self.calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
        self.wanted = wanted
        self.views: dict[int, list[tuple[torch.Tensor, int]]] = {}  # param id -> [(broadcast tensor, task axis)]
        self.bad: set[nn.Module] = set()
        self._handles: list[Any] = []
        self.recorded = False

    def __enter__(self) -> TaskTape:
        self.calls = {m: [] for m in self.layers}
        self.views = {}
        self.bad = set()
        self.recorded = False
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        _RECORDING.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if _RECORDING and _RECORDING[-1] is self:
            _RECORDING.pop()
        self.recorded = True

    def _hook(self, m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if not torch.is_grad_enabled() or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return  # no gradient reaches the losses through this call
        a = args[0] if args and isinstance(args[0], torch.Tensor) else None
        T = self.n_tasks
        ok = a is not None and a.dim() >= 2 and a.shape[0] % T == 0 and a.shape[0] > 0
        if isinstance(m, nn.Conv2d):
            ok = ok and a is not None and a.dim() == 4 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
        elif not isinstance(m, nn.Linear):  # TaskLinear: weight[t] on task t's rows [T, B, in], or every map on rows
            ok = ok and a is not None and (a.dim() == 2 or (a.dim() == 3 and a.shape[0] == T == m.n_tasks))
        if not ok:
            self.bad.add(m)
            return
        self.calls[m].append((a, out, out._version))  # type: ignore[arg-type]


_RECORDING: list[TaskTape] = []  # the tapes whose `with` block is running (innermost last)


def task_broadcast(param: torch.Tensor, tensor: torch.Tensor, task_dim: int) -> torch.Tensor:
    """Declare to a recording `TaskTape` that ``tensor`` is ``param`` broadcast over leading axes (one of them the
    task axis ``task_dim``, e.g. ``θ⁰ + θˢ`` of shape ``[K, T, in, out]`` for θ⁰ ``[in, out]``) and that its slice t
    reaches task t's loss only; returns ``tensor`` unchanged. Without a recording tape it does nothing. A model
    that also uses ``param`` otherwise fails the tape's first-step check and keeps the batched product."""
    if _RECORDING and torch.is_grad_enabled() and tensor.requires_grad:
        tape = _RECORDING[-1]
        if id(param) in tape.wanted and id(param) not in tape.layer_of:
            tape.views.setdefault(id(param), []).append((tensor, task_dim % tensor.dim()))
    return tensor


def _per_row_layer(m: nn.Module) -> bool:
    """An ``nn.Linear`` / ``nn.Conv2d`` running its own forward (a subclass that overrides it is not trusted)."""
    return (isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward) or \
        (isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward)


_ONE_PASS_STATUS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()
_TAPES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], TaskTape]] = weakref.WeakKeyDictionary()


def task_tape(model: nn.Module, params: Sequence[torch.Tensor], n_tasks: int) -> TaskTape:
    """The `TaskTape` of ``model`` for these parameters and T (built once, reused by every step)."""
    key = (int(n_tasks), tuple(id(p) for p in params))
    hit = _TAPES.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    tape = TaskTape(model, params, n_tasks)
    _TAPES[model] = (key, tape)
    return tape


def _batched_vjp(losses: torch.Tensor, xs: Sequence[torch.Tensor], c: torch.Tensor | None, retain_graph: bool,
                 create_graph: bool) -> list[torch.Tensor]:
    """``[T, n_i]`` per input: ``∂(c_t L_t)/∂x`` for every t in ONE batched vector-Jacobian product."""
    T = losses.shape[0]
    eye = torch.eye(T, dtype=losses.dtype, device=losses.device)
    gout = eye if c is None else eye * c[:, None]
    grads = torch.autograd.grad(losses, list(xs), grad_outputs=gout, is_grads_batched=True, retain_graph=retain_graph,
                                create_graph=create_graph, allow_unused=True)
    return [(g if g is not None else torch.zeros(T, *x.shape, dtype=losses.dtype, device=losses.device))
            .reshape(T, -1) for g, x in zip(grads, xs, strict=True)]


def _loop_vjp(losses: torch.Tensor, xs: Sequence[torch.Tensor], c: torch.Tensor | None,
              retain_graph: bool) -> list[torch.Tensor]:
    """``[T, n_i]`` per input by a loop of T ordinary backward calls (what the batched product replaces)."""
    T = losses.shape[0]
    rows: list[list[torch.Tensor]] = [[] for _ in xs]
    for t in range(T):
        obj = losses[t] if c is None else losses[t] * c[t]
        gs = torch.autograd.grad(obj, list(xs), retain_graph=retain_graph or t < T - 1, allow_unused=True)
        for r, g, x in zip(rows, gs, xs, strict=True):
            r.append((g if g is not None else torch.zeros_like(x, dtype=losses.dtype)).reshape(-1))
    return [torch.stack(r) for r in rows]


# Which of the two exact routes to T per-task gradients is faster, measured once per process for each (device,
# T, input shapes): {"batched", "loop"}. $MTLKIT_TASK_GRADIENTS=batched|loop forces one (e.g. to pin the last bits).
_ROUTE: dict[tuple[Any, ...], str] = {}
LOOP_MARGIN = 0.8  # the loop is chosen only when it takes under 80 % of the batched product's time


def _timed(fn: Callable[[], list[torch.Tensor]], device: torch.device) -> tuple[float, list[torch.Tensor]]:
    import time

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def _dense_route(losses: torch.Tensor, xs: Sequence[torch.Tensor], c: torch.Tensor | None,
                 retain_graph: bool) -> list[torch.Tensor]:
    """Per-task gradients without a tape (shared input, or a model that mixes tasks' rows): one batched
    vector-Jacobian product or a loop of T backward calls, whichever measured faster here for these shapes (the
    first call times both, twice, and keeps the batched result). Both are exact; they may differ in the last bits."""
    import os

    forced = os.environ.get("MTLKIT_TASK_GRADIENTS", "auto")
    if forced not in ("auto", "batched", "loop"):
        raise ValueError(f"MTLKIT_TASK_GRADIENTS must be auto, batched or loop, got {forced!r}")
    if forced != "auto":
        route = forced
    else:
        key = (losses.device.type, losses.shape[0], tuple(tuple(x.shape) for x in xs), losses.dtype)
        route = _ROUTE.get(key, "")
        if not route:
            tb = tl = math.inf
            out: list[torch.Tensor] = []
            for _ in range(2):
                dt, out = _timed(lambda: _batched_vjp(losses, xs, c, True, False), losses.device)
                tb = min(tb, dt)
                dt, _ = _timed(lambda: _loop_vjp(losses, xs, c, True), losses.device)
                tl = min(tl, dt)
            _ROUTE[key] = "loop" if tl < LOOP_MARGIN * tb else "batched"
            return out
    if route == "loop":
        return _loop_vjp(losses, xs, c, retain_graph)
    return _batched_vjp(losses, xs, c, retain_graph, False)


def task_gradient_parts(losses: torch.Tensor, inputs: torch.Tensor | Sequence[torch.Tensor],
                        weights: torch.Tensor | None = None, retain_graph: bool = True, create_graph: bool = False,
                        tape: TaskTape | None = None) -> TaskGradients:
    """The T per-task gradients ``∂(w_t L_t)/∂inputs`` as `TaskGradients` (blocks, see there).

    Without ``tape``: ONE batched vector-Jacobian product (``is_grads_batched``), dense blocks. With the `TaskTape`
    the forward pass ran under (a row-separable model on per-task input): ONE backward pass for every input a rule
    of the tape covers, the batched product for the rest only."""
    if losses.dim() != 1:
        raise ValueError(f"losses must be a [T] vector, got shape {tuple(losses.shape)}")
    xs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    T = losses.shape[0]
    c = None if weights is None else weights.detach().to(losses.dtype)
    shapes = [x.shape for x in xs]
    if create_graph:
        return TaskGradients(T, [("dense", g) for g in _batched_vjp(losses, xs, c, retain_graph, True)], shapes)
    if tape is None or not tape.recorded or tape.n_tasks != T:
        return TaskGradients(T, [("dense", g) for g in _dense_route(losses, xs, c, retain_graph)], shapes)
    sig = tuple(id(x) if isinstance(x, nn.Parameter) else ("tensor", tuple(x.shape[1:])) for x in xs)
    status = _ONE_PASS_STATUS.setdefault(tape.model, {})
    if status.get(sig) is False:
        return TaskGradients(T, [("dense", g) for g in _batched_vjp(losses, xs, c, retain_graph, False)], shapes)
    parts = _one_pass(losses, xs, c, retain_graph or sig not in status, tape)
    if sig not in status:
        ok = _check_one_pass(losses, xs, c, parts)
        status[sig] = ok
        if not ok:
            warnings.warn(f"per-task gradients: the one-pass rule disagrees with autograd for "
                          f"{type(tape.model).__name__} (is the method really row-separable?); using the batched "
                          "vector-Jacobian product for this model from now on", stacklevel=3)
            return TaskGradients(T, [("dense", g) for g in _batched_vjp(losses, xs, c, retain_graph, False)], shapes)
    return parts


def _one_pass(losses: torch.Tensor, xs: list[torch.Tensor], c: torch.Tensor | None, retain_graph: bool,
              tape: TaskTape) -> TaskGradients:
    """`task_gradient_parts` by the tape's rules (see `TaskTape`)."""
    T = losses.shape[0]
    rule: list[str] = []
    for x in xs:
        lay = tape.layer_of.get(id(x))
        lay_calls = tape.calls[lay[0]] if lay is not None else []
        if lay is not None and lay_calls and lay[0] not in tape.bad and all(o._version == v for _, o, v in lay_calls):
            rule.append("layer")
        elif id(x) in tape.views and all(v.shape[d] == T for v, d in tape.views[id(x)]):
            rule.append("view")
        elif id(x) in tape.stacked or (not isinstance(x, nn.Parameter) and x.dim() >= 1 and x.shape[0] == T):
            rule.append("diag")
        else:
            rule.append("vjp")
    layers = list(dict.fromkeys(tape.layer_of[id(x)][0] for x, r in zip(xs, rule, strict=True) if r == "layer"))
    calls = [(m, a, o) for m in layers for a, o, _ in tape.calls[m]]
    diag = [x for x, r in zip(xs, rule, strict=True) if r == "diag"]
    views = [(x, v, d) for x, r in zip(xs, rule, strict=True) if r == "view" for v, d in tape.views[id(x)]]
    left = [x for x, r in zip(xs, rule, strict=True) if r == "vjp"]
    got: dict[int, torch.Tensor] = {}
    targets = [o for _, _, o in calls] + diag + [v for _, v, _ in views]
    if targets:
        obj = losses.sum() if c is None else (losses * c).sum()
        grads = torch.autograd.grad(obj, targets, retain_graph=retain_graph or bool(left), allow_unused=True)
        per_layer: dict[nn.Module, dict[str, tuple[str, torch.Tensor]]] = {}
        for (m, a, _), d in zip(calls, grads[:len(calls)], strict=True):
            if d is not None:
                acc = per_layer.setdefault(m, {})
                with torch.no_grad():  # the layer's input may carry a graph: none is wanted here
                    layer_grads = _layer_task_grads(m, a, d, T)
                for name, (kind, g) in layer_grads.items():
                    if name in acc:
                        k0, g0 = acc[name]
                        if k0 != kind:  # a TaskLinear called on [T, B, in] and on [T·B, in] rows
                            g0, g, kind = _densify(k0, g0, T), _densify(kind, g, T), "dense"
                        g = g0 + g
                    acc[name] = (kind, g)
        for i, (x, r) in enumerate(zip(xs, rule, strict=True)):
            if r == "layer":
                m, name = tape.layer_of[id(x)]
                kind, g_layer = per_layer.get(m, {}).get(name, ("dense", None))
                got[id(x)] = (g_layer if g_layer is not None else
                              torch.zeros(T, x.numel(), dtype=losses.dtype, device=losses.device))
                rule[i] = f"layer-{kind}"
        for x, g in zip(diag, grads[len(calls):len(calls) + len(diag)], strict=True):
            got[id(x)] = (g if g is not None else torch.zeros_like(x)).reshape(T, -1)
        for (x, v, ax), g in zip(views, grads[len(calls) + len(diag):], strict=True):
            acc_v = got.get(id(x), torch.zeros(T, x.numel(), dtype=losses.dtype, device=losses.device))
            if g is not None:
                with torch.no_grad():  # slice t of the broadcast tensor, summed back to the parameter's shape
                    per = g.movedim(ax, 0).sum_to_size((T, *([1] * (v.dim() - 1 - x.dim())), *x.shape))
                    acc_v = acc_v + per.reshape(T, -1).to(losses.dtype)
            got[id(x)] = acc_v
    if left:
        for x, g in zip(left, _batched_vjp(losses, left, c, retain_graph, False), strict=True):
            got[id(x)] = g
    blocks = [("diag" if r.endswith("diag") else "dense", got[id(x)]) for x, r in zip(xs, rule, strict=True)]
    return TaskGradients(T, blocks, [x.shape for x in xs], [r.split("-")[0] for r in rule])


def _densify(kind: str, g: torch.Tensor, T: int) -> torch.Tensor:
    """A ``[T, m]`` diagonal block as dense ``[T, T·m]`` rows (a dense one unchanged)."""
    if kind == "dense":
        return g
    full = g.new_zeros(T, T, g.shape[1])
    idx = torch.arange(T, device=g.device)
    full[idx, idx] = g
    return full.reshape(T, -1)


def _layer_task_grads(m: nn.Module, a: torch.Tensor, d: torch.Tensor, T: int) -> dict[str, tuple[str, torch.Tensor]]:
    """One call's per-task parameter gradients of a hooked layer from its input ``a`` and output gradient ``d``, by
    parameter name, each as a block (kind, ``[T, ·]``) of `TaskGradients`: ``nn.Linear`` / ``nn.Conv2d`` on task-major
    rows give dense rows; a `TaskLinear` on ``[T, B, in]`` gives task t's slices (diagonal), on task-major rows
    ``[T·k, in]`` (every one of its n maps on every row, as cross-stitch's towers) dense rows ``[T, n·in·out]``."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    w, b = m.weight, getattr(m, "bias", None)
    if not isinstance(m, (nn.Linear, nn.Conv2d)):  # TaskLinear: weight [n, in, out], output [n, rows, out]
        if a.dim() == 3:
            if w.requires_grad:
                out["weight"] = ("diag", torch.bmm(a.to(d.dtype).transpose(1, 2), d).reshape(T, -1))
            if b is not None and b.requires_grad:
                out["bias"] = ("diag", d.sum(1))
            return out
        n = d.shape[0]
        a3 = a.to(d.dtype).reshape(T, -1, a.shape[-1])
        d4 = d.reshape(n, T, -1, d.shape[-1])
        if w.requires_grad:
            out["weight"] = ("dense", torch.einsum("tki,ntko->tnio", a3, d4).reshape(T, -1))
        if b is not None and b.requires_grad:
            out["bias"] = ("dense", d4.sum(2).transpose(0, 1).reshape(T, -1))
        return out
    if isinstance(m, nn.Linear):
        a2 = a.reshape(T, -1, a.shape[-1]).to(d.dtype)
        d2 = d.reshape(T, -1, d.shape[-1])
        if w.requires_grad:
            out["weight"] = ("dense", torch.bmm(d2.transpose(1, 2), a2).reshape(T, -1))
        if b is not None and b.requires_grad:
            out["bias"] = ("dense", d2.sum(1))
        return out
    assert isinstance(m, nn.Conv2d)
    k = a.shape[0] // T
    C, O, groups = m.in_channels, m.out_channels, m.groups
    if w.requires_grad:
        af = a.to(d.dtype).reshape(T, k, C, *a.shape[2:]).transpose(0, 1).reshape(k, T * C, *a.shape[2:])
        df = d.reshape(T, k, O, *d.shape[2:]).transpose(0, 1).reshape(k, T * O, *d.shape[2:])
        gw = torch.nn.grad.conv2d_weight(af, (T * O, C // groups, *m.kernel_size), df, stride=m.stride,
                                         padding=m.padding, dilation=m.dilation, groups=T * groups)
        out["weight"] = ("dense", gw.reshape(T, -1))
    if b is not None and b.requires_grad:
        out["bias"] = ("dense", d.reshape(T, k, O, -1).sum(dim=(1, 3)))
    return out


def _check_one_pass(losses: torch.Tensor, xs: list[torch.Tensor], c: torch.Tensor | None,
                    parts: TaskGradients) -> bool:
    """Does ``Σ_t u_t g_t`` of the one-pass result equal autograd's gradient of ``Σ_t u_t c_t L_t`` for a fixed
    random sign vector u? Decided alike on every rank of a process group."""
    T = losses.shape[0]
    u = torch.randint(0, 2, (T,), generator=torch.Generator().manual_seed(20_240_613)).to(losses) * 2 - 1
    cu = u if c is None else u * c
    exact = torch.autograd.grad((losses * cu).sum(), xs, retain_graph=True, allow_unused=True)
    num = den = 0.0
    with torch.no_grad():
        for f, e in zip(parts.combine(u), exact, strict=True):
            e = torch.zeros_like(f) if e is None else e.to(f.dtype)
            num += float((f - e).pow(2).sum())
            den += float(e.pow(2).sum() + f.pow(2).sum())
    eps = 1e-5 if losses.dtype == torch.float64 else 1e-3
    ok = torch.tensor(1.0 if math.isfinite(num) and num <= eps ** 2 * den else 0.0, device=losses.device)
    return bool(_all_reduce(ok, mean=False) >= _world_size())


def task_gradients(losses: torch.Tensor, inputs: torch.Tensor | Sequence[torch.Tensor],
                   weights: torch.Tensor | None = None, retain_graph: bool = True,
                   create_graph: bool = False, tape: TaskTape | None = None) -> torch.Tensor:
    """Gradients of the T task losses (times ``weights`` if given) w.r.t. ``inputs``: the ``[T, n]`` matrix whose row
    t is ``∂(w_t L_t)/∂inputs``, flattened and concatenated (an input a loss does not reach contributes zeros).

    Without ``tape``, ONE batched vector-Jacobian product; with the `TaskTape` the forward pass ran under (a
    row-separable model on per-task input), ONE backward pass (`task_gradient_parts`)."""
    return task_gradient_parts(losses, inputs, weights, retain_graph, create_graph, tape).dense()


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


def _add_to_grads(params: Sequence[nn.Parameter], deltas: Sequence[torch.Tensor]) -> None:
    """Add ``deltas`` (one tensor per parameter, in order) to the parameters' ``.grad``."""
    with torch.no_grad():
        for p, d in zip(params, deltas, strict=True):
            d = d.reshape(p.shape).to(p.dtype)
            if p.grad is None:
                p.grad = d.clone()
            else:
                p.grad.add_(d)


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
    check_every = 1 if M.device.type == "cpu" else 25
    d = M.diagonal()
    if bool(torch.isfinite(d).all()) and not bool(torch.count_nonzero(M - torch.diag(d))):
        alpha_d = _min_norm_diagonal(d.tolist(), iters, tol, check_every)  # one sync instead of one per check
        return torch.tensor(alpha_d, dtype=M.dtype).to(device=gram.device, dtype=gram.dtype)
    return _min_norm_pairwise(M, iters, tol, check_every).to(gram.dtype)


def _min_norm_pairwise(M: torch.Tensor, iters: int, tol: float, check_every: int) -> torch.Tensor:
    """`min_norm_weights`' pairwise Frank-Wolfe loop on a float64 Gram matrix, on its device."""
    T = M.shape[0]
    eye = torch.eye(T, dtype=M.dtype, device=M.device)
    alpha = torch.full((T,), 1.0 / T, dtype=M.dtype, device=M.device)
    neg_inf = torch.tensor(float("-inf"), dtype=M.dtype, device=M.device)
    stop = tol * float(M.diagonal().max().clamp_min(1e-300))
    for i in range(iters):  # pairwise steps: mass moves from the worst support vertex v to the best vertex s
        Ma = M @ alpha  # half the gradient of αᵀMα
        s = torch.argmin(Ma)
        v = torch.argmax(torch.where(alpha > 0, Ma, neg_inf))
        if i % check_every == 0 and float(Ma[v] - Ma[s]) <= stop:
            break
        curv = (M[s, s] + M[v, v] - 2 * M[s, v]).clamp_min(1e-30)
        step = torch.minimum(((Ma[v] - Ma[s]) / curv).clamp_min(0), alpha[v])  # exact line search on [0, α_v]
        alpha = alpha + step * (eye[s] - eye[v])
    return alpha


def _min_norm_diagonal(d: list[float], iters: int, tol: float, check_every: int) -> list[float]:
    """`min_norm_weights` of a diagonal Gram matrix ``diag(d)`` (the per-task representation gradients of a
    row-separable model never overlap): the very same pairwise Frank-Wolfe steps in float64, bit for bit (``Mα`` is
    ``d_t α_t`` exactly, a step changes two weights), with heaps for the argmin / argmax (ties to the lowest index,
    as torch's), so a step costs O(log T) on the host instead of O(T²) tensor work."""
    T = len(d)
    alpha = [1.0 / T] * T
    ma = [dt * a for dt, a in zip(d, alpha, strict=True)]
    low = [(v, t) for t, v in enumerate(ma)]  # min-heap of (Mα)_t
    high = [(-v, t) for t, v in enumerate(ma)]  # max-heap over the support (α_t > 0)
    heapq.heapify(low)
    heapq.heapify(high)
    stop = tol * max(max(d), 1e-300)
    for i in range(iters):
        while low[0][0] != ma[low[0][1]]:
            heapq.heappop(low)
        while -high[0][0] != ma[high[0][1]] or not alpha[high[0][1]] > 0:
            heapq.heappop(high)
        s, v = low[0][1], high[0][1]
        gap = ma[v] - ma[s]
        if i % check_every == 0 and gap <= stop:
            break
        curv = max(d[s] + d[v] - 2 * (d[s] if s == v else 0.0), 1e-30)
        step = min(max(gap / curv, 0.0), alpha[v])
        if s == v:
            alpha[s] = alpha[s] + step + -step  # eye[s] - eye[v] is 0: α + step·0
        else:
            alpha[s] = alpha[s] + step
            alpha[v] = alpha[v] - step
        for t in (s, v):
            ma[t] = d[t] * alpha[t]
            heapq.heappush(low, (ma[t], t))
            heapq.heappush(high, (-ma[t], t))
    return alpha


class MGDAUB:
    """MGDA-UB (Sener & Koltun 2018): min-norm task weights from the gradients w.r.t. the shared representation
    ``features["shared"]``; see the module docstring for the mechanics, scaling and DDP handling.

    ``normalization``: scale each task gradient before the min-norm problem by 1 (``none``), ``‖g_t‖`` (``l2``),
    ``L_t`` (``loss``) or ``L_t‖g_t‖`` (``loss+``); the weights then apply to the raw losses, as Sener & Koltun
    and LibMTL do."""

    per_task_gradients = True  # the Trainer records a `TaskTape` for it on row-separable models

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
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError("MGDA-UB needs the task weights w of total = Σ w_t L_t + penalties (weights=...)")
        w = weights.detach().to(losses.dtype)
        z = (features or {}).get("shared")
        if z is not None and z.requires_grad:
            Gz = task_gradient_parts(losses, z, tape=tape)  # [T, rows·dims]: this rank's rows of Z
            with torch.no_grad():
                alpha = self._weights(_all_reduce(Gz.gram(), mean=False), losses)
                coef = w.sum() * alpha - w
                delta = Gz.combine(coef)[0]
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
        G = task_gradient_parts(losses, params, tape=tape)
        G.all_reduce(mean=True)
        with torch.no_grad():
            alpha = self._weights(G.gram(), losses)
            deltas = G.combine(w.sum() * alpha - w)
        self.last_weights = alpha
        total.backward()
        _add_to_grads(params, deltas)

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
    kind: str = "aggregator"  # "aggregator" (per-task gradients) or "weighting" (task weights): how it is listed
    needs: tuple[str, ...] = ("per-task gradients",)  # what the composed method's `MethodInfo.needs` gains

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


COMBINERS["ew"] = CombinerSpec(
    "ew", "EW (equal weighting): the plain weighted sum of the task losses, the Trainer's default (any method "
    "without a combiner).", "the baseline of every weighting and aggregator", lambda hp: SumCombiner(),
    kind="weighting", needs=())

# the aggregators and loss weightings register here (they import this module's pieces, so they come last)
from mtlkit.optim import aggregators as _aggregators  # noqa: E402
from mtlkit.optim import weightings as _weightings  # noqa: E402

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
