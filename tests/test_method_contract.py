"""The method contract (issue 15): what every registered method, and every ``METHOD+COMBINER`` the registry
composes, must do — checked on tiny data so that a new method or combiner gets it for free.

Data: heterogeneous per-task input with unequal task sizes in each task kind (regression, binary, multiclass with
a different class count per task, soft-label distributions), and shared input with missing labels (regression
and binary). A method meets every data set whose kind its `MethodInfo.kinds` declares; a kind it does not declare
must be refused with a one-line `MtlkitError` (checked instead of skipped). Each (method, data) pair is trained
once, twice with the same seed, and the runs are reused by every assertion (module-scoped cache):

* it trains (2 epochs, tiny widths) and the test metric and training losses are finite;
* the same seed gives identical parameters (``torch.equal``);
* save -> load gives identical predictions and metrics;
* ``task_relations()``, where the model has the hook, gives finite 2-D matrices over the T tasks;
* ``describe(name)``'s hyper-parameters are exactly what the build accepts: every declared key is accepted, the
  build reads no undeclared key, an unknown key and each out-of-range value (from the `HParam`'s
  low / high / choices) is a one-line `MtlkitError`;
* every SGD-trained base method composes with every combiner in `COMBINERS` and takes a training step; methods
  with their own solver, and names that already carry a combiner, are refused.

Combined methods: every combiner with hard-share, every combiner with one other base method (rotating through
them, so the list covers a new method per new combiner), and the heavier base methods with pcgrad / mgda-ub.

Measured: the whole file, ``time .venv/bin/pytest -q -p no:cacheprovider tests/test_method_contract.py`` on the
shared 2-core machine (default torch threads; the tests run single-threaded through ``one_thread``), 32 methods
and 25 combiners (1,456 tests): 34 s wall, 32 s user CPU, at a load average of 3 from other work (2 min 50 s wall
for 30 methods at a load average of 8.5, 42 s CPU). The budget is 3 minutes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.analysis.relations import task_relations
from mtlkit.data import Normalizer, TaskBatchSampler
from mtlkit.data.spec import KINDS
from mtlkit.errors import MtlkitError, UnknownNameError
from mtlkit.hparams import HParam
from mtlkit.methods import registry
from mtlkit.optim.combiners import COMBINERS
from mtlkit.train import TaskLoss
from mtlkit.train.config import TRAIN_PARAMS, merge_hparams, method_defaults, method_params
from mtlkit.train.run import build_method
from mtlkit.train.trainer import make_optimizer, training_step

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:MGDA-UB. the model exposes no")]

# ---------------------------------------------------------------------- what is covered
METHODS = registry.names()
SGD_BASES = [n for n in METHODS if registry.get(n).fit is None and n not in COMBINERS]
"""Base methods that take a combiner (`registry._compose`: trained by SGD, not already a combiner's method)."""
_OTHERS = [n for n in SGD_BASES if n != "hard-share"]
HEAVY = ("srdml", "ple", "mmoe", "cross-stitch", "tomato-el", "dmtrl-tucker", "trace-norm-tucker", "deep-amtfl")
COMBINED = list(dict.fromkeys(
    [f"hard-share+{c}" for c in COMBINERS]
    + [f"{_OTHERS[i % len(_OTHERS)]}+{c}" for i, c in enumerate(COMBINERS)]
    + [f"{h}+{c}" for h in HEAVY if h in SGD_BASES for c in ("pcgrad", "mgda-ub") if c in COMBINERS]))

D = 5
SIZES = (16, 41, 12)  # unequal task sizes
N_CLASSES = (3, 2, 4)  # multiclass tasks with different class counts
HETERO = {f"hetero-{k}": k for k in KINDS}
SHARED = {"shared-regression": "regression", "shared-binary": "binary"}
DATA = {**HETERO, **SHARED}


def _kind(key: str) -> str:
    return DATA[key]


def _hetero_key(name: str) -> str:
    """The heterogeneous data a combined method is checked on: multiclass where it can, else binary."""
    return "hetero-multiclass" if "multiclass" in registry.get(name).kinds else "hetero-binary"


BASE_CASES = [(n, k) for n in METHODS for k in DATA if _kind(k) in registry.get(n).kinds]
REFUSED = [(n, k) for n in METHODS for k in DATA if _kind(k) not in registry.get(n).kinds]
COMBINED_CASES = [(n, k) for n in COMBINED for k in (_hetero_key(n), "shared-regression")]
CASES = BASE_CASES + COMBINED_CASES


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{n}|{k}" for n, k in cases]


# ---------------------------------------------------------------------- tiny data
@functools.cache
def _data(key: str) -> mtlkit.MultiTaskData:
    kind = _kind(key)
    rng = np.random.default_rng(sum(map(ord, key)))  # a fixed seed per data set
    if key in HETERO:
        Xs = [rng.normal(size=(n, D)) for n in SIZES]
        if kind == "regression":
            ys = [X @ rng.normal(size=D) + 0.1 * rng.normal(size=len(X)) for X in Xs]
        elif kind == "binary":
            ys = [(X[:, 0] + 0.3 * rng.normal(size=len(X)) > 0).astype(float) for X in Xs]
        elif kind == "multiclass":
            ys = [rng.permutation(np.arange(len(X)) % c) for X, c in zip(Xs, N_CLASSES, strict=True)]
            return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind=kind, n_classes=list(N_CLASSES), name=key)
        else:
            ys = [rng.dirichlet(np.ones(3), size=len(X)) for X in Xs]
        return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind=kind, name=key)
    N, T = 48, 3
    X = rng.normal(size=(N, D))
    Y = X @ rng.normal(size=(D, T)) + 0.1 * rng.normal(size=(N, T))
    if kind == "binary":
        Y = (Y > 0).astype(float)
    Y[rng.random((N, T)) < 0.3] = np.nan  # missing labels
    return mtlkit.MultiTaskData.from_shared(X, Y, kind=kind, name=key)


@functools.cache
def _split(key: str):
    return _data(key).split(test=0.25, val=0.25, seed=0)


_TINY: dict[str, tuple[Any, ...]] = {
    "hidden": ([8], 8), "head_hidden": ([4],), "expert_dim": (4,), "fc": ([8],), "hd_top": (4,), "max_iter": (200,),
    "iters": (5,), "inner": (20,), "mgda_iters": (50,), "k": (2,), "update_every": (2,),
}


def _tiny(name: str) -> dict[str, Any]:
    """2 epochs of batches of 8, and tiny widths / solver budgets for whichever of those the method declares."""
    params = method_params(registry.get(name))
    out: dict[str, Any] = {}
    if registry.get(name).fit is None:
        out.update(epochs=2, batch_size=8)
    for k, p in params.items():
        for v in _TINY.get(k, ()):
            if (p.type == "ints") == isinstance(v, list):
                out[k] = v
                break
    return out


# ---------------------------------------------------------------------- one training per (method, data), reused
@dataclass
class Trained:
    run: Any
    again: Any
    split: Any


@pytest.fixture(scope="module")
def trained():
    """``get(name, key)``: the method trained twice with seed 0 on the data set ``key`` (an error is kept and
    raised again for every assertion that needs the run)."""
    cache: dict[tuple[str, str], Trained | BaseException] = {}

    def get(name: str, key: str) -> Trained:
        if (name, key) not in cache:
            split = _split(key)
            try:
                runs = [mtlkit.train(name, split, hparams=_tiny(name), seed=0, device="cpu", progress=False)
                        for _ in range(2)]
                cache[name, key] = Trained(runs[0], runs[1], split)
            except Exception as e:  # noqa: BLE001 - re-raised by every test of the pair
                cache[name, key] = e
        got = cache[name, key]
        if isinstance(got, BaseException):
            raise got
        return got

    return get


def _test_rows(split) -> np.ndarray:
    test = split.test
    return test.x if test.xs is None else np.concatenate(test.xs)


# ---------------------------------------------------------------------- the coverage itself
def test_the_contract_covers_every_registered_method_and_combiner():
    covered = {n for n, _ in BASE_CASES} | {n for n, _ in REFUSED}
    assert registry.names() == METHODS and covered == set(registry.names())
    for n in METHODS:  # every method meets heterogeneous and shared-input data
        assert any(k in HETERO for m, k in BASE_CASES if m == n) and any(k in SHARED for m, k in BASE_CASES if m == n)
    for c in COMBINERS:  # every combiner with hard-share and with a base method other than hard-share
        with_c = [n.rpartition("+")[0] for n in COMBINED if n.rpartition("+")[2] == c]
        assert "hard-share" in with_c and any(b != "hard-share" for b in with_c), c
    assert all(registry.get(n).name == n for n in COMBINED)


# ---------------------------------------------------------------------- trains, deterministic, persistent
@pytest.mark.parametrize(("name", "key"), CASES, ids=_ids(CASES))
def test_trains_with_finite_losses_and_test_metric(trained, name, key):
    t = trained(name, key)
    ev = t.run.evaluate("test")
    primary = ev.per_task[ev.primary]
    assert primary.shape == (t.split.train.n_tasks,) and np.isfinite(primary).all(), (ev.primary, primary)
    assert math.isfinite(ev.mean[ev.primary])
    if t.run.history is not None:  # SGD-trained: every epoch's per-task training loss is finite
        assert len(t.run.history.train_loss) >= 1
        assert all(np.isfinite(v).all() for v in t.run.history.train_loss)
    assert all(torch.isfinite(p).all() for p in t.run.model.state_dict().values() if p.is_floating_point())


@pytest.mark.parametrize(("name", "key"), CASES, ids=_ids(CASES))
def test_same_seed_gives_identical_parameters(trained, name, key):
    t = trained(name, key)
    a, b = t.run.model.state_dict(), t.again.model.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert t.run.hparams == t.again.hparams


@pytest.mark.parametrize(("name", "key"), CASES, ids=_ids(CASES))
def test_save_load_gives_identical_predictions(trained, name, key, tmp_path):
    t = trained(name, key)
    t.run.save(tmp_path / "run")
    loaded = mtlkit.load(tmp_path / "run")
    assert loaded.method == t.run.method and loaded.hparams == t.run.hparams
    X = _test_rows(t.split)
    np.testing.assert_array_equal(loaded.predict_proba(X), t.run.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X, task=0), t.run.predict(X, task=0))
    got, want = loaded.evaluate(t.split.test).per_task, t.run.evaluate("test").per_task
    assert got.keys() == want.keys()
    for m in want:
        np.testing.assert_array_equal(got[m], want[m], err_msg=m)


@pytest.mark.parametrize(("name", "key"), CASES, ids=_ids(CASES))
def test_task_relations_are_finite_matrices_over_the_tasks(trained, name, key):
    """The hook's matrices are 2-D, finite, with one column per task: ``[T, T]``, or ``[K, T]`` for K topics /
    basis tasks / one row of per-task values (`mtlkit.analysis.relations`). No hook: ``{}``; a hook may also
    return ``{}`` where the configuration learns no relation (``nn``: the AMTFL network without its A)."""
    t = trained(name, key)
    T = t.split.train.n_tasks
    rel = task_relations(t.run)
    if not callable(getattr(t.run.model, "task_relations", None)):
        assert rel == {}
    for label, m in rel.items():
        assert m.ndim == 2 and m.shape[1] == T and m.shape[0] >= 1, (label, m.shape)
        assert np.isfinite(m).all(), label


@pytest.mark.parametrize(("name", "key"), REFUSED, ids=_ids(REFUSED))
def test_an_undeclared_task_kind_is_refused_in_one_line(name, key):
    with pytest.raises(MtlkitError) as e:
        mtlkit.train(name, _split(key), hparams=_tiny(name), seed=0, device="cpu", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and _kind(key) in msg


# ---------------------------------------------------------------------- hyper-parameters: describe == build
class _Recorder(dict):
    """A hyper-parameter dict that records which keys a build reads (``[k]``, ``get``, ``in``) and which keys it
    asked for that are not there (a hyper-parameter used but never declared)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()
        self.absent: set[str] = set()

    def __getitem__(self, k: str) -> Any:
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k: str, default: Any = None) -> Any:
        self.read.add(k)
        if not super().__contains__(k):
            self.absent.add(k)
        return super().get(k, default)

    def __contains__(self, k: object) -> bool:
        self.read.add(str(k))
        if not super().__contains__(k):
            self.absent.add(str(k))
        return super().__contains__(k)


@pytest.mark.parametrize("name", METHODS + COMBINED)
def test_describe_lists_exactly_what_build_accepts(name):
    entry = registry.get(name)
    d = registry.describe(name)
    declared = set(d["hyperparameters"])
    params = method_params(entry)
    assert declared == set(d["defaults"]) == set(params) == set(method_defaults(entry))
    assert d["defaults"] == method_defaults(entry)
    if entry.fit is None:
        assert {p.name for p in TRAIN_PARAMS} <= declared, "an SGD-trained method takes the Trainer's parameters"
    base, plus, comb = name.rpartition("+")
    if plus:  # a composed method takes its base's parameters and its combiner's, nothing else
        assert declared == set(registry.describe(base)["hyperparameters"]) | set(COMBINERS[comb].defaults)
    for key in ("hetero-regression", "shared-regression"):
        data = _data(key)
        given = {k: d["defaults"][k] for k in declared}  # every declared key given explicitly
        hp = _Recorder(merge_hparams(method_defaults(entry), given, name, params))
        torch.manual_seed(0)
        parts = build_method(entry, data.info(), hp)
        if entry.fit is not None:
            entry.fit(parts, Normalizer.fit(data).apply(data).tensors(), hp)
        assert hp.read <= declared and not hp.absent, \
            f"{name} reads undeclared hyper-parameters {sorted((hp.read - declared) | hp.absent)}"
        torch.manual_seed(0)  # the explicit defaults change nothing: the same initial model as the defaults
        ref = build_method(entry, data.info(), merge_hparams(method_defaults(entry), {}, name, params))
        if entry.fit is None:
            a, b = parts.model.state_dict(), ref.model.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def _bad_values(p: HParam) -> list[Any]:
    """Values outside an `HParam`'s declared range / choices / type (each must be refused)."""
    out: list[Any] = []
    if p.choices is not None:
        nums = [c for c in p.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        out.append(max(nums) + 1 if len(nums) == len(p.choices) else "not-a-choice")
    if p.type in ("int", "float"):
        step = 1 if p.type == "int" else 0.5
        if p.low is not None:
            lo = int(p.low) if p.type == "int" else float(p.low)
            out.append(lo if p.low_open else lo - step)
        if p.high is not None:
            hi = int(p.high) if p.type == "int" else float(p.high)
            out.append(hi if p.high_open else hi + step)
        out.append("3")  # not a number
    elif p.type == "ints":
        out.append([0])
    elif p.type == "bool":
        out.append("yes")
    elif p.type == "str" and p.choices is None:
        out.append(3)
    return out


@pytest.mark.parametrize("name", METHODS + COMBINED)
def test_unknown_and_out_of_range_hyperparameters_are_one_line_errors(name):
    split = _split("shared-regression")
    with pytest.raises(MtlkitError) as e:
        mtlkit.train(name, split, hparams={"no_such_hyperparameter": 1}, seed=0, device="cpu", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "no_such_hyperparameter" in msg and name in msg
    tried = 0
    for k, p in method_params(registry.get(name)).items():
        for bad in _bad_values(p):
            with pytest.raises(MtlkitError) as e:
                mtlkit.train(name, split, hparams={k: bad}, seed=0, device="cpu", progress=False)
            msg = str(e.value)
            assert "\n" not in msg and k in msg and name in msg, (k, bad, msg)
            tried += 1
    assert tried > 0


# ---------------------------------------------------------------------- every base method x every combiner
@pytest.mark.parametrize("combiner", list(COMBINERS))
def test_every_sgd_method_composes_with_the_combiner_and_steps(combiner):
    """Every base method the registry lets take a combiner builds with it and takes one training step (tiny
    widths, heterogeneous regression data): finite losses and parameters, and the parameters moved."""
    data = _data("hetero-regression")
    info, T = data.info(), data.n_tasks
    batch = next(iter(TaskBatchSampler(data.tensors(), 8, seed=0)))
    for base in SGD_BASES:
        name = f"{base}+{combiner}"
        entry = registry.get(name)
        assert entry.name == name
        hp = merge_hparams(method_defaults(entry), _tiny(name), name, method_params(entry))
        torch.manual_seed(0)
        parts = build_method(entry, info, hp)
        model = parts.model
        params = [p for p in model.parameters() if p.requires_grad]
        shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
        before = [p.detach().clone() for p in params]
        model.train()
        losses = training_step(parts, model, TaskLoss(info.spec), batch, torch.full((T,), 1.0 / T),
                               make_optimizer(params, hp), shared)
        assert losses.shape == (T,) and torch.isfinite(losses).all(), name
        assert all(torch.isfinite(p).all() for p in params), name
        assert any(not torch.equal(p, q) for p, q in zip(params, before, strict=True)), name


def test_methods_that_cannot_take_a_combiner_say_so_in_one_line():
    own_solver = [n for n in METHODS if registry.get(n).fit is not None]
    assert own_solver  # closed-form / alternating methods exist
    for c in COMBINERS:
        for n in own_solver:
            with pytest.raises(MtlkitError) as e:
                registry.get(f"{n}+{c}")
            assert "\n" not in str(e.value) and n in str(e.value) and c in str(e.value)
        for n in [m for m in METHODS if m in COMBINERS]:  # already a method trained with a combiner
            with pytest.raises(UnknownNameError) as e:
                registry.get(f"{n}+{c}")
            assert "\n" not in str(e.value)
        with pytest.raises(UnknownNameError) as e:  # two combiners
            registry.get(f"hard-share+{c}+{c}")
        assert "\n" not in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        registry.get("hard-share+no-such-combiner")
    assert "\n" not in str(e.value) and all(c in str(e.value) for c in COMBINERS)
