"""`cgc` is PLE with one level: same parameters, same training trajectory, bit for bit; it composes with a
weighting or aggregator like any SGD method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.methods import registry

pytestmark = pytest.mark.usefixtures("one_thread")


def _split() -> mtlkit.Split:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    Y = X @ rng.normal(size=(4, 3)) + 0.1 * rng.normal(size=(80, 3))
    Y[rng.random(Y.shape) < 0.2] = np.nan
    return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression").split(test=0.2, val=0.2, seed=0)


def test_cgc_is_ple_with_one_level() -> None:
    hp = {"epochs": 2, "patience": 0, "batch_size": 16}
    a = mtlkit.train("cgc", _split(), hparams=hp, seed=0, device="cpu")
    b = mtlkit.train("ple", _split(), hparams={**hp, "levels": 1}, seed=0, device="cpu")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert "levels" not in registry.describe("cgc")["defaults"]
    run = mtlkit.train("cgc+uw", _split(), hparams=hp, seed=0, device="cpu")
    assert np.isfinite(run.history.train_loss[-1]).all()
