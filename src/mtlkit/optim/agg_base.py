"""`GradientAggregator`: the base of the aggregators in `mtlkit.optim.aggregators` (input rows ``T·w_t ∇L_t``, the
update added to the plain backward, ``state()`` under the registry name; see that module's conventions), and the
helpers its subclasses share (coefficients to tensors, the host Gram matrix, running statistics kept in the
gradients' block structure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mtlkit.optim.base import SteppedState
from mtlkit.optim.gradients import TaskGradients, _add_to_grads, _all_reduce
from mtlkit.optim.per_task import task_gradient_parts
from mtlkit.optim.tape import TaskTape


class GradientAggregator(SteppedState):
    """A combiner that replaces the task part of the shared parameters' gradient by an aggregate of the T per-task
    gradients (see the module docstring for the input, scale, update and state conventions).

    Subclasses set ``name`` (their registry name, the prefix of their state keys) and implement `aggregate`,
    returning either coefficients ``[T]`` on the rows of the given `TaskGradients` or the update itself, one
    tensor per input (in the inputs' flattened block order: a ``[n_i]`` tensor for a dense block, ``[T, m_i]`` for a
    diagonal one)."""

    per_task_gradients = True  # the Trainer records a `TaskTape` for it on row-separable models
    name = "aggregator"

    # -- hooks
    def row_scale(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``c`` of the rows ``c_t ∇L_t`` the aggregator works on: ``T·w`` (the raw gradients under 1/T weights)."""
        return weights * losses.shape[0]

    def aggregate(self, G: TaskGradients, losses: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError

    # -- machinery
    @staticmethod
    def _host(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    def backward(self, losses: torch.Tensor, total: torch.Tensor, shared: Sequence[nn.Parameter],
                 weights: torch.Tensor | None = None, features: Mapping[str, torch.Tensor] | None = None,
                 tape: TaskTape | None = None) -> None:
        if weights is None:
            raise ValueError(f"{type(self).__name__} needs the task weights w of total = Σ w_t L_t + penalties "
                             "(weights=...)")
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise ValueError(f"{type(self).__name__} needs at least one shared parameter that requires grad")
        w = weights.detach().to(losses.dtype)
        global_losses = _all_reduce(losses.detach().clone(), mean=True)
        c = self.row_scale(global_losses, w).detach()
        G = task_gradient_parts(losses, params, weights=c, tape=tape)
        G.all_reduce(mean=True)
        plain = torch.where(c != 0, w / torch.where(c != 0, c, torch.ones_like(c)), torch.zeros_like(c))
        with torch.no_grad():
            out = self.aggregate(G, global_losses)
            if isinstance(out, torch.Tensor):
                coef = out.to(device=losses.device, dtype=losses.dtype)
                self.last_weights = coef
                delta = G.combine(coef - plain)
            else:
                base = G.combine(plain)
                delta = [o.reshape(b.shape).to(b.dtype) - b for o, b in zip(out, base, strict=True)]
        self.step += 1
        total.backward()
        _add_to_grads(params, delta)



def _coef(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=like.device, dtype=like.dtype)


def _gram_host(G: TaskGradients) -> np.ndarray:
    M = GradientAggregator._host(G.gram())
    return 0.5 * (M + M.T)


def _row_norms2(blocks: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """``‖g_t‖²`` per task from blocks (O(T·n), no Gram matrix)."""
    return sum(b.pow(2).sum(1) for _, b in blocks)  # type: ignore[return-value]


class _BlockState:
    """Helpers for a ``[T, n]`` running statistic kept block by block in a `TaskGradients`' structure."""

    @staticmethod
    def save(blocks: list[tuple[str, torch.Tensor]] | None, key: str) -> dict[str, torch.Tensor]:
        if blocks is None:
            return {}
        out = {}
        for i, (kind, b) in enumerate(blocks):
            out[f"{key}.{i}.{kind}"] = b.detach().clone()
        return out

    @staticmethod
    def load(state: Mapping[str, torch.Tensor], key: str) -> list[tuple[str, torch.Tensor]] | None:
        found = []
        for k, v in state.items():
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == key:
                found.append((int(parts[1]), parts[2], v))
        if not found:
            return None
        return [(kind, v.clone()) for _, kind, v in sorted(found, key=lambda x: x[0])]

    @staticmethod
    def compatible(blocks: list[tuple[str, torch.Tensor]] | None, G: TaskGradients) -> bool:
        return blocks is not None and len(blocks) == len(G.blocks) and all(
            k0 == k1 and b0.shape == b1.shape for (k0, b0), (k1, b1) in zip(blocks, G.blocks, strict=True))

    @staticmethod
    def match(blocks: list[tuple[str, torch.Tensor]], G: TaskGradients) -> list[tuple[str, torch.Tensor]]:
        """Blocks moved to the gradients' devices and dtypes (after a load)."""
        return [(k, b.to(device=g.device, dtype=g.dtype)) for (k, b), (_, g) in zip(blocks, G.blocks, strict=True)]


def _combine_blocks(blocks: Sequence[tuple[str, torch.Tensor]], coef: torch.Tensor) -> list[torch.Tensor]:
    """``Σ_t coef_t y_t`` over block rows: ``[n_i]`` for a dense block, ``[T, m_i]`` for a diagonal one."""
    out = []
    for kind, b in blocks:
        c = coef.to(device=b.device, dtype=b.dtype)
        out.append(c @ b if kind == "dense" else c[:, None] * b)
    return out


def _gram_blocks(blocks: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    return TaskGradients(blocks[0][1].shape[0], list(blocks), [b.shape for _, b in blocks]).gram()
