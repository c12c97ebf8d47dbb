"""Covariance alignment (Wu, Zhang & Ré, Algorithm 1): R = I reproduces the un-aligned model exactly, Z_t = X_t R_t
against a per-task loop, the "fixed" phase moves only R and the heads, transfer, and a rotated-task case where
aligning recovers what the shared module learned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.experiments.alignment import align_run, align_transfer
from mtlkit.methods import registry
from mtlkit.methods.alignment import (
    AlignedHardShareNet,
    Alignment,
    attach_alignment,
    set_align_phase,
)
from mtlkit.methods.baselines import HardShareNet

pytestmark = pytest.mark.usefixtures("one_thread")

T, D = 3, 5
ARCH = {"hidden": [8], "head_hidden": [6], "activation": "tanh", "dropout": 0.0}
TRAIN = {"epochs": 15, "batch_size": 16, "lr": 0.01, "patience": 0}


def _info(shared: bool = False) -> DataInfo:
    return DataInfo(TaskSpec("regression", tuple(f"t{i}" for i in range(T)), (1,) * T), (D,), shared)


def _data(seed: int = 0, n: int = 60) -> MultiTaskData:
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=D)
    Xs = [rng.normal(size=(n, D)) for _ in range(T)]
    ys = [np.tanh(X @ (w0 + 0.3 * rng.normal(size=D))) + 0.05 * rng.normal(size=n) for X in Xs]
    return MultiTaskData.from_tasks(Xs, ys)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("shared", [False, True])
def test_identity_start_is_the_unaligned_model(shared: bool) -> None:
    info = _info(shared)
    torch.manual_seed(0)
    plain = HardShareNet(info, **ARCH).double()
    torch.manual_seed(0)
    aligned = AlignedHardShareNet(info, **ARCH).double()
    assert torch.equal(aligned.alignment.R, torch.eye(D, dtype=torch.float64).expand(T, D, D))
    x = torch.randn(7, D, dtype=torch.float64) if shared else torch.randn(T, 7, D, dtype=torch.float64)
    if shared:  # the plain bottom sees [B, d] once, the aligned one [T, B, d]: another GEMM shape, same values
        torch.testing.assert_close(aligned(x).pred, plain(x).pred.expand(T, 7, 1), rtol=1e-13, atol=1e-15)
    else:
        assert torch.equal(aligned(x).pred, plain(x).pred)  # exactly, not approximately
    hooked = attach_alignment(plain, T, D)  # the generic option on any model with a shared `bottom`
    assert torch.equal(plain(x).pred, aligned(x).pred)
    with torch.no_grad():
        R = torch.randn(T, D, D, dtype=torch.float64)
        hooked.R.copy_(R)
        aligned.alignment.R.copy_(R)
    torch.testing.assert_close(plain(x).pred, aligned(x).pred, rtol=1e-13, atol=1e-15)
    with pytest.raises(Exception, match="already has an alignment"):
        attach_alignment(plain, T, D)


def test_alignment_is_x_times_R_per_task() -> None:
    al = Alignment(T, D).double()
    with torch.no_grad():
        al.R.copy_(torch.randn(T, D, D, dtype=torch.float64))
    x = torch.randn(T, 4, D, dtype=torch.float64)
    xs = torch.randn(4, D, dtype=torch.float64)
    for t in range(T):
        torch.testing.assert_close(al(x)[t], x[t] @ al.R[t])
        torch.testing.assert_close(al(xs)[t], xs @ al.R[t])
    with pytest.raises(ValueError, match="features of size"):
        al(torch.zeros(T, 4, D + 1))
    with pytest.raises(ValueError, match="align_phase"):
        set_align_phase(AlignedHardShareNet(_info(), **ARCH), "frozen")


@pytest.mark.parametrize(("phase", "align", "moves", "stays"),
                         [("fixed", True, ("alignment", "heads"), ("bottom",)),
                          ("joint", True, ("alignment", "heads", "bottom"), ()),
                          ("joint", False, ("heads", "bottom"), ("alignment",)),
                          ("fixed", False, ("heads",), ("alignment", "bottom"))])
def test_phase_decides_what_trains(phase: str, align: bool, moves: tuple[str, ...], stays: tuple[str, ...]) -> None:
    split = _data().split(test=0.2, val=0.2, seed=0)
    torch.manual_seed(0)
    init = _snapshot(AlignedHardShareNet(split.train.info(), **ARCH))
    hp = {**ARCH, **TRAIN, "align_phase": phase, "align": align}
    run = mtlkit.train("hard-share-align", split, hparams=hp, seed=0, device="cpu")
    after = _snapshot(run.model)
    assert init.keys() == after.keys()
    for k in init:
        changed = not torch.equal(init[k], after[k])
        assert changed == k.startswith(moves), (phase, k, changed)
        assert changed != k.startswith(stays)


def test_algorithm1_on_a_trained_run_fixes_the_shared_module() -> None:
    split = _data().split(test=0.2, val=0.2, seed=0)
    base = mtlkit.train("hard-share", split, hparams={**ARCH, **TRAIN}, seed=0, device="cpu")
    before = _snapshot(base.model)
    al = align_run(base, phase="fixed", hparams={"epochs": 10})
    assert al.method == "hard-share-align" and al.hparams["align_phase"] == "fixed" and al.hparams["epochs"] == 10
    assert all(torch.equal(v, before[k]) for k, v in base.model.state_dict().items())  # the input run is untouched
    got = al.model.state_dict()
    for k, v in before.items():
        if k.startswith("bottom."):
            assert torch.equal(got[k], v)  # B fixed
    assert not torch.equal(got["alignment.R"], torch.eye(D).expand(T, D, D))  # R trained with the heads
    assert any(not torch.equal(got[k], v) for k, v in before.items() if k.startswith("heads."))
    # the validation-selected aligned model is no worse on validation than where it started (R = I)
    assert al.history.best_val <= al.history.val_loss[0].mean() + 1e-9


def test_save_load_round_trip(tmp_path: object) -> None:
    split = _data().split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("hard-share-align", split, hparams={**ARCH, "epochs": 3}, seed=0, device="cpu")
    run.save(tmp_path)
    back = mtlkit.load(tmp_path)
    X = split.test.task_arrays(0)[0]
    np.testing.assert_array_equal(back.predict(X), run.predict(X))
    assert registry.describe("hard-share-align")["defaults"]["align_phase"] == "joint"


def test_alignment_undoes_a_rotation_of_one_task() -> None:
    """Task 2's inputs are task 1's rotated by Q (same labels function): with the shared module trained on
    task 1 and then fixed, aligning task 2 (R trained with its head) fits it far better than the head alone —
    the situation the paper's theory says alignment repairs."""
    rng = np.random.default_rng(1)
    n, d = 200, 4
    w = rng.normal(size=d)
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    X1, X2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    y1, y2 = np.tanh(X1 @ w), np.tanh(X2 @ Q.T @ w)  # x2 = x1 Qᵀ ⇔ task 2 sees task-1 data rotated
    src = MultiTaskData.from_tasks([X1], [y1]).split(test=0.2, val=0.2, seed=0)
    tgt = MultiTaskData.from_tasks([X2], [y2]).split(test=0.2, val=0.2, seed=0)
    arch = {"hidden": [1], "head_hidden": [], "activation": "tanh", "dropout": 0.0}
    base = mtlkit.train("hard-share", src, hparams={**arch, "epochs": 60, "batch_size": 32, "lr": 0.01,
                                                    "patience": 0}, seed=0, device="cpu", standardize=False)
    hp = {"epochs": 60, "lr": 0.02, "patience": 0}
    plain = align_transfer(base, tgt, align=False, phase="fixed", hparams=hp)
    aligned = align_transfer(base, tgt, align=True, phase="fixed", hparams=hp)
    assert torch.equal(plain.model.alignment.R, torch.eye(d)[None])  # no alignment: R stays I
    for k, v in base.model.bottom.state_dict().items():  # both reuse the source's shared module, fixed
        assert torch.equal(aligned.model.bottom.state_dict()[k], v)
    rmse_plain = plain.evaluate("test").mean["rmse"]
    rmse_aligned = aligned.evaluate("test").mean["rmse"]
    assert rmse_aligned < 0.2 * rmse_plain, (rmse_plain, rmse_aligned)  # observed 0.68 vs 0.007
