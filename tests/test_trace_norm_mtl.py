"""Trace-norm deep MTL (trace-norm-laf/tucker/tt, stl-cnn) and TaskConv2d against per-task references: separate
F.conv2d calls, a per-task loop forward, numpy nuclear norms of hand-stacked layers, and the sharing formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.analysis.relations import task_relations
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.methods import registry
from mtlkit.methods.base import ModelOutput
from mtlkit.methods.trace_norm_mtl import (
    TraceNormNet,
    layer_gammas,
    layer_norms,
    sharing_strength,
    trace_norm_penalty,
)
from mtlkit.nn.task_conv import TaskConv2d, task_max_pool2d

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"channels": [3, 4], "kernels": [3, 3], "pool": 2, "padding": 0, "fc": [6], "hidden": [5],
         "activation": "tanh", "backbone": "auto"}


def _info(T: int = 3, shape: tuple[int, ...] = (1, 12, 12), classes: tuple[int, ...] = (3, 4, 5),
          shared: bool = False) -> DataInfo:
    spec = TaskSpec("multiclass", tuple(f"t{i}" for i in range(T)), classes[:T])
    return DataInfo(spec, shape, shared)


def _net(info: DataInfo, seed: int = 0, **kw: object) -> TraceNormNet:
    torch.manual_seed(seed)
    return TraceNormNet(info, **{**SMALL, **kw}).double()  # type: ignore[arg-type]


# ---------------------------------------------------------------------- TaskConv2d
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1)])
def test_task_conv_equals_separate_convs(stride: int, padding: int) -> None:
    torch.manual_seed(0)
    T, B, cin, cout = 3, 4, 2, 5
    conv = TaskConv2d(T, cin, cout, (3, 2), stride=stride, padding=padding).double()
    x = torch.randn(T, B, cin, 9, 8, dtype=torch.float64)
    got = conv(x)
    for t in range(T):
        ref = F.conv2d(x[t], conv.weight[t], conv.bias[t], stride=stride, padding=padding)
        torch.testing.assert_close(got[t], ref, rtol=1e-12, atol=1e-12)
    xs = torch.randn(B, cin, 9, 8, dtype=torch.float64)  # shared input: every task sees the same images
    got_s = conv(xs)
    for t in range(T):
        torch.testing.assert_close(got_s[t], F.conv2d(xs, conv.weight[t], conv.bias[t], stride=stride,
                                                      padding=padding), rtol=1e-12, atol=1e-12)


def test_task_conv_paper_layout_and_errors() -> None:
    conv = TaskConv2d(2, 3, 4, 5)
    W = conv.paper_weight()
    assert W.shape == (5, 5, 3, 4, 2)
    assert torch.equal(W[1, 2, 0, 3, 1], conv.weight[1, 3, 0, 1, 2])  # (kh, kw, cin, cout, T) ← [T, cout, cin, kh, kw]
    with pytest.raises(ValueError, match="expects"):
        conv(torch.zeros(3, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="positive"):
        TaskConv2d(0, 3, 4, 5)


def test_task_max_pool_matches_per_task() -> None:
    x = torch.randn(2, 3, 4, 7, 7)
    got = task_max_pool2d(x, 2)
    assert got.shape == (2, 3, 4, 3, 3)
    for t in range(2):
        torch.testing.assert_close(got[t], F.max_pool2d(x[t], 2))


# ---------------------------------------------------------------------- the stacked networks
def _loop_forward(net: TraceNormNet, x: torch.Tensor, t: int) -> torch.Tensor:
    """Task t's own network, from its slices of the stacked weights (a per-task loop reference)."""
    z = x
    for conv in net.convs:
        z = F.max_pool2d(torch.tanh(F.conv2d(z, conv.weight[t], conv.bias[t])), net.pool)
    z = z.reshape(z.shape[0], -1)
    for fc in net.fcs[:-1]:
        z = torch.tanh(z @ fc.weight[t] + fc.bias[t])
    return z @ net.fcs[-1].weight[t] + net.fcs[-1].bias[t]


@pytest.mark.parametrize("shared", [False, True])
def test_cnn_forward_equals_per_task_networks(shared: bool) -> None:
    info = _info(shared=shared)
    net = _net(info)
    assert net.backbone == "cnn" and len(net.convs) == 2 and net.fcs[-1].out_features == 5  # P = max classes
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*((6,) if shared else (3, 6)), 1, 12, 12, generator=g, dtype=torch.float64)
    out = net(x)
    assert out.shape == (3, 6, 5)
    for t in range(3):
        torch.testing.assert_close(out[t], _loop_forward(net, x if shared else x[t], t), rtol=1e-10, atol=1e-12)


def test_mlp_backbone_for_vectors() -> None:
    info = _info(shape=(7,))
    net = _net(info)
    assert net.backbone == "mlp" and list(net.shareable_layers()) == ["fc1"]
    x = torch.randn(3, 4, 7, dtype=torch.float64)
    out = net(x)
    for t in range(3):
        fc1, fc2 = net.fcs
        ref = torch.tanh(x[t] @ fc1.weight[t] + fc1.bias[t]) @ fc2.weight[t] + fc2.bias[t]
        torch.testing.assert_close(out[t], ref)


def test_bad_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="backbone"):
        _net(_info(), backbone="resnet")
    with pytest.raises(ValueError, match="image rows"):
        _net(_info(shape=(7,)), backbone="cnn")
    with pytest.raises(ValueError, match="as many kernels"):
        _net(_info(), kernels=[3])
    with pytest.raises(ValueError, match="shrink to nothing"):
        _net(_info(shape=(1, 5, 5)))
    with pytest.raises(ValueError, match="shareable layers"):
        layer_gammas([0.1, 0.2], 3)
    with pytest.raises(ValueError, match=">= 0"):
        layer_gammas(-1.0, 2)
    with pytest.raises(ValueError, match="gamma must be"):
        layer_gammas("big", 2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the penalty
def _np_unfold(A: np.ndarray, i: int) -> np.ndarray:
    return np.moveaxis(A, i, 0).reshape(A.shape[i], -1)


def _np_norm(A: np.ndarray, kind: str) -> float:
    """Tensor trace norms by numpy (paper Eq. 1-3)."""
    nuc = lambda M: float(np.linalg.norm(M, "nuc"))  # noqa: E731
    if kind == "laf":
        return nuc(_np_unfold(A, A.ndim - 1))
    if kind == "tucker":
        return sum(nuc(_np_unfold(A, i)) for i in range(A.ndim))
    return sum(nuc(A.reshape(int(np.prod(A.shape[:j])), -1)) for j in range(1, A.ndim))


@pytest.mark.parametrize("kind", ["laf", "tucker", "tt"])
def test_penalty_equals_norms_of_hand_stacked_layers(kind: str) -> None:
    net = _net(_info())
    gammas = [0.3, 0.02, 1.5]  # conv1, conv2, fc1
    # each task's own layers as a single-task framework holds them, stacked task-last in the paper's layout
    stacks = []
    for conv in net.convs:
        per_task = [conv.weight[t].detach().numpy() for t in range(3)]  # [cout, cin, kh, kw]
        stacks.append(np.stack([w.transpose(2, 3, 1, 0) for w in per_task], axis=-1))  # (kh, kw, cin, cout, T)
    stacks.append(np.stack([net.fcs[0].weight[t].detach().numpy() for t in range(3)], axis=-1))  # (in, out, T)
    assert stacks[0].shape == (3, 3, 1, 3, 3) and stacks[2].shape == (4, 6, 3)
    expected = sum(g * _np_norm(A, kind) for g, A in zip(gammas, stacks, strict=True))
    pen = trace_norm_penalty(kind, gammas)
    out = ModelOutput(torch.zeros(3, 1, 5, dtype=torch.float64))
    batch = Batch(torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool), False)
    got = pen(net, out, batch)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()  # the output layer and biases are not regularised
    assert net.fcs[-1].weight.grad is None and all(c.bias.grad is None for c in net.convs)
    assert net.convs[0].weight.grad is not None and torch.isfinite(net.convs[0].weight.grad).all()


def test_method_penalty_is_gamma_over_T_times_the_norms() -> None:
    info = _info()
    torch.manual_seed(0)
    parts = registry.get("trace-norm-tucker").build(info, {**SMALL, "gamma": [0.5, 0.0, 2.0]})
    net = parts.model
    assert isinstance(net, TraceNormNet) and len(parts.penalties) == 1
    W = {k: v.detach().double().numpy() for k, v in net.paper_weights().items()}
    expected = (0.5 * _np_norm(W["conv1"], "tucker") + 2.0 * _np_norm(W["fc1"], "tucker")) / 3  # Σ_t L_t scale
    got = parts.penalties[0](net, ModelOutput(torch.zeros(1)), None)  # type: ignore[arg-type]
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert registry.get("trace-norm-tt").build(info, {**SMALL, "gamma": 0.0}).penalties == []


def test_penalty_descent_lowers_the_norm_toward_low_rank() -> None:
    net = _net(_info())
    pen = trace_norm_penalty("laf", [1.0, 1.0, 1.0])
    out = ModelOutput(torch.zeros(1, dtype=torch.float64))
    before = layer_norms(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        pen(net, out, None).backward()  # type: ignore[arg-type]
        opt.step()
    after = layer_norms(net)
    for layer in before:  # the subgradient U Vᵀ shrinks every singular value by lr per step
        assert after[layer]["laf"] < before[layer]["laf"] - 0.1


# ---------------------------------------------------------------------- training
def _omniglot_like(T: int = 3, n: int = 36, size: int = 12, seed: int = 0) -> MultiTaskData:
    """Random 'alphabets': each class a random binary glyph; samples are the glyph plus noise."""
    rng = np.random.default_rng(seed)
    classes = [3, 4, 2][:T]
    Xs, ys = [], []
    for k in classes:
        glyphs = (rng.random((k, size, size)) < 0.3).astype(float)
        y = np.arange(n) % k
        Xs.append((glyphs[y] + 0.3 * rng.normal(size=(n, size, size)))[:, None])
        ys.append(y.astype(float))
    return MultiTaskData.from_tasks(Xs, ys, kind="multiclass", n_classes=classes)


HP = {**SMALL, "epochs": 30, "batch_size": 16, "lr": 0.01, "patience": 0}


def test_gamma_zero_equals_stl() -> None:
    split = _omniglot_like().split(test=0.25, val=0.25, seed=0)
    X = split.test.task_arrays(0)[0]
    runs = {m: mtlkit.train(m, split, hparams={**HP, "gamma": g} if g is not None else HP, seed=3, device="cpu")
            for m, g in (("stl-cnn", None), ("trace-norm-laf", 0.0), ("trace-norm-tt", 0.0))}
    preds = {m: r.predict_proba(X) for m, r in runs.items()}  # [T, n, P]
    assert preds["stl-cnn"].shape == (3, len(X), 4)
    np.testing.assert_array_equal(preds["stl-cnn"], preds["trace-norm-laf"])
    np.testing.assert_array_equal(preds["stl-cnn"], preds["trace-norm-tt"])
    with_pen = mtlkit.train("trace-norm-laf", split, hparams={**HP, "gamma": 0.1}, seed=3, device="cpu")
    assert not torch.equal(with_pen.model.convs[0].weight, runs["stl-cnn"].model.convs[0].weight)


@pytest.mark.parametrize("method", ["trace-norm-laf", "trace-norm-tucker", "trace-norm-tt"])
def test_training_lowers_the_loss(method: str) -> None:
    split = _omniglot_like().split(test=0.25, val=0.25, seed=0)
    run = mtlkit.train(method, split, hparams={**HP, "gamma": 0.01}, seed=0, device="cpu")
    first, last = run.history.train_loss[0].mean(), run.history.train_loss[-1].mean()
    assert last < 0.7 * first, (first, last)
    rel = task_relations(run)
    assert set(rel) == {"weight cosine conv1", "weight cosine conv2", "weight cosine fc1"}
    for m in rel.values():
        np.testing.assert_allclose(np.diag(m), 1.0, rtol=1e-6)


def test_registry_entries() -> None:
    for kind in ("laf", "tucker", "tt"):
        d = registry.describe(f"trace-norm-{kind}")
        hp = d["defaults"]
        assert hp["gamma"] == 0.01 and hp["channels"] == [8, 12, 16] and hp["kernels"] == [5, 3, 3]
        assert hp["fc"] == [64] and hp["activation"] == "tanh" and hp["pool"] == 2
    assert "gamma" not in registry.describe("stl-cnn")["hyperparameters"]


# ---------------------------------------------------------------------- sharing strength
def test_sharing_strength_formula() -> None:
    info = _info()
    init, opt = _net(info, seed=0), _net(info, seed=0)
    with torch.no_grad():
        for m in opt.shareable_layers().values():
            m.weight.mul_(0.25)  # every norm is absolutely homogeneous: strength = 1 − 0.25
    for norm in ("laf", "tucker", "tt", "fro"):
        s = sharing_strength(init, opt, norm=norm)
        assert list(s) == ["conv1", "conv2", "fc1"]
        assert all(v == pytest.approx(0.75, rel=1e-12) for v in s.values())
    # tasks' copies replaced by their mean: rank-1 across tasks, by hand with numpy
    opt2 = _net(info, seed=0)
    with torch.no_grad():
        for m in opt2.shareable_layers().values():
            m.weight.copy_(m.weight.mean(0, keepdim=True).expand_as(m.weight))
    got = sharing_strength(init, opt2, norm="laf")
    for name, W0 in init.paper_weights().items():
        A0 = W0.detach().numpy()
        A1 = np.repeat(A0.mean(-1, keepdims=True), 3, axis=-1)
        assert got[name] == pytest.approx(1 - _np_norm(A1, "laf") / _np_norm(A0, "laf"), rel=1e-10)
        assert got[name] > 0
    assert sharing_strength(init, init) == {"conv1": 0.0, "conv2": 0.0, "fc1": 0.0}
    with pytest.raises(ValueError, match="norm must be"):
        sharing_strength(init, opt, norm="max")


def test_padded_classes_get_no_gradient() -> None:
    """Tasks with fewer classes than P = max share the output width; their padded logits are masked out of the
    softmax (the TaskSpec / TaskLoss convention), so those output columns never learn."""
    from mtlkit.train.losses import TaskLoss

    info = _info()  # classes 3, 4, 5
    net = _net(info)
    loss = TaskLoss(info.spec)
    x = torch.randn(3, 8, 1, 12, 12, dtype=torch.float64)
    y = torch.stack([torch.arange(8) % k for k in (3, 4, 5)]).double()
    batch = Batch(x, y, torch.ones(3, 8, dtype=torch.bool), False)
    loss(net(x), batch).sum().backward()
    g = net.fcs[-1].weight.grad  # [T, in, P]
    assert g is not None
    assert torch.all(g[0, :, 3:] == 0) and torch.all(g[1, :, 4:] == 0)
    assert g[0, :, :3].abs().sum() > 0 and g[2].abs().sum(0).min() > 0
