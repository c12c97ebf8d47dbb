"""Loss weightings: each reproduces its update rule on a hand-computed 3-step example (the task weights written
out from the losses, Adam written out for the learned ones), then the Trainer's hooks and an exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from resume_check import straight_and_resumed

import mtlkit
from mtlkit.optim import weightings as wt
from mtlkit.optim.combiners import COMBINERS, make_combiner

pytestmark = pytest.mark.usefixtures("one_thread")

T = 3
W = torch.full((T,), 1.0 / T, dtype=torch.float64)
LR = 0.1  # the plain gradient steps taken on θ between the three steps


def losses_at(theta: torch.Tensor) -> torch.Tensor:
    """Three quadratic task losses of θ ∈ R², conflicting in θ₀."""
    return torch.stack([(theta[0] - 1.0) ** 2 + 0.1, 0.5 * (theta[1] + 2.0) ** 2 + 0.2,
                        (theta[0] + theta[1]) ** 2 + 0.3])


def task_grads(theta: torch.Tensor) -> torch.Tensor:
    """∇L_t written out: [T, 2]."""
    a, b = float(theta[0]), float(theta[1])
    return torch.tensor([[2 * (a - 1), 0.0], [0.0, b + 2], [2 * (a + b), 2 * (a + b)]], dtype=torch.float64)


def run_steps(comb, expected_weights, n: int = 3, after=None):
    """Three steps: the combiner's .grad on θ must be Σ_t eff_t ∇L_t with eff from ``expected_weights(step, L,
    θ)`` (the hand computation), then θ ← θ − LR·grad. Returns the losses seen."""
    theta = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    seen = []
    for k in range(n):
        L = losses_at(theta)
        eff = expected_weights(k, L.detach().clone(), theta.detach().clone())
        theta.grad = None
        comb.backward(L, (W * L).sum(), [theta], weights=W)
        ref = eff @ task_grads(theta.detach())
        torch.testing.assert_close(theta.grad, ref, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(comb.last_weights, eff, rtol=1e-6, atol=1e-9)
        with torch.no_grad():
            theta -= LR * theta.grad
        if after is not None:
            after(comb, k, theta.detach().clone())
        seen.append(L.detach().clone())
    return seen


def adam(state: dict, g: np.ndarray, lr: float, wd: float = 0.0) -> np.ndarray:
    """One step of Adam (β = 0.9, 0.999, ε = 1e-8, L2 weight decay added to the gradient), written out."""
    g = g + wd * state["x"]
    state["k"] += 1
    state["m"] = 0.9 * state["m"] + 0.1 * g
    state["v"] = 0.999 * state["v"] + 0.001 * g * g
    mhat = state["m"] / (1 - 0.9 ** state["k"])
    vhat = state["v"] / (1 - 0.999 ** state["k"])
    state["x"] = state["x"] - lr * mhat / (np.sqrt(vhat) + 1e-8)
    return state["x"]


def test_uw_three_steps() -> None:
    """UW: λ = e^{-s}; s ← Adam(s, w(1 − e^{-s}L)) after each step."""
    st = {"x": np.zeros(T), "m": np.zeros(T), "v": np.zeros(T), "k": 0}

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        s = st["x"].copy()
        eff = W.numpy() * np.exp(-s)
        adam(st, W.numpy() * (1 - np.exp(-s) * L.numpy()), lr=0.05)
        return torch.from_numpy(eff)

    comb = wt.UW(lr=0.05)
    run_steps(comb, expected)
    np.testing.assert_allclose(comb.s.param.detach().double().numpy(), st["x"], rtol=1e-5)


def test_dwa_three_steps() -> None:
    """DWA: λ = 1 until two epochs have ended, then T·softmax((L̄_e−1 / L̄_e−2)/τ)."""
    epoch_means = [torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.tensor([0.5, 1.8, 4.4],
                                                                                  dtype=torch.float64)]

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        if k < 2:
            return W.clone()
        r = np.array([0.5 / 1.0, 1.8 / 2.0, 4.4 / 4.0]) / 3.0  # τ = 3
        return W * torch.from_numpy(3 * np.exp(r) / np.exp(r).sum())

    def after(comb, k, theta):
        if k < 2:
            comb.epoch_end(epoch_means[k])

    run_steps(wt.DWA(temperature=3.0), expected, after=after)


def test_rlw_three_steps() -> None:
    """RLW: λ = T·softmax(z), z ~ N(0, I) from the generator of (seed, step)."""
    comb = wt.RLW(seed=11)

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        z = torch.randn(T, generator=comb._generator(), dtype=torch.float64).numpy()
        return W * torch.from_numpy(T * np.exp(z) / np.exp(z).sum())

    run_steps(comb, expected)


def test_gls_three_steps_and_autograd_of_the_geometric_mean() -> None:
    """GLS: the gradient of (Π L_t)^(1/T): weights GLS/(T L_t); also autograd's gradient of that objective."""
    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        gls = float(np.prod(L.numpy()) ** (1 / T))
        return torch.from_numpy(gls / (T * L.numpy()))

    run_steps(wt.GLS(), expected)
    theta = torch.tensor([0.7, 0.2], dtype=torch.float64, requires_grad=True)
    L = losses_at(theta)
    wt.GLS().backward(L, (W * L).sum(), [theta], weights=W)
    ref = torch.autograd.grad(losses_at(theta).prod() ** (1 / T), theta)[0]
    torch.testing.assert_close(theta.grad, ref, rtol=1e-12, atol=1e-14)


def test_gls_leaves_out_a_task_without_labels() -> None:
    L = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64)
    lam = wt.GLS().factors(L, W)
    assert lam[1] == 0.0
    torch.testing.assert_close(W[[0, 2]] * lam[[0, 2]], torch.tensor([1.0 / 0.5, 1.0 / 2.0], dtype=torch.float64) / 2)


def test_famo_three_steps() -> None:
    """FAMO: z = softmax(ξ), weights z_t/(c D_t) with D = L + 1e-8, c = Σ z/D; after the step ξ ← Adam(ξ,
    J_softmax(ξ)ᵀ(log D − log D'), weight decay γ) with D' the losses recomputed at the new θ."""
    st = {"x": np.zeros(T), "m": np.zeros(T), "v": np.zeros(T), "k": 0}
    lr, gamma = 0.05, 0.01
    prev = {}

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        z = np.exp(st["x"]) / np.exp(st["x"]).sum()
        D = L.numpy() + 1e-8
        prev["D"], prev["z"] = D, z
        return torch.from_numpy(z / ((z / D).sum() * D))

    def after(comb, k, theta):
        new = losses_at(theta)
        comb.after_step(lambda: new)
        delta = np.log(prev["D"]) - np.log(new.numpy() + 1e-8)
        z = prev["z"]
        adam(st, z * (delta - z @ delta), lr=lr, wd=gamma)
        np.testing.assert_allclose(comb.xi.param.detach().double().numpy(), st["x"], rtol=1e-5, atol=1e-7)

    run_steps(wt.FAMO(lr=lr, weight_decay=gamma), expected, after=after)


def test_famo_without_after_step_updates_from_the_next_losses() -> None:
    comb = wt.FAMO(lr=0.05)
    L1 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    L2 = torch.tensor([0.5, 2.5, 3.0], dtype=torch.float64)
    comb.factors(L1, W)
    comb.update(L1, W)
    comb.factors(L2, W)  # performs the pending update from log L1 − log L2
    xi = comb.xi.param.detach().double().numpy()
    assert xi[0] < 0 < xi[1]  # task 0 improved (its weight falls), task 1 got worse (its weight rises)


def test_stch_three_steps() -> None:
    """STCH: warm-up (one epoch) on the mean log-loss, weights w/L; the epoch's mean losses become the nadir N;
    then weights softmax(log(L/N)/μ)_t / L_t."""
    mu = 0.5
    nadir = torch.tensor([0.8, 1.5, 0.6], dtype=torch.float64)

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return W / L
        u = np.log(L.numpy() / nadir.numpy()) / mu
        s = np.exp(u - u.max()) / np.exp(u - u.max()).sum()
        return torch.from_numpy(s / L.numpy())

    def after(comb, k, theta):
        if k == 0:
            comb.epoch_end(nadir)

    run_steps(wt.STCH(mu=mu, warmup=1), expected, after=after)


def test_gradnorm_three_steps() -> None:
    """GradNorm on the last shared layer W (here the whole θ, a 1×2 matrix): G_t = λ_t‖∇L_t‖, target Ḡ·r_t^α with
    r the loss ratios L/L(0) over their mean; λ ← Adam(λ, sign(G − target)·‖∇L_t‖), clamped ≥ 0, rescaled to sum
    T."""
    alpha, lr = 1.5, 0.1
    st = {"x": np.ones(T), "m": np.zeros(T), "v": np.zeros(T), "k": 0}
    first = {}

    def expected(k: int, L: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        lam = st["x"].copy()
        n = np.linalg.norm(task_grads(theta).numpy(), axis=1)
        if k == 0:
            first["L0"] = L.numpy()
        G = lam * n
        ratio = L.numpy() / first["L0"]
        target = G.mean() * (ratio / ratio.mean()) ** alpha
        x = adam(st, np.sign(G - target) * n, lr=lr)
        x = np.clip(x, 0, None)
        st["x"] = x * T / x.sum()
        return W * torch.from_numpy(lam)

    comb = wt.GradNorm(alpha=alpha, lr=lr)
    theta = torch.tensor([[0.3, -0.4]], dtype=torch.float64, requires_grad=True)
    for k in range(3):
        L = losses_at(theta[0])
        eff = expected(k, L.detach(), theta[0].detach())
        theta.grad = None
        comb.backward(L, (W * L).sum(), [theta], weights=W)
        torch.testing.assert_close(theta.grad[0], eff @ task_grads(theta[0].detach()), rtol=1e-6, atol=1e-9)
        with torch.no_grad():
            theta -= LR * theta.grad
    np.testing.assert_allclose(comb.lam.param.detach().double().numpy(), st["x"], rtol=1e-5)


def test_gradnorm_uses_the_last_shared_matrix() -> None:
    a, b, c = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(
        torch.ones(4))
    assert wt.GradNorm.last_layer([a, b, c]) == [b]


# ---------------------------------------------------------------------- through the Trainer
def _split() -> mtlkit.Split:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    Y = X @ rng.normal(size=(4, 3)) + 0.1 * rng.normal(size=(90, 3))
    Y[rng.random(Y.shape) < 0.25] = np.nan  # missing labels
    return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression").split(test=0.2, val=0.2, seed=0)


def test_trainer_calls_epoch_end_and_after_step(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {"epoch_end": 0, "after_step": 0}
    orig_end, orig_after = wt.DWA.epoch_end, wt.FAMO.after_step

    def end(self, loss):
        seen["epoch_end"] += 1
        assert loss.shape == (3,) and bool(torch.isfinite(loss).all())
        orig_end(self, loss)

    def after(self, recompute):
        seen["after_step"] += 1
        orig_after(self, recompute)

    monkeypatch.setattr(wt.DWA, "epoch_end", end)
    monkeypatch.setattr(wt.FAMO, "after_step", after)
    hp = {"epochs": 3, "patience": 0, "batch_size": 16}
    mtlkit.train("hard-share+dwa", _split(), hparams=hp, seed=0, device="cpu")
    mtlkit.train("hard-share+famo", _split(), hparams=hp, seed=0, device="cpu")
    assert seen["epoch_end"] == 3 and seen["after_step"] >= 3


@pytest.mark.parametrize("name", ["famo", "uw", "stch"])
def test_weighting_run_resumes_bitwise(tmp_path, name: str) -> None:
    """Learned weights, their Adam moments and the epoch state travel in the checkpoint."""
    hp = {"epochs": 4, "lr": 1e-2, "patience": 0, "batch_size": 16}
    if name == "stch":
        hp["stch_warmup"] = 1
    method = f"hard-share+{name}"
    split = _split()
    a, b = straight_and_resumed(method, split, hp, tmp_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_weighting_is_listed_and_ew_is_hard_share() -> None:
    assert {"ew", "uw", "dwa", "rlw", "gls", "famo", "stch", "gradnorm", "excess-mtl", "db-mtl"} <= {
        n for n, s in COMBINERS.items() if s.kind == "weighting"}
    hp = {"epochs": 2, "patience": 0}
    a = mtlkit.train("hard-share", _split(), hparams=hp, seed=0, device="cpu")
    b = mtlkit.train("hard-share+ew", _split(), hparams=hp, seed=0, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                 strict=True))
    assert math.isclose(make_combiner("stch", {"stch_mu": 0.3}).mu, 0.3)
