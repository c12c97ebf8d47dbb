"""`mtan` (Liu, Johns & Davison 2019): the batched forward pass (T attention modules as grouped convolutions, ``g``
on ``[u ; f]`` split at the concatenation) equals a per-task loop written from the paper's equations; a task's
attention weights reach only its own predictions; it learns a tiny image task on shared and per-task input; it
composes with Dynamic Weight Average (``mtan+dwa``, the paper's pairing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods import registry
from mtlkit.methods.mtan import MTANNet
from mtlkit.nn.task_layers import TaskLinear
from mtlkit.optim.weightings import DWA

pytestmark = pytest.mark.usefixtures("one_thread")

T, B = 3, 4


def _net(shape: tuple[int, ...], shared: bool, channels: list[int]) -> MTANNet:
    info = DataInfo(TaskSpec("multiclass", tuple(f"t{i}" for i in range(T)), (3,) * T), shape, shared)
    torch.manual_seed(0)
    return MTANNet(info, channels, [5], "tanh", 0.0).double()


def _reference(net: MTANNet, x: torch.Tensor) -> torch.Tensor:
    """Task by task, row images through the paper's equations: ``a = sigmoid(h(σ(g([u ; f(â_prev)]))))``,
    ``â = a ⊙ p``, ``f(â) = pool(σ(conv(â)))``, then the task's head, with each task's slice of the weights."""
    c, h, w = net.image
    preds = []
    for t in range(T):
        z = (x if net.shared else x[t]).reshape(-1, c, h, w)
        prev = None
        for j in range(len(net.trunk_u)):
            cu, cp = net.trunk_u[j], net.trunk_p[j]
            u = torch.tanh(F.conv2d(z, cu.weight, cu.bias, padding=cu.padding))
            p = torch.tanh(F.conv2d(u, cp.weight, cp.bias, padding=cp.padding))
            if prev is None:
                gin, gw = u, net.att_u[j].weight[t]
            else:  # one 1×1 convolution on the concatenation [u ; f(â_prev)]
                gin = torch.cat([u, prev], dim=1)
                gw = torch.cat([net.att_u[j].weight[t], net.att_f[j - 1].weight[t]], dim=1)
            a = torch.sigmoid(F.conv2d(torch.tanh(F.conv2d(gin, gw, net.att_u[j].bias[t])), net.att_h[j].weight[t],
                                       net.att_h[j].bias[t]))
            att = a * p
            if j < len(net.shared_f):
                f = net.shared_f[j]
                prev = torch.tanh(F.conv2d(att, f.weight, f.bias, padding=f.padding))
                if net.pools[j]:
                    prev, z = F.max_pool2d(prev, 2), F.max_pool2d(p, 2)
                else:
                    z = p
        r = att.flatten(1)
        layers = [m for m in net.heads.modules() if isinstance(m, TaskLinear)]
        for i, lin in enumerate(layers):
            r = r @ lin.weight[t] + lin.bias[t]
            if i < len(layers) - 1:
                r = torch.tanh(r)
        preds.append(r)
    return torch.stack(preds)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-task"])
@pytest.mark.parametrize(("shape", "channels"), [((2, 8, 8), [3, 4, 5]), ((6, 6), [3, 4]), ((5,), [3, 4])],
                         ids=["CHW", "HW", "vector"])
def test_forward_equals_a_per_task_loop_of_the_papers_equations(shape, channels, shared) -> None:
    net = _net(shape, shared, channels)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*((B,) if shared else (T, B)), *shape, generator=g, dtype=torch.float64)
    got = net(x)
    assert got.shape == (T, B, 3)
    torch.testing.assert_close(got, _reference(net, x), rtol=1e-12, atol=1e-12)
    if len(shape) == 3:
        assert net.pools == [True, True]  # 8×8 → 4×4 → 2×2
    # task 1's attention modules reach task 1's predictions only
    with torch.no_grad():
        for mods in (net.att_u, net.att_h, net.att_f):
            for m in mods:
                m.weight[1].add_(0.5)
    moved = net(x)
    assert not torch.allclose(moved[1], got[1])
    torch.testing.assert_close(moved[[0, 2]], got[[0, 2]], rtol=0, atol=0)


def test_shared_parameters_are_the_trunk_and_f_and_bad_shapes_are_refused() -> None:
    net = _net((1, 8, 8), True, [3, 4])
    shared = {id(p) for p in net.shared_parameters()}
    expect = [*net.trunk_u.parameters(), *net.trunk_p.parameters(), *net.shared_f.parameters()]
    assert shared == {id(p) for p in expect} and len(shared) == 2 * 2 + 2 * 2 + 2
    assert not shared & {id(p) for p in [*net.att_u.parameters(), *net.heads.parameters()]}
    info = DataInfo(TaskSpec("binary", ("a", "b"), (2, 2)), (1, 2, 3, 4), True)
    with pytest.raises(ValueError, match="image rows"):
        MTANNet(info, [3], [4], "relu", 0.0)
    with pytest.raises(ValueError, match="channels"):
        MTANNet(DataInfo(info.spec, (1, 4, 4), True), [], [4], "relu", 0.0)


def _bars(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8×8 images holding one bar at a random place; labels 'is it vertical?' and 'is it in the left half?'."""
    rng = np.random.default_rng(seed)
    X = 0.1 * rng.normal(size=(n, 1, 8, 8))
    vertical = rng.random(n) < 0.5
    pos, start = rng.integers(0, 8, size=n), rng.integers(0, 4, size=n)
    left = np.where(vertical, pos < 4, start + 2 <= 4)
    for i in range(n):
        if vertical[i]:
            X[i, 0, start[i]:start[i] + 4, pos[i]] += 1.0
        else:
            X[i, 0, pos[i], start[i]:start[i] + 4] += 1.0
    return X, np.stack([vertical, left], 1).astype(float)


HP = {"channels": [6, 8], "head_hidden": [16], "epochs": 15, "lr": 1e-2, "patience": 0}


def test_mtan_learns_the_bars_on_shared_input() -> None:
    X, Y = _bars(400)
    split = MultiTaskData.from_shared(X, Y, kind="binary").split(test=0.25, val=0.2, seed=0)
    run = mtlkit.train("mtan", split, hparams=HP, seed=0, device="cpu", progress=False)
    acc = run.evaluate("test").per_task["accuracy"]
    assert (acc > 90).all(), acc  # per cent; chance is 50


def test_mtan_dwa_composes_and_learns_on_per_task_input() -> None:
    """The paper's pairing: ``mtan+dwa`` builds MTAN with the DWA combiner; trained with the same seed it ends
    elsewhere than plain MTAN (DWA's λ leave 1 from the third epoch), and both learn the two tasks, each task on its
    own images."""
    X, Y = _bars(600, seed=1)
    data = MultiTaskData.from_tasks([X[:300], X[300:]], [Y[:300, 0], Y[300:, 1]], kind="binary")
    split = data.split(test=0.25, val=0.2, seed=0)
    entry = registry.get("mtan+dwa")
    parts = entry.build(data.info(), {**entry.defaults, **HP})
    assert isinstance(parts.combiner, DWA) and isinstance(parts.model, MTANNet)
    runs = {m: mtlkit.train(m, split, hparams=HP, seed=0, device="cpu", progress=False) for m in ("mtan", "mtan+dwa")}
    a, b = (runs[m].model.state_dict() for m in ("mtan", "mtan+dwa"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    for m, run in runs.items():
        acc = run.evaluate("test").per_task["accuracy"]
        assert (acc > 90).all(), (m, acc)  # per cent; chance is 50
