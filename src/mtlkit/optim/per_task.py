"""The T per-task gradients ``∂(w_t L_t)/∂inputs`` (`task_gradient_parts`, `task_gradients`) by whichever exact
route fits: ONE backward pass through a recorded `TaskTape` (a row-separable model on per-task input; checked
against autograd on its first step), otherwise ONE batched vector-Jacobian product or a loop of T backward calls,
whichever was measured faster for the shapes (`_dense_route`, cached in ``_ROUTE``). `_batched_vjp` is looked up
here at call time (benchmarks/method_steps.py swaps it for a per-task loop)."""

from __future__ import annotations

import math
import os
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mtlkit.errors import MtlkitError
from mtlkit.optim.gradients import TaskGradients, _all_reduce, _densify, _world_size
from mtlkit.optim.tape import TaskTape, _layer_task_grads

_ONE_PASS_STATUS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()


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
    forced = os.environ.get("MTLKIT_TASK_GRADIENTS", "auto")
    if forced not in ("auto", "batched", "loop"):
        raise MtlkitError(f"MTLKIT_TASK_GRADIENTS must be auto, batched or loop, got {forced!r}")
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
