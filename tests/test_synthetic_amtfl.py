"""`amtfl-synthetic`: Deep-AMTFL's §4.1 generator checked against its truth (bases, noise, split sizes)."""

from __future__ import annotations

import numpy as np

import mtlkit
from mtlkit.datasets.amtfl_synthetic import amtfl_split, amtfl_synthetic

EASY = [f"easy{i}" for i in range(1, 7)]
HARD = [f"hard{i}" for i in range(1, 7)]


def test_shapes_names_and_truth():
    data, truth = amtfl_synthetic()
    assert data.n_tasks == 12 and data.kind == "regression" and not data.shared
    assert data.name == "amtfl-synthetic" and data.notes
    assert list(data.task_names) == EASY + HARD
    assert data.feature_shape == (30,)
    assert data.task_sizes == (200,) * 6 + (150,) * 6
    assert truth.bases.shape == (6, 30) and truth.W.shape == (12, 30)
    assert truth.basis_idx.shape == (12, 2) and truth.coefs.shape == (12, 2)
    assert truth.easy.tolist() == [True] * 6 + [False] * 6
    assert truth.sigma.tolist() == [1.0] * 6 + [2.0] * 6
    assert len(truth.splits) == 5 and len(data.predefined_splits or []) == 5


def test_tasks_combine_two_bases_of_their_group():
    _, truth = amtfl_synthetic(seed=3)
    for t in range(12):
        idx = truth.basis_idx[t]
        assert len(set(idx.tolist())) == 2
        allowed = {0, 1, 2, 3} if truth.easy[t] else {2, 3, 4, 5}
        assert set(idx.tolist()) <= allowed
        assert (np.abs(truth.coefs[t]) >= 0.5).all() and (np.abs(truth.coefs[t]) <= 1.5).all()
        assert np.allclose(truth.W[t], truth.coefs[t] @ truth.bases[idx])
    # "combinatorially": the six easy (hard) tasks use each of the C(4, 2) = 6 pairs once
    assert len({tuple(p) for p in truth.basis_idx[:6].tolist()}) == 6
    assert len({tuple(p) for p in truth.basis_idx[6:].tolist()}) == 6


def test_labels_are_linear_plus_noise_of_sigma():
    data, truth = amtfl_synthetic(n_rows=20000, n_splits=1, seed=1)
    for t in range(12):
        X, y = data.task_arrays(t)
        resid = y - X @ truth.W[t]
        assert abs(resid.mean()) < 0.05
        assert abs(resid.std() - truth.sigma[t]) < 0.05 * truth.sigma[t]


def test_split_sizes_and_disjoint():
    data, truth = amtfl_synthetic()
    for i, s in enumerate(truth.splits):
        tr_pre, te_pre = (data.predefined_splits or [])[i]
        for t in range(12):
            sizes = (len(s["train"][t]), len(s["val"][t]), len(s["test"][t]))
            assert sizes == ((50, 50, 100) if t < 6 else (25, 25, 100))
            allr = np.concatenate([s["train"][t], s["val"][t], s["test"][t]])
            assert len(np.unique(allr)) == len(allr)
            assert np.array_equal(tr_pre[t], np.sort(np.concatenate([s["train"][t], s["val"][t]])))
            assert np.array_equal(te_pre[t], s["test"][t])
    # the five splits differ
    assert not np.array_equal(truth.splits[0]["test"][0], truth.splits[1]["test"][0])
    sp = amtfl_split(data, truth, 2)
    assert [len(v) for v in sp.indices["val"]] == [50] * 6 + [25] * 6
    carved = data.split_indices(*(data.predefined_splits or [])[0], val_fraction=0.5)
    assert [len(v) for v in carved.indices["train"]] == [50] * 6 + [25] * 6
    assert [len(v) for v in carved.indices["val"]] == [50] * 6 + [25] * 6


def test_deterministic_and_seeded():
    a, ta = amtfl_synthetic(seed=5)
    b, tb = amtfl_synthetic(seed=5)
    c, tc = amtfl_synthetic(seed=6)
    assert a.checksum() == b.checksum() != c.checksum()
    assert np.array_equal(ta.W, tb.W) and not np.array_equal(ta.W, tc.W)
    assert all(np.array_equal(x, y) for x, y in zip(ta.splits[4]["test"], tb.splits[4]["test"], strict=True))


def test_registry_and_stl_easy_beats_hard():
    data = mtlkit.datasets.load("amtfl-synthetic")
    assert data.n_tasks == 12 and data.predefined_splits is not None
    assert not mtlkit.datasets.info("amtfl-synthetic").needs_data_dir
    assert mtlkit.datasets.load("amtfl-synthetic", seed=1).checksum() != data.checksum()
    tr, te = data.predefined_splits[0]
    split = data.split_indices(tr, te, val_fraction=0.5)
    run = mtlkit.train("stl-linear", split, device="cpu")
    rmse = np.asarray(run.evaluate("test").per_task["rmse"])
    assert rmse[:6].mean() < rmse[6:].mean()
