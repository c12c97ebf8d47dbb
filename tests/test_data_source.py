"""CPU stores read their features from the source rows (issue 18's last memory target): `to_device_data` keeps no
standardised copy on the CPU (`SourceRows`), the sampler's gather and every evaluation chunk standardise the
gathered rows. The reference is the stored copy itself (``READ_FROM_SOURCE = False``: the code as it was), and
every number must be the same bits: stores, batches, evaluation chunks, histories, parameters, metrics and
predictions, on per-task and shared input, vector and image rows, float32 and float64 input and stores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data import Normalizer, TaskBatchSampler, tensors
from mtlkit.data.rows import Rows
from mtlkit.data.spec import TaskSpec
from mtlkit.data.tensors import DeviceData, SourceRows, to_device_data
from mtlkit.methods import registry
from mtlkit.train.config import method_defaults

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [37, 5, 90, 12]


def _bits(a: Any) -> np.ndarray:
    """The raw bits of a float array (so that equality is bitwise: -0.0 differs from 0.0)."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize]) if a.dtype.kind == "f" else a


def _same(a: Any, b: Any) -> bool:
    return a.shape == b.shape and np.array_equal(_bits(a), _bits(b))


def _data(layout: str, dtype: type, kind: str = "regression", seed: int = 0) -> MultiTaskData:
    """Raw features far from standardised (offset and scale), so standardisation changes every bit."""
    rng = np.random.default_rng(seed)
    shape = (1, 4, 4) if layout.endswith("image") else (6,)

    def x(n: int) -> np.ndarray:
        return (rng.standard_normal((n, *shape)) * 30 + 500).astype(dtype)

    def y(n: int) -> np.ndarray:
        return rng.standard_normal(n) * 7 + 40 if kind == "regression" else rng.integers(0, 2, n).astype(float)

    if layout.startswith("shared"):
        Y = np.stack([y(120) for _ in range(3)], 1)
        Y[rng.random(Y.shape) < 0.3] = np.nan
        return MultiTaskData.from_shared(x(120), Y, kind=kind)
    if layout == "one-base":  # every task's rows index one array (as a table's tasks do)
        base = x(sum(SIZES))
        perm = rng.permutation(len(base))
        cuts = np.cumsum([0, *SIZES])
        spec = TaskSpec(kind, tuple(f"t{i}" for i in range(len(SIZES))), (1,) * len(SIZES) if kind == "regression"
                        else (2,) * len(SIZES))
        return MultiTaskData(spec, xs=[Rows(base, perm[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)],
                             ys=[y(n) for n in SIZES])
    return MultiTaskData.from_tasks([x(n) for n in SIZES], [y(n) for n in SIZES], kind=kind)


def _both(fn: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """``fn()`` read from the source, then with the stored copy (the code before)."""
    new = fn()
    monkeypatch.setattr(tensors, "READ_FROM_SOURCE", False)
    old = fn()
    monkeypatch.setattr(tensors, "READ_FROM_SOURCE", True)
    return new, old


LAYOUTS = ["tasks", "tasks-image", "one-base", "shared", "shared-image"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("store", [torch.float32, torch.float64])
@pytest.mark.parametrize("gather", [None, 13])  # 13 elements: each gather read and standardised a row or two at a time
def test_store_batches_and_chunks_are_the_stored_copys(monkeypatch: pytest.MonkeyPatch, layout: str,
                                                       x_dtype: type, store: torch.dtype, gather: int | None) -> None:
    if gather is not None:
        monkeypatch.setattr(tensors, "GATHER_ELEMENTS", gather)
    split = _data(layout, x_dtype).split(test=0.2, val=0.2, seed=0)
    norm = Normalizer.fit(split.train)
    for part in (split.train, split.val):
        std = norm.apply(part)
        new, old = _both(lambda std=std: to_device_data(std, dtype=store), monkeypatch)
        assert new.from_source and not old.from_source
        assert isinstance(new._x, SourceRows) and new.nbytes < old.nbytes
        assert _same(new.x_rows, old.x_rows)  # the whole store, zero row included
        if not new.shared:
            assert not new.x_rows[-1].any()
        for w in (1, 3, new.n_rows):
            for a, b in zip(new.chunks(w), old.chunks(w), strict=True):
                assert _same(a.x, b.x) and _same(a.y, b.y) and torch.equal(a.mask, b.mask)
        for a, b in zip(TaskBatchSampler(new, 8, seed=3), TaskBatchSampler(old, 8, seed=3), strict=True):
            assert _same(a.x, b.x) and _same(a.y, b.y) and torch.equal(a.mask, b.mask)


def test_unstandardised_and_padded_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data given straight to `tensors()` (no map): the source's rows themselves; the padded views agree."""
    data = _data("tasks", np.float64)
    new, old = _both(lambda: data.tensors(), monkeypatch)
    assert _same(new.x, old.x) and _same(new.y, old.y) and torch.equal(new.mask, old.mask)
    assert _same(new.x_rows[:SIZES[0]], torch.as_tensor(data.xs[0].astype(np.float32)))
    padded = DeviceData(new.x, new.y, new.mask, shared=False, counts=new.counts)  # the padded constructor copies
    assert not padded.from_source and _same(padded.x_rows, old.x_rows)


def test_other_devices_keep_a_copy_and_memory_mapped_rows_are_read_in_place(tmp_path: Any) -> None:
    """CPU arrays, in memory or memory-mapped (a streamed table's file, which the ranks of a machine share), are
    read per gather, with the bits of the staged copy; a CUDA store holds its copy in the device's memory."""
    data = _data("tasks", np.float32)
    assert data.tensors().from_source
    assert not DeviceData.from_store(shared=False, counts=np.array([1]), x_rows=torch.zeros(2, 6),
                                     y_rows=torch.zeros(2)).from_source
    mm = np.lib.format.open_memmap(str(tmp_path / "x.npy"), mode="w+", dtype=np.float32, shape=(3, 2))
    assert SourceRows.eligible([Rows(mm)])
    rng = np.random.default_rng(1)
    base = np.lib.format.open_memmap(str(tmp_path / "b.npy"), mode="w+", dtype=np.float64, shape=(40, 3))
    base[:] = rng.standard_normal((40, 3)) * 7 + 2
    idx = [np.arange(0, 25), np.arange(25, 40)]
    in_memory = MultiTaskData.from_tasks([np.array(base[i]) for i in idx], [rng.standard_normal(len(i)) for i in idx],
                                         kind="regression")
    mapped = MultiTaskData(in_memory.spec, xs=[Rows(base, i) for i in idx], ys=in_memory.ys)  # as streaming makes
    norm = Normalizer.fit(mapped)
    read = norm.apply(mapped).tensors()
    copied = norm.apply(in_memory).tensors()
    assert read.from_source and isinstance(read._x.base, np.memmap) and _same(read.x_rows, copied.x_rows)
    assert not SourceRows.eligible([Rows(np.ones((3, 2), np.float32)), Rows(np.ones((3, 2), np.float64))])
    if torch.cuda.is_available():
        assert not data.tensors("cuda").from_source


CASES = [("hard-share", "tasks", np.float32), ("hard-share", "tasks-image", np.float32),
         ("hard-share", "shared", np.float64), ("tomato-el", "tasks", np.float64),
         ("tomato-el", "one-base", np.float32), ("stl-linear", "tasks", np.float32),
         ("stl-linear", "shared", np.float32), ("lasso", "tasks", np.float64)]


@pytest.mark.parametrize(("method", "layout", "x_dtype"), CASES)
def test_training_and_evaluation_are_the_same_bits(monkeypatch: pytest.MonkeyPatch, method: str, layout: str,
                                                   x_dtype: type) -> None:
    data = _data(layout, x_dtype, seed=5)
    split = data.split(test=0.2, val=0.2, seed=0)

    def run() -> dict[str, Any]:
        known = method_defaults(registry.get(method))
        hp = {k: v for k, v in {"epochs": 3, "patience": 0, "batch_size": 8}.items() if k in known}
        r = mtlkit.train(method, split, hparams=hp, seed=0, progress=False)
        ev = {p: r.evaluate(p) for p in ("train", "val", "test")}
        X = data.x if data.shared else data.xs[0]
        return {"history": r.history, "state": r.model.state_dict(), "eval": ev,
                "pred": r.predict(X[:7], task=0), "cells": r._cell_predictions(split.test)}

    new, old = _both(run, monkeypatch)
    h, g = new["history"], old["history"]
    assert (h is None) == (g is None) == ("epochs" not in method_defaults(registry.get(method)))  # closed forms
    if h is not None:
        assert len(h.train_loss) == len(g.train_loss) == 3
        assert all(_same(a, b) for a, b in zip(h.train_loss, g.train_loss, strict=True))
        assert all(_same(a, b) for a, b in zip(h.val_loss, g.val_loss, strict=True))
        assert (h.best_epoch, h.best_val) == (g.best_epoch, g.best_val)
    assert new["state"].keys() == old["state"].keys()
    assert all(_same(new["state"][k], old["state"][k]) for k in new["state"])
    for p, e in new["eval"].items():
        assert e.per_task.keys() == old["eval"][p].per_task.keys()
        assert all(_same(e.per_task[k], old["eval"][p].per_task[k]) for k in e.per_task)
    assert _same(new["pred"], old["pred"]) and _same(new["cells"], old["cells"])
