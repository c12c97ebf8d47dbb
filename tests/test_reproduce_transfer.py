"""`mtlkit reproduce transfer`: the synthetic constructions (covariances, rotations, cosines), the batched solvers
against closed forms / brute force, label flipping, alignment on the embedding, and the --quick run end to end."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.cli import main
from mtlkit.experiments.reproduce.transfer import (
    covariance_construction,
    embedding_alignment,
    fit_shared_gd,
    flip_labels,
    linear_mtl_als,
    random_orthogonal,
    shared_inputs,
    unit_with_cosine,
)

REAL = Path(os.environ.get("MTLKIT_DATA", "/work/shared/data"))
HAVE_SENTIMENT = (REAL / "sentiment" / "rt-polarity.all").is_file()


def test_construction_parts():
    c = covariance_construction(d=40, kappa=30.0, cos=0.96, seed=3)
    for Q in c.Q:
        np.testing.assert_allclose(Q.T @ Q, np.eye(40), atol=1e-12)
    assert len(c.S[0]) == len(c.S[1]) == 4 and not set(c.S[0]) & set(c.S[1])
    for D, S in zip(c.D, c.S, strict=True):
        assert set(np.flatnonzero(D == 30.0)) == set(S) and np.all(D[np.setdiff1d(np.arange(40), S)] == 1.0)
    t1, t2 = c.theta
    assert np.linalg.norm(t1) == pytest.approx(1.0) and t1 @ t2 / np.linalg.norm(t2) == pytest.approx(0.96)


def test_generated_covariances_match_the_construction():
    c = covariance_construction(d=6, kappa=4.0, frac=1 / 6, seed=0)
    rng = np.random.default_rng(1)
    for task in (1, 3, 4):
        X, y = c.sample(task, 60_000, rng)
        emp = X.T @ X / len(X)
        C = c.covariance(task)
        assert np.linalg.norm(emp - C) < 0.05 * np.linalg.norm(C), task
        np.testing.assert_allclose(y, X @ c.theta[c.TASKS[task][2]])
    Q2, D1 = c.Q[1], np.diag(c.D[0])
    np.testing.assert_allclose(c.covariance(4), Q2.T @ D1 @ D1 @ Q2, atol=1e-12)
    assert np.linalg.norm(c.covariance(4) - c.covariance(2)) > 1.0  # the rotation changes the covariance
    lit = covariance_construction(d=6, kappa=4.0, frac=1 / 6, seed=0, order="RQD")
    np.testing.assert_allclose(lit.covariance(4), D1 @ D1, atol=1e-10)  # R Q D: Q cancels, covariance D²
    np.testing.assert_allclose(lit.covariance(4), lit.covariance(2), atol=1e-10)


def test_random_orthogonal_and_cosine():
    rng = np.random.default_rng(0)
    Q = random_orthogonal(5, rng)
    np.testing.assert_allclose(Q @ Q.T, np.eye(5), atol=1e-12)
    t = rng.normal(size=5)
    for cos in (1.0, 0.3, 0.0, -0.7):
        v = unit_with_cosine(t, cos, rng)
        assert np.linalg.norm(v) == pytest.approx(1.0) and v @ t / np.linalg.norm(t) == pytest.approx(cos)
    with pytest.raises(ValueError, match="cos"):
        unit_with_cosine(t, 1.5, rng)


def test_als_single_task_is_least_squares_and_two_tasks_match_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=30)
    G = torch.as_tensor((X.T @ X)[None, None])
    b = torch.as_tensor((X.T @ y)[None, None])
    B, a = linear_mtl_als(G, b)
    np.testing.assert_allclose((B * a).numpy()[0], np.linalg.lstsq(X, y, rcond=None)[0], atol=1e-8)
    # two tasks in d = 2: B is a unit vector at angle φ; brute-force the objective over φ
    Xs = [rng.normal(size=(25, 2)) for _ in range(2)]
    ys = [Xs[0] @ np.array([1.0, 0.2]), Xs[1] @ np.array([0.3, 1.0]) + 0.1 * rng.normal(size=25)]
    G = torch.as_tensor(np.stack([X_.T @ X_ for X_ in Xs])[None])
    b = torch.as_tensor(np.stack([X_.T @ y_ for X_, y_ in zip(Xs, ys, strict=True)])[None])
    B, a = linear_mtl_als(G, b, iters=500)

    def objective(Bv: np.ndarray) -> float:
        tot = 0.0
        for X_, y_ in zip(Xs, ys, strict=True):
            z = X_ @ Bv
            tot += float(np.sum((y_ - z * (z @ y_) / (z @ z)) ** 2))
        return tot

    phis = np.linspace(0.0, np.pi, 20001)
    best = min(objective(np.array([np.cos(p), np.sin(p)])) for p in phis)
    got = sum(float(np.sum((X_ @ B.numpy()[0] * a.numpy()[0, k] - y_) ** 2))
              for k, (X_, y_) in enumerate(zip(Xs, ys, strict=True)))
    assert got == pytest.approx(best, rel=1e-6, abs=1e-9)


def test_gd_solver_reaches_least_squares_for_one_linear_task(one_thread):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1, 1, 60, 4))
    w = np.array([0.5, -1.0, 2.0, 0.0])
    y = X @ w + 0.1 * rng.normal(size=(1, 1, 60))
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    B, a, c = fit_shared_gd(Xt, yt, torch.ones_like(yt, dtype=torch.bool), "linear", "regression", steps=300,
                           lr=0.05)
    ols = np.linalg.lstsq(X[0, 0], y[0, 0], rcond=None)[0]
    np.testing.assert_allclose((B[0] * a[0, 0]).numpy(), ols, atol=2e-3)
    assert float(c.abs().max()) == 0.0  # no bias for regression


def test_flip_labels_flips_exactly_the_fraction_of_the_given_rows():
    y = np.zeros(100)
    rows = np.arange(50)
    out = flip_labels(y, rows, 0.2, np.random.default_rng(0))
    assert out[:50].sum() == 10 and out[50:].sum() == 0 and y.sum() == 0
    with pytest.raises(ValueError, match="fraction"):
        flip_labels(y, rows, 1.5, np.random.default_rng(0))


def test_embedding_alignment_trains_only_r_and_heads(one_thread):
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(60, 5)) for _ in range(2)]
    ys = [(X[:, 0] + (2 * t - 1) * X[:, 1] > 0).astype(float) for t, X in enumerate(Xs)]
    split = mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="binary").split(seed=0)
    base = mtlkit.train("hard-share", split, {"hidden": [4, 3], "head_hidden": [], "epochs": 3}, progress=False)
    hp = {"epochs": 5, "patience": 0, "lr": 0.05}
    al = embedding_alignment(base, True, hp)
    fixed = embedding_alignment(base, False, hp)
    for run in (al, fixed):
        for k, v in base.model.bottom.state_dict().items():
            torch.testing.assert_close(run.model.bottom.state_dict()[k], v)  # the shared module stays fixed
    eye = torch.eye(4).expand(2, 4, 4)
    torch.testing.assert_close(fixed.model.alignment.R.detach(), eye)
    assert float((al.model.alignment.R.detach() - eye).abs().max()) > 1e-3
    # what enters the shared layer: E_t R_t, with E_t the un-aligned model's embedding
    E = shared_inputs(base, split.train)
    Z = shared_inputs(al, split.train)
    for t in range(2):
        np.testing.assert_allclose(Z[t], E[t] @ al.model.alignment.R.detach()[t].double().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="embedding"):
        embedding_alignment(mtlkit.train("hard-share", split, {"hidden": [4], "epochs": 1}, progress=False))


def test_quick_run_end_to_end(tmp_path):
    parts = "synthetic,noise,sentiment" if HAVE_SENTIMENT else "synthetic,noise"
    args = ["reproduce", "transfer", "--quick", "--parts", parts, "--out", str(tmp_path / "out"),
            "--store", str(tmp_path / "s.db")]
    if HAVE_SENTIMENT:
        args += ["--data-dir", str(REAL)]
    assert main(args) == 0
    md = (tmp_path / "out" / "information-transfer.md").read_text()
    for needle in ("Command: `mtlkit", "QUICK SMOKE RUN", "claims, checked here", "Fig. 3", "Fig. 8",
                   "label noise", "R_iD_iQ_i"):
        assert needle in md, needle
    for name in ("fig3", "fig8", "noise"):
        assert (tmp_path / "out" / f"information-transfer-{name}.png").stat().st_size > 1000
    if HAVE_SENTIMENT:
        assert "Capacity" in md and "similarity" in md and "1205" in md
        assert (tmp_path / "out" / "information-transfer-fig7.png").stat().st_size > 1000


def test_unknown_part_is_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "transfer", "--parts", "glue", "--out", str(tmp_path), "--store",
                 str(tmp_path / "s")]) == 2
    assert "glue" in capsys.readouterr().err
