"""Typed hyper-parameters: validation of values, edges of search spaces, widening, and the declarations every
registered method exposes through `describe`."""

from __future__ import annotations

import math

import pytest

from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, Space, choice, int_range, log_range, uniform
from mtlkit.methods import registry
from mtlkit.train.config import TRAIN_PARAMS, merge_hparams, method_defaults, method_params


def test_check_types_and_bounds():
    lr = HParam("lr", "float", 1e-3, "learning rate", low=0.0, low_open=True)
    assert lr.check(1) == 1.0 and isinstance(lr.check(1), float)
    for bad in (0.0, -1.0, "x", True, math.nan, math.inf):
        with pytest.raises(MtlkitError, match="lr"):
            lr.check(bad, "hard-share")
    hidden = HParam("hidden", "ints", [64], "widths")
    assert hidden.check([64, 32]) == [64, 32] and hidden.check(()) == []
    for bad in (64, [64.5], [0], ["64"], "[64"):
        with pytest.raises(MtlkitError, match="list of positive integers"):
            hidden.check(bad)
    k = HParam("K", "int", 4, low=1, high=16)
    assert k.check(8.0) == 8
    with pytest.raises(MtlkitError, match="≤ 16"):
        k.check(32)
    opt = HParam("optimizer", "str", "adam", choices=("adam", "sgd"))
    with pytest.raises(MtlkitError, match="one of 'adam', 'sgd'"):
        opt.check("rmsprop")


def test_error_is_one_line_and_names_method():
    with pytest.raises(MtlkitError) as e:
        merge_hparams(method_defaults(registry.get("hard-share")), {"lr": -1}, "hard-share",
                      method_params(registry.get("hard-share")))
    msg = str(e.value)
    assert "\n" not in msg and "hard-share" in msg and "lr" in msg and "> 0" in msg


def test_edges_of_each_space_kind():
    s = log_range(1e-5, 1e-1, off=0.0)
    assert s.edge(1e-5) == "low" and s.edge(1.2e-5) == "low" and s.edge(0.1) == "high"
    assert s.edge(1e-3) is None and s.edge(0.0) is None  # off is a choice, not an edge
    assert uniform(0.0, 1.0).edge(0.01) == "low" and uniform(0.0, 1.0).edge(0.5) is None
    assert int_range(1, 100).edge(100) == "high"
    k = choice(1, 2, 4, 8, 16)
    assert k.edge(16) == "high" and k.edge(1) == "low" and k.edge(4) is None
    assert choice("adam", "sgd").edge("adam") is None  # unordered: no edge
    assert choice(0.0, 0.9).edge(0.9) is None          # two values: both ends, no edge to flag


def test_widen_past_each_edge():
    s = log_range(1e-5, 1e-1, off=0.0)
    w = s.widened("low")
    assert w.low == pytest.approx(1e-6) and w.high == 1e-1 and w.off == 0.0
    assert s.widened("high", bounds=(0.0, 0.5)).high == 0.5
    assert choice(1, 2, 4, 8, 16).widened("high").choices == (1, 2, 4, 8, 16, 32)
    assert choice(0.1, 0.2, 0.3).widened("high").choices[-1] == pytest.approx(0.45)
    assert uniform(0.0, 0.5).widened("high", bounds=(0.0, 0.9)).high == 0.9
    assert Space.from_json(s.to_json()) == s


def test_train_params_are_declared_and_typed():
    for p in TRAIN_PARAMS:
        assert p.doc and p.declared
        assert p.check(p.default) == p.default


def test_describe_every_method_declares_types_and_defaults_match_build_defaults():
    for name in registry.names():
        d = registry.describe(name)
        assert set(d["hyperparameters"]) == set(d["defaults"]) == set(method_defaults(registry.get(name)))
        for k, h in d["hyperparameters"].items():
            assert h["type"] in ("int", "float", "bool", "str", "ints"), (name, k)
            params = method_params(registry.get(name))
            assert params[k].check(h["default"], name) == h["default"], (name, k)


def test_method_keeps_trainer_typing_when_it_only_changes_a_default():
    p = method_params(registry.get("tomato-el"))
    assert p["lr"].default == 0.1 and p["lr"].low_open and p["lr"].space is not None
    assert p["lam"].space.off == 0.0  # the regulariser switched off is in the search space
    assert registry.search_space("tomato-el")["K"].choices == (1, 2, 4, 8, 16)
