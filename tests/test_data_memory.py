"""Memory that grows with the data (issue 18): float32 features kept as given, split parts and standardised
copies held as indices into the source, `Normalizer.fit` streamed; every number equal, bit for bit, to what the
copying implementation gave (the reference here: the old code, on the concatenated float64 rows)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from mtlkit import MultiTaskData
from mtlkit.data import Normalizer, rows
from mtlkit.data.rows import FlatReader, Rows, TaskRows, pairwise_sum, sequential_sum
from mtlkit.data.tensors import to_device_data


def _old_fit(train: MultiTaskData) -> tuple[np.ndarray, np.ndarray, float, float]:
    """`Normalizer.fit` before streaming: every training row concatenated in float64."""
    xs = [np.asarray(X, dtype=np.float64) for X in (train.xs if train.xs is not None else [train.x])]
    flat = np.concatenate([X.reshape(len(X), -1) for X in xs], axis=0)
    if len(train.feature_shape) == 1:
        mean, std = flat.mean(0), flat.std(0)
        std = np.where(std > 1e-12, std, 1.0)
    else:
        mean, std = np.asarray(flat.mean()), np.asarray(flat.std())
    ys = np.concatenate([train.task_arrays(t)[1] for t in range(train.n_tasks)])
    return mean, std, float(ys.mean()), float(ys.std())


def _tasks(rng: np.random.Generator, sizes: list[int], shape: tuple[int, ...], dtype: type) -> MultiTaskData:
    Xs = [(rng.standard_normal((n, *shape)) * 50 + rng.uniform(-1e3, 1e3)).astype(dtype) for n in sizes]
    ys = [X.reshape(len(X), -1).sum(1) + rng.standard_normal(len(X)) for X in Xs]
    return MultiTaskData.from_tasks(Xs, ys, kind="regression")


@pytest.mark.parametrize("leaf", [128, 1000, 1 << 20])
def test_pairwise_sum_is_numpys(leaf: int) -> None:
    rng = np.random.default_rng(0)
    for n in (0, 5, 127, 128, 129, 1000, 12_345, 100_003):
        a = rng.standard_normal(n) * 1e6 + rng.standard_normal(n)
        got = pairwise_sum(lambda lo, hi, a=a: a[lo:hi], n, leaf=leaf)
        assert got == np.add.reduce(a), n


def test_sequential_sum_is_numpys_axis0() -> None:
    rng = np.random.default_rng(1)
    for n, d in ((1, 3), (7, 2), (1000, 5), (4097, 100)):
        a = rng.standard_normal((n, d)) * 1e6 + rng.standard_normal((n, d))
        blocks = (a[s:s + 13] for s in range(0, n, 13))
        assert np.array_equal(sequential_sum(blocks, d), a.sum(0)), (n, d)


@pytest.mark.parametrize("shape", [(1,), (2,), (9,), (1, 3, 4), (2, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_fit_equals_the_concatenated_fit(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...],
                                                  dtype: type) -> None:
    """Blocks of a few rows (and pairwise leaves of 128 elements) across task boundaries: the statistics are
    bitwise those of numpy on the concatenated float64 rows, whatever the block size."""
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 37)
    rng = np.random.default_rng(2)
    data = _tasks(rng, [50, 3, 211, 1, 90], shape, dtype)
    train = data.subset([np.sort(rng.permutation(n)[:max(1, 2 * n // 3)]) for n in data.task_sizes])
    norm = Normalizer.fit(train)
    mean, std, ym, ys = _old_fit(train)
    assert norm.x_mean.shape == mean.shape and norm.x_std.shape == std.shape
    assert np.array_equal(norm.x_mean, mean) and np.array_equal(norm.x_std, std)
    assert (norm.y_mean, norm.y_std) == (ym, ys)


def test_constant_feature_keeps_std_one() -> None:
    X = np.ones((20, 3))
    X[:, 1] = np.arange(20)
    data = MultiTaskData.from_tasks([X[:10], X[10:]], [np.arange(10.0), np.arange(10.0)], kind="regression")
    norm = Normalizer.fit(data)
    assert norm.x_std[0] == 1.0 and norm.x_std[2] == 1.0 and norm.x_std[1] == np.arange(20).std()


def test_float32_features_are_kept_not_copied() -> None:
    rng = np.random.default_rng(3)
    Xs = [rng.standard_normal((n, 4), dtype=np.float32) for n in (10, 20)]
    data = MultiTaskData.from_tasks(Xs, [np.zeros(10), np.ones(20)], kind="regression")
    assert data.xs is not None and all(a is b for a, b in zip(data.xs, Xs, strict=True))
    assert data.xs is data.xs  # arrays held as given: xs is a list, and assigning into it sticks
    data.xs[0] = Xs[0].copy()
    assert data.xs[0] is not Xs[0]
    ints = MultiTaskData.from_tasks([np.ones((3, 2), dtype=np.int64)], [np.zeros(3)], kind="regression")
    assert ints.xs is not None and ints.xs[0].dtype == np.float64
    # the same values as float64: the same identity, statistics and device store
    d64 = MultiTaskData.from_tasks([X.astype(np.float64) for X in Xs], [np.zeros(10), np.ones(20)], kind="regression")
    assert data.checksum() == d64.checksum()
    n32, n64 = Normalizer.fit(data), Normalizer.fit(d64)
    assert np.array_equal(n32.x_mean, n64.x_mean) and np.array_equal(n32.x_std, n64.x_std)
    a, b = n32.apply(data).tensors(), n64.apply(d64).tensors()
    assert torch.equal(a.x_rows, b.x_rows) and torch.equal(a.y_rows, b.y_rows)


@pytest.mark.parametrize("shared", [False, True])
def test_split_parts_index_into_the_source(shared: bool) -> None:
    """A split's parts share the source's feature arrays (an index each, no copy) and read as the copies did."""
    rng = np.random.default_rng(4)
    if shared:
        X = rng.standard_normal((120, 5))
        Y = (rng.random((120, 3)) < 0.5).astype(float)
        Y[rng.random(Y.shape) < 0.2] = np.nan
        data = MultiTaskData.from_shared(X, Y, kind="binary")
    else:
        data = _tasks(rng, [40, 70, 25], (5,), np.float64)
    split = data.split(test=0.2, val=0.2, seed=1)
    for name in ("train", "val", "test"):
        part, idx = split.part(name), split.indices[name]
        for t, R in enumerate(part.feature_rows()):
            base = data.feature_rows()[t if not shared else 0].base
            assert R.base is base and R.index is not None
            want = base[idx if shared else idx[t]]
            got = part.x if shared else part.xs[t]  # type: ignore[index]
            assert np.array_equal(got, want)
        assert part.checksum() == MultiTaskData(
            part.spec, **({"x": part.x, "y": part.y} if shared else {"xs": list(part.xs), "ys": part.ys}),
            validate=False).checksum()
        # a subset of a part composes the indices
        sub = part.subset(np.array([0, 2]) if shared else [np.array([0, 2])] * data.n_tasks)
        R0 = sub.feature_rows()[0]
        assert R0.base is data.feature_rows()[0].base
        assert np.array_equal(R0.array(), (part.x if shared else part.xs[0])[[0, 2]])  # type: ignore[index]
    if not shared:
        assert isinstance(split.train.xs, TaskRows) and len(split.train.xs + []) == data.n_tasks


def test_apply_standardises_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Normalizer.apply` copies no features: its rows are standardised when read, block by block, and the
    device store equals the one built from the eagerly standardised float64 copy."""
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 50)
    rng = np.random.default_rng(5)
    data = _tasks(rng, [30, 80, 12], (6,), np.float32)
    split = data.split(seed=2)
    norm = Normalizer.fit(split.train)
    lazy = norm.apply(split.val)
    assert all(R.fn is not None for R in lazy.feature_rows())
    eager = MultiTaskData(split.val.spec, xs=[norm.x(np.asarray(X, dtype=np.float64)) for X in split.val.xs],
                          ys=[norm.y(y) for y in split.val.ys], validate=False)
    for t in range(data.n_tasks):
        assert np.array_equal(lazy.xs[t], eager.xs[t]) and np.array_equal(lazy.ys[t], eager.ys[t])
    for dtype in (torch.float32, torch.float64):
        a, b = to_device_data(lazy, dtype=dtype), to_device_data(eager, dtype=dtype)
        assert torch.equal(a.x_rows, b.x_rows) and torch.equal(a.y_rows, b.y_rows)
        assert np.array_equal(a.counts, b.counts)


def test_flat_reader_crosses_tasks() -> None:
    parts = [Rows(np.arange(12.0).reshape(4, 3)), Rows(np.arange(100.0, 106.0).reshape(2, 3), np.array([1, 0]))]
    r = FlatReader(parts)
    flat = np.concatenate([parts[0].array().ravel(), parts[1].array().ravel()])
    assert r.size == 18
    for lo, hi in ((0, 18), (2, 7), (11, 13), (12, 18), (17, 18)):
        assert np.array_equal(r(lo, hi), flat[lo:hi])


def test_standardised_store_takes_no_full_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the standardised device store of a split part allocates the store (float32) plus blocks: the
    old path held a float64 copy of the part and a standardised float64 copy besides (host memory traced)."""
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 1 << 16)  # blocks of 512 KiB
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200_000, 16), dtype=np.float32)  # 12.8 MB
    data = MultiTaskData.from_tasks([X[:150_000], X[150_000:]], [np.zeros(150_000), np.zeros(50_000)],
                                    kind="regression")
    split = data.split(test=0.2, val=0.2, seed=0)
    store_bytes = sum(len(R) for R in split.train.feature_rows()) * 16 * 4
    tracemalloc.start()
    try:
        norm = Normalizer.fit(split.train)
        dd = norm.apply(split.train).tensors()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dd.x_rows.shape[0] == sum(len(R) for R in split.train.feature_rows()) + 1
    assert peak < 1.25 * store_bytes + 4 * 2**20, (peak, store_bytes)  # the store, its labels and a few blocks


# ---------------------------------------------------------------------- sparse label input (shared input)
def _shared_labels(rng: np.random.Generator, N: int = 150, T: int = 4, kind: str = "binary"):
    X = rng.standard_normal((N, 6)).astype(np.float32)
    Y = X[:, :T] @ rng.standard_normal((T, T)) + 0.3 * rng.standard_normal((N, T))
    Y = (Y > 0).astype(float) + 1.0 if kind == "binary" else Y * 3 + 10  # binary labels {1, 2}
    Y[rng.random(Y.shape) < 0.6] = np.nan
    r, t = np.nonzero(~np.isnan(Y))
    return X, Y, (r, t, Y[r, t])


def _three_ways(X, Y, cells, rng, **kw):
    import scipy.sparse as sp

    dense = MultiTaskData.from_shared(X, Y, **kw)
    perm = rng.permutation(len(cells[0]))  # cells in any order
    coo = MultiTaskData.from_shared(X, cells=tuple(c[perm] for c in cells), names=dense.task_names, **kw)
    csr = sp.csr_array((cells[2], (cells[0], cells[1])), shape=Y.shape)
    scipy_ = MultiTaskData.from_shared(X, csr, unstored="missing", **kw)
    return dense, coo, scipy_


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_label_cells_give_the_dense_labels_batches_and_runs(kind: str) -> None:
    """COO triples and a scipy.sparse matrix of the labelled cells: the same data (kind, classes, values,
    checksum), split, device stores (dense or sparse), batches and trained runs as the dense NaN-filled matrix."""
    import mtlkit
    from mtlkit.data import TaskBatchSampler
    from mtlkit.data.shared_labels import LabelCells

    rng = np.random.default_rng(7)
    X, Y, cells = _shared_labels(rng, kind=kind)
    kw = {} if kind == "binary" else {"kind": "regression"}
    dense, *others = _three_ways(X, Y, cells, rng, **kw)
    for d in others:
        assert isinstance(d.y, LabelCells) and d.y.nnz == len(cells[0])
        assert d.spec == dense.spec and d.task_sizes == dense.task_sizes and d.checksum() == dense.checksum()
        assert np.array_equal(np.asarray(d.y), dense.y, equal_nan=True)
        for t in range(d.n_tasks):
            assert np.array_equal(d.task_labels(t), dense.task_labels(t))
            assert np.array_equal(d.task_arrays(t)[0], dense.task_arrays(t)[0])
        sd, so = dense.split(seed=3), d.split(seed=3)
        for part in ("train", "val", "test"):
            assert np.array_equal(sd.indices[part], so.indices[part])
            assert so.part(part).checksum() == sd.part(part).checksum()
        norm = Normalizer.fit(sd.train)
        n2 = Normalizer.fit(so.train)
        assert (norm.y_mean, norm.y_std) == (n2.y_mean, n2.y_std)
        for how in ("dense", "sparse"):
            a = to_device_data(norm.apply(sd.train), labels=how)
            b = to_device_data(norm.apply(so.train), labels=how)
            assert a.labels is not None and b.labels is not None
            for k, v in a.labels.tensors().items():
                assert torch.equal(v, b.labels.tensors()[k]), (how, k)
            for ba, bb in zip(TaskBatchSampler(a, 16, seed=1), TaskBatchSampler(b, 16, seed=1), strict=True):
                assert torch.equal(ba.x, bb.x) and torch.equal(ba.y, bb.y) and torch.equal(ba.mask, bb.mask)
        ra = mtlkit.train("hard-share", sd, hparams={"epochs": 2}, seed=0, progress=False)
        rb = mtlkit.train("hard-share", so, hparams={"epochs": 2}, seed=0, progress=False)
        assert ra.history is not None and rb.history is not None
        assert np.array_equal(np.asarray(ra.history.train_loss), np.asarray(rb.history.train_loss))
        ea, eb = ra.evaluate("test"), rb.evaluate("test")
        for m in ea.per_task:
            assert np.array_equal(ea.per_task[m], eb.per_task[m], equal_nan=True), m


def test_label_cells_errors_and_the_default_for_scipy_sparse() -> None:
    import scipy.sparse as sp

    from mtlkit.errors import DataError

    X = np.zeros((5, 2))
    with pytest.raises(DataError, match="given twice"):
        MultiTaskData.from_shared(X, cells=(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([0.0, 1.0, 1.0])))
    with pytest.raises(DataError, match="outside 0..4"):
        MultiTaskData.from_shared(X, cells=(np.array([5]), np.array([0]), np.array([1.0])), kind="binary")
    with pytest.raises(DataError, match="not both"):
        MultiTaskData.from_shared(X, np.zeros((5, 1)), cells=(np.array([0]), np.array([0]), np.array([1.0])))
    with pytest.raises(DataError, match="unstored"):
        MultiTaskData.from_shared(X, np.zeros((5, 1)), unstored="nan")
    # by default a scipy.sparse Y's unstored cells are labels 0 (scikit-learn's indicator matrices)
    Ys = sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    d0 = MultiTaskData.from_shared(X, Ys, kind="binary")
    assert d0.task_sizes == (5, 5) and isinstance(d0.y, np.ndarray)
    d1 = MultiTaskData.from_shared(X, Ys, kind="binary", unstored="missing", validate=False)
    assert d1.task_sizes == (2, 2)


def test_label_cells_never_build_the_dense_matrix() -> None:
    """100,000 rows x 500 tasks, 0.2 % labelled: the dense float64 matrix would be 400 MB; data, split and the
    device stores stay within a few MB of host allocations (traced)."""
    rng = np.random.default_rng(8)
    N, T, nnz = 100_000, 500, 100_000
    flat = rng.choice(N * T, nnz, replace=False)
    r, t = flat // T, flat % T
    X = rng.standard_normal((N, 4), dtype=np.float32)
    tracemalloc.start()
    try:
        data = MultiTaskData.from_shared(X, cells=(r, t, (rng.random(nnz) < 0.5).astype(float)), kind="binary")
        split = data.split(seed=0)
        norm = Normalizer.fit(split.train)
        dd = norm.apply(split.train).tensors()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dd.labels is not None and dd.labels.sparse
    assert int(dd.counts.sum()) == split.train.y.nnz  # type: ignore[union-attr]
    assert peak < 40 * 2**20, peak  # X's float32 store (1 MB), cells (~2.4 MB each copy), masks [N]


def test_validation_of_rows_by_reference_reads_blocks_and_says_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Features held by reference are validated block by block, with the message of the whole array."""
    from mtlkit.data.spec import TaskSpec
    from mtlkit.errors import DataError

    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 6)
    base = np.arange(60.0).reshape(20, 3)
    base[[7, 15], [1, 2]] = [np.nan, np.inf]
    idx = np.arange(2, 20)
    spec = TaskSpec("regression", ("a",), (1,))
    with pytest.raises(DataError) as whole:
        MultiTaskData(spec, xs=[base[idx]], ys=[np.zeros(18)], feature_names=["u", "v", "w"])
    with pytest.raises(DataError) as blocks:
        MultiTaskData(spec, xs=[Rows(base, idx)], ys=[np.zeros(18)], feature_names=["u", "v", "w"])
    assert str(blocks.value) == str(whole.value) and "2 non-finite" in str(whole.value)
