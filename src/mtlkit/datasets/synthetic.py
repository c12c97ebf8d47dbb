"""`tomato-synthetic`: TOMATO's synthetic within-topic task-sparsity data (Zhang & Lee, CIKM'20, §5.1).

Recipe (numpy only, one ``np.random.default_rng(seed)`` drawn in the order below, so a seed fixes everything):

1. shared weight ``w0 ~ N(0, σ_w0²)``, shape [d, p];
2. topic centres ``e_k ~ N(0, σ_x0²)``, shape [K, d] (the paper's σ_e; the published generator uses σ_x0);
3. for each topic k, ``special_per_topic`` tasks are drawn without replacement from [T]; their
   ``w^s_kt ~ N(0, σ_wg²)`` [d, p], all other ``w^s_kt`` are exactly 0;
4. the non-linearity's scalars ``α_j, β_j ~ N(0, σ_nl²)`` for ``j < nonlinear_dim``;
5. per task t: ``x ~ N(0, σ_x0² I)`` [n, d] (no clusters), topic weights
   ``h(x) = softmax_k(+‖x − e_k‖² / σ_xg²)``, ``ȳ = Σ_k h_k(x) · x (w0 + w^s_kt)`` [n, p], label noise
   ``ε ~ N(0, σ_y²)`` [n, p] and soft labels ``y = softmax(ȳ + Σ_j sin(α_j ȳ + β_j) + ε)``.

Decisions on the paper's and the published code's oddities (see METHOD_NOTES §1):

- The topic weight uses **+**‖x − e_k‖², as the paper's formula and the published generator do. Distances
  are large (about 2d), so h is essentially one-hot on the *farthest* centre. ``negative_distance=True``
  gives the nearest-centre variant (the authors' later fix).
- The sine is applied per output: ``α_j, β_j`` are scalars and output c gets ``Σ_j sin(α_j ȳ_c + β_j)``.
  The published code adds the whole ``nonlinear_dim``-vector β inside every term (output c gets
  ``Σ_j sin(α_j ȳ_c + β_c)``), which works only because p = nonlinear_dim = 5; we do not reproduce that.
- The paper writes ``ȳ = softmax(...)`` then ``y = β(ȳ)``; like the published code we apply the non-linearity
  and the noise to the linear output and the softmax last, so labels are distributions (argmax = class).

The loader registered as ``tomato-synthetic`` returns only the data; call :func:`tomato_synthetic` for the
ground truth (:class:`SyntheticTruth`) as well, e.g. to rank-correlate ``‖w^s_kt‖`` with learned ``‖θˢ_kt‖``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData


@dataclass(frozen=True)
class SyntheticTruth:
    """The generating parameters of a :func:`tomato_synthetic` draw.

    ``w0`` [d, p]; ``ws`` [K, T, d, p] (zero unless ``special[k, t]``); ``centres`` [K, d]; ``special``
    [K, T] bool; ``ws_norm`` [K, T] Frobenius norms ‖w^s_kt‖; ``alpha``, ``beta`` [nonlinear_dim];
    ``params`` the keyword arguments the data were generated with.
    """

    w0: np.ndarray
    ws: np.ndarray
    centres: np.ndarray
    special: np.ndarray
    ws_norm: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def _softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis, shifted by the maximum for stability."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topic_weights(x: np.ndarray, centres: np.ndarray, sigma_xg: float, negative_distance: bool = False) -> np.ndarray:
    """h(x) [n, K] = softmax_k(±‖x − e_k‖² / σ_xg²); the sign is + (the paper's) unless ``negative_distance``."""
    d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    sign = -1.0 if negative_distance else 1.0
    return _softmax(sign * d2 / sigma_xg**2)


def tomato_synthetic(
    T: int = 12,
    K: int = 4,
    special_per_topic: int = 3,
    d: int = 64,
    p: int = 5,
    n_per_task: int = 2000,
    sigma_w0: float = 1.0,
    sigma_wg: float = 0.5,
    sigma_x0: float = 1.0,
    sigma_xg: float = 1.0,
    sigma_y: float = 1.0,
    sigma_nl: float = 0.01,
    nonlinear_dim: int = 5,
    negative_distance: bool = False,
    seed: int = 2019,
) -> tuple[MultiTaskData, SyntheticTruth]:
    """TOMATO's synthetic data set and its ground truth; the defaults are the paper run's.

    Returns ``T`` distribution-kind tasks with ``n_per_task`` rows of ``d`` features and soft labels over
    ``p`` classes, plus a :class:`SyntheticTruth`. See the module docstring for the recipe and the decisions
    on the sign of the topic distance and the sine non-linearity.
    """
    if not 0 <= special_per_topic <= T:
        raise ValueError(f"special_per_topic must be in [0, T={T}], got {special_per_topic}")
    if min(T, K, d, p, n_per_task) < 1 or nonlinear_dim < 0:
        raise ValueError("T, K, d, p and n_per_task must be positive and nonlinear_dim non-negative")
    params: dict[str, Any] = dict(
        T=T, K=K, special_per_topic=special_per_topic, d=d, p=p, n_per_task=n_per_task, sigma_w0=sigma_w0,
        sigma_wg=sigma_wg, sigma_x0=sigma_x0, sigma_xg=sigma_xg, sigma_y=sigma_y, sigma_nl=sigma_nl,
        nonlinear_dim=nonlinear_dim, negative_distance=negative_distance, seed=seed)
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0.0, sigma_w0, size=(d, p))
    centres = rng.normal(0.0, sigma_x0, size=(K, d))
    special = np.zeros((K, T), dtype=bool)
    ws = np.zeros((K, T, d, p))
    for k in range(K):
        chosen = rng.choice(T, size=special_per_topic, replace=False)
        special[k, chosen] = True
        for t in np.sort(chosen):
            ws[k, t] = rng.normal(0.0, sigma_wg, size=(d, p))
    alpha = rng.normal(0.0, sigma_nl, size=nonlinear_dim)
    beta = rng.normal(0.0, sigma_nl, size=nonlinear_dim)

    Xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for t in range(T):
        x = rng.normal(0.0, sigma_x0, size=(n_per_task, d))
        h = topic_weights(x, centres, sigma_xg, negative_distance)  # [n, K]
        per_topic = np.einsum("nd,kdp->nkp", x, w0[None] + ws[:, t])  # x (w0 + w^s_kt) for every topic
        y_bar = np.einsum("nk,nkp->np", h, per_topic)
        z = y_bar + np.sin(alpha[:, None, None] * y_bar[None] + beta[:, None, None]).sum(0)
        z = z + rng.normal(0.0, sigma_y, size=z.shape)
        Xs.append(x)
        ys.append(_softmax(z))

    truth = SyntheticTruth(w0=w0, ws=ws, centres=centres, special=special,
                           ws_norm=np.sqrt((ws**2).sum(axis=(2, 3))), alpha=alpha, beta=beta, params=params)
    sign = "-" if negative_distance else "+"
    notes = [
        f"TOMATO synthetic (CIKM'20 §5.1): T={T} tasks, K={K} topics, {special_per_topic} special tasks per topic, "
        f"d={d}, p={p}, {n_per_task} rows per task, seed {seed}",
        f"x ~ N(0, {sigma_x0}^2 I); centres e_k ~ N(0, {sigma_x0}^2); h = softmax_k({sign}||x - e_k||^2 / "
        f"{sigma_xg}^2)" + ("" if negative_distance else " (the paper's sign: h is ~one-hot on the farthest centre)"),
        f"w0 ~ N(0, {sigma_w0}^2) [d, p]; w^s_kt ~ N(0, {sigma_wg}^2) for the special tasks, 0 otherwise; "
        "ybar = sum_k h_k x (w0 + w^s_kt)",
        f"y = softmax(ybar + sum_(j<{nonlinear_dim}) sin(a_j ybar + b_j) + N(0, {sigma_y}^2)), a_j, b_j ~ "
        f"N(0, {sigma_nl}^2) scalars applied per output; soft labels, argmax is the class",
    ]
    data = MultiTaskData.from_tasks(Xs, ys, kind="distribution", names=[f"task{t}" for t in range(T)],
                                    n_classes=p, name="tomato-synthetic", notes=notes)
    return data, truth


def load_tomato_synthetic(**kwargs: Any) -> MultiTaskData:
    """The data of :func:`tomato_synthetic` alone (keyword arguments pass through); the truth is dropped."""
    return tomato_synthetic(**kwargs)[0]
