"""`TaskGradients`: the T per-task gradients of a list of inputs kept block by block (dense rows, or the diagonal
blocks a row-separable model gives), with the Gram matrix and combinations the combiners need; and the small
collective helpers (sum / mean over the ranks of a process group, adding deltas to ``.grad``) they share."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn


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


def _densify(kind: str, g: torch.Tensor, T: int) -> torch.Tensor:
    """A ``[T, m]`` diagonal block as dense ``[T, T·m]`` rows (a dense one unchanged)."""
    if kind == "dense":
        return g
    full = g.new_zeros(T, T, g.shape[1])
    idx = torch.arange(T, device=g.device)
    full[idx, idx] = g
    return full.reshape(T, -1)


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
