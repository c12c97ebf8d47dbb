"""Typed hyper-parameters: validation of values, edges of search spaces, widening, and the declarations every
registered method (and gradient combiner) makes: all declared, regularisers switchable off when tuning, builds
at every space's extremes, one-line errors for out-of-range values, and the generated reference doc."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import mtlkit
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, Space, choice, int_range, log_range, uniform
from mtlkit.methods import docs, registry
from mtlkit.optim.combiners import COMBINERS
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


# ---------------------------------------------------------------------- every method's declarations
METHODS = [
    "stl", "single", "hard-share", "stl-linear", "hard-share-align", "amtfl", "deep-amtfl", "nn", "mt-nn", "go-mtl",
    "amtl", "deep-amtl", "ple", "cgc", "lasso", "l21", "rmtl", "srdml", "pcgrad", "mgda-ub", "tomato-el", "tomato-ex",
    "inter-task-l2", "cross-stitch", "mmoe", "dselect-k", "mrn", "dmtrl-tucker", "trace-norm-laf",
    "trace-norm-tucker", "trace-norm-tt", "stl-cnn", "mtan", "ltb",
]
COMPOSED = ["srdml+pcgrad", "tomato-el+mgda-ub", "hard-share+mgda-ub"]
CLOSED_FORM_LIKE = ["stl-linear", "lasso", "l21", "rmtl", "go-mtl", "amtl"]
REGULARISER = re.compile(r"^(lam(_\w+)?|mu|gamma|alpha|reg|trade_off|delta|eps|C)$")
NO_OFF = {("stl-linear", "alpha"), ("stl-linear", "C"), ("go-mtl", "lam")}  # each doc says why


def test_the_parametrisation_is_every_registered_method():
    assert sorted(METHODS) == sorted(registry.names()) and len(METHODS) == len(registry.names())


def _space_values(s: Space) -> list:
    """The values at the edges of a space (and its off value): what a tuner may hand a build at the extremes."""
    if s.kind == "choice":
        vals = list(s.choices)
    elif s.kind == "int":
        vals = [int(s.low), int(s.high)]
    else:
        vals = [s.low, s.high]
    return vals + ([s.off] if s.off is not None else [])


@pytest.mark.parametrize("name", METHODS + COMPOSED)
def test_every_parameter_is_declared_and_its_space_is_valid(name):
    entry = registry.get(name)
    params = method_params(entry)
    assert params, name
    for k, p in params.items():
        assert p.declared and p.doc.strip() and "\n" not in p.doc, (name, k)
        assert p.check(p.default, name) == p.default, (name, k)
        if p.space is None:
            continue
        for v in _space_values(p.space):
            p.check(list(v) if isinstance(v, tuple) else v, name)  # every value the tuner may try is valid
        s, d = p.space, p.default  # the default is one of the values searched
        if s.kind == "choice":
            assert (tuple(d) if isinstance(d, list) else d) in s.choices or d == s.off, (name, k)
        else:
            assert d == s.off or s.low <= d <= s.high, (name, k)
    for kind in entry.kinds:  # the default selection grid lies inside the tuning space
        for k, values in entry.grid_for(kind).items():
            s = params[k].space
            if s is None:
                continue
            for v in values:
                if s.kind == "choice":
                    assert (tuple(v) if isinstance(v, list) else v) in s.choices, (name, k, v)
                else:
                    assert v == s.off or s.low <= v <= s.high, (name, k, v)


@pytest.mark.parametrize("name", METHODS)
def test_regularisers_can_be_switched_off_when_tuning(name):
    params = method_params(registry.get(name))
    found = [k for k, p in params.items() if p.type == "float" and REGULARISER.match(k)]
    for k in found:
        s = params[k].space
        assert s is not None, f"{name}: regulariser {k} has no tuning space"
        if (name, k) in NO_OFF:
            assert s.off is None and "off" in params[k].doc, (name, k)  # the doc says why 0 is not tried
        else:
            assert s.off == 0.0, f"{name}: the space of {k} does not include switching it off (0)"
    expected = {"stl": [], "single": [], "hard-share": [], "cross-stitch": [], "mmoe": [], "ple": [], "cgc": [],
                "dselect-k": [], "pcgrad": [], "mgda-ub": [], "hard-share-align": [], "stl-cnn": [], "mtan": [],
                "ltb": [],
                "stl-linear": ["alpha", "C"],
                "lasso": ["lam"], "l21": ["lam"], "rmtl": ["lam_l", "lam_s"], "go-mtl": ["mu", "lam"],
                "amtl": ["mu", "lam"], "nn": ["lam"], "mt-nn": ["mu", "lam"], "srdml": ["lam"],
                "amtfl": ["alpha", "gamma", "mu", "lam", "delta"],
                "deep-amtfl": ["alpha", "gamma", "mu", "lam", "delta"], "deep-amtl": ["mu", "lam_b", "lam", "delta"],
                "tomato-el": ["lam", "reg"], "tomato-ex": ["lam", "reg"],
                "inter-task-l2": ["mu"], "mrn": ["trade_off"], "dmtrl-tucker": ["eps"],
                **{f"trace-norm-{k}": ["gamma"] for k in ("laf", "tucker", "tt")}}[name]
    assert sorted(found) == sorted(expected), name


@pytest.mark.parametrize("name", CLOSED_FORM_LIKE)
def test_closed_form_spaces_cover_the_grid_by_a_decade_each_side(name):
    entry, params = registry.get(name), method_params(registry.get(name))
    for kind in entry.kinds:
        for k, values in entry.grid_for(kind).items():
            s = params[k].space
            assert s.kind == "log", (name, k)
            assert s.low <= min(values) / 10 * (1 + 1e-9) and s.high >= max(values) * 10 * (1 - 1e-9), (name, k)


def test_stl_linear_spaces_depend_on_the_task_kind():
    assert set(registry.search_space("stl-linear", "regression")) == {"alpha"}
    assert set(registry.search_space("stl-linear", "binary")) == {"C"} == set(registry.search_space("stl-linear",
                                                                                                    "multiclass"))
    assert set(registry.search_space("stl-linear")) == {"alpha", "C"}  # no kind: every space (backward compatible)
    assert registry.search_space("lasso", "binary") == registry.search_space("lasso")
    assert "regression only" in registry.describe("stl-linear")["hyperparameters"]["alpha"]["search"]


@pytest.mark.parametrize("name", COMPOSED)
def test_composed_methods_carry_the_combiners_declarations(name):
    base, _, comb = name.rpartition("+")
    entry = registry.get(name)
    names = [p.name for p in entry.params]
    assert len(names) == len(set(names))
    assert set(names) == {p.name for p in registry.get(base).params} | {p.name for p in COMBINERS[comb].params}
    d = registry.describe(name)
    assert d["defaults"] == {**registry.describe(base)["defaults"], **COMBINERS[comb].defaults}
    for p in COMBINERS[comb].params:
        assert d["hyperparameters"][p.name]["doc"] == p.doc and d["hyperparameters"][p.name]["valid"] == p.valid_text()
    assert method_params(registry.get("mgda-ub"))["mgda_iters"] == COMBINERS["mgda-ub"].params[1]


def test_combiner_parameters_are_declared():
    assert COMBINERS["pcgrad"].params == () and COMBINERS["pcgrad"].defaults == {}
    p = {q.name: q for q in COMBINERS["mgda-ub"].params}
    assert COMBINERS["mgda-ub"].defaults == {"mgda_norm": "none", "mgda_iters": 250}
    assert p["mgda_norm"].choices == ("none", "l2", "loss", "loss+") and p["mgda_iters"].low == 1
    with pytest.raises(MtlkitError, match="mgda_iters"):
        p["mgda_iters"].check(0, "hard-share+mgda-ub")


def _info(kind: str = "regression", T: int = 3, d: int = 24) -> DataInfo:  # d ≥ go-mtl's largest k
    return DataInfo(TaskSpec(kind, tuple(f"t{i}" for i in range(T)), (1 if kind == "regression" else 2,) * T),
                    (d,), True, train_sizes=(10, 12, 14))


@pytest.mark.parametrize("name", METHODS + COMPOSED)
def test_builds_at_the_extremes_of_every_space(name):
    """A tuner may hand a build any value of a space: build the model (no training) with each space's edge values,
    one parameter at a time, and with all of them at their low / high / off ends together."""
    entry, params = registry.get(name), method_params(registry.get(name))
    defaults = method_defaults(entry)
    info = _info()
    spaces = {k: p.space for k, p in params.items() if p.space is not None}
    trials = [{k: v} for k, s in spaces.items() for v in _space_values(s)]
    for end in (0, -1):
        trials.append({k: _space_values(s)[:2 if s.kind != "choice" else len(s.choices)][end]
                       for k, s in spaces.items()})
    trials.append({k: s.off for k, s in spaces.items() if s.off is not None})
    for t in trials:
        hp = merge_hparams(defaults, {k: list(v) if isinstance(v, tuple) else v for k, v in t.items()}, name, params)
        parts = entry.build(info, hp)
        assert sum(p.numel() for p in parts.model.parameters()) > 0, (name, t)


@pytest.mark.parametrize(("name", "bad"), [
    ("tomato-el", {"lam": -1e-3}), ("srdml", {"dist": "l3"}), ("stl-linear", {"C": 0.0}), ("go-mtl", {"k": 0}),
    ("dmtrl-tucker", {"eps": 1.0}), ("hard-share+mgda-ub", {"mgda_iters": 0}), ("mmoe", {"dropout": 1.0}),
    ("trace-norm-tt", {"gamma": -0.1}), ("lasso", {"tol": -1.0}), ("deep-amtfl", {"hidden": [0]}),
])
def test_out_of_range_value_through_train_is_one_line(name, bad):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    Y = X @ rng.normal(size=(4, 2))
    split = mtlkit.MultiTaskData.from_shared(X, Y, kind="regression").split(test=0.2, val=0.2, seed=0)
    with pytest.raises(MtlkitError) as e:
        mtlkit.train(name, split, hparams={"epochs": 1, **bad}, seed=0, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and name in msg and next(iter(bad)) in msg


def test_reference_doc_is_generated_from_the_declarations():
    path = Path(__file__).resolve().parents[1] / "docs" / "hyperparameters.md"
    assert path.read_text(encoding="utf-8") == docs.render(), f"docs/hyperparameters.md is stale: run {docs.COMMAND}"


# ---------------------------------------------------------------------- one declaration, no copies elsewhere
SRC = Path(__file__).resolve().parents[1] / "src" / "mtlkit"
SPACE_MAKERS = {"Space", "log_range", "uniform", "int_range", "choice"}  # mtlkit.hparams' space constructors
ALLOWED_KEY_LISTS = {  # key tuples outside the declarations that are a protocol, not a copy: why each stays
    ("optimizer", "lr", "momentum", "weight_decay", "lr_decay", "decay_steps"):
        "trace-norm reproduction's ablation: the tuned optimiser settings carried onto STL (its stated protocol)",
    ("alpha", "gamma"): "AMTFL reproduction's diagnosis of the feedback's two weights, named in its text",
}


def _declared_names() -> dict[str, HParam]:
    """Every hyper-parameter any registered method or gradient combiner declares, by name."""
    out: dict[str, HParam] = {}
    for name in registry.names():
        for k, p in method_params(registry.get(name)).items():
            out.setdefault(k, p)
    for spec in COMBINERS.values():
        for p in spec.params:
            out.setdefault(p.name, p)
    return out


def _literal(node) -> bool:
    import ast

    if isinstance(node, ast.UnaryOp):
        return _literal(node.operand)
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool)


def copies_of_declarations(source: str, declared: dict[str, HParam]) -> list[str]:
    """What in ``source`` (a module outside the declarations) keeps its own copy of a method's hyper-parameters: a
    list of two or more declared names, a declared scalar parameter mapped to a list of values (a grid or range), a
    `Space` built from literal numbers, or a literal ``grid=`` / ``space=`` dict passed to a call."""
    import ast

    tree = ast.parse(source)
    makers = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
              and n.module == "mtlkit.hparams" for a in n.names if a.name in SPACE_MAKERS}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in declared for e in node.elts):
            keys = tuple(e.value for e in node.elts)
            if keys not in ALLOWED_KEY_LISTS:
                found.append(f"line {node.lineno}: key list {keys}")
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if (isinstance(k, ast.Constant) and k.value in declared and declared[k.value].type != "ints"
                        and isinstance(v, ast.Tuple | ast.List) and len(v.elts) >= 2 and all(map(_literal, v.elts))):
                    found.append(f"line {node.lineno}: values of {k.value} {ast.unparse(v)}")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in makers:
                bounds = node.args[1:] if node.func.id == "Space" else node.args  # Space's first is its kind
                bounds += [kw.value for kw in node.keywords if kw.arg in ("low", "high", "choices")]
                if any(_literal(a) or isinstance(a, ast.Tuple | ast.List) and any(map(_literal, a.elts))
                       for a in bounds):
                    found.append(f"line {node.lineno}: a space of its own, {ast.unparse(node)}")
            found += [f"line {node.lineno}: a literal {kw.arg}= dict" for kw in node.keywords
                      if kw.arg in ("grid", "grids", "space") and isinstance(kw.value, ast.Dict)]
    return found


def test_the_copy_finder_finds_each_kind_of_copy():
    declared = _declared_names()
    source = ('from mtlkit.hparams import log_range\nKEYS = ("lam", "lr")\nGRID = {"lam": [0.1, 1.0]}\n'
              'SPACE = {"lam": log_range(1e-3, 1.0)}\ntrain("lasso", split, grid={"lam": [1.0]})\n'
              'ARCH = {"hidden": [64, 32], "lr": 1e-3}\nok = rng.uniform(0.0, 1.0)\n')
    lines = sorted(int(f.split(":")[0].removeprefix("line ")) for f in copies_of_declarations(source, declared))
    assert lines == [2, 3, 4, 5]  # widths (an `ints` value), one fixed value and numpy's uniform are not copies


def test_no_module_keeps_its_own_copy_of_a_methods_hyper_parameters():
    """The declarations (`HParam`s in the method modules, the Trainer's, the combiners') are the one place a method's
    keys, grids and spaces live; the docs, `mtlkit sweep`'s default spaces, tuning, bench and the estimators read
    them. A module that builds no `HParam` and still lists a method's keys or values is a copy that can drift."""
    declared = _declared_names()
    copies = {}
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if path.name == "hparams.py" or "HParam(" in source:  # a declaration itself
            continue
        found = copies_of_declarations(source, declared)
        if found:
            copies[str(path.relative_to(SRC))] = found
    assert not copies, f"copies of declared hyper-parameters (derive them from the declaration): {copies}"


def test_estimators_pass_exactly_the_declared_parameters_with_the_declared_defaults():
    import inspect

    from mtlkit import estimators

    own = {"standardize", "device", "random_state"}
    classes = [getattr(estimators, n) for n in estimators.__all__ if hasattr(getattr(estimators, n), "_method")]
    assert len(classes) == 12
    for cls in classes:
        params = method_params(registry.get(cls._method))
        init = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}
        assert set(cls._hparam_names()) == set(init) - own <= set(params), cls.__name__
        for k in cls._hparam_names():  # an explicit default is the declared one (None: the method's own default)
            assert init[k] is None or init[k] == params[k].default, (cls.__name__, k, init[k], params[k].default)
