"""`ple` (Progressive Layered Extraction): output shapes, the batched network against a per-task / per-expert
loop reference, heterogeneous input against row-wise evaluation, which parameters are shared, and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.data.spec import DataInfo
from mtlkit.methods.ple import PLE_DEFAULTS, PLENet, _ple_shared

pytestmark = pytest.mark.usefixtures("one_thread")
T, D = 3, 5


def _info(shared: bool, kind: str = "regression") -> DataInfo:
    rng = np.random.default_rng(0)
    if shared:
        X = rng.normal(size=(20, D))
        Y = rng.normal(size=(20, T)) if kind == "regression" else rng.integers(0, 3, size=(20, T)).astype(float)
        return mtlkit.MultiTaskData.from_shared(X, Y, kind=kind).info()
    Xs = [rng.normal(size=(20, D)) for _ in range(T)]
    ys = [rng.normal(size=20) if kind == "regression" else rng.integers(0, 3, size=20).astype(float) for _ in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind=kind).info()


def _net(info: DataInfo, levels: int, hidden: list[int] | None = None) -> PLENet:
    torch.manual_seed(0)
    hp = {**PLE_DEFAULTS, "levels": levels, "expert_dim": 4, "head_hidden": [3], "n_shared_experts": 2,
          "n_task_experts": 2, "hidden": hidden or []}
    return PLENet(info, hp["hidden"], hp["head_hidden"], hp["activation"], hp["dropout"], hp["levels"],
                  hp["n_shared_experts"], hp["n_task_experts"], hp["expert_dim"]).double()


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_output_shapes(shared, levels):
    for kind, P in (("regression", 1), ("multiclass", 3)):
        net = _net(_info(shared, kind), levels, hidden=[6])
        x = torch.randn(7, D, dtype=torch.float64) if shared else torch.randn(T, 7, D, dtype=torch.float64)
        assert net(x).shape == (T, 7, P)


def _reference(net: PLENet, x: torch.Tensor) -> torch.Tensor:
    """PLE written with loops over tasks and experts, one row set shared by all tasks ([B, D]): [T, B, P]."""
    relu = torch.relu
    h_task = [x] * T
    h_shared = x
    for lv in net.levels:
        k, s = lv.task_w.shape[1], lv.shared_w.shape[0]
        task_exp = [[relu(h_task[t] @ lv.task_w[t, j] + lv.task_b[t, j]) for j in range(k)] for t in range(T)]
        sh_exp = [relu(h_shared @ lv.shared_w[j] + lv.shared_b[j]) for j in range(s)]
        new_task = []
        for t in range(T):
            g = torch.softmax(h_task[t] @ lv.gate_w[t] + lv.gate_b[t], dim=-1)
            experts = task_exp[t] + sh_exp
            new_task.append(sum(g[:, i:i + 1] * experts[i] for i in range(k + s)))
        if not lv.final:
            g = torch.softmax(h_shared @ lv.sgate_w + lv.sgate_b, dim=-1)
            every = [e for t in range(T) for e in task_exp[t]] + sh_exp
            h_shared = sum(g[:, i:i + 1] * every[i] for i in range(len(every)))
        h_task = new_task
    outs = []
    for t in range(T):
        z = h_task[t]
        layers = net.heads.linear_layers()
        for i, layer in enumerate(layers):
            z = z @ layer.weight[t] + layer.bias[t]
            if i < len(layers) - 1:
                z = relu(z)
        outs.append(z)
    return torch.stack(outs)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_batched_network_matches_loop_reference(levels):
    net = _net(_info(True), levels)
    x = torch.randn(9, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x), _reference(net, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("levels", [1, 2])
def test_heterogeneous_input_is_evaluated_row_by_row(levels):
    """With its own rows per task, task t's output must be the network applied to task t's rows alone."""
    net = _net(_info(False), levels, hidden=[6])
    x = torch.randn(T, 5, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = net(x)
    for t in range(T):
        ref = net.heads(net.extract(net.bottom(x[t])))[t]  # the shared-input path on task t's rows
        torch.testing.assert_close(got[t], ref, rtol=1e-10, atol=1e-12)


def test_shared_parameters_are_exactly_those_several_tasks_reach():
    """A task-stacked tensor is shared iff task 1's output reaches task 0's slice of it; the un-stacked ones
    (shared experts, shared gates) are all shared."""
    net = _net(_info(True), 3)
    x = torch.randn(6, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = net(x)
    shared_ids = {id(p) for p in _ple_shared(net)}
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(out[1].sum(), list(params.values()), allow_unused=True)
    for (n, p), g in zip(params.items(), grads, strict=True):
        stacked = n.split(".")[-1] in ("task_w", "task_b", "gate_w", "gate_b") or n.startswith("heads")
        if stacked:
            crosses = g is not None and bool(g[0].abs().sum() > 0)
            assert crosses == (id(p) in shared_ids), n
        else:
            assert id(p) in shared_ids, n
    # with 3 levels: level-0 task gates are shared (they feed level-1 experts read by the shared gate),
    # level-1 task gates are not
    assert id(net.levels[0].gate_w) in shared_ids and id(net.levels[1].gate_w) not in shared_ids


def _data(shared: bool) -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=D)
    ws = [w0 + 0.3 * rng.normal(size=D) for _ in range(T)]
    if shared:
        X = rng.normal(size=(150, D))
        Y = np.stack([np.tanh(X @ w) + 0.05 * rng.normal(size=150) for w in ws], 1)
        return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression")
    Xs = [rng.normal(size=(100, D)) for _ in range(T)]
    return mtlkit.MultiTaskData.from_tasks(Xs, [np.tanh(X @ w) + 0.05 * rng.normal(size=100)
                                                for X, w in zip(Xs, ws, strict=True)])


@pytest.mark.parametrize("shared", [False, True])
def test_trains_and_beats_a_constant_predictor(shared, tmp_path):
    split = _data(shared).split(test=0.25, val=0.2, seed=0)
    run = mtlkit.train("ple", split, hparams={"epochs": 40, "lr": 1e-2, "expert_dim": 16, "head_hidden": [8]},
                       seed=0, device="cpu", progress=False)
    test = split.test
    const = np.mean([np.std(test.task_arrays(t)[1]) for t in range(T)])  # rmse of the best constant, roughly
    rmse = run.evaluate("test").mean["rmse"]
    assert rmse < 0.5 * const
    again = mtlkit.load(run.save(tmp_path / "ple"))
    X = test.task_arrays(0)[0]
    np.testing.assert_allclose(again.predict(X, task=0), run.predict(X, task=0), rtol=1e-5)


def test_bad_hyper_parameters_raise():
    info = _info(True)
    with pytest.raises(ValueError, match="levels"):
        mtlkit.methods.get("ple").build(info, {**PLE_DEFAULTS, "levels": 0})
    with pytest.raises(ValueError, match="n_shared_experts"):
        mtlkit.methods.get("ple").build(info, {**PLE_DEFAULTS, "n_shared_experts": 0})
