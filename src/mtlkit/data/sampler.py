"""Mini-batches with the task axis first: every step gives each task the same batch size B."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from mtlkit.data.tensors import Batch, DeviceData

#: Row indices (T x B x steps) one block of an epoch's steps holds: 8 MiB of int64.
BLOCK_INDICES = 1 << 20
#: ... but at least this many steps per block (with many tasks a block of a few steps would make the replay a
#: Python loop over the tasks thousands of times per epoch); 16 steps of int64 indices are 128 bytes per row of one
#: step's batch, a third of its float32 features at d = 100.
BLOCK_MIN_STEPS = 16


#: Elements of one array of permutations `_permutations` draws at a time (8 MiB of int64).
PERMUTATION_ELEMENTS = 1 << 20


def _permutations(rng: np.random.Generator, n: int, m: int, keep: bool = True) -> np.ndarray:
    """``m`` permutations of ``arange(n)`` as rows of an ``[m, n]`` array: the draws of ``m`` successive
    ``shuffle(arange(n))`` calls (``permuted`` shuffles each row in turn with the same Fisher-Yates draws: tested),
    in one call per `PERMUTATION_ELEMENTS` instead of ``m`` Python calls (an epoch of 10,000 small tasks draws
    millions of them). ``keep=False``: only advance ``rng`` (the last block is returned, reused for each)."""
    rows = max(1, PERMUTATION_ELEMENTS // max(1, n))
    out = np.empty((m if keep else min(m, rows), n), dtype=np.int64)
    for i in range(0, m, rows):
        block = out[i:i + rows] if keep else out[:min(rows, m - i)]
        block[:] = np.arange(n, dtype=np.int64)
        rng.permuted(block, axis=1, out=block)
    return out


class TaskBatchSampler:
    """Yields `Batch` es of ``[T, B, ...]`` (heterogeneous) or ``[B, ...]`` rows (shared input).

    Heterogeneous: an epoch is ``ceil(max_t n_t / B)`` steps, so the largest task sees each of its rows
    at least once (exactly once when B divides its size; the last step then tops up from a fresh
    permutation); shorter tasks cycle through fresh permutations of their rows, so every task gets B
    rows per step. B is capped at the largest task's size. Indices for a whole epoch are drawn on the host
    once (then replayed per task in blocks of steps, so they never take ``T x B·steps`` memory) and each block
    moves to the device in one transfer: the steps themselves never synchronise. Each step gathers
    its ``[T, B, ...]`` batch from the unpadded rows of `DeviceData` with one index (task ``t``'s row ``i`` is
    row ``offsets[t] + i`` of the store), so memory follows the rows held, not T x the largest task (on the CPU
    the gather reads and standardises the source's rows, `SourceRows`: no copy of the data is held).

    Data-parallel training: every rank draws the same global batch from the same seed and keeps rows
    ``rank, rank + world_size, ...`` of it, so the ranks' rows together are exactly the single-process
    batch. B (global) is then rounded down to a multiple of ``world_size``.
    """

    def __init__(self, data: DeviceData, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        if batch_size < world_size:
            raise ValueError(f"batch_size {batch_size} is smaller than the {world_size} processes sharing it")
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.rank, self.world_size = rank, world_size
        counts = data.counts
        if data.shared:
            self.batch_size = min(batch_size, data.n_rows)
            self.steps = -(-data.n_rows // self.batch_size)
        else:
            self.batch_size = min(batch_size, int(counts.max()))
            self.batch_size = max(world_size, self.batch_size - self.batch_size % world_size)
            self.steps = -(-int(counts.max()) // self.batch_size)

    def __len__(self) -> int:
        return self.steps

    def state(self) -> dict[str, Any]:
        """The numpy bit generator's state (a JSON-able dict): taken before an epoch, it regenerates that epoch."""
        return dict(self.rng.bit_generator.state)  # numpy's getter builds a new dict; typed Mapping in its stubs

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from `state` so that the next epoch draws exactly what it drew then (resuming)."""
        self.rng.bit_generator.state = state

    def _task_streams(self) -> list[Mapping[str, Any]]:
        """Advance the generator through this epoch's draws (task by task, each task's ``ceil(B·steps / n_t)``
        permutations, as ever) and return each task's bit-generator state before its first draw, from which the
        task's rows are replayed block by block."""
        need = self.batch_size * self.steps
        states = []
        for n in self.data.counts:  # set-up per epoch, not per step
            states.append(self.rng.bit_generator.state)
            _permutations(self.rng, int(n), -(-need // int(n)), keep=False)  # only the generator's advance
        return states

    def _index_blocks(self) -> Iterator[np.ndarray]:
        """The epoch's row indices, ``[K, T, B]`` for K steps at a time (`BLOCK_INDICES` at most, unless that is
        under `BLOCK_MIN_STEPS` steps): the draws of `_task_streams` replayed, so memory is O(rows + block), not
        O(T x B·steps). A task's fresh permutations for a block are drawn in one call (`_permutations`;
        ``permutation(n)`` is ``shuffle(arange(n))``)."""
        counts = self.data.counts
        T, B, S = len(counts), self.batch_size, self.steps
        gens = []
        for st in self._task_streams():
            g = np.random.Generator(type(self.rng.bit_generator)())
            g.bit_generator.state = st
            gens.append(g)
        left = [np.empty(0, dtype=np.int64) for _ in range(T)]  # each task's drawn, unused rows (< n_t)
        K = max(1, min(S, max(BLOCK_MIN_STEPS, BLOCK_INDICES // max(1, T * B))))
        row_buf = np.empty(K * B, dtype=np.int64)
        for s0 in range(0, S, K):
            k = min(K, S - s0)
            out = np.empty((k, T, B), dtype=np.int64)  # laid out as the steps read it: each step's [T, B] contiguous
            for t, n in enumerate(counts):
                n, row, have = int(n), row_buf[:k * B], left[t]
                pos = min(len(have), k * B)
                row[:pos], rest = have[:pos], have[pos:]
                if pos < k * B:  # ceil((kB - unused) / n) fresh permutations, as drawn before
                    fresh = _permutations(gens[t], n, -(-(k * B - pos) // n)).reshape(-1)
                    row[pos:], rest = fresh[:k * B - pos], fresh[k * B - pos:]
                left[t] = rest.copy()  # rest views the permutations' array
                out[:, t, :] = row.reshape(k, B)
            yield out

    def _epoch_indices(self) -> np.ndarray:
        """The whole epoch's indices ``[S, T, B]`` at once (tests; training goes block by block)."""
        return np.concatenate(list(self._index_blocks()), axis=0)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch()

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        """One epoch's batches from step ``start`` on. The whole epoch's indices are drawn first whatever
        ``start`` is, so after `set_state` with the state saved before an epoch, ``epoch(k)`` yields exactly
        that epoch's steps k, k+1, ... and leaves the generator where the full epoch would have."""
        if not 0 <= start <= self.steps:
            raise ValueError(f"start must be in 0..{self.steps}, got {start}")
        d = self.data
        dev = d.device
        if d.shared:
            assert d.labels is not None
            host = self.rng.permutation(d.n_rows)
            perm = torch.as_tensor(host, device=dev)
            for s in range(start, self.steps):
                sl = slice(s * self.batch_size, (s + 1) * self.batch_size)
                rows = perm[sl][self.rank::self.world_size]
                y, mask = d.labels.gather(rows, host[sl][self.rank::self.world_size])
                yield Batch(x=d.gather_x(rows), y=y, mask=mask, shared=True)
            return
        assert d.y_rows is not None
        first = d.offsets[:-1][None, :, None]
        s0 = 0
        for block in self._index_blocks():  # [K, T, B] rows of each task, K steps
            k = block.shape[0]
            if s0 + k > start:
                mine = block[..., self.rank::self.world_size]
                mine += first  # in place (the block is this loop's own): rows of the store, no second block
                idx = torch.as_tensor(mine, device=dev)
                T, B = idx.shape[1:]
                for i in range(max(0, start - s0), k):
                    rows = idx[i].reshape(-1)
                    yield Batch(x=d.gather_x(rows).view(T, B, *d.feature_shape),
                                y=d.y_rows.index_select(0, rows).view(T, B, *d.y_rows.shape[1:]),
                                mask=torch.ones((T, B), dtype=torch.bool, device=dev), shared=False)
            s0 += k
