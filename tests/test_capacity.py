"""`mtlkit.analysis.capacity`: the per-task capacity table against hand-made matrices, and the sweep
(`mtlkit.experiments.capacity`) against Proposition 1's consequence
(two unrelated linear tasks need a shared width r ≥ 2; r = 1 forces them to share)."""

from __future__ import annotations

import numpy as np
import pytest

import mtlkit
from mtlkit.analysis.capacity import capacity_table
from mtlkit.experiments.capacity import capacity_sweep


def test_table_selects_per_task_stl_width_and_one_mtl_width():
    widths = [5, 50, 500]
    names = ["a", "b"]
    stl_val = np.array([[70.0, 90.0], [80.0, 60.0], [75.0, 85.0]])  # best: a → 50, b → 5
    stl_test = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mtl_val = np.array([[50.0, 50.0], [60.0, 70.0], [90.0, 10.0]])  # task means 50, 65, 50 → width 50
    mtl_test = np.array([[7.0, 8.0], [9.0, 10.0], [11.0, 12.0]])
    df = capacity_table(widths, names, mtl_val, mtl_test, stl_val, stl_test, higher_is_better=True)
    assert list(df["task"]) == ["a", "b", "Overall"]
    assert list(df["stl_width"]) == [50, 5, 55]  # Overall = sum of the per-task widths
    assert list(df["stl_test"][:2]) == [3.0, 2.0]
    assert list(df["mtl_width"]) == [50, 50, 50]
    assert list(df["mtl_test"][:2]) == [9.0, 10.0]
    assert df["mtl_test"].iloc[-1] == pytest.approx(9.5) and df["stl_test"].iloc[-1] == pytest.approx(2.5)
    np.testing.assert_allclose(df["mtl_minus_stl"], [6.0, 8.0, 7.0])
    low = capacity_table(widths, names, mtl_val, mtl_test, stl_val, stl_test, higher_is_better=False)
    assert list(low["stl_width"]) == [5, 50, 55] and list(low["mtl_width"]) == [5, 5, 5]  # ties → first


def test_table_rejects_wrong_shapes():
    with pytest.raises(mtlkit.MtlkitError, match="matrices"):
        capacity_table([1, 2], ["a"], np.zeros((2, 2)), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), True)


def test_sweep_width_one_forces_unrelated_linear_tasks_to_share(one_thread):
    rng = np.random.default_rng(0)
    W = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]) * 2.0  # orthogonal task models
    Xs = [rng.normal(size=(80, 4)) for _ in range(2)]
    ys = [X @ w + 0.05 * rng.normal(size=80) for X, w in zip(Xs, W, strict=True)]
    data = mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression", names=["t0", "t1"], name="orth")
    split = data.split(test=0.25, val=0.25, seed=0)
    hp = {"head_hidden": [], "activation": "identity", "epochs": 40, "patience": 0, "lr": 0.15, "batch_size": 64}
    res = capacity_sweep(split, [1, 4], hp, seed=0, keep_runs=True)
    assert res.metric == "rmse" and not res.higher_is_better
    assert res.mtl_test.shape == (2, 2) and set(res.runs) == {("mtl", 1), ("mtl", 4), ("stl", 1), ("stl", 4)}
    np.testing.assert_allclose(res.runs[("mtl", 4)].evaluate("test").per_task["rmse"], res.mtl_test[1])
    # y has std ≈ 2 per task; a rank-1 shared B can serve only one direction, width 4 fits both (Prop. 1)
    assert res.mtl_test[0].mean() > 3.0 * res.mtl_test[1].mean()
    assert res.mtl_test[1].max() < 0.5 and res.stl_test.max() < 0.5  # STL (any width) fits each task alone
    df = res.table()
    assert df["mtl_width"].iloc[-1] == 4


def test_sweep_rejects_bad_widths():
    data = mtlkit.MultiTaskData.from_tasks([np.zeros((20, 2))], [np.zeros(20)], kind="regression")
    split = data.split(seed=0)
    for bad in ([], [0], [3, 3]):
        with pytest.raises(ValueError, match="widths"):
            capacity_sweep(split, bad)
    with pytest.raises(ValueError, match="prefix"):
        capacity_sweep(split, [2], {"hidden": [3]})
