"""`tomato-synthetic`: TOMATO's synthetic generator checked against labels recomputed row by row from its truth."""

from __future__ import annotations

import numpy as np
import pytest

import mtlkit
from mtlkit.datasets.synthetic import tomato_synthetic


def _softmax_row(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _topic_row(x: np.ndarray, centres: np.ndarray, sigma: float, sign: float) -> np.ndarray:
    logits = np.array([sign * float(np.sum((x - c) ** 2)) / sigma**2 for c in centres])
    return _softmax_row(logits)


def test_shapes_kind_and_rows():
    data, truth = tomato_synthetic(T=6, K=3, special_per_topic=2, d=10, p=4, n_per_task=50, seed=1)
    assert data.n_tasks == 6 and data.kind == "distribution" and not data.shared
    assert data.feature_shape == (10,)
    assert data.task_sizes == (50,) * 6
    assert data.name == "tomato-synthetic" and data.notes
    for t in range(6):
        X, y = data.task_arrays(t)
        assert X.shape == (50, 10) and y.shape == (50, 4)
        assert (y >= 0).all() and np.allclose(y.sum(1), 1.0)
    assert truth.w0.shape == (10, 4) and truth.ws.shape == (3, 6, 10, 4)
    assert truth.centres.shape == (3, 10) and truth.special.shape == (3, 6) and truth.special.dtype == bool
    assert truth.ws_norm.shape == (3, 6) and truth.params["seed"] == 1


def test_deterministic_and_seeded():
    a, ta = tomato_synthetic(n_per_task=30, seed=5)
    b, tb = tomato_synthetic(n_per_task=30, seed=5)
    c, tc = tomato_synthetic(n_per_task=30, seed=6)
    assert a.checksum() == b.checksum() != c.checksum()
    assert np.array_equal(ta.ws, tb.ws) and not np.array_equal(ta.w0, tc.w0)


def test_special_tasks_per_topic():
    _, truth = tomato_synthetic(T=12, K=4, special_per_topic=3, n_per_task=5, seed=3)
    assert (truth.special.sum(1) == 3).all()
    for k in range(4):
        for t in range(12):
            norm = np.sqrt(np.sum(truth.ws[k, t] ** 2))
            assert np.isclose(truth.ws_norm[k, t], norm)
            if truth.special[k, t]:
                assert norm > 0
            else:
                assert norm == 0.0 and not truth.ws[k, t].any()
    # w^s ~ N(0, σ_wg²): the special entries' spread matches σ_wg = 0.5
    assert abs(truth.ws[truth.special].std() - 0.5) < 0.05


@pytest.mark.parametrize("negative", [False, True])
def test_noise_free_labels_match_formula(negative):
    data, truth = tomato_synthetic(T=4, K=3, special_per_topic=1, d=6, p=3, n_per_task=20, sigma_y=0.0,
                                   sigma_nl=0.0, sigma_xg=3.0, negative_distance=negative, seed=11)
    sign = -1.0 if negative else 1.0
    for t in range(4):
        X, y = data.task_arrays(t)
        for i in range(len(X)):
            h = _topic_row(X[i], truth.centres, 3.0, sign)
            y_bar = sum(h[k] * X[i] @ (truth.w0 + truth.ws[k, t]) for k in range(3))
            np.testing.assert_allclose(y[i], _softmax_row(y_bar), rtol=1e-9, atol=1e-12)


def test_sine_applied_per_output():
    """σ_y = 0, large σ_nl: each output c gets Σ_j sin(α_j ȳ_c + β_j) with scalar α_j, β_j (p ≠ nonlinear_dim)."""
    data, truth = tomato_synthetic(T=2, K=2, special_per_topic=1, d=5, p=3, n_per_task=10, sigma_y=0.0,
                                   sigma_nl=1.0, nonlinear_dim=2, seed=4)
    assert truth.alpha.shape == truth.beta.shape == (2,)
    for t in range(2):
        X, y = data.task_arrays(t)
        for i in range(len(X)):
            h = _topic_row(X[i], truth.centres, 1.0, 1.0)
            y_bar = sum(h[k] * X[i] @ (truth.w0 + truth.ws[k, t]) for k in range(2))
            z = np.array([y_bar[c] + sum(np.sin(truth.alpha[j] * y_bar[c] + truth.beta[j]) for j in range(2))
                          for c in range(3)])
            np.testing.assert_allclose(y[i], _softmax_row(z), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("negative", [False, True])
def test_topic_weight_sign(negative):
    """Default σ's: the paper's +‖x − e_k‖² puts h on the farthest centre; the negative variant on the nearest."""
    data, truth = tomato_synthetic(n_per_task=100, negative_distance=negative, seed=2019)
    sign = -1.0 if negative else 1.0
    X = np.concatenate([data.task_arrays(t)[0] for t in range(data.n_tasks)])
    H = np.stack([_topic_row(x, truth.centres, 1.0, sign) for x in X])
    dist = np.array([[np.sum((x - c) ** 2) for c in truth.centres] for x in X])
    target = dist.argmin(1) if negative else dist.argmax(1)
    assert (H.argmax(1) == target).mean() > 0.99
    assert np.median(H.max(1)) > 0.99  # nearly one-hot


def test_registry_load_and_train():
    info = mtlkit.datasets.info("tomato-synthetic")
    assert not info.needs_data_dir
    data = mtlkit.datasets.load("tomato-synthetic", n_per_task=100)
    assert data.n_tasks == 12 and data.kind == "distribution" and data.task_sizes == (100,) * 12
    assert data.feature_shape == (64,)
    assert data.checksum() == tomato_synthetic(n_per_task=100)[0].checksum()
    assert any("+||x - e_k||^2" in n for n in data.notes)
    run = mtlkit.train("hard-share", data.split(seed=0), hparams={"epochs": 5})
    assert len(run.history.train_loss) == 5 and not run.history.diverged
    losses = np.stack(run.history.train_loss)
    assert np.isfinite(losses).all() and losses[-1].mean() < losses[0].mean()
    proba = run.predict_proba(data.task_arrays(0)[0][:7], task=0)
    assert proba.shape == (7, 5) and np.allclose(proba.sum(-1), 1.0, atol=1e-5)
