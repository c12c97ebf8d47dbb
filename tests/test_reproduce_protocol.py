"""The reproductions' equal-budget protocol: the same trials for every method, the budget stated, and a stopped
reproduction continuing from the methods it finished."""

from __future__ import annotations

import numpy as np
import pytest

import mtlkit
from mtlkit.experiments.reproduce import protocol
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.store import ResultsStore


def _data():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 5))
    Xs = [rng.normal(size=(60, 5)) for _ in range(3)]
    ys = [X @ W[t] + 0.3 * rng.normal(size=60) for t, X in enumerate(Xs)]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression", name="toy")


def test_equal_budget_every_method_and_reuse(tmp_path, monkeypatch):
    ctx = Context(tmp_path, ResultsStore(tmp_path / "s.sqlite"), device="cpu", progress=False)
    data = _data()
    methods = ["stl-linear", "hard-share"]
    res, tuning = protocol.tune_then_evaluate(ctx, data, methods, n_splits=2, trials=3, experiment="t",
                                              hparams={"epochs": 3}, widen=0)
    assert set(res.scores) == set(methods) and all(res.scores[m].shape == (2, 3) for m in methods)
    assert {t["n_trials"] for t in tuning.values()} == {3} and {t["budget"] for t in tuning.values()} == {3}
    text = "\n".join(protocol.budget_lines(tuning))
    assert "same budget: 3 trials" in text and "stl-linear" in text and "hard-share" in text
    # a second call reuses the recorded outcome: nothing is trained again
    monkeypatch.setattr(protocol, "run_bench", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again, tuning2 = protocol.tune_then_evaluate(ctx, data, methods, n_splits=2, trials=3, experiment="t",
                                                 hparams={"epochs": 3}, widen=0)
    for m in methods:
        np.testing.assert_array_equal(again.scores[m], res.scores[m])
    assert tuning2 == tuning


def test_parse_parts_keeps_the_order_given_and_refuses_unknown_or_empty_in_one_line():
    from mtlkit.errors import MtlkitError
    from mtlkit.experiments.reproduce.common import parse_parts

    assert parse_parts(" deep, synthetic ", ("synthetic", "school", "deep")) == ["deep", "synthetic"]
    for text in ("bogus", " , "):
        with pytest.raises(MtlkitError) as e:
            parse_parts(text, ("synthetic", "deep"))
        assert "\n" not in str(e.value) and "choose from synthetic, deep" in str(e.value)
