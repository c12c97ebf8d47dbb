"""Gradient combiners: the batched per-task gradients against per-task autograd, PCGrad against a direct
vector implementation and its no-conflict property, MGDA-UB's Frank-Wolfe against a brute-force simplex
search, the combiners' `.grad` against explicit objectives, and `method+combiner` composition."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from resume_check import straight_and_resumed

import mtlkit
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.errors import MtlkitError, UnknownNameError
from mtlkit.methods import registry
from mtlkit.methods.base import as_output
from mtlkit.methods.baselines import HardShareNet
from mtlkit.optim.combiners import (
    MGDAUB,
    PCGrad,
    SumCombiner,
    make_combiner,
    min_norm_weights,
    pcgrad_coefficients,
    pcgrad_combine,
    pcgrad_orders,
    task_gradients,
)

pytestmark = pytest.mark.usefixtures("one_thread")

T, B, D = 3, 9, 5
ARCH = {"hidden": [6], "head_hidden": [4], "activation": "tanh", "dropout": 0.0}


def _net(shared: bool = True, seed: int = 0) -> tuple[HardShareNet, torch.Tensor, torch.Tensor]:
    """A double-precision hard-share net (exposing its representation), an input batch and targets."""
    info = DataInfo(TaskSpec("regression", tuple(f"t{i}" for i in range(T)), (1,) * T), (D,), shared)
    torch.manual_seed(seed)
    net = HardShareNet(info, **ARCH).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*((B, D) if shared else (T, B, D)), generator=g, dtype=torch.float64)
    y = torch.randn(T, B, generator=g, dtype=torch.float64)
    return net, x, y


def _losses(net: HardShareNet, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    out = as_output(net(x))
    return ((out.pred[..., 0] - y) ** 2).mean(1), out.features


# ---------------------------------------------------------------------- batched per-task gradients
@pytest.mark.parametrize("shared", [True, False])
def test_task_gradients_equal_per_task_autograd(shared: bool) -> None:
    net, x, y = _net(shared)
    losses, feats = _losses(net, x, y)
    params = list(net.bottom.parameters())
    w = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    G = task_gradients(losses, params, weights=w)
    Gz = task_gradients(losses, feats["shared"])
    for t in range(T):
        ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], params, retain_graph=True)])
        torch.testing.assert_close(G[t], w[t] * ref, rtol=1e-12, atol=1e-14)
        refz = torch.autograd.grad(losses[t], feats["shared"], retain_graph=True)[0].reshape(-1)
        torch.testing.assert_close(Gz[t], refz, rtol=1e-12, atol=1e-14)


def test_task_gradients_unreached_input_gives_zeros() -> None:
    a = torch.randn(3, requires_grad=True, dtype=torch.float64)
    b = torch.randn(2, requires_grad=True, dtype=torch.float64)
    losses = torch.stack([a.sum(), (a ** 2).sum()])
    G = task_gradients(losses, [a, b])
    assert G.shape == (2, 5)
    torch.testing.assert_close(G[:, 3:], torch.zeros(2, 2, dtype=torch.float64))
    torch.testing.assert_close(G[1, :3], 2 * a.detach())


# ---------------------------------------------------------------------- PCGrad
def _pcgrad_reference(G: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """PCGrad as the paper writes it, on the vectors: each g_i projected against the original g_j in order."""
    out = []
    for i in range(G.shape[0]):
        g = G[i].clone()
        for j in orders[i].tolist():
            dot = g @ G[j]
            if dot < 0:
                g = g - dot / (G[j] @ G[j] + 1e-8) * G[j]
        out.append(g)
    return torch.stack(out).sum(0)


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_gram_form_equals_vector_algorithm(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(5, 12, generator=g, dtype=torch.float64)
    G[1] = -0.8 * G[0] + 0.3 * G[1]  # make sure some pairs conflict
    orders = pcgrad_orders(5, torch.Generator().manual_seed(seed))
    assert all(sorted(orders[i].tolist()) == [j for j in range(5) if j != i] for i in range(5))
    C = pcgrad_coefficients(G @ G.T, orders)
    torch.testing.assert_close(C.sum(0) @ G, _pcgrad_reference(G, orders), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_pcgrad_two_conflicting_tasks_has_no_negative_inner_product(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    g1 = torch.randn(8, generator=g, dtype=torch.float64)
    g2 = -torch.rand(1, generator=g, dtype=torch.float64) * 3 * g1 + torch.randn(8, generator=g, dtype=torch.float64)
    G = torch.stack([g1, g2])
    assert g1 @ g2 < 0 or seed > 0  # the first case surely conflicts; most others do
    out = pcgrad_combine(G, torch.Generator().manual_seed(seed))
    if g1 @ g2 < 0:
        assert (G @ out).min() >= -1e-10
        # and the summed update is the sum of the two projections onto each other's normal planes
        p1 = g1 - (g1 @ g2) / (g2 @ g2 + 1e-8) * g2
        p2 = g2 - (g2 @ g1) / (g1 @ g1 + 1e-8) * g1
        torch.testing.assert_close(out, p1 + p2, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(out, g1 + g2)


def test_pcgrad_without_conflicts_is_the_plain_sum() -> None:
    G = torch.rand(4, 6, dtype=torch.float64)  # all inner products positive
    torch.testing.assert_close(pcgrad_combine(G, torch.Generator().manual_seed(0)), G.sum(0))


@pytest.mark.parametrize("shared", [True, False])
def test_pcgrad_combiner_grads(shared: bool) -> None:
    """Shared parameters get Σ_i g_iᵖᶜ of the weighted task gradients (+ the penalty's gradient); the heads keep
    their plain gradients."""
    net, x, y = _net(shared)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    bottom = list(net.bottom.parameters())
    losses, _ = _losses(net, x, y)
    pen = 0.1 * sum((p ** 2).sum() for p in net.parameters())
    comb = PCGrad(seed=7)
    comb.backward(losses, (w * losses).sum() + pen, bottom, weights=w)
    got_bottom = torch.cat([p.grad.reshape(-1) for p in bottom])
    got_heads = [p.grad.clone() for p in net.heads.parameters()]
    net.zero_grad()
    losses, _ = _losses(net, x, y)
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(w[t] * losses[t], bottom,
                                                                           retain_graph=True)]) for t in range(T)])
    ref = pcgrad_combine(G, PCGrad(seed=7)._generator())
    pen = 0.1 * sum((p ** 2).sum() for p in net.parameters())
    ref = ref + 0.2 * torch.cat([p.detach().reshape(-1) for p in bottom])
    torch.testing.assert_close(got_bottom, ref, rtol=1e-10, atol=1e-12)
    ((w * losses).sum() + pen).backward()
    for a, b in zip(got_heads, net.heads.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad, rtol=1e-12, atol=1e-14)
    assert comb.step == 1 and int(comb.state()["pcgrad.step"]) == 1


def test_pcgrad_order_is_reproducible_and_changes_by_step() -> None:
    a, b = PCGrad(seed=3), PCGrad(seed=3)
    o1 = pcgrad_orders(6, a._generator())
    assert torch.equal(o1, pcgrad_orders(6, b._generator()))
    b.load_state({"pcgrad.step": torch.tensor(5)})
    assert b.step == 5
    orders = {tuple(pcgrad_orders(6, PCGrad(seed=3, eps=1e-8)._generator()).flatten().tolist())}
    for s in range(1, 6):
        a.step = s
        orders.add(tuple(pcgrad_orders(6, a._generator()).flatten().tolist()))
    assert len(orders) > 3


# ---------------------------------------------------------------------- MGDA-UB
def _brute_force_simplex(M: np.ndarray, step: float = 1e-3) -> tuple[np.ndarray, float]:
    """argmin_{α∈Δ³} αᵀMα on a grid of the 2-simplex (then the exact minimiser is within ~step of it)."""
    a = np.arange(0, 1 + step / 2, step)
    A1, A2 = np.meshgrid(a, a, indexing="ij")
    ok = A1 + A2 <= 1 + 1e-12
    al = np.stack([A1[ok], A2[ok], 1 - A1[ok] - A2[ok]], 1)
    vals = np.einsum("ni,ij,nj->n", al, M, al)
    k = int(vals.argmin())
    return al[k], float(vals[k])


@pytest.mark.parametrize("case", ["interior", "edge", "vertex", "random"])
def test_mgda_weights_match_brute_force_simplex_search_T3(case: str) -> None:
    g = torch.Generator().manual_seed({"interior": 0, "edge": 1, "vertex": 2, "random": 3}[case])
    if case == "interior":  # three mutually conflicting directions: the min-norm point is inside the triangle
        G = torch.tensor([[1.0, 0.1, 0.0], [-0.6, 0.9, 0.1], [-0.5, -1.0, 0.2]], dtype=torch.float64)
    elif case == "edge":  # g2 far away in a common direction: min-norm on the edge (g0, g1)
        G = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 0.2, 0.5], [0.0, 0.0, 3.0]], dtype=torch.float64)
    elif case == "vertex":  # a short g0 that every other gradient agrees with
        G = torch.tensor([[0.1, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, -1.0, 0.5]], dtype=torch.float64)
    else:
        G = torch.randn(3, 7, generator=g, dtype=torch.float64)
    M = G @ G.T
    alpha = min_norm_weights(M)
    ref, ref_val = _brute_force_simplex(M.numpy())
    val = float(alpha @ M @ alpha)
    assert abs(float(alpha.sum()) - 1) < 1e-12 and float(alpha.min()) >= 0
    assert val <= ref_val + 1e-9  # never worse than the best grid point
    np.testing.assert_allclose(alpha.numpy(), ref, atol=5e-3)
    # KKT: every task's directional derivative Mα is ≥ αᵀMα, with equality on the support
    Ma = M @ alpha
    assert float(Ma.min()) >= val - 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_mgda_weights_satisfy_kkt_for_more_tasks(seed: int) -> None:
    """T = 12 gradients in 20 dimensions: on the support of α every task's (Mα)_t equals αᵀMα, off it it is
    larger (the optimality conditions of the min-norm problem on the simplex)."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(12, 20, generator=g, dtype=torch.float64) + 0.5 * torch.randn(20, generator=g, dtype=torch.float64)
    M = G @ G.T
    alpha = min_norm_weights(M)
    val, Ma = alpha @ M @ alpha, M @ alpha
    assert float(Ma.min()) >= float(val) * (1 - 1e-6)
    support = alpha > 1e-9
    torch.testing.assert_close(Ma[support], torch.full_like(Ma[support], float(val)), rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("T", [12, 40])
def test_mgda_early_stop_gives_the_weights_of_all_iterations(T: int) -> None:
    """Stopping once the pairwise gap vanishes changes α by no more than the tolerance allows: the same min-norm
    value as running every one of 1000 iterations (``tol=0``)."""
    g = torch.Generator().manual_seed(T)
    G = torch.randn(T, 30, generator=g, dtype=torch.float64) + 0.3
    M = G @ G.T
    early, full = min_norm_weights(M, iters=1000), min_norm_weights(M, iters=1000, tol=0.0)
    torch.testing.assert_close(early @ M @ early, full @ M @ full, rtol=1e-9, atol=0.0)


def test_mgda_l2_normalisation_is_invariant_to_rescaling_a_task() -> None:
    """With ``l2`` normalisation the min-norm problem sees unit gradients: scaling one task's gradient by 10
    leaves α unchanged (without normalisation it does not)."""
    g = torch.Generator().manual_seed(4)
    G = torch.randn(4, 6, generator=g, dtype=torch.float64)
    S = torch.diag(torch.tensor([10.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    losses = torch.ones(4, dtype=torch.float64)
    for norm, same in [("l2", True), ("none", False)]:
        comb = MGDAUB(normalization=norm)
        a, b = comb._weights(G @ G.T, losses), comb._weights(S @ G @ G.T @ S, losses)
        assert torch.allclose(a, b, atol=1e-8) == same, norm


def test_mgda_two_tasks_closed_form() -> None:
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    G = torch.stack([g1, g2])
    gam = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))  # argmin ‖γ g1 + (1−γ) g2‖
    torch.testing.assert_close(min_norm_weights(G @ G.T, iters=1), torch.tensor([gam, 1 - gam], dtype=torch.float64))


@pytest.mark.parametrize("shared", [True, False])
def test_mgda_ub_combiner_grads(shared: bool) -> None:
    """The bottom gets the gradient of (Σw)·Σ α_t L_t through the representation (+ the penalty's); the heads keep
    w_t ∂L_t/∂θ_t; α is the min-norm point of the representation gradients."""
    net, x, y = _net(shared, seed=1)
    w = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    losses, feats = _losses(net, x, y)
    pen = 0.05 * sum((p ** 2).sum() for p in net.parameters())
    comb = MGDAUB()
    comb.backward(losses, (w * losses).sum() + pen, list(net.bottom.parameters()), weights=w, features=feats)
    alpha = comb.last_weights
    assert alpha is not None
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    losses, feats = _losses(net, x, y)
    Gz = torch.stack([torch.autograd.grad(losses[t], feats["shared"], retain_graph=True)[0].reshape(-1)
                      for t in range(T)])
    torch.testing.assert_close(alpha, min_norm_weights(Gz @ Gz.T), rtol=1e-9, atol=1e-12)
    pen = 0.05 * sum((p ** 2).sum() for p in net.parameters())
    bottom_ref = torch.autograd.grad((alpha * losses).sum() + pen, list(net.bottom.parameters()), retain_graph=True)
    ((w * losses).sum() + pen).backward()
    for (n, _), b in zip(net.bottom.named_parameters(), bottom_ref, strict=True):
        torch.testing.assert_close(got["bottom." + n], b, rtol=1e-9, atol=1e-12)
    for n, p in net.heads.named_parameters():
        torch.testing.assert_close(got["heads." + n], p.grad, rtol=1e-12, atol=1e-14)


def test_mgda_without_shared_features_falls_back_to_parameters() -> None:
    net, x, y = _net(True)
    losses, _ = _losses(net, x, y)
    w = torch.full((T,), 1 / T, dtype=torch.float64)
    bottom = list(net.bottom.parameters())
    with pytest.warns(UserWarning, match="falling back"):
        MGDAUB(normalization="l2").backward(losses, (w * losses).sum(), bottom, weights=w, features={})
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bottom)


def test_combiner_errors() -> None:
    with pytest.raises(ValueError, match="normalization"):
        MGDAUB(normalization="max")
    with pytest.raises(ValueError, match="iters"):
        MGDAUB(iters=-1)
    with pytest.raises(ValueError, match="unknown gradient combiner"):
        make_combiner("no-such-grad")
    net, x, y = _net(True)
    losses, _ = _losses(net, x, y)
    with pytest.raises(ValueError, match="task weights"):
        PCGrad().backward(losses, losses.sum(), list(net.bottom.parameters()))
    SumCombiner().backward(losses, losses.sum(), list(net.bottom.parameters()))  # the old call still works


# ---------------------------------------------------------------------- composition and training
def test_method_plus_combiner_composition() -> None:
    info = registry.get("srdml+pcgrad")
    assert info.name == "srdml+pcgrad" and "srdml+pcgrad" not in registry.names()
    assert "srdml" in registry.names() and "pcgrad" in registry.names() and "mgda-ub" in registry.names()
    d = registry.describe("tomato-el+mgda-ub")
    assert d["defaults"]["mgda_iters"] == 250 and "K" in d["hyperparameters"]
    assert registry.get("shared-bottom+pcgrad").name == "hard-share+pcgrad"  # aliases resolve
    with pytest.raises(UnknownNameError, match="unknown gradient combiner 'no-such-grad'"):
        registry.get("srdml+no-such-grad")
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        registry.get("nope+pcgrad")
    with pytest.raises(MtlkitError, match="not trained by SGD"):
        registry.get("stl-linear+pcgrad")
    with pytest.raises(UnknownNameError, match="already is a method trained with a combiner"):
        registry.get("pcgrad+mgda-ub")
    with pytest.raises(UnknownNameError, match="more than one"):
        registry.get("srdml+pcgrad+mgda-ub")


def _split(seed: int = 0) -> mtlkit.Split:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, D))
    W = rng.normal(size=(D, T))
    W[:, 1] = -W[:, 0] + 0.3 * rng.normal(size=D)  # two conflicting tasks
    Y = X @ W + 0.1 * rng.normal(size=(120, T))
    return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression").split(test=0.2, val=0.2, seed=0)


@pytest.mark.parametrize("method", ["pcgrad", "mgda-ub", "hard-share+pcgrad"])
def test_combiner_methods_train_and_learn(method: str) -> None:
    split = _split()
    hp = {"epochs": 25, "lr": 1e-2, "patience": 0}
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    hist = run.history.train_loss
    assert np.isfinite(hist[-1]).all()
    assert hist[-1].mean() < 0.5 * hist[0].mean()
    base = mtlkit.train("hard-share", split, hparams={**hp, "epochs": 1}, seed=0, device="cpu")
    assert run.evaluate("test").mean["rmse"] < base.evaluate("test").mean["rmse"]


def test_tomato_with_mgda_ub_trains() -> None:
    """A method without features['shared'] composes with mgda-ub through the parameter fallback."""
    with pytest.warns(UserWarning, match="falling back"):
        run = mtlkit.train("tomato-el+mgda-ub", _split(), hparams={"epochs": 3, "patience": 0}, seed=0, device="cpu")
    assert run.method == "tomato-el+mgda-ub" and np.isfinite(run.history.train_loss[-1]).all()


@pytest.mark.parametrize("method", ["mrn+mgda-ub", "inter-task-l2+mgda-ub", "hard-share-align+mgda-ub"])
def test_hard_share_family_composes_with_mgda_ub_on_the_representation(method: str) -> None:
    """Methods on hard-share's network expose features['shared']: MGDA-UB runs on the representation (no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = mtlkit.train(method, _split(), hparams={"epochs": 3, "patience": 0}, seed=0, device="cpu")
    assert np.isfinite(run.history.train_loss[-1]).all()


def test_hard_share_plus_mgda_ub_is_the_registered_mgda_ub() -> None:
    hp = {"epochs": 4, "lr": 1e-2, "patience": 0}
    a = mtlkit.train("mgda-ub", _split(), hparams=hp, seed=0, device="cpu")
    b = mtlkit.train("hard-share+mgda-ub", _split(), hparams=hp, seed=0, device="cpu")
    for (n, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


def test_composed_combiner_state_round_trip() -> None:
    parts = registry.get("hard-share+pcgrad").build(_split().train.info(), {**ARCH})
    assert isinstance(parts.combiner, PCGrad)
    assert parts.state is not None and parts.load_state is not None
    parts.load_state({"pcgrad.step": torch.tensor(11)})
    assert int(parts.state()["pcgrad.step"]) == 11
    m = registry.get("hard-share+mgda-ub").build(_split().train.info(), {**ARCH, "mgda_norm": "loss+",
                                                                          "mgda_iters": 10})
    assert isinstance(m.combiner, MGDAUB) and m.combiner.normalization == "loss+" and m.combiner.iters == 10


def test_pairs_helper_consistency() -> None:
    """Gram-only PCGrad equals the vector algorithm for every order of 3 tasks (exhaustive)."""
    G = torch.tensor([[1.0, 0.2, 0.0], [-0.9, 0.5, 0.1], [0.3, -1.0, 0.4]], dtype=torch.float64)
    others = [[j for j in range(3) if j != i] for i in range(3)]
    for perm in itertools.product(*[list(itertools.permutations(o)) for o in others]):
        orders = torch.tensor(perm)
        C = pcgrad_coefficients(G @ G.T, orders)
        torch.testing.assert_close(C.sum(0) @ G, _pcgrad_reference(G, orders), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- distributed data parallel
def test_torchrun_two_processes_match_one_with_combiners(tmp_path) -> None:
    """Under DDP (gloo, 2 CPU processes) PCGrad, MGDA-UB, UPGrad and MoCo combine the global per-task gradients,
    FAMO weights by the global losses and SRDML's penalty weights rows as the global batch does: `pcgrad`, `mgda-ub`,
    `srdml+pcgrad`, `hard-share+upgrad`, `+moco` and `+famo` train to the parameters of a single process on the same
    global batches (up to summation order)."""
    from ddp_combiner_worker import two_ranks_and_one

    a, b = two_ranks_and_one("shared", tmp_path)  # one process here (one thread), two there
    assert a.keys() == b.keys() and any(k.startswith("mgda-ub.") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=0), (k, (a[k] - b[k]).abs().max())


def test_pcgrad_run_resumes_bitwise(tmp_path) -> None:
    """The projection order's step counter travels in the checkpoint (MethodParts.state): a run extended from its
    checkpoint ends exactly where an uninterrupted one does."""
    split = _split(1)
    hp = {"epochs": 4, "lr": 1e-2, "patience": 0, "batch_size": 16}
    a, b = straight_and_resumed("hard-share+pcgrad", split, hp, tmp_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
