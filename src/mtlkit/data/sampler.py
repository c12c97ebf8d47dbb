"""Mini-batches with the task axis first: every step gives each task the same batch size B."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mtlkit.data.tensors import Batch, DeviceData


class TaskBatchSampler:
    """Yields `Batch` es of ``[T, B, ...]`` (heterogeneous) or ``[B, ...]`` rows (shared input).

    Heterogeneous: an epoch is ``ceil(max_t n_t / B)`` steps, so the largest task sees each of its rows
    at least once (exactly once when B divides its size; the last step then tops up from a fresh
    permutation); shorter tasks cycle through fresh permutations of their rows, so every task gets B
    rows per step. B is capped at the largest task's size. Indices for a whole epoch are drawn on the host
    once and moved to the device in one transfer: the steps themselves never synchronise.
    """

    def __init__(self, data: DeviceData, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.rng = np.random.default_rng(seed)
        counts = data.counts
        if data.shared:
            self.batch_size = min(batch_size, data.n_rows)
            self.steps = -(-data.n_rows // self.batch_size)
        else:
            self.batch_size = min(batch_size, int(counts.max()))
            self.steps = -(-int(counts.max()) // self.batch_size)

    def __len__(self) -> int:
        return self.steps

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def _epoch_indices(self) -> np.ndarray:
        B, S = self.batch_size, self.steps
        need = B * S
        out = np.empty((len(self.data.counts), need), dtype=np.int64)
        for t, n in enumerate(self.data.counts):  # set-up per epoch, not per step
            reps = -(-need // int(n))
            out[t] = np.concatenate([self.rng.permutation(int(n)) for _ in range(reps)])[:need]
        return out.reshape(len(self.data.counts), S, B).transpose(1, 0, 2)  # [S, T, B]

    def __iter__(self) -> Iterator[Batch]:
        d = self.data
        if d.shared:
            perm = torch.as_tensor(self.rng.permutation(d.n_rows), device=d.x.device)
            for s in range(self.steps):
                rows = perm[s * self.batch_size:(s + 1) * self.batch_size]
                yield Batch(x=d.x[rows], y=d.y[:, rows], mask=d.mask[:, rows], shared=True)
            return
        idx = torch.as_tensor(self._epoch_indices(), device=d.x.device)  # [S, T, B]
        t_ix = torch.arange(d.n_tasks, device=d.x.device)[:, None]
        for s in range(self.steps):
            rows = idx[s]
            yield Batch(x=d.x[t_ix, rows], y=d.y[t_ix, rows], mask=d.mask[t_ix, rows], shared=False)
