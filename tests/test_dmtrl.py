"""DMTRL-Tucker: the truncated HOSVD against its definition, the warm start from hard-share (exact at
eps=0), and end-to-end training through `mtlkit.train`'s pretraining step with a save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.methods.baselines import HardShareNet
from mtlkit.methods.tomato_baselines import DMTRLTuckerNet, hosvd

pytestmark = pytest.mark.usefixtures("one_thread")
ARCH = {"hidden": [8], "head_hidden": [6], "activation": "relu", "dropout": 0.0}


def _data(T: int = 4, N: int = 60, D: int = 5, seed: int = 0) -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=D)
    Xs = [rng.normal(size=(N, D)) for _ in range(T)]
    ys = [X @ (w0 + 0.3 * rng.normal(size=D)) + 0.1 * rng.normal(size=N) for X in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys)


def test_hosvd_exact_at_eps_zero_and_orthonormal():
    W = torch.randn(4, 7, 5, dtype=torch.float64)
    core, us = hosvd(W, 0.0)
    assert core.shape == (4, 7, 5)  # mode ranks: min(dim, product of the others)
    torch.testing.assert_close(torch.einsum("abc,ta,ib,oc->tio", core, *us), W)
    for u in us:
        torch.testing.assert_close(u.T @ u, torch.eye(u.shape[1], dtype=W.dtype))


def test_hosvd_truncation_recovers_low_multilinear_rank():
    g = torch.Generator().manual_seed(0)
    core = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    us = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for n, r in ((6, 2), (9, 3), (8, 2))]
    W = torch.einsum("abc,ta,ib,oc->tio", core, *us) + 1e-6 * torch.randn(6, 9, 8, generator=g, dtype=torch.float64)
    c, vs = hosvd(W, 0.01)
    assert c.shape == (2, 3, 2)
    torch.testing.assert_close(torch.einsum("abc,ta,ib,oc->tio", c, *vs), W, atol=1e-4, rtol=0)


def test_hosvd_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        hosvd(torch.zeros(2, 2, 2), 1.5)


def test_warm_start_at_eps_zero_reproduces_hard_share():
    data = _data()
    info = data.info()
    torch.manual_seed(0)
    hs = HardShareNet(info, **ARCH).double()
    net = DMTRLTuckerNet(info, **ARCH, eps=0.0).double()
    net.warm_start(hs)
    x = torch.randn(4, 9, 5, dtype=torch.float64)
    torch.testing.assert_close(net(x), mtlkit.methods.base.as_output(hs(x)).pred)
    coarse = DMTRLTuckerNet(info, **ARCH, eps=0.5).double()
    coarse.warm_start(hs)
    assert coarse.ranks < net.ranks or sum(coarse.ranks) < sum(net.ranks)


def test_needs_one_head_layer():
    with pytest.raises(ValueError, match="head_hidden"):
        DMTRLTuckerNet(_data().info(), hidden=[8], head_hidden=[], activation="relu", dropout=0.0, eps=0.1)


def test_trains_after_pretraining_and_round_trips(tmp_path):
    split = _data(seed=3).split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("dmtrl-tucker", split, hparams={"epochs": 20, "lr": 1e-2, "eps": 0.3}, seed=0, device="cpu")
    assert run.model.ranks != (4, 8, 6)  # the warm start truncated the full-rank random init
    ev = run.evaluate("test")
    for t in range(4):
        trivial = np.sqrt(np.mean((split.test.ys[t] - split.train.ys[t].mean()) ** 2))
        assert ev.per_task["rmse"][t] < 0.5 * trivial
    loaded = mtlkit.load(run.save(tmp_path / "dmtrl"))
    assert loaded.model.ranks == run.model.ranks
    X = np.random.default_rng(1).normal(size=(11, 5))
    np.testing.assert_array_equal(loaded.predict(X), run.predict(X))


def test_describe_says_which_method_is_trained_first() -> None:
    from mtlkit.methods import describe

    assert "hard-share" in describe("dmtrl-tucker")["training"] and "hard-share" in describe("srdml")["training"]
    assert describe("hard-share")["training"] == "SGD (Trainer)"
