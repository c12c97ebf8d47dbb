"""SRDML: the one-pass saliency against per-task, per-sample autograd (MLP and CNN backbones) and against the
closed form of linear heads; the ℓ1 / squared-ℓ2 penalties against explicit pairwise sums; invariance to scaling
ω; the second-order gradient against its closed form; the ω prox; training that learns, with and without PCGrad."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.analysis.relations import task_relations
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.methods import registry
from mtlkit.methods.srdml import SRDMLNet, omega_prox, saliency, srdml_penalty, srdml_regularizer
from mtlkit.optim.combiners import PCGrad

pytestmark = pytest.mark.usefixtures("one_thread")

T, B, D = 4, 6, 5


def _info(shared: bool = True, shape: tuple[int, ...] = (D,), kind: str = "regression") -> DataInfo:
    return DataInfo(TaskSpec(kind, tuple(f"t{i}" for i in range(T)), (1 if kind == "regression" else 2,) * T),
                    shape, shared)


def _net(backbone: str = "mlp", shared: bool = True, head_hidden: list[int] | None = None,
         seed: int = 0) -> tuple[SRDMLNet, torch.Tensor]:
    shape = (2, 6, 6) if backbone == "cnn" else (D,)
    torch.manual_seed(seed)
    net = SRDMLNet(_info(shared, shape), backbone=backbone, hidden=[7], channels=[3, 4],
                   head_hidden=[5] if head_hidden is None else head_hidden, activation="tanh").double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*((B,) if shared else (T, B)), *shape, generator=g, dtype=torch.float64)
    return net, x


def _loop_saliency(net: SRDMLNet, a: torch.Tensor) -> torch.Tensor:
    """Reference: for each task t and row e, autograd of head t's output on row e alone w.r.t. that row."""
    rows = a.detach().reshape(-1, *a.shape[a.dim() - net.map_dims:])
    out = torch.zeros(T, rows.shape[0], rows.shape[1], dtype=a.dtype)
    for t, e in itertools.product(range(T), range(rows.shape[0])):
        r = rows[e:e + 1].clone().requires_grad_(True)
        f = net.head(r)[t, 0, 0]
        (g,) = torch.autograd.grad(f, r)
        out[t, e] = g[0].sum(dim=(-2, -1)) if net.map_dims == 3 else g[0]
    return out


@pytest.mark.parametrize("backbone,shared", [("mlp", True), ("mlp", False), ("cnn", True), ("cnn", False)])
def test_batched_saliency_equals_per_task_autograd(backbone: str, shared: bool) -> None:
    net, x = _net(backbone, shared)
    out = net(x)
    a = out.features["shared"]
    s = saliency(net, a)
    rows = B if shared else T * B
    assert s.shape == (T, rows, 4 if backbone == "cnn" else 7)  # channels[-1] or hidden[-1]
    torch.testing.assert_close(s, _loop_saliency(net, a), rtol=1e-10, atol=1e-12)
    # the forward pass's predictions are the heads on A
    if shared:
        torch.testing.assert_close(out.pred, net.head(a))


def test_linear_heads_saliency_is_the_head_weight() -> None:
    net, x = _net(head_hidden=[])
    s = saliency(net, net(x).features["shared"])
    w = net.heads.linear_layers()[0].weight[..., 0]  # [T, hidden]
    torch.testing.assert_close(s, w[:, None, :].expand(T, B, -1), rtol=1e-12, atol=1e-14)


def _random_omega(net: SRDMLNet, seed: int = 0) -> None:
    with torch.no_grad():
        net.omega.copy_(torch.rand(T, T, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1)


@pytest.mark.parametrize("dist", ["l1", "l2"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_penalty_equals_explicit_pairwise_sum(dist: str, reduction: str) -> None:
    net, x = _net()
    _random_omega(net)
    out = net(x)
    batch = Batch(x=x, y=torch.zeros(T, B), mask=torch.ones(T, B, dtype=torch.bool), shared=True)
    got = srdml_penalty(0.7, dist, reduction)(net, out, batch)
    s = _loop_saliency(net, out.features["shared"])
    om = net.omega.detach()
    wsum = sum(om[i, j] for i, j in itertools.combinations(range(T), 2))
    ref = 0.0
    for i, j in itertools.combinations(range(T), 2):
        diff = s[i] - s[j]  # [B, C]
        per_row = diff.abs().sum(1) if dist == "l1" else (diff ** 2).sum(1)
        ref = ref + om[i, j] / wsum * (per_row.mean() if reduction == "mean" else per_row.sum())
    torch.testing.assert_close(got, 0.7 * ref, rtol=1e-10, atol=1e-12)


def test_heterogeneous_penalty_counts_only_labelled_rows() -> None:
    net, x = _net(shared=False)
    out = net(x)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[1, 3:] = False
    batch = Batch(x=x, y=torch.zeros(T, B), mask=mask, shared=False)
    got = srdml_penalty(1.0, "l2")(net, out, batch)
    s = saliency(net, out.features["shared"])  # rows: T·B pooled
    keep = mask.reshape(-1)
    r = keep.double() / keep.sum()
    torch.testing.assert_close(got, srdml_regularizer(net, s, r, "l2"))
    ref = srdml_regularizer(net, s[:, keep], torch.full((int(keep.sum()),), 1 / int(keep.sum()),
                                                          dtype=torch.float64), "l2")
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_row_sample_is_the_penalty_on_the_drawn_rows_and_unbiased(reduction: str) -> None:
    """Per-task input with ``saliency_rows = m``: the penalty is the regulariser on the m rows torch's generator
    draws (weighted n/m for ``sum``), and its mean over many draws is the all-rows penalty."""
    net, x = _net(shared=False)
    _random_omega(net, seed=5)
    out = net(x)
    batch = Batch(x=x, y=torch.zeros(T, B), mask=torch.ones(T, B, dtype=torch.bool), shared=False)
    n, m = T * B, 5
    s_all = saliency(net, out.features["shared"]).detach()
    torch.manual_seed(11)
    got = srdml_penalty(1.0, "l1", reduction, saliency_rows=m)(net, out, batch)
    torch.manual_seed(11)
    pick = torch.randperm(n)[:m]
    w = torch.full((m,), 1 / m if reduction == "mean" else n / m, dtype=torch.float64)
    torch.testing.assert_close(got, srdml_regularizer(net, s_all[:, pick], w, "l1"))
    full = srdml_penalty(1.0, "l1", reduction, saliency_rows=0)(net, out, batch)
    assert torch.equal(full, srdml_penalty(1.0, "l1", reduction, saliency_rows=n)(net, out, batch))
    pen = srdml_penalty(1.0, "l1", reduction, saliency_rows=m)
    draws = torch.stack([pen(net, out, batch).detach() for _ in range(400)])
    # the standard error of the mean of 400 draws bounds the test's tolerance (4 s.e.)
    assert abs(float(draws.mean() - full)) < 4 * float(draws.std()) / 20


@pytest.mark.parametrize("dist", ["l1", "l2"])
def test_penalty_is_invariant_to_scaling_omega(dist: str) -> None:
    net, x = _net()
    _random_omega(net, seed=3)
    out = net(x)
    batch = Batch(x=x, y=torch.zeros(T, B), mask=torch.ones(T, B, dtype=torch.bool), shared=True)
    pen = srdml_penalty(1.0, dist)
    a = pen(net, out, batch)
    with torch.no_grad():
        net.omega.mul_(37.5)
    b = pen(net, out, batch)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # hence Σ ω_ij ∂R/∂ω_ij = 0 (Euler): scaling ω does not change R to first order
    (g,) = torch.autograd.grad(b, net.omega)
    assert abs(float((torch.triu(g, 1) * net.omega.detach()).sum())) < 1e-10
    assert torch.all(torch.tril(g) == 0)  # only the strict upper triangle is used


def test_penalty_gradient_on_linear_heads_is_second_order_closed_form() -> None:
    """With linear heads s_t = w_t, so R = Σ_{i<j} ω_ij/W ‖w_i − w_j‖² and ∂R/∂w_i = 2 Σ_j ω_ij/W (w_i − w_j):
    the gradient flows through the saliency (a gradient itself) back to the head weights."""
    net, x = _net(head_hidden=[])
    _random_omega(net, seed=5)
    out = net(x)
    batch = Batch(x=x, y=torch.zeros(T, B), mask=torch.ones(T, B, dtype=torch.bool), shared=True)
    layer = net.heads.linear_layers()[0]
    (g,) = torch.autograd.grad(srdml_penalty(1.0, "l2")(net, out, batch), layer.weight)
    w = layer.weight.detach()[..., 0]
    om = torch.triu(net.omega.detach(), 1)
    om = (om + om.T) / om.sum()
    ref = 2 * (om.sum(1)[:, None] * w - om @ w)
    torch.testing.assert_close(g[..., 0], ref, rtol=1e-10, atol=1e-12)


def test_omega_prox_and_task_relations() -> None:
    net, _ = _net()
    with torch.no_grad():
        net.omega.copy_(torch.randn(T, T, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    omega_prox(net, 0.1)
    assert float(net.omega.detach().min()) >= 0
    rel = task_relations(net)
    (m,) = rel.values()
    assert m.shape == (T, T)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 0)
    np.testing.assert_allclose(np.triu(m, 1), np.triu(net.omega.detach().numpy(), 1))


def test_normaliser_is_guarded_when_omega_collapses() -> None:
    net, x = _net()
    with torch.no_grad():
        net.omega.zero_()
    out = net(x)
    batch = Batch(x=x, y=torch.zeros(T, B), mask=torch.ones(T, B, dtype=torch.bool), shared=True)
    p = srdml_penalty(1.0, "l1")(net, out, batch)
    assert torch.isfinite(p) and float(p.detach()) == 0.0


def test_bad_hyper_parameters() -> None:
    info = _info()
    build = registry.get("srdml").build
    hp = dict(registry.get("srdml").defaults)
    for bad, match in [({"dist": "cos"}, "dist"), ({"reduction": "max"}, "reduction"), ({"lam": -1}, "lam"),
                       ({"backbone": "vit"}, "backbone"), ({"hidden": []}, "hidden"), ({"backbone": "cnn"}, "image")]:
        with pytest.raises(ValueError, match=match):
            build(info, {**hp, **bad})
    with pytest.raises(ValueError, match="regression or binary"):
        SRDMLNet(DataInfo(TaskSpec("multiclass", ("a", "b"), (3, 3)), (D,), True))


# ---------------------------------------------------------------------- training
def _twin_tasks(seed: int = 0, n: int = 160, d: int = 8) -> MultiTaskData:
    """The paper's synthetic idea: shared X, tasks in twins (same weight vector up to noise) with different
    magnitudes and signs, so the saliencies of twins agree and those of other tasks differ."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.5, 1.0, size=(n, d))
    bases = rng.normal(size=(2, d))
    ws = [bases[0], bases[0], -2 * bases[1], -2 * bases[1]]
    Y = np.stack([np.tanh(X @ w / np.sqrt(d)) * 3 + 0.05 * rng.normal(size=n) for w in ws], axis=1)
    return MultiTaskData.from_shared(X, Y, kind="regression")


def test_srdml_trains_and_learns() -> None:
    split = _twin_tasks().split(test=0.25, val=0.2, seed=0)
    hp = {"epochs": 40, "lr": 1e-2, "patience": 0, "hidden": [16], "head_hidden": [8], "lam": 0.1}
    run = mtlkit.train("srdml", split, hparams=hp, seed=0, device="cpu")
    hist = run.history.train_loss
    assert hist[-1].mean() < 0.2 * hist[0].mean()
    ev = run.evaluate("test")
    assert ev.mean["explained_variance"] > 0.8
    om = task_relations(run)["ω (task × task)"]
    assert (om >= 0).all() and om.shape == (T, T)
    # ω concentrates on the twins (0,1) and (2,3); the cross pairs' weights collapse
    assert min(om[0, 1], om[2, 3]) > 3 * max(om[i, j] for i, j in [(0, 2), (0, 3), (1, 2), (1, 3)]) + 0.1


def test_srdml_plus_pcgrad_builds_and_trains_one_epoch(tmp_path) -> None:
    split = _twin_tasks(1).split(test=0.25, val=0.2, seed=0)
    info = split.train.info()
    parts = registry.get("srdml+pcgrad").build(info, dict(registry.describe("srdml+pcgrad")["defaults"]))
    assert isinstance(parts.combiner, PCGrad) and isinstance(parts.model, SRDMLNet) and parts.penalties
    torch.manual_seed(0)
    before = SRDMLNet(info, hidden=[64], head_hidden=[32]).state_dict()
    run = mtlkit.train("srdml+pcgrad", split, hparams={"epochs": 1, "lr": 1e-2}, seed=0, device="cpu")
    assert run.method == "srdml+pcgrad" and len(run.history.train_loss) == 1
    assert np.isfinite(run.history.train_loss[0]).all()
    after = run.model.state_dict()
    assert not torch.equal(before["bottom.0.weight"], after["bottom.0.weight"])
    assert float(after["omega"].detach().min()) >= 0
    run.save(tmp_path / "r")  # a composed method saves and loads by its name
    again = mtlkit.load(tmp_path / "r")
    assert again.method == "srdml+pcgrad"
    np.testing.assert_allclose(again.predict(split.test.x), run.predict(split.test.x), rtol=1e-6)


def test_srdml_heterogeneous_tasks_train() -> None:
    """Tasks with their own rows: the saliencies are compared on the batch's pooled rows; training learns."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=D)
    Xs = [rng.normal(size=(50 + 10 * t, D)) for t in range(T)]
    ys = [X @ (w * (1 if t % 2 else -1)) + 0.1 * rng.normal(size=len(X)) for t, X in enumerate(Xs)]
    split = MultiTaskData.from_tasks(Xs, ys, kind="regression").split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("srdml", split, hparams={"epochs": 30, "lr": 1e-2, "patience": 0, "dist": "l2"}, seed=0,
                       device="cpu")
    hist = run.history.train_loss
    assert hist[-1].mean() < 0.2 * hist[0].mean()
    assert run.evaluate("test").mean["explained_variance"] > 0.8


def test_srdml_cnn_backbone_on_images_trains(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(48, 1, 6, 6))
    Y = np.stack([(X[:, 0, :3].mean((1, 2)) > 0), (X[:, 0, 3:].mean((1, 2)) > 0)], 1).astype(float)
    split = MultiTaskData.from_shared(X, Y, kind="binary").split(test=0.25, val=0.25, seed=0)
    hp = {"backbone": "cnn", "channels": [4, 6], "head_hidden": [8], "epochs": 8, "lr": 1e-2, "patience": 0}
    run = mtlkit.train("srdml", split, hparams=hp, seed=0, device="cpu")
    assert run.history.train_loss[-1].mean() < run.history.train_loss[0].mean()
    run.save(tmp_path / "r")
    again = mtlkit.load(tmp_path / "r")
    np.testing.assert_allclose(again.predict(split.test.x), run.predict(split.test.x), rtol=1e-6)


# ---------------------------------------------------------------------- the authors' two phases (warm start)
@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
def test_warm_start_takes_over_the_hard_share_function(backbone: str) -> None:
    from mtlkit.methods.baselines import HardShareNet

    net, x = _net(backbone, head_hidden=[5])
    torch.manual_seed(3)
    shape = (2, 6, 6) if backbone == "cnn" else (D,)
    hs = HardShareNet(_info(True, shape), [7] if backbone == "mlp" else [], [5], "tanh", 0.0, backbone=backbone,
                      channels=[3, 4]).double()
    with torch.no_grad():
        net.omega.mul_(3.0)
    net.warm_start(hs)
    torch.testing.assert_close(net(x).pred, hs(x).pred, rtol=1e-12, atol=1e-12)
    assert torch.equal(net.omega, torch.full_like(net.omega, 3.0))  # ω is SRDML's own: untouched


def test_warm_started_srdml_trains_hard_share_first() -> None:
    split = _twin_tasks(2).split(test=0.25, val=0.2, seed=0)
    hp = {"epochs": 15, "lr": 1e-2, "patience": 0, "hidden": [16], "head_hidden": [8], "lam": 0.01}
    cold = mtlkit.train("srdml", split, hparams=hp, seed=0, device="cpu")
    warm = mtlkit.train("srdml", split, hparams={**hp, "warm_start": True}, seed=0, device="cpu")
    hs = mtlkit.train("hard-share", split, hparams={k: v for k, v in hp.items() if k != "lam"}, seed=0, device="cpu")
    # SRDML's own first epoch starts from the trained hard-share model: already near hard-share's final loss
    assert warm.history.train_loss[0].mean() < 0.3 * cold.history.train_loss[0].mean()
    assert warm.history.train_loss[0].mean() < 2 * hs.history.train_loss[-1].mean()
    with pytest.raises(ValueError, match="hidden=\\[\\]"):
        registry.get("srdml").build(_info(True, (2, 6, 6)), {**registry.get("srdml").defaults, "backbone": "cnn",
                                                              "warm_start": True})
