"""The transfer reproduction's data generators: the R_i Q_i D_i covariance construction of §2.3 (random rotations,
models at a chosen cosine), the label-noise digit pairs of §3.3, and the sentiment data's task and pair splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlkit.experiments.reproduce.transfer.base import SEED


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal ``[d, d]`` matrix (QR of a Gaussian with the signs of R's diagonal fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def unit_with_cosine(theta: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with ``theta`` is exactly ``cos`` (the rest along a random orthogonal direction)."""
    if not -1.0 <= cos <= 1.0:
        raise ValueError(f"cos must be in [-1, 1], got {cos}")
    t = theta / np.linalg.norm(theta)
    v = rng.normal(size=t.shape)
    v -= (v @ t) * t
    v /= np.linalg.norm(v)
    return cos * t + np.sqrt(max(0.0, 1.0 - cos * cos)) * v


@dataclass
class CovarianceConstruction:
    """§2.3's example: rotations Q_1, Q_2, diagonals D_1 (κ on S_1), D_2 (κ on S_2), models θ_1, θ_2 (cos ≈ 0.96).

    ``order="RDQ"`` (default) generates ``X = R D Q`` whose row covariance is ``Qᵀ D² Q``; the paper writes
    ``X = R Q D``, whose covariance is ``D²`` whatever Q is (a Gaussian R absorbs Q), so its "other rotation" task
    would be distributed exactly like the "same covariance" one. ``order="RQD"`` reproduces the literal text.
    """

    Q: tuple[np.ndarray, np.ndarray]
    D: tuple[np.ndarray, np.ndarray]
    theta: tuple[np.ndarray, np.ndarray]
    S: tuple[np.ndarray, np.ndarray]
    order: str = "RDQ"

    # task -> (rotation index, diagonal index, model index): task 1 = Q1 D1 θ1, 2 = Q1 D1 θ2, 3 = Q1 D2 θ2,
    # 4 = Q2 D1 θ2
    TASKS = {1: (0, 0, 0), 2: (0, 0, 1), 3: (0, 1, 1), 4: (1, 0, 1)}

    def mixing(self, task: int) -> np.ndarray:
        """The ``[d, d]`` matrix M with ``X = R M`` for ``task`` (Q D or D Q)."""
        q, dg, _ = self.TASKS[task]
        Q, D = self.Q[q], np.diag(self.D[dg])
        return Q @ D if self.order == "RQD" else D @ Q

    def covariance(self, task: int) -> np.ndarray:
        """The population covariance ``E[x xᵀ] = Mᵀ M`` of a row of ``task``."""
        M = self.mixing(task)
        return M.T @ M

    def sample(self, task: int, m: int, rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``m`` rows ``X = R M`` (R Gaussian) and labels ``y = X θ + σ ε``."""
        X = rng.normal(size=(m, self.Q[0].shape[0])) @ self.mixing(task)
        y = X @ self.theta[self.TASKS[task][2]]
        return X, y + noise * rng.normal(size=m)


def covariance_construction(d: int = 100, kappa: float = 100.0, frac: float = 0.1, cos: float = 0.96,
                            seed: int = 0, order: str = "RDQ") -> CovarianceConstruction:
    """§2.3's four-task construction with ``|S_i| = frac·d`` coordinates scaled by ``kappa``."""
    if order not in ("RDQ", "RQD"):
        raise ValueError(f"order must be 'RDQ' or 'RQD', got {order!r}")
    k = int(round(frac * d))
    if d < 2 or k < 1 or 2 * k > d or kappa <= 0:
        raise ValueError(f"need d >= 2, 1 <= frac·d and 2·frac·d <= d, kappa > 0; got d={d}, frac={frac}, "
                         f"kappa={kappa}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(d)
    S1, S2 = np.sort(perm[:k]), np.sort(perm[k:2 * k])
    D1, D2 = np.ones(d), np.ones(d)
    D1[S1], D2[S2] = kappa, kappa
    Q1, Q2 = random_orthogonal(d, rng), random_orthogonal(d, rng)
    t1 = rng.normal(size=d)
    t1 /= np.linalg.norm(t1)
    t2 = unit_with_cosine(t1, cos, rng)
    return CovarianceConstruction((Q1, Q2), (D1, D2), (t1, t2), (S1, S2), order)


@dataclass
class NoiseTask:
    """One pair: the split (noisy train/val labels of the second task, clean test labels) and the training rows
    Algorithm 2 reads."""

    pair: tuple[int, int]
    split: Any
    X: np.ndarray
    Y: np.ndarray


def flip_labels(y: np.ndarray, rows: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of 0/1 labels ``y`` with ``round(frac·len(rows))`` of the given rows flipped (chosen at random)."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"flip fraction must be in [0, 1], got {frac}")
    out = y.copy()
    pick = rng.choice(rows, size=int(round(frac * len(rows))), replace=False)
    out[pick] = 1.0 - out[pick]
    return out


def noise_pairs(n_pairs: int, seed: int = SEED) -> list[tuple[int, int]]:
    """``n_pairs`` random ordered pairs (clean digit, noisy digit) of distinct digits."""
    rng = np.random.default_rng(seed)
    all_pairs = [(a, b) for a in range(10) for b in range(10) if a != b]
    return [all_pairs[i] for i in rng.choice(len(all_pairs), size=n_pairs, replace=False)]


def noise_task(a: int, b: int, i: int, flip: float = 0.2, seed: int = SEED) -> NoiseTask:
    """Digits a (clean) and b (``flip`` of its train + validation labels flipped) one-vs-rest on the same 8×8
    images, one random 60/20/20 split seeded by (seed, i); ``a == b``: a digit and its own noisy copy."""
    from sklearn.datasets import load_digits

    from mtlkit.data.multitask import MultiTaskData

    digits = load_digits()
    X, lab = digits.data.astype(np.float64), digits.target
    n = len(X)
    prng = np.random.default_rng([seed, i] if a != b else [seed, 1000 + a])
    perm = prng.permutation(n)
    te, va, tr = perm[: n // 5], perm[n // 5: 2 * n // 5], perm[2 * n // 5:]
    Y = np.stack([(lab == a), (lab == b)], axis=1).astype(np.float64)
    Yn = Y.copy()
    Yn[:, 1] = flip_labels(Y[:, 1], np.concatenate([tr, va]), flip, prng)
    names = [f"digit{a}", f"digit{b} (noisy)" if a != b else f"digit{a} (noisy copy)"]
    data = MultiTaskData.from_shared(X, Yn, kind="binary", names=names, name=f"digits-pair-{a}-{b}")
    return NoiseTask((a, b), data.split_indices(train=tr, test=te, val=va), X[tr], Yn[tr])


def _subset_split(data: Any, tasks: Sequence[int], seed: int) -> Any:
    """The given tasks alone, split 80/10/10 with ``seed``."""
    from mtlkit.data.multitask import MultiTaskData

    sub = MultiTaskData.from_tasks([data.xs[t] for t in tasks], [data.ys[t] for t in tasks], kind="binary",
                                   names=[data.task_names[t] for t in tasks], name=f"{data.name}-subset")
    return sub.split(test=0.1, val=0.1 / 0.9, seed=seed)


def _pair_split(data: Any, i: int, j: int, seed: int) -> Any:
    """Tasks i and j alone, split 80/10/10 with ``seed``."""
    return _subset_split(data, (i, j), seed)
