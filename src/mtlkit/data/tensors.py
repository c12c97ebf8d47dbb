"""Padded device tensors: the `[T, N, ...]` form every batched training and evaluation step reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtlkit.data.multitask import MultiTaskData


@dataclass
class Batch:
    """One batch: ``x`` [T, B, ...] (heterogeneous) or [B, ...] (shared input), ``y`` [T, B] or
    [T, B, P] (soft labels), ``mask`` [T, B] marks rows that carry a label."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    shared: bool


@dataclass
class DeviceData:
    """A data part on a device. Heterogeneous tasks are padded to the largest task (``x`` [T, N, ...]),
    padding rows have ``mask`` False; shared input keeps one ``x`` [N, ...]. Missing labels are 0 in
    ``y`` and False in ``mask``, so they never reach a loss or a metric as NaN."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    shared: bool
    counts: np.ndarray  # [T] labelled rows per task (host copy, for the sampler)

    @property
    def n_tasks(self) -> int:
        return self.mask.shape[0]

    @property
    def n_rows(self) -> int:
        return self.mask.shape[1]

    def chunks(self, size: int | None = None) -> Iterator[Batch]:
        """Full-data evaluation in row chunks of ``size`` (all rows at once when None)."""
        N = self.n_rows
        size = N if size is None or size <= 0 else size
        for s in range(0, N, size):
            sl = slice(s, min(s + size, N))
            x = self.x[sl] if self.shared else self.x[:, sl]
            yield Batch(x=x, y=self.y[:, sl], mask=self.mask[:, sl], shared=self.shared)

    def full(self) -> Batch:
        return Batch(x=self.x, y=self.y, mask=self.mask, shared=self.shared)


def to_device_data(data: MultiTaskData, device: Any = None, dtype: Any = None) -> DeviceData:
    """Pad and move ``data`` to ``device`` (float32 unless ``dtype``)."""
    dtype = dtype or torch.float32
    host = np.float64 if dtype == torch.float64 else np.float32  # staging arrays must not round float64 data
    T = data.n_tasks
    label_tail = (data.spec.n_outputs,) if data.kind == "distribution" else ()
    if data.xs is not None:
        assert data.ys is not None
        counts = np.array([len(X) for X in data.xs])
        N = int(counts.max())
        x = np.zeros((T, N, *data.feature_shape), dtype=host)
        y = np.zeros((T, N, *label_tail), dtype=host)
        mask = np.zeros((T, N), dtype=bool)
        for t, (X, yt) in enumerate(zip(data.xs, data.ys, strict=True)):
            x[t, : len(X)] = X
            y[t, : len(X)] = yt
            mask[t, : len(X)] = True
        shared = False
    else:
        assert data.x is not None and data.y is not None
        x = data.x.astype(host)
        yy = np.moveaxis(data.y, 1, 0)  # [T, N(, P)]
        mask = ~np.isnan(yy) if yy.ndim == 2 else ~np.isnan(yy).any(-1)
        y = np.nan_to_num(yy, nan=0.0).astype(host)
        counts = mask.sum(1)
        shared = True
    return DeviceData(
        x=torch.as_tensor(x, dtype=dtype, device=device),
        y=torch.as_tensor(y, dtype=dtype, device=device),
        mask=torch.as_tensor(mask, device=device),
        shared=shared,
        counts=counts,
    )
