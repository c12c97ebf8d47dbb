"""`TaskTape`: what ONE forward pass of a row-separable model on per-task input records so that ONE backward pass
gives all T per-task gradients of the shared parameters (the per-example-gradient trick with example = task), the
per-layer rules that turn a recorded call's input and output gradient into T gradient rows (`_layer_task_grads`),
and `task_broadcast`, by which a model declares a parameter it broadcasts over the task axis. The route that uses
them, with its first-step check against autograd, is `mtlkit.optim.per_task.task_gradient_parts`."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.grad  # torch.nn.grad.conv2d_weight (imported by torch, but not declared to type checkers)
from torch import nn


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
