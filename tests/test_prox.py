"""TOMATO's proximal operators (Eq. 9-12) against independent solvers, brute force and their properties.

The operators under test are ``prox_element(θ, s) = argmin_x ½‖x − θ‖² + s·Σ_g‖x_g‖`` (Eq. 3, 9, 10) and
``prox_exclusive(θ, s) = argmin_x ½‖x − θ‖² + s·½Σ_k(Σ_t‖x_kt‖)²`` (Eq. 4, 9, 11, 12), s = λ·r. The references
below never use the sort / prefix-sum / max of Algorithm 1:

* a generic smooth solver (SLSQP) on the variational ("η-trick") form of each penalty,
  ``‖x‖ = min_{η>0} ‖x‖²/(2η) + η/2`` and ``(Σ_t‖x_t‖)² = min_{η∈Δ} Σ_t ‖x_t‖²/η_t``, which for fixed η has a
  closed-form x and leaves a smooth convex problem in η;
* the Moreau decomposition ``prox_{sf}(v) = v − s·prox_{f*/s}(v/s)`` with the conjugate ``½(max_t‖y_t‖)²`` of
  ``½(Σ_t‖x_t‖)²``, whose prox is one scalar monotone equation (solved by bisection/Brent);
* the subdifferential optimality (KKT) conditions of Eq. 9, checked on our output;
* brute force over all task subsets for the threshold of Eq. 12.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize, minimize_scalar
from torch import nn

from mtlkit.optim import prox_element, prox_exclusive
from mtlkit.optim.prox import (
    element_factor,
    exclusive_factor,
    exclusive_threshold,
    group_prox_step,
    prox_element_,
    prox_exclusive_,
)

SEEDS = range(6)


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """θ [K, T, n] with K ≤ 3, T ≤ 6, n ≤ 4, task norms of different scales, and a step in [1e-3, 10]."""
    K, T, n = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
    theta = rng.normal(size=(K, T, n)) * rng.uniform(0.05, 3.0, size=(K, T, 1))
    step = float(10 ** rng.uniform(-3, 1))
    return theta, step


def _cases(n_per_seed: int = 15) -> list[tuple[np.ndarray, float]]:
    out = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        out.extend(_random_case(rng) for _ in range(n_per_seed))
    return out


def _np(fn, theta: np.ndarray, step: float) -> np.ndarray:
    return fn(torch.from_numpy(theta), step).numpy()


# ----------------------------------------------------------------------------------------------- objectives
def _obj_element(x: np.ndarray, theta: np.ndarray, step: float) -> float:
    return 0.5 * float(((x - theta) ** 2).sum()) + step * float(np.linalg.norm(x, axis=-1).sum())


def _obj_exclusive(x: np.ndarray, theta: np.ndarray, step: float) -> float:
    """Eq. 9 × λr with Ω^ex of Eq. 4 (½ included), x and θ of one topic [T, n]."""
    return 0.5 * float(((x - theta) ** 2).sum()) + 0.5 * step * float(np.linalg.norm(x, axis=-1).sum()) ** 2


# ------------------------------------------------------------------------------------- independent solvers
def _solve_element_group(theta_g: np.ndarray, step: float) -> np.ndarray:
    """min_x ½‖x−θ‖² + s‖x‖ via ‖x‖ = min_η ‖x‖²/(2η) + η/2: x = θ·η/(η+s), F(η) = ½a²s/(η+s) + sη/2,
    minimised by bounded Brent on [0, ‖θ‖]."""
    a2 = float((theta_g**2).sum())
    a = math.sqrt(a2)
    if a == 0.0:
        return np.zeros_like(theta_g)
    res = minimize_scalar(
        lambda e: 0.5 * a2 * step / (e + step) + 0.5 * step * e,
        bounds=(0.0, a),
        method="bounded",
        options={"xatol": 1e-14},
    )
    eta = float(res.x)
    return theta_g * eta / (eta + step)


def _solve_element_moreau(theta: np.ndarray, step: float) -> np.ndarray:
    """prox_{s‖·‖}(v) = v − P_{‖·‖≤s}(v) (Moreau with the conjugate = indicator of the dual ball)."""
    a = np.linalg.norm(theta, axis=-1, keepdims=True)
    proj = theta * np.minimum(1.0, step / np.where(a > 0, a, 1.0))
    return theta - proj


def _solve_exclusive_slsqp(theta: np.ndarray, step: float) -> np.ndarray:
    """One topic [T, n]: ½(Σ_t a_t)² = min_{η∈Δ} ½Σ a_t²/η_t; for fixed η, x_t = θ_t·η_t/(η_t+s) and the value
    is F(η) = ½ Σ ‖θ_t‖²·s/(η_t+s), smooth and convex on the simplex: a generic SLSQP solve."""
    a2 = (theta**2).sum(-1)
    T = a2.shape[0]
    res = minimize(
        lambda e: 0.5 * float(np.sum(a2 * step / (e + step))),
        np.full(T, 1.0 / T),
        jac=lambda e: -0.5 * a2 * step / (e + step) ** 2,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * T,
        constraints=[{"type": "eq", "fun": lambda e: e.sum() - 1.0, "jac": lambda e: np.ones((1, T))}],
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    eta = np.clip(res.x, 0.0, 1.0)
    return theta * (eta / (eta + step))[:, None]


def _solve_exclusive_moreau(theta: np.ndarray, step: float) -> np.ndarray:
    """One topic [T, n] through the conjugate g(y) = ½(max_t‖y_t‖)²: prox_{g/s}(w) clips every y_t to a radius
    ρ that solves ρ/s = Σ_t (‖w_t‖ − ρ)₊ (monotone; Brent), and x = v − s·prox_{g/s}(v/s)."""
    a = np.linalg.norm(theta, axis=-1)
    w = a / step
    if w.max() == 0.0:
        return np.zeros_like(theta)
    rho = brentq(
        lambda r: r / step - np.maximum(w - r, 0.0).sum(),
        0.0,
        float(w.max()),
        xtol=1e-300,
        rtol=4 * np.finfo(float).eps,
    )
    y = (theta / step) * np.minimum(1.0, rho / np.where(w > 0, w, 1.0))[:, None]
    return theta - step * y


# ------------------------------------------------------------------------------ agreement with the solvers
def test_element_equals_independent_minimiser():
    for theta, step in _cases():
        ours = _np(prox_element, theta, step)
        flat = theta.reshape(-1, theta.shape[-1])
        ref = np.stack([_solve_element_group(g, step) for g in flat]).reshape(theta.shape)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(ours, _solve_element_moreau(theta, step), rtol=0, atol=1e-12)
        assert _obj_element(ours, theta, step) <= _obj_element(ref, theta, step) + 1e-9


def test_exclusive_equals_generic_solver_minimiser():
    for theta, step in _cases():
        ours = _np(prox_exclusive, theta, step)
        for k in range(theta.shape[0]):
            ref = _solve_exclusive_slsqp(theta[k], step)
            np.testing.assert_allclose(ours[k], ref, rtol=0, atol=1e-5)
            assert _obj_exclusive(ours[k], theta[k], step) <= _obj_exclusive(ref, theta[k], step) + 1e-9


def test_exclusive_equals_moreau_dual_solution():
    for theta, step in _cases():
        ours = _np(prox_exclusive, theta, step)
        for k in range(theta.shape[0]):
            np.testing.assert_allclose(ours[k], _solve_exclusive_moreau(theta[k], step), rtol=0, atol=1e-10)


def test_outputs_satisfy_the_optimality_conditions_of_eq9():
    """0 ∈ x − θ + s·∂Ω(x): for Ω^el, x_g ≠ 0 ⇒ x_g − θ_g + s·x_g/‖x_g‖ = 0, x_g = 0 ⇒ ‖θ_g‖ ≤ s;
    for Ω^ex with σ = Σ_t‖x_t‖, x_t ≠ 0 ⇒ x_t − θ_t + s·σ·x_t/‖x_t‖ = 0, x_t = 0 ⇒ ‖θ_t‖ ≤ s·σ."""
    for theta, step in _cases():
        el = _np(prox_element, theta, step)
        ex = _np(prox_exclusive, theta, step)
        a = np.linalg.norm(theta, axis=-1)
        for x, coef in ((el, np.full(theta.shape[:-1], step)), (ex, None)):
            xn = np.linalg.norm(x, axis=-1)
            if coef is None:
                coef = np.broadcast_to(step * xn.sum(-1, keepdims=True), xn.shape)
            on = xn > 0
            resid = x - theta + coef[..., None] * x / np.where(on, xn, 1.0)[..., None]
            assert np.abs(resid[on]).max(initial=0.0) < 1e-12
            assert np.all(a[~on] <= coef[~on] + 1e-12)


# ------------------------------------------------------------------------------------- Eq. 12 brute force
@pytest.mark.parametrize("seed", SEEDS)
def test_exclusive_threshold_equals_brute_force_over_task_subsets(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        T = int(rng.integers(1, 7))
        a = rng.uniform(0.0, 3.0, size=T) * (rng.uniform(size=T) > 0.2)  # some zero norms
        lam, lr = float(10 ** rng.uniform(-2, 1)), float(10 ** rng.uniform(-1, 0.5))
        step = lam * lr
        ours = float(exclusive_threshold(torch.from_numpy(a), step))
        subsets = [s for m in range(1, T + 1) for s in itertools.combinations(range(T), m)]
        # Eq. 12 literally: the maximum "diluted average" Σ_{T'} a / (1/(λr) + |T'|) over every non-empty subset.
        eq12 = max(sum(a[list(s)]) / (1.0 / (lam * lr) + len(s)) for s in subsets)
        assert ours == pytest.approx(eq12, rel=1e-12, abs=1e-15)
        # KKT closed form: an active set S with threshold A_S = s·Σ_S a / (1 + s|S|) is consistent iff
        # a_t ≥ A_S on S and a_t ≤ A_S off S; every consistent set gives the same A, which is ours.
        consistent = []
        for s in [(), *subsets]:
            A = step * sum(a[list(s)]) / (1.0 + step * len(s))
            off = [t for t in range(T) if t not in s]
            if all(a[t] >= A - 1e-13 for t in s) and all(a[t] <= A + 1e-13 for t in off):
                consistent.append(A)
        assert consistent
        np.testing.assert_allclose(consistent, ours, rtol=1e-12, atol=1e-15)
        # and the operator shrinks every surviving norm by exactly A (Eq. 11).
        theta = torch.from_numpy(rng.normal(size=(T, 3)))
        theta = theta / theta.norm(dim=-1, keepdim=True) * torch.from_numpy(a)[:, None]
        out_norm = prox_exclusive(theta, step).norm(dim=-1).numpy()
        np.testing.assert_allclose(out_norm, np.maximum(a - ours, 0.0), rtol=0, atol=1e-12)


def test_exclusive_threshold_scaling_of_lambda_matches_eq12_not_the_unhalved_penalty():
    """Eq. 12's 1/(λr) (not 1/(2λr)) is the prox of λr·½(Σ‖θ‖)²: for one task A = a·s/(1+s)."""
    a, s = 2.0, 0.5
    out = prox_exclusive(torch.tensor([[[a, 0.0]]], dtype=torch.float64), s)
    assert float(out[0, 0, 0]) == pytest.approx(a - a * s / (1 + s), rel=1e-14)  # = a/(1+s)


# ------------------------------------------------------------------------------------------- edge cases
def test_vanishing_step_is_the_identity():
    for theta, _ in _cases(5):
        t = torch.from_numpy(theta)
        for fn in (prox_element, prox_exclusive):
            # the shrinkage is ≤ s (element) or ≤ s·Σ_t‖θ_t‖ (exclusive): ~1e-11 here
            torch.testing.assert_close(fn(t, 1e-12), t, rtol=0, atol=1e-10)
            assert torch.equal(fn(t, 0.0), t)


def test_exclusive_never_zeroes_the_largest_task_of_a_topic():
    rng = np.random.default_rng(7)
    for _ in range(50):
        theta = torch.from_numpy(rng.normal(size=(3, 6, 4)) * rng.uniform(1e-3, 10, size=(3, 6, 1)))
        for step in (1e-3, 1.0, 10.0, 1e3, 1e6):
            norms = prox_exclusive(theta, step).norm(dim=-1)
            top = theta.norm(dim=-1).argmax(dim=-1, keepdim=True)
            assert torch.all(norms.gather(-1, top) > 0)
    # float32, moderate steps
    theta32 = torch.randn(4, 8, 5, generator=torch.Generator().manual_seed(0))
    norms32 = prox_exclusive(theta32, 100.0).norm(dim=-1)
    assert torch.all(norms32.gather(-1, theta32.norm(dim=-1).argmax(-1, keepdim=True)) > 0)
    # λ → ∞ (step = inf): the paper's limit, everything zeroed, no NaN.
    assert torch.equal(prox_exclusive(theta32, math.inf), torch.zeros_like(theta32))


@pytest.mark.parametrize("eps", [None, 1e-4])
def test_all_zero_input_gives_zeros_without_nan(eps):
    for shape in ((3, 4), (2, 3, 4), (1, 1, 1)):
        z = torch.zeros(shape, dtype=torch.float64)
        for fn in (prox_element, prox_exclusive):
            for step in (0.0, 1e-3, 1.0):
                out = fn(z, step, eps)
                assert torch.equal(out, z) and not out.isnan().any()
    # a zero group next to live ones
    theta = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]], dtype=torch.float64)
    for fn in (prox_element, prox_exclusive):
        out = fn(theta, 0.1, eps)
        assert torch.isfinite(out).all() and torch.equal(out[0, 0], torch.zeros(2, dtype=torch.float64))


def test_element_zeroes_exactly_the_groups_with_norm_at_most_step():
    step = 0.75
    norms = torch.tensor([0.0, 0.5, 0.75, 0.75 * (1 + 1e-12), 0.76, 2.0], dtype=torch.float64)
    rng = np.random.default_rng(3)
    for _ in range(10):
        d = torch.from_numpy(rng.normal(size=(6, 3)))
        theta = d / d.norm(dim=-1, keepdim=True) * norms[:, None]
        theta[2] = torch.tensor([0.75, 0.0, 0.0], dtype=torch.float64)  # ‖θ‖ == step exactly
        out_norm = prox_element(theta, step).norm(dim=-1)
        assert torch.equal(out_norm == 0, torch.tensor([True, True, True, False, False, False]))
        torch.testing.assert_close(out_norm, (norms - step).clamp_min(0), rtol=0, atol=1e-14)
    # and for random data, zero ⇔ ‖θ_g‖ ≤ step
    for theta, step in _cases(5):
        t = torch.from_numpy(theta)
        zero = prox_element(t, step).norm(dim=-1) == 0
        assert torch.equal(zero, t.norm(dim=-1) <= step)


# ------------------------------------------------------------------------------------------ properties
def test_non_expansive():
    rng = np.random.default_rng(11)
    for _ in range(100):
        K, T, n = rng.integers(1, 4), rng.integers(1, 7), rng.integers(1, 5)
        a = torch.from_numpy(rng.normal(size=(K, T, n)) * 2)
        b = a + torch.from_numpy(rng.normal(size=(K, T, n)) * 10 ** rng.uniform(-3, 0))
        step = float(10 ** rng.uniform(-3, 1))
        for fn in (prox_element, prox_exclusive):
            assert (fn(a, step) - fn(b, step)).norm() <= (a - b).norm() * (1 + 1e-12)


def test_permutation_equivariance():
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    perm = torch.randperm(6, generator=g)
    for fn in (prox_element, prox_exclusive):
        torch.testing.assert_close(fn(theta[:, perm], 0.4), fn(theta, 0.4)[:, perm], rtol=0, atol=0)
    topics = torch.randperm(3, generator=g)
    torch.testing.assert_close(prox_exclusive(theta[topics], 0.4), prox_exclusive(theta, 0.4)[topics])


def test_scaling_and_rotation_equivariance():
    """Ω^ex is 2-homogeneous, so prox_ex(cθ) = c·prox_ex(θ); Ω^el is 1-homogeneous: prox_el,s(cθ) =
    c·prox_el,s/c(θ); both commute with an orthogonal map Q applied to every group vector."""
    g = torch.Generator().manual_seed(6)
    theta = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    for c in (0.1, 3.0, 50.0):
        torch.testing.assert_close(prox_exclusive(c * theta, 0.3), c * prox_exclusive(theta, 0.3))
        torch.testing.assert_close(prox_element(c * theta, 0.3), c * prox_element(theta, 0.3 / c))
    for fn in (prox_element, prox_exclusive):
        torch.testing.assert_close(fn(theta @ Q, 0.3), fn(theta, 0.3) @ Q)


def test_batched_over_topics_equals_per_topic_calls():
    g = torch.Generator().manual_seed(8)
    theta = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64)  # [..., K, T, n] with extra batch axis
    steps = torch.tensor([0.05, 0.5, 5.0], dtype=torch.float64)  # one step per topic
    batched = prox_exclusive(theta, 0.5)
    per_step = prox_exclusive(theta, steps)
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(batched[b, k], prox_exclusive(theta[b, k], 0.5), rtol=0, atol=0)
            torch.testing.assert_close(per_step[b, k], prox_exclusive(theta[b, k], float(steps[k])))
            for t in range(6):  # element: every group on its own
                torch.testing.assert_close(prox_element(theta, 0.5)[b, k, t], prox_element(theta[b, k, t], 0.5))


def test_dtype_device_new_tensor_and_in_place_variants():
    theta = torch.randn(2, 4, 3)
    keep = theta.clone()
    for fn, fn_ in ((prox_element, prox_element_), (prox_exclusive, prox_exclusive_)):
        out = fn(theta, 0.2)
        assert out.dtype == theta.dtype and out.device == theta.device and out.shape == theta.shape
        assert out.data_ptr() != theta.data_ptr() and torch.equal(theta, keep)
        t2 = theta.clone()
        assert fn_(t2, 0.2) is t2
        torch.testing.assert_close(t2, out, rtol=0, atol=0)
    # float32 agrees with float64 to float32 precision
    torch.testing.assert_close(prox_exclusive(theta, 0.2).double(), prox_exclusive(theta.double(), 0.2))
    # a Tensor step works the same as a float
    torch.testing.assert_close(prox_exclusive(theta, torch.tensor(0.2)), prox_exclusive(theta, 0.2))


def test_mtsem_eps_option():
    g = torch.Generator().manual_seed(9)
    theta = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    step = 1.2
    eps = 1e-4 * step
    a = theta.norm(dim=-1, keepdim=True)
    el = (1 - step / (a + eps)).clamp(0, 1) * theta
    torch.testing.assert_close(prox_element(theta, step, eps), el, rtol=0, atol=1e-14)
    A = exclusive_threshold(a.squeeze(-1), step)[:, None, None]
    ex = torch.relu(a - A) / (a + eps) * theta
    torch.testing.assert_close(prox_exclusive(theta, step, eps), ex, rtol=0, atol=1e-14)
    for fn in (prox_element, prox_exclusive):  # within O(eps/‖θ‖) of the exact prox
        assert (fn(theta, step, eps) - fn(theta, step)).abs().max() < 1e-3


def test_input_validation():
    with pytest.raises(ValueError):
        prox_element(torch.ones(2, 3), -0.1)
    with pytest.raises(ValueError):
        prox_exclusive(torch.ones(2, 3), float("nan"))
    with pytest.raises(ValueError):
        prox_exclusive(torch.ones(3), 0.1)
    with pytest.raises(TypeError):
        prox_element(torch.ones(2, 3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError):
        element_factor(torch.ones(2), 0.1, eps=-1.0)
    assert exclusive_factor(torch.zeros(2, 0), 0.5).shape == (2, 0)


# ------------------------------------------------------------------------------------ Trainer hook factory
class _TopicTask(nn.Module):
    def __init__(self, K: int = 2, T: int = 5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(10)
        self.w = nn.Parameter(torch.randn(K, T, 3, 2, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(K, T, 2, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["element", "exclusive"])
@pytest.mark.parametrize("eps_rel", [None, 1e-4])
def test_group_prox_step_equals_prox_of_the_concatenated_group(kind, eps_rel):
    m = _TopicTask()
    lam, lr = 0.3, 2.0
    flat = torch.cat([m.w.detach().reshape(2, 5, -1), m.b.detach().reshape(2, 5, -1)], dim=-1)
    fn = prox_element if kind == "element" else prox_exclusive
    expected = fn(flat, lam * lr, None if eps_rel is None else eps_rel * lam * lr)
    step = group_prox_step(lambda mod: [mod.w, mod.b], kind, lam, eps_rel=eps_rel)
    with torch.no_grad():
        step(m, lr)
    got = torch.cat([m.w.detach().reshape(2, 5, -1), m.b.detach().reshape(2, 5, -1)], dim=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    assert m.w.requires_grad and isinstance(m.w, nn.Parameter)


def test_group_prox_step_noop_and_errors():
    m = _TopicTask()
    before = m.w.detach().clone()
    group_prox_step(lambda mod: [mod.w, mod.b], "exclusive", 0.0)(m, 0.1)
    assert torch.equal(m.w.detach(), before)
    with pytest.raises(ValueError):
        group_prox_step(lambda mod: [mod.w, mod.b[:1]], "element", 1.0)(m, 0.1)
    with pytest.raises(ValueError):
        group_prox_step(lambda mod: [mod.w], "lasso", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        group_prox_step(lambda mod: [mod.w], "exclusive", 1.0, group_ndim=0)
