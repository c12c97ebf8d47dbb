"""Shared test set-up."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import mtlkit


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for tiny models: identical arithmetic to single-threaded worker subprocesses
    (OMP_NUM_THREADS=1) and no OpenMP barrier stalls when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_data(name: str, n_tasks: int, seed: int = 0) -> mtlkit.MultiTaskData:
    """A small regression data set: n_tasks tasks of 30 rows, 4 features, y = X·w_t + noise 0.1."""
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(30, 4)) for _ in range(n_tasks)]
    ys = [X @ rng.normal(size=4) + 0.1 * rng.normal(size=30) for X in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression", names=[f"t{i}" for i in range(n_tasks)],
                                           name=name)
