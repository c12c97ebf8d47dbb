"""TOMATO's neural baselines (inter-task-l2, cross-stitch, mmoe, mrn) against loop / Kronecker / numpy
references, their Ω update schedule, and end-to-end training with a save/load round trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.analysis.relations import task_relations
from mtlkit.data.spec import DataInfo
from mtlkit.methods.baselines import HardShareNet
from mtlkit.methods.tomato_baselines import CrossStitchNet, MMoENet, MRNNet, inter_task_l2, mrn_precision

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["inter-task-l2", "cross-stitch", "mmoe", "mrn"]
T, N, D = 3, 60, 5
ARCH = {"hidden": [8], "head_hidden": [6], "activation": "relu", "dropout": 0.0}


def _data(shared: bool = False, kind: str = "regression", seed: int = 0) -> MultiTaskData:
    """y_t = x·(w0 + 0.3·δ_t) + noise: related regression tasks (or 3-class argmax labels)."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(D, 3 if kind == "multiclass" else 1))
    ws = [w0 + 0.3 * rng.normal(size=w0.shape) for _ in range(T)]
    if shared:
        X = rng.normal(size=(N, D))
        Y = np.stack([(X @ w)[:, 0] + 0.1 * rng.normal(size=N) for w in ws], 1)
        return MultiTaskData.from_shared(X, Y, kind="regression")
    Xs = [rng.normal(size=(N, D)) for _ in range(T)]
    if kind == "multiclass":
        return MultiTaskData.from_tasks(Xs, [(X @ w).argmax(1).astype(float) for X, w in zip(Xs, ws, strict=True)],
                                        kind="multiclass", n_classes=[3] * T)
    return MultiTaskData.from_tasks(Xs, [(X @ w)[:, 0] + 0.1 * rng.normal(size=N) for X, w in zip(Xs, ws, strict=True)])


def _x(info: DataInfo, B: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (B, D) if info.shared else (T, B, D)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _tower(layers: list[torch.nn.Module], z: torch.Tensor, t: int, act_last: bool) -> torch.Tensor:
    """Task ``t``'s slice of task-stacked linear layers, applied with relu in between (a per-task loop reference)."""
    for k, layer in enumerate(layers):
        z = z @ layer.weight[t] + layer.bias[t]
        if k < len(layers) - 1 or act_last:
            z = torch.relu(z)
    return z


# ---------------------------------------------------------------------- inter-task-l2
def test_inter_task_l2_penalty_is_the_unordered_pair_sum():
    info = _data(kind="multiclass").info()
    parts = mtlkit.methods.get("inter-task-l2").build(info, {**ARCH, "mu": 0.37})
    model = parts.model.double()
    got = parts.penalties[0](model, None, None)
    ref = 0.0
    for layer in model.heads.linear_layers():
        for i, j in itertools.combinations(range(T), 2):
            ref += ((layer.weight[i] - layer.weight[j]) ** 2).sum() + ((layer.bias[i] - layer.bias[j]) ** 2).sum()
    torch.testing.assert_close(got, 0.37 * ref, rtol=1e-12, atol=0)


def test_inter_task_l2_large_mu_pulls_heads_together():
    split = _data().split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 15, "lr": 1e-2}
    free = mtlkit.train("inter-task-l2", split, hparams={**hp, "mu": 0.0}, seed=0, device="cpu")
    tied = mtlkit.train("inter-task-l2", split, hparams={**hp, "mu": 10.0}, seed=0, device="cpu")
    with torch.no_grad():
        assert inter_task_l2(tied.model) < 0.02 * inter_task_l2(free.model)


# ---------------------------------------------------------------------- cross-stitch
@pytest.mark.parametrize("shared", [False, True])
def test_cross_stitch_identity_alpha_is_hard_share(shared):
    info = _data(shared=shared).info()
    torch.manual_seed(0)
    cs = CrossStitchNet(info, **ARCH).double()
    hs = HardShareNet(info, **ARCH).double()
    with torch.no_grad():
        cs.alpha.copy_(torch.eye(T).expand_as(cs.alpha))
        hs.bottom.load_state_dict(cs.bottom.state_dict())
        for dst, src in zip(hs.heads.linear_layers(), [*cs.towers.linear_layers(), cs.out], strict=True):
            dst.load_state_dict(src.state_dict())
    x = _x(info)
    torch.testing.assert_close(cs(x), hs(x).pred, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_cross_stitch_matches_per_task_loop(shared):
    info = _data(shared=shared).info()
    torch.manual_seed(1)
    cs = CrossStitchNet(info, **{**ARCH, "head_hidden": [5, 4]}).double()
    with torch.no_grad():
        cs.alpha.copy_(torch.rand(cs.alpha.shape, dtype=torch.float64))
    x = _x(info)
    towers = cs.towers.linear_layers()
    ref = []
    for i in range(T):
        z = cs.bottom(x if shared else x[i])
        hs = torch.stack([_tower(towers, z, j, act_last=True) for j in range(T)])  # [T_j, B, hd]
        mixed = torch.stack([(cs.alpha[u, i][:, None] * hs[:, :, u]).sum(0) for u in range(hs.shape[-1])], -1)
        ref.append(mixed @ cs.out.weight[i] + cs.out.bias[i])
    torch.testing.assert_close(cs(x), torch.stack(ref), rtol=1e-12, atol=1e-12)


def test_cross_stitch_init_and_alpha_gets_gradient():
    info = _data().info()
    cs = CrossStitchNet(info, **ARCH)
    expected = torch.full((T, T), 0.1) + 0.8 * torch.eye(T)
    assert cs.alpha.shape == (6, T, T)
    torch.testing.assert_close(cs.alpha.detach(), expected.expand(6, T, T))
    cs(_x(info).float()).pow(2).sum().backward()
    g = cs.alpha.grad
    assert g is not None and torch.isfinite(g).all()
    assert (g[:, ~torch.eye(T, dtype=torch.bool)] != 0).any()  # off-diagonal stitches learn too
    rel = task_relations(cs)["cross-stitch α (mean over units)"]
    np.testing.assert_allclose(rel, expected.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="head_hidden"):
        CrossStitchNet(info, **{**ARCH, "head_hidden": []})


# ---------------------------------------------------------------------- MMoE
@pytest.mark.parametrize("shared", [False, True])
def test_mmoe_matches_per_task_loop(shared):
    info = _data(shared=shared).info()
    torch.manual_seed(2)
    m = MMoENet(info, **{**ARCH, "head_hidden": [4]}, n_experts=3, expert_dim=5).double()
    x = _x(info)
    ref = []
    for t in range(T):
        z = m.bottom(x if shared else x[t])
        gate = torch.softmax(z @ m.gate.weight[t] + m.gate.bias[t], -1)  # [B, E]
        assert torch.allclose(gate.sum(-1), torch.ones(z.shape[0], dtype=z.dtype))
        experts = [torch.relu(z @ m.experts.weight[e] + m.experts.bias[e]) for e in range(3)]
        mixed = sum(gate[:, e:e + 1] * experts[e] for e in range(3))
        ref.append(_tower(m.heads.linear_layers(), mixed, t, act_last=False))
    res = m(x)
    out = res.pred
    assert out.shape == (T, x.shape[-2], 1)
    torch.testing.assert_close(out, torch.stack(ref), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.mixed(x), _mixed(m, x, shared), rtol=1e-12, atol=1e-12)
    assert res.features["shared"].shape == ((3, x.shape[-2], 5) if shared else (T, 3, x.shape[-2], 5))
    z = m.bottom(x)
    g = m.gates(z)
    assert g.shape == (T, x.shape[-2], 3)
    torch.testing.assert_close(g.sum(-1), torch.ones(T, x.shape[-2], dtype=torch.float64))


def _mixed(m: MMoENet, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Reference mixture Σ_e g_te f_e, a loop over tasks and experts."""
    rows = []
    for t in range(T):
        z = m.bottom(x if shared else x[t])
        gate = torch.softmax(z @ m.gate.weight[t] + m.gate.bias[t], -1)
        rows.append(sum(gate[:, e:e + 1] * torch.relu(z @ m.experts.weight[e] + m.experts.bias[e]) for e in range(3)))
    return torch.stack(rows)


def test_mmoe_one_expert_gates_are_one():
    info = _data().info()
    m = MMoENet(info, **ARCH, n_experts=1, expert_dim=4)
    x = _x(info).float()
    assert torch.equal(m.gates(m.bottom(x)), torch.ones(T, x.shape[1], 1))
    with pytest.raises(ValueError):
        MMoENet(info, **ARCH, n_experts=0, expert_dim=4)


# ---------------------------------------------------------------------- MRN
def test_mrn_penalty_is_the_kronecker_quadratic_form():
    info = _data(kind="multiclass").info()  # last layer [T, 6, 3]
    m = MRNNet(info, **ARCH, update_every=1000).double()
    A = torch.randn(T, T, dtype=torch.float64)
    with torch.no_grad():
        m.omega.copy_(A @ A.T + torch.eye(T))
    W = m.heads.linear_layers()[-1].weight
    K = torch.kron(torch.kron(m.omega, torch.eye(W.shape[1], dtype=W.dtype)), torch.eye(W.shape[2], dtype=W.dtype))
    v = W.reshape(-1)
    torch.testing.assert_close(m.prior_penalty(), v @ K @ v, rtol=1e-12, atol=1e-12)


def _np_precision(sigma: np.ndarray, cap: float = 3000.0) -> np.ndarray:
    u, s, vt = np.linalg.svd(sigma)
    f = np.array([1.0 / x if x > 0.1 else x for x in s])
    om = u @ np.diag(f) @ vt
    return om * (cap / np.trace(om)) if np.trace(om) > cap else om


def test_mrn_precision_thresholds_and_caps_trace():
    rng = np.random.default_rng(0)
    n = 320  # 1/s ≤ 10 for kept values, so the trace cap needs many tasks
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = np.full(n, 0.102)
    s[:3] = [1e-4, 0.05, 7.0]  # two below the 0.1 threshold (kept as s), one large
    sigma = (q * s) @ q.T
    ref = _np_precision(sigma)
    assert np.trace(_np_precision(sigma, cap=np.inf)) > 3000 and np.isclose(np.trace(ref), 3000)
    got = mrn_precision(torch.from_numpy(sigma)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)
    small = np.diag([1e-3, 0.5, 2.0])  # no cap: trace 1e-3 + 2 + 0.5
    np.testing.assert_allclose(mrn_precision(torch.from_numpy(small)).numpy(), np.diag([1e-3, 2.0, 0.5]),
                               atol=1e-12)


def test_mrn_updates_omega_exactly_every_k_steps():
    info = _data().info()
    m = MRNNet(info, **ARCH, update_every=3).double()
    W = m.heads.linear_layers()[-1].weight
    for step in range(1, 8):
        with torch.no_grad():
            W.mul_(1.5)
            W[1].add_(0.1)
        before = m.omega.clone()
        m.prior_penalty()
        if step % 3 == 0:
            w = W.detach().reshape(T, -1).numpy()
            np.testing.assert_allclose(m.omega.numpy(), _np_precision(w @ w.T + 1e-5 * np.eye(T)), rtol=1e-8)
            np.testing.assert_allclose(m.sigma.numpy(), w @ w.T + 1e-5 * np.eye(T), rtol=1e-12)
            assert not torch.equal(before, m.omega)
        else:
            assert torch.equal(before, m.omega)
    assert int(m.steps) == 7
    other = MRNNet(info, **ARCH, update_every=3).double()
    other.load_state_dict(m.state_dict())
    assert other._steps == 7 and torch.equal(other.omega, m.omega)
    rel = task_relations(other)
    assert set(rel) == {"MRN task covariance Σ_T", "MRN task precision Ω_T"}


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def split():
    return _data(seed=3).split(test=0.2, val=0.2, seed=0)


@pytest.mark.parametrize("method", METHODS)
def test_trains_beats_trivial_and_round_trips(method, split, tmp_path):
    hp = {"epochs": 20, "lr": 1e-2, **({"update_every": 5} if method == "mrn" else {})}
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    ev = run.evaluate("test")
    for t in range(T):
        trivial = np.sqrt(np.mean((split.test.ys[t] - split.train.ys[t].mean()) ** 2))
        assert ev.per_task["rmse"][t] < 0.5 * trivial, (method, t, ev.per_task["rmse"], trivial)
    loaded = mtlkit.load(run.save(tmp_path / method))
    X = np.random.default_rng(1).normal(size=(11, D))
    np.testing.assert_array_equal(loaded.predict(X), run.predict(X))
    if method == "mrn":
        assert not torch.equal(run.model.omega, torch.eye(T))  # the prior was re-estimated during training
        assert torch.equal(loaded.model.omega, run.model.omega) and loaded.model._steps == run.model._steps > 0
    if method in ("cross-stitch", "mrn"):
        assert task_relations(loaded).keys() == task_relations(run).keys() != set()


def test_shared_input_training_runs():
    split = _data(shared=True).split(test=0.2, val=0.2, seed=0)
    for method in ("cross-stitch", "mmoe"):
        run = mtlkit.train(method, split, hparams={"epochs": 3, "lr": 1e-2}, seed=0, device="cpu")
        assert np.isfinite(run.evaluate("test").mean["rmse"])


@pytest.mark.parametrize("method", METHODS)
def test_describe(method):
    d = mtlkit.methods.describe(method)
    assert d["name"] == method and d["training"].startswith("SGD (Trainer)") and d["paper"]
    assert d["grid"]["regression"]["lr"] == [1e-3, 1e-2]
    own = {"inter-task-l2": "mu", "cross-stitch": "head_hidden", "mmoe": "n_experts", "mrn": "trade_off"}[method]
    assert own in d["hyperparameters"]


def test_mrn_resume_is_bitwise(split, tmp_path):
    hp = {"epochs": 6, "lr": 1e-2, "update_every": 3}
    ckpt = tmp_path / "mrn.ckpt"
    full = mtlkit.train("mrn", split, hparams=hp, seed=0, device="cpu")
    mtlkit.train("mrn", split, hparams={**hp, "epochs": 3}, seed=0, device="cpu", checkpoint=ckpt)
    resumed = mtlkit.train("mrn", split, hparams=hp, seed=0, device="cpu", checkpoint=ckpt, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.model._steps == full.model._steps > 0
