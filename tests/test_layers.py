"""Task-stacked layers against a per-task loop reference, and the baseline architectures' sharing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods.base import as_output
from mtlkit.methods.baselines import HardShareNet, SingleNet, STLNet
from mtlkit.nn import MLP, TaskLinear, TaskMLP

T, B, IN, OUT = 4, 6, 5, 3


def _loop_linear(x, W, b, shared):
    """Per-task reference: F.linear with task t's own weight [out, in] and bias."""
    outs = []
    for t in range(W.shape[0]):
        xt = x if shared else x[t]
        outs.append(F.linear(xt, W[t].T, None if b is None else b[t]))
    return torch.stack(outs)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_task_linear_matches_loop_and_its_gradients(shared, bias):
    torch.manual_seed(0)
    layer = TaskLinear(T, IN, OUT, bias=bias).double()
    x = torch.randn(B, IN, dtype=torch.float64) if shared else torch.randn(T, B, IN, dtype=torch.float64)
    x.requires_grad_(True)
    W = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True) if bias else None
    x_ref = x.detach().clone().requires_grad_(True)

    out = layer(x)
    ref = _loop_linear(x_ref, W, b, shared)
    assert out.shape == (T, B, OUT)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)

    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, W.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    if bias:
        torch.testing.assert_close(layer.bias.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_task_linear_init_bound_and_task_axis_check():
    torch.manual_seed(0)
    layer = TaskLinear(3, 16, 2)
    assert layer.weight.shape == (3, 16, 2) and layer.bias.shape == (3, 2)
    assert layer.weight.abs().max() <= 0.25 and layer.bias.abs().max() <= 0.25  # 1/sqrt(16)
    with pytest.raises(ValueError):
        layer(torch.randn(4, 5, 16))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_task_mlp_matches_loop(shared, act):
    torch.manual_seed(1)
    sizes = [IN, 7, 4, OUT]
    mlp = TaskMLP(T, sizes, act).double()
    layers = mlp.linear_layers()
    assert len(layers) == 3
    x = torch.randn(B, IN, dtype=torch.float64) if shared else torch.randn(T, B, IN, dtype=torch.float64)
    f = torch.relu if act == "relu" else torch.tanh
    Ws = [lay.weight.detach().clone().requires_grad_(True) for lay in layers]
    bs = [lay.bias.detach().clone().requires_grad_(True) for lay in layers]
    refs = []
    for t in range(T):
        h = x if shared else x[t]
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            h = F.linear(h, W[t].T, b[t])
            if i < len(Ws) - 1:
                h = f(h)
        refs.append(h)
    ref = torch.stack(refs)
    out = mlp(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for lay, W, b in zip(layers, Ws, bs, strict=True):
        torch.testing.assert_close(lay.weight.grad, W.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lay.bias.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_task_mlp_last_activation_and_sizes():
    mlp = TaskMLP(2, [3, 4], "relu", last_activation=True)
    assert (mlp(torch.randn(2, 5, 3)) >= 0).all()
    with pytest.raises(ValueError):
        TaskMLP(2, [3])


def test_mlp_backbone_is_one_function_over_leading_axes():
    torch.manual_seed(0)
    net = MLP([IN, 8, OUT]).double()
    x = torch.randn(T, B, IN, dtype=torch.float64)
    out = net(x)
    for t in range(T):
        torch.testing.assert_close(out[t], net(x[t]))


def _info(shared: bool, kind="regression", n_classes=None, n_tasks=T, feature_shape=(IN,)):
    n_classes = n_classes or {"regression": 1, "binary": 2}.get(kind, 3)
    spec = TaskSpec(kind, tuple(f"t{i}" for i in range(n_tasks)), (n_classes,) * n_tasks)
    return DataInfo(spec=spec, feature_shape=feature_shape, shared=shared)


ARCH = {"hidden": [8], "head_hidden": [6], "activation": "relu", "dropout": 0.0}


@pytest.mark.parametrize("cls", [HardShareNet, STLNet, SingleNet])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("kind,P", [("regression", 1), ("binary", 1), ("multiclass", 3)])
def test_architecture_output_shapes(cls, shared, kind, P):
    torch.manual_seed(0)
    net = cls(_info(shared, kind), **ARCH)
    x = torch.randn(B, IN) if shared else torch.randn(T, B, IN)
    assert as_output(net(x)).pred.shape == (T, B, P)


@pytest.mark.parametrize("cls", [HardShareNet, STLNet, SingleNet])
def test_architectures_flatten_image_features(cls):
    torch.manual_seed(0)
    net = cls(_info(False, feature_shape=(2, 3)), **ARCH)
    assert as_output(net(torch.randn(T, B, 2, 3))).pred.shape == (T, B, 1)


def test_stl_tasks_are_independent():
    torch.manual_seed(0)
    net = STLNet(_info(False), **ARCH)
    x = torch.randn(T, B, IN)
    out = net(x)
    x2 = x.clone()
    x2[1] += torch.randn(B, IN) * 3
    out2 = net(x2)
    torch.testing.assert_close(out2[[0, 2, 3]], out[[0, 2, 3]], rtol=0, atol=0)
    assert not torch.allclose(out2[1], out[1])
    # a task's loss gives gradients only to its own slice of every task-stacked parameter
    net.zero_grad()
    net(x)[2].sum().backward()
    for p in net.parameters():
        assert p.grad[[0, 1, 3]].abs().max() == 0
        assert p.grad[2].abs().max() > 0


def test_hard_share_bottom_is_one_function_for_all_tasks():
    torch.manual_seed(0)
    net = HardShareNet(_info(False), **ARCH).double()
    x = torch.randn(B, IN, dtype=torch.float64).expand(T, B, IN).contiguous()  # same rows in every task's slot
    feats = net.bottom(x)
    for t in range(T):
        torch.testing.assert_close(feats[t], feats[0], rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(feats[t], net.bottom(x[0]), rtol=1e-14, atol=1e-14)
    # the output is the task's head applied to the shared features, which it also returns
    res = net(x)
    out = res.pred
    torch.testing.assert_close(out, net.heads(feats))
    torch.testing.assert_close(res.features["shared"], feats)
    # ... and the heads differ, so the same input gets different predictions per task
    assert not torch.allclose(out[0], out[1])
    # perturbing task 1's rows changes nothing for task 0
    x2 = x.clone()
    x2[1] += 1.0
    torch.testing.assert_close(net(x2).pred[0], out[0], rtol=1e-14, atol=1e-14)
    # every task's loss reaches the shared bottom
    for t in range(T):
        net.zero_grad()
        net(torch.randn(T, B, IN, dtype=torch.float64)).pred[t].sum().backward()
        assert all(p.grad.abs().max() > 0 for p in net.bottom.parameters())


def test_hard_share_shared_input_matches_broadcast():
    torch.manual_seed(0)
    shared = HardShareNet(_info(True), **ARCH)
    hetero = HardShareNet(_info(False), **ARCH)
    hetero.load_state_dict(shared.state_dict())
    x = torch.randn(B, IN)
    torch.testing.assert_close(shared(x).pred, hetero(x.expand(T, B, IN)).pred)


def test_single_net_is_the_same_function_for_every_task():
    torch.manual_seed(0)
    net = SingleNet(_info(True), **ARCH).double()
    out = net(torch.randn(B, IN, dtype=torch.float64))
    for t in range(T):
        torch.testing.assert_close(out[t], out[0], rtol=0, atol=0)
    net_h = SingleNet(_info(False), **ARCH).double()
    row = torch.randn(B, IN, dtype=torch.float64)
    out_h = net_h(row.expand(T, B, IN))
    for t in range(T):
        torch.testing.assert_close(out_h[t], net_h.net(row), rtol=1e-14, atol=1e-14)


def test_hard_share_needs_a_shared_layer():
    with pytest.raises(ValueError):
        HardShareNet(_info(False), hidden=[], head_hidden=[4], activation="relu", dropout=0.0)
