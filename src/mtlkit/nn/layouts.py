"""Per-task weight stacks between PyTorch's layout (task axis first) and the trace-norm paper's (task axis last).

These sit in `mtlkit.nn` so that a layer (`TaskConv2d.paper_weight`) can offer the paper's view without importing
a method; `mtlkit.methods.trace_norm` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlkit.errors import MtlkitError

__all__ = ["from_paper_layout", "to_paper_layout"]


def to_paper_layout(stack: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """PyTorch per-task weights → the paper's task-last layout: conv ``[T, cout, cin, kh, kw]`` → ``(kh, kw, cin,
    cout, T)``; fc ``[T, in, out]`` (a `TaskLinear` weight) → ``(in, out, T)``.

    A sequence of per-task tensors is stacked first. For a stack of ``nn.Linear`` weights (``[out, in]`` each)
    transpose each to ``[in, out]`` before calling. Only "tt" depends on this order: LAF and Tucker are invariant
    to permuting the non-task axes (the unfoldings only permute rows/columns or reorder the terms).
    """
    W = torch.stack(list(stack)) if not isinstance(stack, torch.Tensor) else stack
    if W.dim() == 5:
        return W.permute(3, 4, 2, 1, 0)
    if W.dim() == 3:
        return W.permute(1, 2, 0)
    raise MtlkitError(f"to_paper_layout expects a conv stack [T, cout, cin, kh, kw] or an fc stack [T, in, out], "
                      f"got shape {tuple(W.shape)}")


def from_paper_layout(W: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_paper_layout`: ``(kh, kw, cin, cout, T)`` → ``[T, cout, cin, kh, kw]``; ``(in, out, T)`` →
    ``[T, in, out]``."""
    if W.dim() == 5:
        return W.permute(4, 3, 2, 0, 1)
    if W.dim() == 3:
        return W.permute(2, 0, 1)
    raise MtlkitError(f"from_paper_layout expects (kh, kw, cin, cout, T) or (in, out, T), got shape {tuple(W.shape)}")
