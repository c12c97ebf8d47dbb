"""TaskBatchSampler and DeviceData: [T, B, ...] batches of real rows, epoch coverage, padding masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlkit import MultiTaskData
from mtlkit.data import TaskBatchSampler


def _tagged(sizes, d=3, seed=0):
    """Heterogeneous tasks whose feature 0 is a row id (t * 1000 + row) so batches can be traced back."""
    rng = np.random.default_rng(seed)
    Xs, ys = [], []
    for t, n in enumerate(sizes):
        X = rng.normal(size=(n, d))
        X[:, 0] = t * 1000 + np.arange(n)
        Xs.append(X)
        ys.append(rng.normal(size=n))
    return MultiTaskData.from_tasks(Xs, ys), Xs, ys


def _epoch_rows(batches, T):
    """Row ids seen per task over the given batches (from the tag in feature 0)."""
    rows = [[] for _ in range(T)]
    for b in batches:
        ids = b.x[..., 0].round().long()
        for t in range(T):
            rows[t].extend((ids[t] - t * 1000).tolist())
    return [np.array(r) for r in rows]


def test_batches_are_task_first_with_the_same_b():
    data, _, _ = _tagged((40, 13, 25))
    dd = data.tensors()
    s = TaskBatchSampler(dd, batch_size=8, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 5  # ceil(40 / 8)
    for b in batches:
        assert b.x.shape == (3, 8, 3)
        assert b.y.shape == (3, 8)
        assert b.mask.shape == (3, 8)
        assert bool(b.mask.all())  # sampled rows are real rows, never padding
        assert not b.shared


def test_largest_task_sees_each_row_once_short_tasks_cycle():
    sizes = (48, 10, 7, 48)
    data, _, _ = _tagged(sizes)
    s = TaskBatchSampler(data.tensors(), batch_size=6, seed=1)
    steps = len(s)
    assert steps == 8
    for epoch in range(3):
        rows = _epoch_rows(list(s), len(sizes))
        for t, n in enumerate(sizes):
            counts = np.bincount(rows[t], minlength=n)
            assert len(counts) == n  # nothing outside the task's rows
            assert counts.sum() == steps * 6
            if n == max(sizes):
                assert (counts == 1).all(), (epoch, t)
            else:
                assert counts.min() >= (steps * 6) // n, (epoch, t)
                assert counts.max() <= -(-(steps * 6) // n), (epoch, t)


def test_largest_task_covered_when_b_does_not_divide_it():
    """With n not a multiple of B the last step is filled from a fresh permutation: every row is seen,
    and no row more than twice."""
    sizes = (23, 5)
    data, _, _ = _tagged(sizes)
    s = TaskBatchSampler(data.tensors(), batch_size=4, seed=0)
    rows = _epoch_rows(list(s), 2)
    counts = np.bincount(rows[0], minlength=23)
    assert len(s) == 6 and counts.min() == 1 and counts.max() <= 2 and counts.sum() == 24


def test_batch_size_capped_at_largest_task():
    data, _, _ = _tagged((5, 3))
    s = TaskBatchSampler(data.tensors(), batch_size=64, seed=0)
    assert s.batch_size == 5 and len(s) == 1
    (b,) = list(s)
    assert b.x.shape == (2, 5, 3)


def test_batch_rows_are_real_rows_of_their_task():
    data, Xs, ys = _tagged((30, 11, 17), d=4, seed=3)
    dd = data.tensors()
    s = TaskBatchSampler(dd, batch_size=7, seed=5)
    for b in s:
        for t in range(3):
            ids = b.x[t, :, 0].round().long() - t * 1000
            assert (ids >= 0).all() and (ids < len(Xs[t])).all()
            torch.testing.assert_close(b.x[t], dd.x[t, ids])
            torch.testing.assert_close(b.y[t], dd.y[t, ids])
            np.testing.assert_allclose(b.x[t].numpy(), Xs[t][ids.numpy()].astype(np.float32))
            np.testing.assert_allclose(b.y[t].numpy(), ys[t][ids.numpy()].astype(np.float32))


def test_sampler_is_deterministic_given_seed():
    data, _, _ = _tagged((20, 9))
    dd = data.tensors()
    a = [b.x.clone() for b in TaskBatchSampler(dd, 4, seed=3)]
    b = [b.x.clone() for b in TaskBatchSampler(dd, 4, seed=3)]
    c = [b.x.clone() for b in TaskBatchSampler(dd, 4, seed=4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    # epochs differ from each other
    s = TaskBatchSampler(dd, 4, seed=3)
    e1 = torch.cat([b.x for b in s], 1)
    e2 = torch.cat([b.x for b in s], 1)
    assert not torch.equal(e1, e2)


def test_bad_batch_size():
    data, _, _ = _tagged((5, 3))
    with pytest.raises(ValueError):
        TaskBatchSampler(data.tensors(), batch_size=0)


def _shared(N=29, T=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 4))
    X[:, 0] = np.arange(N)
    Y = rng.integers(0, 2, size=(N, T)).astype(float)
    Y[rng.random((N, T)) < 0.3] = np.nan
    Y[0] = 1.0  # every task keeps a label
    return MultiTaskData.from_shared(X, Y, kind="binary"), X, Y


def test_shared_batches_and_masks():
    data, X, Y = _shared()
    dd = data.tensors()
    s = TaskBatchSampler(dd, batch_size=8, seed=2)
    seen = []
    batches = list(s)
    assert len(batches) == len(s) == 4
    for b in batches:
        assert b.shared
        B = b.x.shape[0]
        assert b.x.shape == (B, 4) and B <= 8
        assert b.y.shape == (3, B) and b.mask.shape == (3, B)
        rows = b.x[:, 0].round().long().numpy()
        seen.extend(rows.tolist())
        np.testing.assert_array_equal(b.mask.numpy(), ~np.isnan(Y[rows]).T)
        np.testing.assert_array_equal(b.y.numpy(), np.nan_to_num(Y[rows], nan=0.0).T.astype(np.float32))
        np.testing.assert_allclose(b.x.numpy(), X[rows].astype(np.float32))
    assert [b.x.shape[0] for b in batches[:-1]] == [8, 8, 8]
    assert sorted(seen) == list(range(len(X)))  # each row once per epoch


def test_device_data_padding_mask():
    rng = np.random.default_rng(0)
    sizes = (4, 7, 2)
    Xs = [rng.normal(size=(n, 3)) for n in sizes]
    ys = [rng.integers(0, 2, size=n).astype(float) for n in sizes]
    dd = MultiTaskData.from_tasks(Xs, ys, kind="binary").tensors()
    assert dd.x.shape == (3, 7, 3) and dd.y.shape == (3, 7) and dd.mask.shape == (3, 7)
    assert dd.x.dtype == torch.float32 and dd.mask.dtype == torch.bool
    np.testing.assert_array_equal(dd.counts, sizes)
    for t, n in enumerate(sizes):
        assert dd.mask[t, :n].all() and not dd.mask[t, n:].any()
        np.testing.assert_allclose(dd.x[t, :n].numpy(), Xs[t].astype(np.float32))
        np.testing.assert_array_equal(dd.y[t, :n].numpy(), ys[t])
        assert (dd.x[t, n:] == 0).all() and (dd.y[t, n:] == 0).all()
    assert dd.n_tasks == 3 and dd.n_rows == 7


def test_device_data_shared_missing_labels():
    data, X, Y = _shared(N=12)
    dd = data.tensors(dtype=torch.float64)
    assert dd.shared and dd.x.shape == (12, 4) and dd.y.shape == (3, 12)
    miss = np.isnan(Y).T
    np.testing.assert_array_equal(dd.mask.numpy(), ~miss)
    assert (dd.y.numpy()[miss] == 0).all()
    assert not torch.isnan(dd.y).any()
    np.testing.assert_array_equal(dd.y.numpy()[~miss], Y.T[~miss])
    np.testing.assert_array_equal(dd.counts, (~miss).sum(1))


def test_device_data_soft_labels():
    rng = np.random.default_rng(1)
    P = [rng.dirichlet(np.ones(3), size=n) for n in (3, 5)]
    dd = MultiTaskData.from_tasks([np.zeros((3, 2)), np.zeros((5, 2))], P, kind="distribution").tensors()
    assert dd.y.shape == (2, 5, 3)
    np.testing.assert_allclose(dd.y[0, :3].numpy(), P[0].astype(np.float32))
    assert (dd.y[0, 3:] == 0).all() and not dd.mask[0, 3:].any()


def test_device_data_chunks_cover_all_rows():
    data, _, _ = _tagged((9, 4))
    dd = data.tensors()
    chunks = list(dd.chunks(4))
    assert [c.x.shape[1] for c in chunks] == [4, 4, 1]
    torch.testing.assert_close(torch.cat([c.x for c in chunks], 1), dd.x)
    torch.testing.assert_close(torch.cat([c.mask for c in chunks], 1), dd.mask)


def test_device_data_float64_keeps_values_exactly():
    rng = np.random.default_rng(4)
    Xs = [rng.normal(size=(n, 3)) for n in (5, 3)]
    ys = [rng.normal(size=n) for n in (5, 3)]
    dd = MultiTaskData.from_tasks(Xs, ys).tensors(dtype=torch.float64)
    assert dd.x.dtype == dd.y.dtype == torch.float64
    for t, n in enumerate((5, 3)):
        np.testing.assert_array_equal(dd.x[t, :n].numpy(), Xs[t])
        np.testing.assert_array_equal(dd.y[t, :n].numpy(), ys[t])
    X, Y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    Y[2, 1] = np.nan
    sd = MultiTaskData.from_shared(X, Y, kind="regression").tensors(dtype=torch.float64)
    np.testing.assert_array_equal(sd.x.numpy(), X)
    np.testing.assert_array_equal(sd.y.numpy()[sd.mask.numpy()], Y.T[~np.isnan(Y.T)])
