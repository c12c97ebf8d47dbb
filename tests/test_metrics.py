"""Per-task metrics checked against scikit-learn on each task's unmasked rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    explained_variance_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mtlkit.errors import DataError
from mtlkit.train.metrics import (
    KINDS,
    LOWER_IS_BETTER,
    METRICS_BY_KIND,
    PRIMARY_METRIC,
    average,
    compute_metrics,
)

T, N, P = 5, 40, 4
LENGTHS = np.array([40, 25, 7, 13, 31])  # ragged tasks


def ragged_mask(lengths=LENGTHS, n=N):
    return np.arange(n)[None, :] < np.asarray(lengths)[:, None]


def garbage_padding(a, mask):
    """Fill padded rows with NaN, which must not leak into any metric."""
    a = np.array(a, dtype=np.float64)
    a[~mask] = np.nan
    return a


def test_tables_are_consistent():
    assert set(PRIMARY_METRIC) == set(KINDS) == set(METRICS_BY_KIND)
    for kind, names in METRICS_BY_KIND.items():
        assert PRIMARY_METRIC[kind] in names
        for name in names:
            assert name in LOWER_IS_BETTER
    assert LOWER_IS_BETTER["rmse"] and LOWER_IS_BETTER["error"] and LOWER_IS_BETTER["cross_entropy"]
    assert not LOWER_IS_BETTER["accuracy"] and not LOWER_IS_BETTER["auc"]


@pytest.mark.parametrize("kind", KINDS)
def test_returns_the_declared_metrics_as_float_arrays(kind):
    rng = np.random.default_rng(0)
    if kind == "regression":
        yt, yp = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    elif kind == "binary":
        yt, yp = rng.integers(0, 2, (T, N)), rng.uniform(size=(T, N))
    elif kind == "multiclass":
        yt, yp = rng.integers(0, P, (T, N)), rng.dirichlet(np.ones(P), (T, N))
    else:
        yt, yp = rng.dirichlet(np.ones(P), (T, N)), rng.dirichlet(np.ones(P), (T, N))
    out = compute_metrics(kind, yt, yp)
    assert tuple(out) == METRICS_BY_KIND[kind]
    for v in out.values():
        assert v.dtype == np.float64 and v.shape == (T,)


def test_regression_against_sklearn():
    rng = np.random.default_rng(1)
    mask = ragged_mask()
    yt = rng.normal(size=(T, N)) * 3 + 1
    yp = yt + rng.normal(size=(T, N)) + 0.3
    out = compute_metrics("regression", garbage_padding(yt, mask), garbage_padding(yp, mask), mask)
    for t in range(T):
        a, b = yt[t, mask[t]], yp[t, mask[t]]
        assert out["rmse"][t] == pytest.approx(np.sqrt(mean_squared_error(a, b)), rel=1e-12)
        assert out["mae"][t] == pytest.approx(mean_absolute_error(a, b), rel=1e-12)
        assert out["explained_variance"][t] == pytest.approx(explained_variance_score(a, b), rel=1e-10)


def test_regression_explained_variance_degenerate_like_sklearn():
    yt = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [1.0, 5.0, 0.0]])
    yp = np.array([[2.0, 2.0, 2.0], [1.0, 3.0, 2.0], [0.0, 0.0, 0.0]])
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=bool)
    ev = compute_metrics("regression", yt, yp, mask)["explained_variance"]
    expected = [explained_variance_score(yt[t, mask[t]], yp[t, mask[t]]) for t in range(3)]
    np.testing.assert_allclose(ev, expected)
    np.testing.assert_allclose(ev, [1.0, 0.0, 1.0])


def test_binary_against_sklearn_with_ties():
    rng = np.random.default_rng(2)
    mask = ragged_mask()
    yt = rng.integers(0, 2, (T, N))
    yt[:, :2] = [0, 1]  # both classes in every task
    # coarse probabilities give many ties, and exact 0.5 values test the threshold
    yp = np.clip(np.round(rng.uniform(size=(T, N)) * 4) / 4, 1e-3, 1 - 1e-3)
    yp[:, 0] = 0.5
    out = compute_metrics("binary", garbage_padding(yt, mask), garbage_padding(yp, mask), mask)
    for t in range(T):
        a, p = yt[t, mask[t]], yp[t, mask[t]]
        hard = (p >= 0.5).astype(int)
        acc = 100 * accuracy_score(a, hard)
        assert out["accuracy"][t] == pytest.approx(acc)
        assert out["error"][t] == pytest.approx(100 - acc)
        assert out["auc"][t] == pytest.approx(roc_auc_score(a, p), rel=1e-12)
        assert out["precision"][t] == pytest.approx(precision_score(a, hard, zero_division=0))
        assert out["recall"][t] == pytest.approx(recall_score(a, hard, zero_division=0))
        assert out["cross_entropy"][t] == pytest.approx(log_loss(a, p, labels=[0, 1]), rel=1e-10)


def test_binary_threshold_clipping_and_zero_division():
    yt = np.array([[1, 0, 1], [0, 0, 0]])
    yp = np.array([[0.5, 0.4999, 1.0], [0.1, 0.2, 0.3]])  # p >= 0.5 is class 1
    out = compute_metrics("binary", yt, yp)
    assert out["error"][0] == 0.0 and out["accuracy"][0] == 100.0
    # p = 1 for a positive is clipped to 1 - 1e-7 (finite, tiny loss)
    expected = -(np.log(0.5) + np.log(1 - 0.4999) + np.log(1 - 1e-7)) / 3
    assert out["cross_entropy"][0] == pytest.approx(expected)
    # task 1: no positives, no positive predictions -> precision = recall = 0 (sklearn zero_division=0)
    assert out["precision"][1] == 0.0 and out["recall"][1] == 0.0
    assert np.isnan(out["auc"][1])  # one class present
    # clipping at the lower end: a confident wrong prediction costs -log(1e-7)
    ce = compute_metrics("binary", np.array([[1]]), np.array([[0.0]]))["cross_entropy"]
    assert ce[0] == pytest.approx(-np.log(1e-7))


def test_binary_bool_labels_and_float_labels():
    yt = np.array([[True, False, True, False]])
    yp = np.array([[0.9, 0.2, 0.4, 0.6]])
    a = compute_metrics("binary", yt, yp)
    b = compute_metrics("binary", yt.astype(float), yp)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["auc"][0] == pytest.approx(0.75)


def _multiclass_data(seed, n_classes, lengths):
    rng = np.random.default_rng(seed)
    t = len(n_classes)
    mask = ragged_mask(lengths)
    yt = np.zeros((t, N))
    yp = np.zeros((t, N, P))
    for k, pk in enumerate(n_classes):
        yt[k] = rng.integers(0, pk, N)
        yt[k, :pk] = np.arange(pk)  # every class present among the first rows
        yp[k, :, :pk] = rng.dirichlet(np.full(pk, 2.0), N) * 0.9 + 0.1 / pk  # bounded away from 0
    return yt, yp, mask


def test_multiclass_against_sklearn_different_class_counts():
    n_classes = [4, 2, 3, 4, 3]
    yt, yp, mask = _multiclass_data(3, n_classes, LENGTHS)
    out = compute_metrics(
        "multiclass", garbage_padding(yt, mask), garbage_padding(yp, mask), mask, n_classes=n_classes
    )
    for t, pk in enumerate(n_classes):
        a = yt[t, mask[t]].astype(int)
        p = yp[t, mask[t], :pk]
        hard = p.argmax(axis=1)
        labels = list(range(pk))
        acc = 100 * accuracy_score(a, hard)
        assert out["accuracy"][t] == pytest.approx(acc)
        assert out["error"][t] == pytest.approx(100 - acc)
        if pk == 2:
            auc = roc_auc_score(a, p[:, 1])
        else:
            auc = roc_auc_score(a, p, multi_class="ovr", average="macro", labels=labels)
        assert out["auc"][t] == pytest.approx(auc, rel=1e-12)
        prec = precision_score(a, hard, labels=labels, average="macro", zero_division=0)
        rec = recall_score(a, hard, labels=labels, average="macro", zero_division=0)
        assert out["precision"][t] == pytest.approx(prec)
        assert out["recall"][t] == pytest.approx(rec)
        assert out["cross_entropy"][t] == pytest.approx(log_loss(a, p, labels=labels), rel=1e-10)


def test_multiclass_auc_renormalises_own_columns_and_ignores_foreign_columns():
    rng = np.random.default_rng(4)
    yt = rng.integers(0, 3, (1, 60))
    own = rng.dirichlet(np.ones(3), 60)
    yp = np.zeros((1, 60, 5))
    yp[0, :, :3] = own * 0.7
    yp[0, :, 3:] = rng.dirichlet(np.ones(2), 60) * 0.3  # mass on columns that are not this task's classes
    out = compute_metrics("multiclass", yt, yp, n_classes=[3])
    assert out["auc"][0] == pytest.approx(roc_auc_score(yt[0], own, multi_class="ovr"), rel=1e-12)
    assert out["accuracy"][0] == pytest.approx(100 * accuracy_score(yt[0], own.argmax(1)))


def test_multiclass_auc_with_absent_class_averages_present_classes():
    rng = np.random.default_rng(5)
    yt = rng.choice([0, 2], size=(1, 50)).astype(float)  # class 1 never occurs
    yp = rng.dirichlet(np.ones(3), (1, 50))
    out = compute_metrics("multiclass", yt, yp)
    assert out["auc"].shape == (1,)
    expected = np.mean([roc_auc_score(yt[0] == c, yp[0, :, c]) for c in (0, 2)])
    assert out["auc"][0] == pytest.approx(expected, rel=1e-12)
    # precision/recall still macro over all labels range(p_t), absent classes counting 0
    hard = yp[0].argmax(1)
    prec = precision_score(yt[0], hard, labels=[0, 1, 2], average="macro", zero_division=0)
    rec = recall_score(yt[0], hard, labels=[0, 1, 2], average="macro", zero_division=0)
    assert out["precision"][0] == pytest.approx(prec)
    assert out["recall"][0] == pytest.approx(rec)


def test_nan_cases_empty_task_and_single_class():
    rng = np.random.default_rng(6)
    mask = ragged_mask([10, 0, 10], n=10)
    yt = rng.integers(0, 3, (3, 10)).astype(float)
    yt[0, :3] = [0, 1, 2]  # task 0: every class present
    yt[2] = 1  # single class present
    yp = rng.dirichlet(np.ones(3), (3, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from empty tasks
        out = compute_metrics("multiclass", yt, yp, mask)
        reg = compute_metrics("regression", yt, yp[..., 0], mask)
        binary = compute_metrics("binary", (yt > 0).astype(float), yp[..., 0], mask)
        dist = compute_metrics("distribution", yp[:, ::-1], yp, mask)
    for res in (out, reg, binary, dist):
        for name, v in res.items():
            assert np.isnan(v[1]), name
            assert np.isfinite(v[0]), name
    assert np.isnan(out["auc"][2]) and np.isfinite(out["error"][2])
    assert np.isnan(binary["auc"][2])


def test_distribution_against_hand_and_sklearn():
    rng = np.random.default_rng(7)
    mask = ragged_mask()
    yt = rng.dirichlet(np.ones(P), (T, N))
    yp = rng.dirichlet(np.full(P, 3.0), (T, N)) * 0.9 + 0.1 / P
    out = compute_metrics("distribution", garbage_padding(yt, mask), garbage_padding(yp, mask), mask)
    for t in range(T):
        a, p = yt[t, mask[t]], yp[t, mask[t]]
        ce = np.mean(-(a * np.log(p)).sum(axis=1))
        assert out["cross_entropy"][t] == pytest.approx(ce, rel=1e-12)
        acc = 100 * accuracy_score(a.argmax(1), p.argmax(1))
        assert out["accuracy"][t] == pytest.approx(acc)
        assert out["error"][t] == pytest.approx(100 - acc)
    # one-hot soft labels reduce to sklearn's log loss
    hard = rng.integers(0, P, N)
    onehot = np.eye(P)[hard][None]
    ce = compute_metrics("distribution", onehot, yp[:1])["cross_entropy"][0]
    assert ce == pytest.approx(log_loss(hard, yp[0], labels=list(range(P))), rel=1e-10)


def test_mask_none_equals_all_true():
    rng = np.random.default_rng(8)
    yt, yp = rng.integers(0, 2, (T, N)), rng.uniform(size=(T, N))
    a = compute_metrics("binary", yt, yp)
    b = compute_metrics("binary", yt, yp, np.ones((T, N), dtype=int))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_average_is_nanmean_over_tasks():
    res = {"error": np.array([10.0, np.nan, 30.0]), "auc": np.array([np.nan, np.nan])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        avg = average(res)
    assert avg["error"] == pytest.approx(20.0)
    assert np.isnan(avg["auc"])
    assert all(isinstance(v, float) for v in avg.values())


@pytest.mark.parametrize(
    ("kind", "yt", "yp", "kwargs", "match"),
    [
        ("ranking", np.zeros((2, 3)), np.zeros((2, 3)), {}, "unknown task kind"),
        ("regression", np.zeros((2, 3)), np.zeros((2, 4)), {}, "does not match"),
        ("regression", np.zeros((2, 3)), np.zeros((2, 3, 1)), {}, "dims"),
        ("binary", np.zeros(3), np.zeros(3), {}, "dims"),
        ("multiclass", np.zeros((2, 3)), np.zeros((2, 3)), {}, "dims"),
        ("distribution", np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), {}, "does not match"),
        ("regression", np.zeros((2, 3)), np.zeros((2, 3)), {"mask": np.ones((3, 2), bool)}, "mask shape"),
        ("multiclass", np.zeros((2, 3)), np.zeros((2, 3, 4)), {"n_classes": [4]}, "one class count"),
        ("multiclass", np.zeros((2, 3)), np.zeros((2, 3, 4)), {"n_classes": [4, 5]}, r"\[1, 4\]"),
        ("binary", np.full((1, 3), 2.0), np.zeros((1, 3)), {}, "binary label"),
        ("multiclass", np.array([[0, 3]]), np.full((1, 2, 4), 0.25), {"n_classes": [3]}, "not a class id"),
        ("multiclass", np.array([[0, 0.5]]), np.full((1, 2, 4), 0.25), {}, "not a class id"),
    ],
)
def test_errors(kind, yt, yp, kwargs, match):
    with pytest.raises(DataError, match=match):
        compute_metrics(kind, yt, yp, **kwargs)


def test_masked_out_bad_labels_are_ignored():
    yt = np.array([[1.0, 7.0, np.nan]])
    yp = np.array([[0.9, 0.1, np.nan]])
    mask = np.array([[True, False, False]])
    out = compute_metrics("binary", yt, yp, mask)
    assert out["error"][0] == 0.0
