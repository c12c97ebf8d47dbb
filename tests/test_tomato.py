"""TOMATO (tomato-el / tomato-ex): the topic-wise forward against a per-(k, t) loop, the K=1 / θˢ=0 reduction to
a shared-bottom network, the prox hook against the operators on independently gathered groups, training,
exact sparsity and save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.analysis.relations import task_relations
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods import describe, get
from mtlkit.methods.base import ModelOutput
from mtlkit.methods.tomato import TomatoNet
from mtlkit.optim.prox import prox_element, prox_exclusive

pytestmark = pytest.mark.usefixtures("one_thread")

T, D, P = 3, 5, 3


def _info(shared: bool, n_tasks: int = T, p: int = P) -> DataInfo:
    spec = TaskSpec("multiclass", tuple(f"t{i}" for i in range(n_tasks)), (p,) * n_tasks)
    return DataInfo(spec=spec, feature_shape=(D,), shared=shared)


def _net(shared: bool, m: int, K: int = 4, seed: int = 0, s_scale: float = 0.3) -> TomatoNet:
    """A float64 TomatoNet whose θˢ are large enough to matter."""
    torch.manual_seed(seed)
    net = TomatoNet(_info(shared), hidden=[7], K=K, m=m, hd_top=6).double()
    with torch.no_grad():
        for p in net.sparse_parameters():
            p.normal_(0.0, s_scale)
    return net.eval()


def _groups_loop(net: TomatoNet) -> torch.Tensor:
    """θˢ group vectors gathered independently: per (k, t), each layer's W then b, flattened."""
    K, n_t = net.ws[0].shape[:2]
    rows = []
    for k in range(K):
        row = []
        for t in range(n_t):
            parts = []
            for w, b in zip(net.ws, net.bs, strict=True):
                parts += [w[k, t].flatten(), b[k, t].flatten()]
            row.append(torch.cat(parts))
        rows.append(torch.stack(row))
    return torch.stack(rows).detach().clone()


def _forward_loop(net: TomatoNet, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1 by explicit loops: θ_kt = θ⁰ + θˢ_kt built per pair, g(k, φ, t) mixed by h (ψ_t after, for m=1)."""
    K, n_t = net.ws[0].shape[:2]
    outs = []
    for t in range(n_t):
        xt = x if x.dim() == 2 else x[t]
        z = net.bottom(xt)
        h = torch.softmax(z @ net.gate.weight.T + net.gate.bias, dim=-1)
        acc = 0.0
        for k in range(K):
            a = z
            for j in range(len(net.ws)):
                w = net.w0[j] + net.ws[j][k, t]
                b = net.b0[j] + net.bs[j][k, t]
                a = a @ w + b
                if j < len(net.ws) - 1 or net.m == 1:
                    a = torch.relu(a)
            acc = acc + h[:, k:k + 1] * a
        if net.m == 1:
            assert net.psi is not None
            acc = acc @ net.psi.weight[t] + net.psi.bias[t]
        outs.append(acc)
    return torch.stack(outs)


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("shared", [False, True])
def test_forward_matches_loop_reference(m, shared):
    net = _net(shared, m)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((9, D) if shared else (T, 9, D), generator=g, dtype=torch.float64)
    got = net(x)
    assert got.shape == (T, 9, P)
    torch.testing.assert_close(got, _forward_loop(net, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shared", [False, True])
def test_k1_zero_deviation_is_shared_bottom_single_top(shared):
    net = _net(shared, m=2, K=1, s_scale=0.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn((8, D) if shared else (T, 8, D), generator=g, dtype=torch.float64)
    lin = net.bottom[0]
    assert isinstance(lin, torch.nn.Linear)

    def direct(xt: torch.Tensor) -> torch.Tensor:
        z = torch.relu(xt @ lin.weight.T + lin.bias)
        return torch.relu(z @ net.w0[0] + net.b0[0]) @ net.w0[1] + net.b0[1]

    got = net(x)
    for t in range(T):
        torch.testing.assert_close(got[t], direct(x if shared else x[t]), rtol=0, atol=1e-12)
    if shared:  # one function for every task
        torch.testing.assert_close(got[0], got[1], rtol=0, atol=0)


def _parts(name: str, m: int, lam: float, reg: float = 0.0, K: int = 4):
    hp = {**get(name).defaults, "lam": lam, "m": m, "K": K, "hd_top": 6, "hidden": [7], "reg": reg}
    torch.manual_seed(3)
    parts = get(name).build(_info(shared=True, n_tasks=5), hp)
    net = parts.model.double()
    scale = torch.rand(K, 5, dtype=torch.float64) * 0.98 + 0.02  # spread the group norms over ~[0.03, 1.6]
    scale[:, -1] = 0.02  # one small group per topic
    with torch.no_grad():
        for p in net.sparse_parameters():
            p.normal_(0.0, 0.2).mul_(scale.reshape(K, 5, *([1] * (p.dim() - 2))))
    return parts, net


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("name,op", [("tomato-el", prox_element), ("tomato-ex", prox_exclusive)])
def test_prox_hook_matches_operator_on_groups(name, op, m):
    lam, lr = 1.0, 0.4
    parts, net = _parts(name, m, lam)
    before = _groups_loop(net)
    other = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith(("ws.", "bs."))}
    assert len(parts.proxes) == 1 and not parts.penalties
    parts.proxes[0](net, lr)
    after = _groups_loop(net)
    torch.testing.assert_close(after, op(before, lam * lr), rtol=0, atol=1e-14)
    for n, p in net.named_parameters():  # θ⁰, gate, bottom, ψ untouched
        if n in other:
            assert torch.equal(p, other[n]), n
    norms = after.norm(dim=-1)
    assert (norms == 0).any()  # this λ·lr zeroes some groups exactly
    if name == "tomato-ex":  # in every topic the largest-norm task survives
        top = before.norm(dim=-1).argmax(dim=1)
        assert (norms.gather(1, top[:, None]) > 0).all()


def test_large_lambda_element_prox_removes_all_deviations():
    parts, net = _parts("tomato-el", 2, lam=1e3)
    parts.proxes[0](net, 0.1)
    for p in net.sparse_parameters():
        assert torch.count_nonzero(p) == 0
    x = torch.randn(6, D, dtype=torch.float64)
    out = net.eval()(x)
    for t in range(1, out.shape[0]):  # every task of every topic now uses θ⁰: one function
        torch.testing.assert_close(out[t], out[0], rtol=0, atol=0)


def test_l2_penalty_covers_global_psi_and_gate_weights():
    reg = 0.3
    for m, K in [(1, 3), (2, 1)]:
        parts, net = _parts("tomato-ex", m, lam=0.0, reg=reg, K=K)
        want = sum(w.pow(2).sum() for w in net.w0)
        if m == 1:
            assert net.psi is not None
            want = want + net.psi.weight.pow(2).sum()
        if K > 1:
            want = want + net.gate.weight.pow(2).sum()
        out = ModelOutput(torch.zeros(1, dtype=torch.float64))
        got = parts.penalties[0](net, out, None)
        torch.testing.assert_close(got, reg * want)


# ---------------------------------------------------------------------- training
N_TR = 150


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=D)
    Xs = [rng.normal(size=(N_TR, D)) for _ in range(4)]
    ws = [w0 + 0.3 * rng.normal(size=D) for _ in range(4)]
    ys = [X @ w + 0.1 * rng.normal(size=N_TR) for X, w in zip(Xs, ws, strict=True)]
    return MultiTaskData.from_tasks(Xs, ys, name="tomato-syn").split(test=0.2, val=0.2, seed=0)


HP = {"epochs": 60, "hidden": [16], "hd_top": 8, "K": 2}


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("name", ["tomato-el", "tomato-ex"])
def test_learns_and_round_trips(split, name, m, tmp_path):
    run = mtlkit.train(name, split, hparams={**HP, "m": m}, seed=0, device="cpu", progress=False)
    ev = run.evaluate("test")
    for t in range(split.test.n_tasks):
        trivial = np.sqrt(np.mean((split.test.ys[t] - split.train.ys[t].mean()) ** 2))
        assert ev.per_task["rmse"][t] < 0.6 * trivial, (t, ev.per_task["rmse"], trivial)
    rel = task_relations(run)
    mat = np.asarray(next(iter(rel.values())))
    assert mat.shape == (2, split.test.n_tasks) and (mat > 0).all()  # small λ: deviations alive
    loaded = mtlkit.load(run.save(tmp_path / name))
    X = np.random.default_rng(4).normal(size=(11, D))
    np.testing.assert_array_equal(loaded.predict(X), run.predict(X))


@pytest.mark.parametrize("name", ["tomato-el", "tomato-ex"])
def test_large_lambda_gives_exact_zeros(split, name):
    run = mtlkit.train(name, split, hparams={**HP, "epochs": 5, "lam": 10.0}, seed=0, device="cpu",
                       progress=False)
    norms = run.model.task_relations()["‖θˢ_kt‖ (topic × task)"].numpy()
    assert (norms == 0).any()
    if name == "tomato-el":
        assert (norms == 0).all()
    else:  # the exclusive prox never empties a topic
        assert (norms.max(axis=1) > 0).all()
    ev = run.evaluate("test")
    assert np.isfinite(ev.mean["rmse"])


def test_describe():
    d = describe("tomato-ex")
    assert d["defaults"]["optimizer"] == "sgd"
    for k in ("K", "m", "hd_top", "lam", "reg", "hidden"):
        assert k in d["hyperparameters"]
    assert "TOMATO" in d["paper"]
    assert all(len(g["lam"]) * len(g["lr"]) <= 6 for g in d["grid"].values())
