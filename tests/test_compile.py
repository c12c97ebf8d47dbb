"""``compile=True`` (`mtlkit.train`, ``mtlkit train --compile``): the training step's forward pass under torch.compile
gives the eager run's losses (no dropout) to 1e-5; where it cannot be compiled, one warning and eager steps."""

from __future__ import annotations

import shutil
import time
import warnings

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.train.trainer import compile_forward

pytestmark = pytest.mark.usefixtures("one_thread")


def _split() -> mtlkit.Split:
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(40, 4)) for _ in range(3)]
    ys = [X @ rng.normal(size=4) + 0.1 * rng.normal(size=40) for X in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression").split(test=0.2, val=0.2, seed=0)


def test_compiled_step_gives_the_eager_losses() -> None:
    if not hasattr(torch, "compile"):
        pytest.skip(f"torch {torch.__version__} has no torch.compile")
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler on this machine: inductor cannot build CPU kernels")
    split = _split()
    hp = {"epochs": 3, "batch_size": 8, "patience": 0, "hidden": [8], "head_hidden": [4], "lr": 1e-2}
    eager = mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu", progress=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu", progress=False, compile=True)
    failed = [str(w.message) for w in caught if str(w.message).startswith("compile:")]
    if failed:
        pytest.skip(f"torch.compile cannot compile on this machine: {failed[0]}")
    np.testing.assert_allclose(np.array(comp.history.train_loss), np.array(eager.history.train_loss),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(comp.history.val_loss), np.array(eager.history.val_loss), rtol=1e-5, atol=1e-6)
    print(f"compiled run: {time.perf_counter() - t0:.1f} s")


def test_per_task_gradient_combiners_train_eagerly_with_one_warning() -> None:
    parts = mtlkit.methods.get("pcgrad").build(_split().train.info(), mtlkit.methods.describe("pcgrad")["defaults"])
    with pytest.warns(UserWarning, match="compile: PCGrad takes per-task gradients"):
        assert compile_forward(parts.model, parts) is parts.model
