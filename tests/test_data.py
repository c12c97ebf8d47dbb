"""MultiTaskData: construction, validation errors, splits, feature transforms and the table loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA as SkPCA

from mtlkit import MultiTaskData
from mtlkit.data import PCA
from mtlkit.errors import DataError, MtlkitError


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _hetero(sizes=(30, 20, 25), d=4, kind="regression", seed=0, **kw) -> MultiTaskData:
    rng = _rng(seed)
    Xs = [rng.normal(size=(n, d)) for n in sizes]
    if kind == "regression":
        ys = [rng.normal(size=n) for n in sizes]
    elif kind == "binary":
        ys = [rng.integers(0, 2, size=n).astype(float) for n in sizes]
    else:
        ys = [rng.integers(0, 3, size=n).astype(float) for n in sizes]
    return MultiTaskData.from_tasks(Xs, ys, kind=kind, names=[f"t{i}" for i in range(len(sizes))], **kw)


# ---------------------------------------------------------------------- construction
def test_from_tasks_keeps_values_and_sizes():
    rng = _rng()
    Xs = [rng.normal(size=(n, 3)) for n in (5, 7, 2)]
    ys = [rng.normal(size=n) for n in (5, 7, 2)]
    d = MultiTaskData.from_tasks(Xs, ys, names=["a", "b", "c"])
    assert d.task_sizes == (5, 7, 2)
    assert d.task_names == ("a", "b", "c")
    assert d.n_tasks == 3 and d.kind == "regression" and not d.shared
    assert d.feature_shape == (3,)
    for t in range(3):
        X, y = d.task_arrays(t)
        np.testing.assert_array_equal(X, Xs[t])
        np.testing.assert_array_equal(y, ys[t])


def test_from_tasks_default_names_and_class_counts():
    d = MultiTaskData.from_tasks([np.zeros((3, 2)), np.ones((4, 2))],
                                 [np.array([0, 1, 2.0]), np.array([0, 1, 0, 1.0])], kind="multiclass")
    assert d.task_names == ("task0", "task1")
    assert d.spec.n_classes == (3, 2)
    d2 = MultiTaskData.from_tasks([np.zeros((3, 2))] * 3, [np.array([0, 1, 0.0])] * 3, kind="multiclass",
                                  n_classes=(2, 3, 4))
    assert d2.spec.n_classes == (2, 3, 4)
    assert d2.spec.n_outputs == 4


def test_from_shared_nan_is_missing_label():
    rng = _rng()
    X = rng.normal(size=(8, 3))
    Y = np.array([[0, 1], [1, np.nan], [np.nan, 0], [1, 1], [0, np.nan], [1, 0], [np.nan, np.nan], [0, 1]])
    d = MultiTaskData.from_shared(X, Y, kind="binary", names=["a", "b"])
    assert d.shared
    assert d.task_sizes == (6, 5)
    np.testing.assert_array_equal(d.label_mask(0), ~np.isnan(Y[:, 0]))
    Xa, ya = d.task_arrays(1)
    keep = ~np.isnan(Y[:, 1])
    np.testing.assert_array_equal(Xa, X[keep])
    np.testing.assert_array_equal(ya, Y[keep, 1])


def test_checksum_stable_and_sensitive():
    a, b = _hetero(seed=3), _hetero(seed=3)
    assert a.checksum() == b.checksum()
    assert len(a.checksum()) == 16
    c = _hetero(seed=3)
    c.xs[1] = c.xs[1].copy()
    c.xs[1][4, 2] += 1e-9
    assert c.checksum() != a.checksum()
    d = _hetero(seed=3)
    d.ys[0] = d.ys[0].copy()
    d.ys[0][0] += 1.0
    assert d.checksum() != a.checksum()


def test_checksum_sees_task_boundaries():
    """The same rows, one moved from task 0 to task 1, are different data."""
    rng = _rng(1)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    a = MultiTaskData.from_tasks([X[:3], X[3:]], [y[:3], y[3:]], names=["a", "b"])
    b = MultiTaskData.from_tasks([X[:2], X[2:]], [y[:2], y[2:]], names=["a", "b"])
    assert a.checksum() != b.checksum()


def test_checksum_shared_layout_sensitive_to_missing_label():
    X = _rng().normal(size=(5, 2))
    Y = np.array([[0.0, 1], [1, 0], [0, 1], [1, 1], [0, 0]])
    a = MultiTaskData.from_shared(X, Y)
    Y2 = Y.copy()
    Y2[2, 1] = np.nan
    assert a.checksum() == MultiTaskData.from_shared(X, Y.copy()).checksum()
    assert a.checksum() != MultiTaskData.from_shared(X, Y2).checksum()


# ---------------------------------------------------------------------- bad input
def _two(X2=None, y1=None, y2=None, kind="regression", **kw):
    rng = _rng(5)
    X1 = rng.normal(size=(6, 3))
    X2 = rng.normal(size=(6, 3)) if X2 is None else X2
    y1 = rng.normal(size=6) if y1 is None else y1
    y2 = rng.normal(size=len(X2)) if y2 is None else y2
    return MultiTaskData.from_tasks([X1, X2], [y1, y2], kind=kind, names=["alpha", "beta"], **kw)


def test_error_nan_in_features():
    X = _rng().normal(size=(6, 3))
    X[4, 2] = np.nan
    with pytest.raises(DataError) as e:
        _two(X2=X)
    msg = str(e.value)
    assert "'beta'" in msg and "NaN" in msg and "row 4" in msg and "column 2" in msg


def test_error_inf_in_features():
    X = _rng().normal(size=(6, 3))
    X[1, 0] = -np.inf
    with pytest.raises(DataError) as e:
        _two(X2=X)
    msg = str(e.value)
    assert "'beta'" in msg and "inf" in msg and "row 1" in msg and "column 0" in msg


def test_error_nan_in_shared_features():
    X = _rng().normal(size=(5, 3))
    X[3, 1] = np.nan
    with pytest.raises(DataError) as e:
        MultiTaskData.from_shared(X, np.zeros((5, 2)))
    assert "row 3" in str(e.value) and "column 1" in str(e.value)


def test_error_inf_in_regression_labels():
    y = np.zeros(6)
    y[5] = np.inf
    with pytest.raises(DataError) as e:
        _two(y2=y)
    assert "'beta'" in str(e.value) and "row 5" in str(e.value)


def test_error_binary_label_outside_classes():
    with pytest.raises(DataError) as e:
        _two(y1=np.array([0, 1, 0, 2, 1, 0.0]), y2=np.zeros(6), kind="binary")
    msg = str(e.value)
    assert "'alpha'" in msg and "label 2" in msg and "row 3" in msg


def test_error_multiclass_label_equal_to_n_classes():
    with pytest.raises(DataError) as e:
        _two(y1=np.zeros(6), y2=np.array([0, 1, 2, 0, 3, 1.0]), kind="multiclass", n_classes=3)
    msg = str(e.value)
    assert "'beta'" in msg and "label 3" in msg and "row 4" in msg and "0..2" in msg


def test_error_multiclass_non_integer_label():
    with pytest.raises(DataError) as e:
        _two(y1=np.array([0, 1, 1.5, 0, 2, 1]), y2=np.zeros(6), kind="multiclass", n_classes=3)
    msg = str(e.value)
    assert "'alpha'" in msg and "1.5" in msg and "row 2" in msg


def test_error_multiclass_negative_label():
    with pytest.raises(DataError) as e:
        _two(y1=np.array([0, 1, -1, 0, 2, 1.0]), y2=np.zeros(6), kind="multiclass", n_classes=3)
    assert "'alpha'" in str(e.value) and "row 2" in str(e.value)


def test_error_shared_label_outside_classes_names_original_row():
    """The row number counts every row, including those with a missing label."""
    X = _rng().normal(size=(6, 2))
    Y = np.c_[np.zeros(6), [np.nan, np.nan, np.nan, 1, 2, 0]]
    with pytest.raises(DataError) as e:
        MultiTaskData.from_shared(X, Y, kind="binary", names=["a", "b"])
    msg = str(e.value)
    assert "'b'" in msg and "label 2" in msg and "row 4" in msg


def test_error_rows_of_x_and_y_disagree():
    with pytest.raises(DataError) as e:
        _two(y2=np.zeros(5))
    msg = str(e.value)
    assert "'beta'" in msg and "6" in msg and "5" in msg


def test_error_shared_rows_disagree():
    with pytest.raises(DataError) as e:
        MultiTaskData.from_shared(np.zeros((5, 2)), np.zeros((4, 3)))
    assert "5" in str(e.value) and "4" in str(e.value)


def test_error_feature_shapes_differ_between_tasks():
    with pytest.raises(DataError) as e:
        _two(X2=np.zeros((6, 2)))
    msg = str(e.value)
    assert "'beta'" in msg and "'alpha'" in msg and "(2,)" in msg and "(3,)" in msg


def test_error_labels_count_differs_from_features_count():
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks([np.zeros((3, 2))] * 2, [np.zeros(3)])
    assert "2 feature arrays" in str(e.value) and "1 label" in str(e.value)


def test_error_empty_task():
    with pytest.raises(DataError) as e:
        _two(X2=np.zeros((0, 3)), y2=np.zeros(0))
    msg = str(e.value)
    assert "'beta'" in msg and "empty" in msg


def test_error_shared_task_all_labels_missing():
    Y = np.c_[np.array([0, 1, 0, 1.0]), np.full(4, np.nan)]
    with pytest.raises(DataError) as e:
        MultiTaskData.from_shared(np.zeros((4, 2)), Y, names=["ok", "void"])
    msg = str(e.value)
    assert "'void'" in msg and "missing" in msg


def test_error_task_too_few_rows_to_split():
    rng = _rng()
    d = MultiTaskData.from_tasks([rng.normal(size=(40, 2)), rng.normal(size=(3, 2))],
                                 [rng.normal(size=40), rng.normal(size=3)], names=["big", "tiny"])
    with pytest.raises(DataError) as e:
        d.split(test=0.2, val=0.2, seed=0)
    msg = str(e.value)
    assert "'tiny'" in msg and "3 rows" in msg


def test_error_shared_task_too_few_labels_to_split():
    rng = _rng()
    Y = np.c_[rng.integers(0, 2, 30).astype(float), np.full(30, np.nan)]
    Y[7, 1] = 1.0
    d = MultiTaskData.from_shared(rng.normal(size=(30, 2)), Y, kind="binary", names=["a", "rare"])
    with pytest.raises(DataError) as e:
        d.split(test=0.2, val=0.2, seed=0)
    msg = str(e.value)
    assert "'rare'" in msg and "1 labelled" in msg


def test_error_soft_labels_not_summing_to_one():
    P = np.full((6, 3), 1 / 3)
    bad = P.copy()
    bad[2] = [0.5, 0.5, 0.5]
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks([np.zeros((6, 2))] * 2, [P, bad], kind="distribution", names=["p", "q"])
    msg = str(e.value)
    assert "'q'" in msg and "row 2" in msg and "sum to 1" in msg


def test_error_soft_labels_negative():
    P = np.full((4, 2), 0.5)
    P[1] = [1.5, -0.5]
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks([np.zeros((4, 2))], [P], kind="distribution", names=["p"])
    assert "'p'" in str(e.value) and "row 1" in str(e.value)


def test_soft_labels_valid():
    rng = _rng()
    P = rng.dirichlet(np.ones(3), size=5)
    d = MultiTaskData.from_tasks([np.zeros((5, 2))] * 2, [P, P], kind="distribution")
    assert d.spec.n_classes == (3, 3)


@pytest.mark.parametrize("build", ["tasks", "shared"])
def test_error_unknown_kind(build):
    with pytest.raises(DataError) as e:
        if build == "tasks":
            MultiTaskData.from_tasks([np.zeros((3, 2))], [np.zeros(3)], kind="ordinal")
        else:
            MultiTaskData.from_shared(np.zeros((3, 2)), np.zeros((3, 1)), kind="ordinal")
    msg = str(e.value)
    assert "'ordinal'" in msg and "regression" in msg and "multiclass" in msg


def test_error_non_numeric_features():
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks([np.array([["a", "b"]] * 3)], [np.zeros(3)], names=["w"])
    assert "'w'" in str(e.value) and "numeric" in str(e.value)


def test_data_errors_are_mtlkit_errors():
    assert issubclass(DataError, MtlkitError)


# ---------------------------------------------------------------------- random splits
def _classes(sizes_by_class, seed=0):
    """A binary/multiclass task with the given per-class counts, rows shuffled."""
    rng = _rng(seed)
    y = np.concatenate([np.full(c, k, dtype=float) for k, c in enumerate(sizes_by_class)])
    rng.shuffle(y)
    return rng.normal(size=(len(y), 3)), y


def test_split_parts_disjoint_cover_and_sizes():
    tasks = [_classes((60, 37), 0), _classes((30, 23), 1), _classes((12, 19), 2)]
    d = MultiTaskData.from_tasks([t[0] for t in tasks], [t[1] for t in tasks], kind="binary")
    test, val = 0.2, 0.2
    s = d.split(test=test, val=val, seed=7)
    for t, n in enumerate(d.task_sizes):
        tr, va, te = (s.indices[k][t] for k in ("train", "val", "test"))
        assert len(np.intersect1d(tr, va)) == len(np.intersect1d(tr, te)) == len(np.intersect1d(va, te)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(n))
        assert len(te) == round(test * n)
        assert len(va) == round(val * (n - len(te)))
        X, y = d.task_arrays(t)
        np.testing.assert_array_equal(s.train.xs[t], X[tr])
        np.testing.assert_array_equal(s.val.ys[t], y[va])
        np.testing.assert_array_equal(s.test.xs[t], X[te])
    assert s.source is d
    assert s.part("train") is s.train


def test_split_is_stratified():
    counts = [(50, 30, 17), (41, 9, 22), (13, 40, 7)]
    tasks = [_classes(c, i) for i, c in enumerate(counts)]
    d = MultiTaskData.from_tasks([t[0] for t in tasks], [t[1] for t in tasks], kind="multiclass")
    for seed in range(5):
        s = d.split(test=0.25, val=0.2, seed=seed)
        for t, per_class in enumerate(counts):
            y_te = s.test.ys[t]
            y_rest = np.concatenate([s.train.ys[t], s.val.ys[t]])
            for k, n_k in enumerate(per_class):
                assert abs((y_te == k).sum() - 0.25 * n_k) <= 1, (seed, t, k)
                rest_k = (y_rest == k).sum()
                assert abs((s.val.ys[t] == k).sum() - 0.2 * rest_k) <= 1, (seed, t, k)


def test_split_regression_sizes():
    d = _hetero(sizes=(31, 57, 12))
    s = d.split(test=0.3, val=0.1, seed=0)
    for t, n in enumerate(d.task_sizes):
        n_te = len(s.test.ys[t])
        assert n_te == round(0.3 * n)
        assert len(s.val.ys[t]) == round(0.1 * (n - n_te))
        assert len(s.train.ys[t]) == n - n_te - len(s.val.ys[t])


def test_split_same_seed_same_split_other_seed_differs():
    d = _hetero(sizes=(40, 35, 28), kind="binary")
    a, b, c = d.split(seed=3), d.split(seed=3), d.split(seed=4)
    for k in ("train", "val", "test"):
        for t in range(d.n_tasks):
            np.testing.assert_array_equal(a.indices[k][t], b.indices[k][t])
    assert any(not np.array_equal(a.indices["test"][t], c.indices["test"][t]) for t in range(d.n_tasks))


def _kind_data(kind: str, n: int = 400, tied: bool = False) -> MultiTaskData:
    rng = _rng(11)
    X = rng.normal(size=(n, 3))
    if kind == "regression":
        y = rng.integers(0, 11, size=n).astype(float) if tied else rng.normal(size=n)
    elif kind == "binary":
        y = rng.integers(0, 2, size=n).astype(float)
    elif kind == "multiclass":
        y = rng.integers(0, 4, size=n).astype(float)
    else:
        y = rng.dirichlet(np.ones(3), size=n)
    return MultiTaskData.from_tasks([X, X[: n // 2]], [y, y[: n // 2]], kind=kind)


@pytest.mark.parametrize("kind,tied", [("regression", False), ("regression", True), ("binary", False),
                                       ("multiclass", False), ("distribution", False)])
def test_split_seeds_give_different_test_sets_with_random_overlap(kind, tied):
    """Two seeds' test sets share about test·n rows (as two random 20 % samples do), for every task kind: a
    split stratified by the sorted regression target once ignored the seed (overlap 100 %)."""
    d = _kind_data(kind, tied=tied)
    splits = [d.split(test=0.2, val=0.2, seed=s) for s in range(8)]
    for t in range(d.n_tasks):
        tests = [s.indices["test"][t] for s in splits]
        overlaps = [len(np.intersect1d(a, b)) / len(a) for i, a in enumerate(tests) for b in tests[i + 1:]]
        assert len({tuple(x) for x in tests}) == len(tests), (kind, t)
        assert 0.12 < float(np.mean(overlaps)) < 0.28, (kind, t, np.mean(overlaps))
        vals = [s.indices["val"][t] for s in splits]
        assert len({tuple(x) for x in vals}) == len(vals), (kind, t)


def test_split_regression_still_stratified_by_value():
    """Quantile-bin stratification: each test set covers the target's range evenly (each fifth of the sorted
    targets gives a fifth of the test rows, ±1 row per bin edge)."""
    d = _kind_data("regression", n=500)
    _, y = d.task_arrays(0)
    edges = np.quantile(y, [0.2, 0.4, 0.6, 0.8])
    for seed in range(5):
        te = d.split(test=0.2, val=0.2, seed=seed).indices["test"][0]
        counts = np.bincount(np.searchsorted(edges, y[te]), minlength=5)
        assert np.all(np.abs(counts - len(te) / 5) <= 2), counts


def test_split_indices_val_differs_by_seed_for_regression():
    d = _kind_data("regression", n=200)
    tr = [np.arange(150), np.arange(80)]
    te = [np.arange(150, 200), np.arange(80, 100)]
    a, b = d.split_indices(tr, te, val_fraction=0.2, seed=0), d.split_indices(tr, te, val_fraction=0.2, seed=1)
    assert not np.array_equal(a.indices["val"][0], b.indices["val"][0])


def test_split_without_val():
    d = _hetero()
    s = d.split(test=0.2, val=0.0, seed=0)
    assert s.val is None and s.indices["val"] is None
    with pytest.raises(DataError):
        s.part("val")
    for t, n in enumerate(d.task_sizes):
        assert len(s.train.ys[t]) + len(s.test.ys[t]) == n


@pytest.mark.parametrize("test,val", [(1.0, 0.2), (-0.1, 0.2), (0.2, 1.5)])
def test_split_bad_fractions(test, val):
    with pytest.raises(DataError):
        _hetero().split(test=test, val=val)


def test_shared_split_by_row():
    rng = _rng(2)
    N = 73
    X = rng.normal(size=(N, 4))
    Y = rng.integers(0, 2, size=(N, 3)).astype(float)
    Y[rng.random((N, 3)) < 0.2] = np.nan
    d = MultiTaskData.from_shared(X, Y, kind="binary")
    s = d.split(test=0.2, val=0.3, seed=11)
    tr, va, te = (s.indices[k] for k in ("train", "val", "test"))
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(N))
    assert len(te) == round(0.2 * N)
    assert len(va) == round(0.3 * (N - len(te)))
    np.testing.assert_array_equal(s.train.x, X[tr])
    np.testing.assert_array_equal(s.test.y, Y[te])  # NaN labels travel with their rows
    assert s.val.shared and s.test.shared
    s2 = d.split(test=0.2, val=0.3, seed=11)
    np.testing.assert_array_equal(s2.indices["test"], te)
    s3 = d.split(test=0.2, val=0.3, seed=12)
    assert not np.array_equal(s3.indices["test"], te)


# ---------------------------------------------------------------------- given index sets
def test_split_indices_given_sets():
    d = _hetero(sizes=(10, 8))
    train = [np.arange(0, 6), np.arange(0, 4)]
    val = [np.array([6, 7]), np.array([4, 5])]
    test = [np.array([8, 9]), np.array([6, 7])]
    s = d.split_indices(train, test, val=val)
    for t in range(2):
        X, y = d.task_arrays(t)
        np.testing.assert_array_equal(s.train.xs[t], X[train[t]])
        np.testing.assert_array_equal(s.val.ys[t], y[val[t]])
        np.testing.assert_array_equal(s.test.ys[t], y[test[t]])


def test_split_indices_val_carved_from_train():
    d = _hetero(sizes=(30, 22), kind="binary")
    train = [np.arange(0, 25), np.arange(2, 22)]
    test = [np.arange(25, 30), np.arange(0, 2)]
    s = d.split_indices(train, test, val_fraction=0.2, seed=1)
    for t in range(2):
        tr, va = s.indices["train"][t], s.indices["val"][t]
        assert len(np.intersect1d(tr, va)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.sort(train[t]))
        assert len(va) == round(0.2 * len(train[t]))
        np.testing.assert_array_equal(s.indices["test"][t], test[t])


def test_split_indices_overlap_error():
    d = _hetero(sizes=(10, 8))
    with pytest.raises(DataError) as e:
        d.split_indices([np.arange(6), np.arange(5)], [np.array([8, 9]), np.array([4, 6])], val_fraction=0)
    assert "'t1'" in str(e.value) and "overlap" in str(e.value)


def test_split_indices_out_of_range_error():
    d = _hetero(sizes=(10, 8))
    with pytest.raises(DataError) as e:
        d.split_indices([np.arange(6), np.arange(5)], [np.array([8, 10]), np.array([6, 7])], val_fraction=0)
    msg = str(e.value)
    assert "'t0'" in msg and "0..9" in msg


def test_split_indices_wrong_number_of_sets():
    d = _hetero(sizes=(10, 8, 9))
    with pytest.raises(DataError) as e:
        d.split_indices([np.arange(6)], [np.array([8, 9])])
    assert "1 given for 3 tasks" in str(e.value)


def test_split_indices_shared_overlap_and_range():
    d = MultiTaskData.from_shared(_rng().normal(size=(10, 2)), np.zeros((10, 2)), kind="regression")
    with pytest.raises(DataError):
        d.split_indices(np.arange(6), np.array([5, 6]), val_fraction=0)
    with pytest.raises(DataError):
        d.split_indices(np.arange(6), np.array([8, 12]), val_fraction=0)
    s = d.split_indices(np.arange(8), np.array([8, 9]), val_fraction=0.25, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([s.indices["train"], s.indices["val"]])), np.arange(8))
    assert len(s.indices["val"]) == 2


# ---------------------------------------------------------------------- feature transform
def test_pca_transform_fitted_on_unique_train_rows():
    rng = _rng(4)
    base = rng.normal(size=(40, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    # task 1 repeats 20 of task 0's rows: they enter the PCA fit once
    Xs = [base, np.concatenate([base[:20], rng.normal(size=(15, 6)) + 3.0])]
    ys = [rng.normal(size=40), rng.normal(size=35)]
    d = MultiTaskData.from_tasks(Xs, ys, transform=PCA(2))
    s = d.split(test=0.25, val=0.2, seed=0)
    raw_train = np.concatenate([Xs[t][s.indices["train"][t]] for t in range(2)])
    uniq = np.unique(raw_train, axis=0)
    assert len(uniq) < len(raw_train)  # the duplicates matter for this check
    np.testing.assert_allclose(s.transform.mean, uniq.mean(0), rtol=0, atol=1e-12)
    all_rows = np.unique(np.concatenate(Xs), axis=0)
    assert not np.allclose(s.transform.mean, all_rows.mean(0))
    ref = SkPCA(2).fit(uniq)
    signs = np.sign((ref.components_ * s.transform.components).sum(1))
    np.testing.assert_allclose(s.transform.components, ref.components_ * signs[:, None], atol=1e-8)
    assert s.train.feature_shape == (2,)
    for t in range(2):
        raw_te = Xs[t][s.indices["test"][t]]
        np.testing.assert_allclose(s.test.xs[t], (raw_te - s.transform.mean) @ s.transform.components.T, atol=1e-12)
        np.testing.assert_array_equal(s.test.ys[t], ys[t][s.indices["test"][t]])


# ---------------------------------------------------------------------- from_table
def _table(rng, n=40):
    tasks = rng.choice(["s1", "s2", "s3"], size=n)
    tasks[:3] = ["s2", "s1", "s3"]  # first appearance order: s2, s1, s3
    df = pd.DataFrame({"school": tasks, "f0": rng.normal(size=n), "score": rng.normal(size=n) * 10,
                       "f1": rng.integers(-5, 5, size=n), "f2": rng.random(size=n)})
    return df


def test_from_table_csv_round_trip(tmp_path):
    rng = _rng(8)
    df = _table(rng)
    path = tmp_path / "scores.csv"
    df.to_csv(path, index=False)
    d = MultiTaskData.from_table(path, task="school", target="score")
    assert d.task_names == ("s2", "s1", "s3")
    assert d.kind == "regression"
    assert d.feature_names == ["f0", "f1", "f2"]
    assert d.name == "scores"
    for t, nm in enumerate(d.task_names):
        sub = df[df.school == nm]
        X, y = d.task_arrays(t)
        np.testing.assert_array_equal(X, sub[["f0", "f1", "f2"]].to_numpy(dtype=float))
        np.testing.assert_array_equal(y, sub["score"].to_numpy())


def test_from_table_selected_features_and_binary_inference(tmp_path):
    rng = _rng(9)
    df = _table(rng)
    df["passed"] = (df["score"] > 0).astype(int)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    d = MultiTaskData.from_table(path, task="school", target="passed", features=["f2", "f0"])
    assert d.kind == "binary"
    assert d.feature_names == ["f2", "f0"]
    X, y = d.task_arrays(0)
    np.testing.assert_array_equal(X, df[df.school == "s2"][["f2", "f0"]].to_numpy())


def test_from_table_missing_column(tmp_path):
    path = tmp_path / "t.csv"
    _table(_rng()).to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="school", target="grade")
    msg = str(e.value)
    assert "'grade'" in msg
    for c in ("school", "f0", "score", "f1", "f2"):
        assert c in msg


def test_from_table_non_numeric_feature(tmp_path):
    df = _table(_rng())
    df["colour"] = np.where(np.arange(len(df)) % 3 == 0, "red", "blue")
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="school", target="score")
    assert "'colour'" in str(e.value) and "categorical" in str(e.value)


def test_from_table_categorical_one_hot(tmp_path):
    df = _table(_rng(3))
    df["colour"] = np.array(["red", "blue", "green"])[np.arange(len(df)) % 3]
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    d = MultiTaskData.from_table(path, task="school", target="score", categorical=True)
    names = d.feature_names
    assert {"colour_red", "colour_blue", "colour_green"} <= set(names)
    assert "colour" not in names
    for t, nm in enumerate(d.task_names):
        sub = df[df.school == nm]
        X, _ = d.task_arrays(t)
        for c in ("red", "blue", "green"):
            np.testing.assert_array_equal(X[:, names.index(f"colour_{c}")], (sub["colour"] == c).to_numpy(float))
        np.testing.assert_array_equal(X[:, names.index("f0")], sub["f0"].to_numpy())
        np.testing.assert_array_equal(X[:, [names.index(f"colour_{c}") for c in ("red", "blue", "green")]].sum(1),
                                      np.ones(len(sub)))


def test_from_table_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    df = _table(_rng(12))
    path = tmp_path / "scores.parquet"
    df.to_parquet(path, index=False)
    d = MultiTaskData.from_table(path, task="school", target="score")
    assert d.task_names == ("s2", "s1", "s3")
    for t, nm in enumerate(d.task_names):
        sub = df[df.school == nm]
        X, y = d.task_arrays(t)
        np.testing.assert_array_equal(X, sub[["f0", "f1", "f2"]].to_numpy(dtype=float))
        np.testing.assert_array_equal(y, sub["score"].to_numpy())


def test_from_table_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(tmp_path / "nope.csv", task="a", target="b")
    assert "nope.csv" in str(e.value)
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(DataError):
        MultiTaskData.from_table(p, task="a", target="b")


def test_bench_splits_of_a_regression_data_set_are_different_test_sets():
    """`bench`'s 3 random splits of regression data (srdml-synthetic) are 3 different test sets, so its CI is
    over splits, not over one split repeated."""
    from mtlkit.datasets import load
    from mtlkit.experiments.splits import make_splits

    splits = make_splits(load("srdml-synthetic"), 3, seed=0)
    tests = [tuple(np.concatenate(s.indices["test"])) for _, s in splits]
    assert len(set(tests)) == 3
