"""Figs. 3 and 8 of the transfer reproduction: MTL − STL on the synthetic construction against the source task's
rows and against the cosine distance of the two tasks' models, batched over every setting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtlkit.experiments.reproduce.transfer.base import SEED
from mtlkit.experiments.reproduce.transfer.data import covariance_construction, unit_with_cosine
from mtlkit.experiments.reproduce.transfer.solvers import fit_shared_gd, linear_mtl_als, predict_shared


@dataclass
class Fig3Result:
    """Relative validation MSE of target task 1, MTL with each source (2/3/4) vs STL, per source size and repeat."""

    sizes: list[int]
    sources: tuple[int, ...]
    mtl: np.ndarray  # [S, sizes, repeats]
    stl: np.ndarray  # [repeats]
    target_rows: int
    construction: str
    noise: float = 0.0


def fig3_experiment(target_rows: int = 50, sizes: Sequence[int] = (50, 100, 200, 500, 1000, 2000, 5000, 9000),
                    repeats: int = 5, d: int = 100, kappa: float = 100.0, noise: float = 0.0, val_rows: int = 1000,
                    order: str = "RDQ", seed: int = SEED, cos: float = 0.96) -> Fig3Result:
    """Fig. 3: target task 1 (``target_rows`` rows) trained alone (least squares, minimum norm) and with one source
    task of each kind and size (Eq. 3, r = 1, `linear_mtl_als`); relative validation MSE ``‖ŷ − y‖²/‖y‖²`` on
    noiseless validation rows. ``noise``: label noise σ as a fraction of task 1's signal standard deviation
    ``√(θ_1ᵀ Σ_1 θ_1)`` (0 = the paper's noiseless example), the same σ for every task. ``cos``: cos(θ_1, θ_2)
    (the paper's 0.96; 1 makes the sources' model task 1's own, a check of the construction)."""
    sources = (2, 3, 4)
    sizes = [int(s) for s in sizes]
    G, b, Xv, yv, stl = [], [], [], [], []
    for rep in range(repeats):
        cons = covariance_construction(d=d, kappa=kappa, seed=seed + rep, order=order, cos=cos)
        rng = np.random.default_rng(10_000 + seed + rep)
        sigma = noise * float(np.sqrt(cons.theta[0] @ cons.covariance(1) @ cons.theta[0]))
        X1, y1 = cons.sample(1, target_rows, rng, sigma)
        X1v, y1v = cons.sample(1, val_rows, rng, 0.0)
        th = np.linalg.lstsq(X1, y1, rcond=None)[0]
        stl.append(np.sum((X1v @ th - y1v) ** 2) / np.sum(y1v ** 2))
        Xv.append(X1v)
        yv.append(y1v)
        for s in sources:
            Xs_, ys_ = cons.sample(s, max(sizes), rng, sigma)
            for m in sizes:  # nested prefixes: more source rows extend the smaller source sets
                G.append(np.stack([X1.T @ X1, Xs_[:m].T @ Xs_[:m]]))
                b.append(np.stack([X1.T @ y1, Xs_[:m].T @ ys_[:m]]))
    Bt, at = linear_mtl_als(torch.as_tensor(np.stack(G)), torch.as_tensor(np.stack(b)))
    w1 = (Bt * at[:, :1]).numpy().reshape(repeats, len(sources), len(sizes), d)  # B a_1: task 1's model
    mtl = np.empty((len(sources), len(sizes), repeats))
    for rep in range(repeats):
        pred = np.einsum("nd,sjd->sjn", Xv[rep], w1[rep])
        mtl[:, :, rep] = ((pred - yv[rep]) ** 2).sum(-1) / np.sum(yv[rep] ** 2)
    return Fig3Result(sizes, sources, mtl, np.asarray(stl), target_rows, order, noise)


FIG8_SETTINGS = (("linear", "regression"), ("linear", "classification"), ("relu", "regression"),
                 ("relu", "classification"))
RELU_CLASS_THRESHOLD = 0.5


@dataclass
class Fig8Result:
    """Task-averaged validation metric (Spearman ρ for regression, accuracy % for classification) of MTL and STL
    per setting, cosine distance and repeat."""

    distances: list[float]
    settings: tuple[tuple[str, str], ...]
    mtl: np.ndarray  # [settings, distances, repeats]
    stl: np.ndarray
    rows: int


def _fig8_labels(z: np.ndarray, act: str, task: str, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Labels from the linear scores ``z = Xθ``: ``g(z) + σε`` (regression) or a thresholded score
    (classification: sigmoid(z) > 0.5 for linear; ReLU(z) > 0.5 for ReLU, since sigmoid(ReLU(z)) ≥ 0.5 always)."""
    g = np.maximum(z, 0.0) if act == "relu" else z
    if task == "regression":
        return g + noise * rng.normal(size=z.shape)
    return (g > (RELU_CLASS_THRESHOLD if act == "relu" else 0.0)).astype(np.float64)


def fig8_experiment(distances: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0), rows: int = 150,
                    repeats: int = 3, d: int = 100, noise: float = 0.5, val_rows: int = 1000, steps: int = 600,
                    seed: int = SEED) -> Fig8Result:
    """Fig. 8: two tasks with x ~ N(0, I_d), unit models with ``1 − cos(θ_1, θ_2)`` = each distance; MTL (r = 1,
    both tasks) vs STL (each task alone, same model) trained by `fit_shared_gd`; metric on fresh validation rows."""
    from scipy.stats import spearmanr

    dist = [float(x) for x in distances]
    if any(not 0.0 <= x <= 2.0 for x in dist):
        raise ValueError(f"cosine distances must lie in [0, 2], got {dist}")
    S, Dn = len(FIG8_SETTINGS), len(dist)
    mtl = np.empty((S, Dn, repeats))
    stl = np.empty((S, Dn, repeats))
    for si, (act, task) in enumerate(FIG8_SETTINGS):
        X, y, Xv, yv = [], [], [], []
        for j, dd in enumerate(dist):
            for rep in range(repeats):
                rng = np.random.default_rng([seed, si, j, rep])
                t1 = rng.normal(size=d)
                t1 /= np.linalg.norm(t1)
                thetas = (t1, unit_with_cosine(t1, 1.0 - dd, rng))
                Xp = rng.normal(size=(2, rows, d))
                Xq = rng.normal(size=(2, val_rows, d))
                X.append(Xp)
                Xv.append(Xq)
                y.append(np.stack([_fig8_labels(Xp[k] @ thetas[k], act, task, noise, rng) for k in range(2)]))
                yv.append(np.stack([_fig8_labels(Xq[k] @ thetas[k], act, task, 0.0, rng) for k in range(2)]))
        Xt, yt = torch.as_tensor(np.stack(X)), torch.as_tensor(np.stack(y))
        Xvt = torch.as_tensor(np.stack(Xv))
        P = Xt.shape[0]
        mask = torch.ones_like(yt, dtype=torch.bool)
        fits = {"mtl": fit_shared_gd(Xt, yt, mask, act, task, steps),
                "stl": fit_shared_gd(Xt.reshape(2 * P, 1, rows, d), yt.reshape(2 * P, 1, rows),
                                     mask.reshape(2 * P, 1, rows), act, task, steps)}
        for name, (B, a, c) in fits.items():
            if name == "stl":
                pred = predict_shared(Xvt.reshape(2 * P, 1, val_rows, d), B, a, c, act).reshape(P, 2, val_rows)
            else:
                pred = predict_shared(Xvt, B, a, c, act)
            pred_np = pred.numpy()
            score = np.empty((P, 2))
            for p in range(P):  # reporting only
                for k in range(2):
                    if task == "regression":
                        score[p, k] = spearmanr(pred_np[p, k], yv[p][k]).statistic
                    else:
                        score[p, k] = 100.0 * np.mean((pred_np[p, k] > 0) == (yv[p][k] > 0.5))
            (mtl if name == "mtl" else stl)[si] = np.nan_to_num(score.mean(1), nan=0.0).reshape(Dn, repeats)
    return Fig8Result(dist, FIG8_SETTINGS, mtl, stl, rows)
