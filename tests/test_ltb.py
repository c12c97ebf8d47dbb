"""`ltb` (Guo, Lee & Ulbricht 2020): the batched forward pass equals a per-task loop along each task's path in the
learned tree (evaluation) and a per-task, per-node loop of the relaxed mixtures (training); the Gumbel-softmax
parent draws pick parent i with probability softmax(θ)_i; the temperature schedule and step clock; it learns a small
regression problem and composes with Dynamic Weight Average (``ltb+dwa``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods import registry
from mtlkit.methods.ltb import TAU_MIN, LTBNet
from mtlkit.nn.task_layers import TaskLinear
from mtlkit.optim.weightings import DWA

pytestmark = pytest.mark.usefixtures("one_thread")

T, B, D = 4, 5, 6


def _net(shared: bool, max_nodes: int = 3, hidden: tuple[int, ...] = (7, 6, 5)) -> LTBNet:
    info = DataInfo(TaskSpec("multiclass", tuple(f"t{i}" for i in range(T)), (3,) * T), (D,), shared)
    torch.manual_seed(0)
    net = LTBNet(info, list(hidden), [4], "tanh", 0.0, max_nodes, tau=1.0, tau_decay=0.9).double()
    with torch.no_grad():
        for th in net.logits:
            th.normal_()
    return net


def _head(net: LTBNet, t: int, h: torch.Tensor) -> torch.Tensor:
    layers = [m for m in net.heads.modules() if isinstance(m, TaskLinear)]
    for i, lin in enumerate(layers):
        h = h @ lin.weight[t] + lin.bias[t]
        if i < len(layers) - 1:
            h = torch.tanh(h)
    return h


def _rows(net: LTBNet, x: torch.Tensor, t: int) -> torch.Tensor:
    return x if net.shared else x[t]


def _path_reference(net: LTBNet, x: torch.Tensor) -> torch.Tensor:
    """Task by task: its leaf's argmax parent, that node's argmax parent, ... down to the first layer; then the
    path's nodes applied bottom-up with their own weight slices, then the task's head."""
    out = []
    for t in range(T):
        path = [int(net.logits[-1][t].argmax())]
        for j in range(len(net.nodes) - 1, 0, -1):
            path.insert(0, int(net.logits[j - 1][path[0]].argmax()))
        h = _rows(net, x, t)
        for j, k in enumerate(path):
            h = torch.tanh(h @ net.nodes[j].weight[k] + net.nodes[j].bias[k])
        out.append(_head(net, t, h))
    return torch.stack(out)


def _mixture_reference(net: LTBNet, x: torch.Tensor, mixes: list[torch.Tensor]) -> torch.Tensor:
    """Task by task and node by node: ``y_c = σ(W_c Σ_i d_ci y_i + b_c)``, the leaf ``Σ_i d_ti y_i``."""
    out = []
    for t in range(T):
        a = _rows(net, x, t)
        ys = [torch.tanh(a @ net.nodes[0].weight[k] + net.nodes[0].bias[k]) for k in range(net.n_nodes[0])]
        for j in range(1, len(net.nodes)):
            ys = [torch.tanh(sum(mixes[j - 1][c, i] * ys[i] for i in range(len(ys))) @ net.nodes[j].weight[c]
                             + net.nodes[j].bias[c]) for c in range(net.n_nodes[j])]
        leaf = sum(mixes[-1][t, i] * ys[i] for i in range(len(ys)))
        out.append(_head(net, t, leaf))
    return torch.stack(out)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-task"])
def test_forward_equals_per_task_loops(shared: bool) -> None:
    net = _net(shared)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*((B,) if shared else (T, B)), D, generator=g, dtype=torch.float64)
    net.eval()
    got = net(x)
    assert got.shape == (T, B, 3)
    torch.testing.assert_close(got, _path_reference(net, x), rtol=1e-12, atol=1e-12)
    mixes = [torch.softmax(torch.randn(th.shape, generator=g, dtype=torch.float64), -1) for th in net.logits]
    torch.testing.assert_close(net.forward_with(x, mixes), _mixture_reference(net, x, mixes), rtol=1e-12,
                               atol=1e-12)
    net.train()
    y = net(x)  # a relaxed draw: not the tree's output, and the step clock moved
    assert y.shape == (T, B, 3) and not torch.allclose(y, got) and int(net.steps) == 1


def test_parent_draws_follow_the_branching_probabilities() -> None:
    """Gumbel-max: the argmax of the relaxed sample is parent i with probability softmax(θ)_i, whatever τ."""
    net = _net(True, max_nodes=3)
    with torch.no_grad():
        net.logits[-1].copy_(torch.tensor([[2.0, 0.0, -1.0]]).repeat(T, 1))
    net.train()
    torch.manual_seed(3)
    n = 3000
    with torch.no_grad():  # no step counted without a graph: τ stays at its start
        picks = torch.stack([net.mixing()[-1].argmax(-1) for _ in range(n)])  # [n, T]
    assert int(net.steps) == 0
    freq = torch.stack([(picks == i).double().mean() for i in range(3)])
    want = torch.softmax(torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64), 0)
    assert torch.allclose(freq, want, atol=4 * float((want * (1 - want) / (n * T)).sqrt().max()) + 0.01), freq
    for m in net.mixing():
        assert (m >= 0).all() and torch.allclose(m.sum(-1), torch.ones(m.shape[0], dtype=m.dtype))
    net.eval()
    assert [m.argmax(-1).tolist() for m in net.mixing()] == net.parents()
    assert all(((m == 0) | (m == 1)).all() for m in net.mixing())


def test_temperature_anneals_per_training_step_and_the_clock_is_saved() -> None:
    net = _net(False)
    x = torch.randn(T, B, D, dtype=torch.float64)
    net.train()
    for k in range(5):
        assert net.temperature() == pytest.approx(max(TAU_MIN, 0.9 ** k))
        net(x)
    net.steps.fill_(10_000)
    assert net.temperature() == TAU_MIN
    assert int(net.state_dict()["steps"]) == 10_000
    net.eval()
    net(x)
    assert int(net.steps) == 10_000  # evaluation takes no step


def test_task_relations_are_the_layers_shared_in_the_tree() -> None:
    net = _net(True, max_nodes=3, hidden=(4, 4))
    with torch.no_grad():  # tasks 0, 1 under node 0, tasks 2, 3 under node 2; both top nodes under node 1 below
        net.logits[0].copy_(torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))
        net.logits[1].copy_(torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 0, 5.0], [0, 0, 5.0]]))
    rel = net.task_relations()["shared layers (learned tree)"]
    want = torch.tensor([[1, 1, .5, .5], [1, 1, .5, .5], [.5, .5, 1, 1], [.5, .5, 1, 1]])
    torch.testing.assert_close(rel, want)


def test_one_layer_branches_at_the_leaves_and_no_layer_is_refused() -> None:
    net = _net(False, hidden=(5,))
    assert len(net.logits) == 1 and net.logits[0].shape == (T, 3)
    x = torch.randn(T, B, D, dtype=torch.float64)
    net.eval()
    torch.testing.assert_close(net(x), _path_reference(net, x), rtol=1e-12, atol=1e-12)
    info = DataInfo(TaskSpec("regression", ("a", "b"), (1, 1)), (3,), True)
    with pytest.raises(ValueError, match="at least one layer"):
        LTBNet(info, [], [2], "relu", 0.0, 2, 1.0, 0.99)


def test_ltb_and_ltb_dwa_learn_a_regression_problem() -> None:
    rng = np.random.default_rng(0)
    N = 300
    w = rng.normal(size=(2, D))
    Xs = [rng.normal(size=(N, D)) for _ in range(T)]
    ys = [2 * np.tanh(X @ w[t // 2]) + 0.1 * rng.normal(size=N) for t, X in enumerate(Xs)]
    split = MultiTaskData.from_tasks(Xs, ys, kind="regression").split(test=0.25, val=0.2, seed=0)
    entry = registry.get("ltb+dwa")
    assert isinstance(entry.build(split.train.info(), dict(entry.defaults)).combiner, DWA)
    hp = {"hidden": [16, 16], "head_hidden": [8], "tau_decay": 0.99, "epochs": 25, "lr": 1e-2, "patience": 0}
    std = np.array([y.std() for y in ys])
    runs = {m: mtlkit.train(m, split, hparams=hp, seed=0, device="cpu", progress=False) for m in ("ltb", "ltb+dwa")}
    a, b = (runs[m].model.state_dict() for m in ("ltb", "ltb+dwa"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for m, run in runs.items():
        rmse = run.evaluate("test").per_task["rmse"]
        assert (rmse < 0.4 * std).all(), (m, rmse, std)  # predicting the mean scores 1.0·std
