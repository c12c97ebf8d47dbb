"""Per-task losses `[T]`: masked means over each task's labelled rows, so every task counts equally
(``L_t = (1/N_t) Σ_n ℓ``, as the papers weight them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtlkit.data.spec import TaskSpec
from mtlkit.data.tensors import Batch


class TaskLoss:
    """Loss and output link for a `TaskSpec`: squared error (regression), logistic (binary), softmax
    cross-entropy (multiclass, over each task's own classes) or soft-label cross-entropy (distribution)."""

    def __init__(self, spec: TaskSpec, device: torch.device | str | None = None) -> None:
        self.kind = spec.kind
        P = spec.n_outputs
        counts = torch.as_tensor(spec.n_classes, device=device)
        cm = torch.arange(P, device=device)[None, :] < counts[:, None]  # [T, P]
        self.class_mask = None if bool(cm.all()) or P == 1 else cm

    def to(self, device: torch.device | str) -> TaskLoss:
        if self.class_mask is not None:
            self.class_mask = self.class_mask.to(device)
        return self

    def _logits(self, pred: torch.Tensor) -> torch.Tensor:
        if self.class_mask is None:
            return pred
        return pred.masked_fill(~self.class_mask[:, None, :], float("-inf"))

    def per_row(self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unreduced loss [T, B]; rows outside ``mask`` are 0."""
        if self.kind == "regression":
            loss = (pred[..., 0] - y) ** 2
        elif self.kind == "binary":
            loss = F.binary_cross_entropy_with_logits(pred[..., 0], y, reduction="none")
        elif self.kind == "multiclass":
            logp = torch.log_softmax(self._logits(pred), dim=-1)
            loss = -logp.gather(-1, y.long()[..., None])[..., 0]
        else:
            logp = torch.log_softmax(self._logits(pred), dim=-1)
            loss = -(y * logp.masked_fill(y == 0, 0.0)).sum(-1)
        return torch.where(mask, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))

    def __call__(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-task mean loss [T] over the batch's labelled rows (0 for a task with none)."""
        m = batch.mask
        return self.per_row(pred, batch.y, m).sum(1) / m.sum(1).clamp_min(1)

    def link(self, pred: torch.Tensor) -> torch.Tensor:
        """Predictions on the label scale: values, P(class 1) [T, B], or class probabilities [T, B, P]."""
        if self.kind == "regression":
            return pred[..., 0]
        if self.kind == "binary":
            return torch.sigmoid(pred[..., 0])
        return torch.softmax(self._logits(pred), dim=-1)
