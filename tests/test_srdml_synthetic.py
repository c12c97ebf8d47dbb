"""SRDML's synthetic data (§5.1, App. B): the structure the paper states holds in the generated truth — two
orthogonal half-vector bases, magnitudes 1/2/3 as twin tasks, a few sign flips, N(0, 0.1) label noise —
and the contradicting-task variant of Table 3."""

from __future__ import annotations

import numpy as np
import pytest

from mtlkit.datasets.srdml_synthetic import load_srdml_synthetic, srdml_synthetic


def test_shapes_and_names_are_the_papers():
    data, truth = srdml_synthetic(seed=0)
    assert data.n_tasks == 12 and data.kind == "regression" and not data.shared
    assert data.task_sizes == (100,) * 12 and data.feature_shape == (20,)
    assert truth.W.shape == (12, 20)
    assert data.task_names[:2] == ("b1-m1a", "b1-m1b") and data.task_names[-1] == "b2-m3b"


def test_bases_are_orthogonal_half_vectors():
    _, truth = srdml_synthetic(seed=1)
    b = truth.bases
    np.testing.assert_array_equal(b[0], np.r_[np.ones(10), np.zeros(10)])  # w1 = (1; 0)
    np.testing.assert_array_equal(b[1], np.r_[np.zeros(10), np.ones(10)])  # w2 = (0; 1)
    assert b[0] @ b[1] == 0
    np.testing.assert_array_equal(truth.base, [0] * 6 + [1] * 6)  # first half of the tasks on w1


def test_twins_share_magnitude_and_weights_are_proportional_to_the_base():
    _, truth = srdml_synthetic(seed=2)
    np.testing.assert_array_equal(truth.magnitude, [1, 1, 2, 2, 3, 3] * 2)
    for t in range(12):
        tw = truth.twin[t]
        assert truth.twin[tw] == t and tw != t
        np.testing.assert_array_equal(truth.W_clean[t], truth.W_clean[tw])  # twins are identical before noise
        np.testing.assert_array_equal(np.abs(truth.W[t]), np.abs(truth.W[tw]))  # flips keep the magnitudes
        np.testing.assert_array_equal(truth.W_clean[t], truth.magnitude[t] * truth.bases[truth.base[t]])
        # tasks of the other base are orthogonal to this one, even after the flips
        other = truth.base != truth.base[t]
        np.testing.assert_array_equal(truth.W[other] @ truth.W[t], 0.0)
    rel = truth.relation()
    assert rel[0, 1] == 2 and rel[0, 2] == 1 and rel[0, 7] == 0


def test_sign_flips_are_few_and_only_on_the_support():
    _, truth = srdml_synthetic(seed=3, n_flip=2)
    assert (truth.flipped.sum(1) == 2).all()
    assert not (truth.flipped & (truth.W_clean == 0)).any()
    np.testing.assert_array_equal(truth.W[truth.flipped], -truth.W_clean[truth.flipped])
    np.testing.assert_array_equal(truth.W[~truth.flipped], truth.W_clean[~truth.flipped])
    # "the overall pattern is kept": each noisy weight still points mostly along its clean one
    cos = (truth.W * truth.W_clean).sum(1) / (np.linalg.norm(truth.W, axis=1) * np.linalg.norm(truth.W_clean, axis=1))
    assert (cos >= 0.6 - 1e-12).all()


def test_labels_follow_the_model_with_the_stated_noise_and_means():
    data, truth = srdml_synthetic(seed=4, m=2000)
    resid = np.concatenate([y - X @ truth.W[t] for t, (X, y) in enumerate(zip(data.xs, data.ys, strict=True))])
    assert resid.mean() == pytest.approx(0.0, abs=0.02)
    assert resid.var() == pytest.approx(0.1, rel=0.05)  # N(0, 0.1·I): variance 0.1
    X = np.concatenate(data.xs)
    assert X.mean() == pytest.approx(0.5, abs=0.02) and X.var() == pytest.approx(1.0, rel=0.05)


def test_contradicting_variant_negates_every_second_twin():
    _, truth = srdml_synthetic(seed=5, contradicting=True, n_flip=0)
    for t in range(0, 12, 2):
        np.testing.assert_array_equal(truth.W[t + 1], -truth.W[t])
    np.testing.assert_array_equal(truth.sign, [1, -1] * 6)
    # within each base, the tasks point in both directions: their mean weight is zero
    for k in range(2):
        np.testing.assert_array_equal((truth.W[truth.base == k] / truth.magnitude[truth.base == k, None]).sum(0), 0)


def test_seed_reproducible_and_bad_arguments_raise():
    a = load_srdml_synthetic(seed=7)
    b = load_srdml_synthetic(seed=7)
    assert a.checksum() == b.checksum() != load_srdml_synthetic(seed=8).checksum()
    with pytest.raises(ValueError, match="n_tasks"):
        srdml_synthetic(n_tasks=10)
    with pytest.raises(ValueError, match="n_flip"):
        srdml_synthetic(n_flip=11)
    with pytest.raises(ValueError, match="multiple"):
        srdml_synthetic(d=21)
