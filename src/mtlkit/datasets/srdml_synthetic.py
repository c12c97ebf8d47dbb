"""`srdml-synthetic`: SRDML's controlled synthetic regression data (Bai et al., KDD 2022, §5.1 and App. B),
and the contradicting-task variant of its Table 3.

The paper: T = 12 tasks of m = 100 rows, d = 20 features, ``X_i ~ N(η_i, I)``. Two orthogonal base weights
``w_1 = (1₁₀; 0₁₀)`` and ``w_2 = (0₁₀; 1₁₀)``; the first half of the tasks use ``w_1``, the second half ``w_2``;
within a base the weights are the base times 1, 1, 2, 2, 3, 3 (each magnitude gives a pair of *twin* tasks).
Noise: the sign of "some positions" of each ``w_i`` is flipped, few enough to keep the pattern; labels
``Y_i = X_i·w_i + ε_i``, ``ε_i ~ N(0, 0.1·I)``.

Recipe (numpy only, one ``np.random.default_rng(seed)`` drawn in the order below):

1. per task t: its sign-flip positions, ``n_flip`` distinct positions drawn among the ``d/2`` non-zero
   positions of its base (a flip on a zero would change nothing);
2. per task t: ``X_t ~ N(mean, I)`` [m, d] and ``y_t = X_t·w_t + ε``, ``ε ~ N(0, noise_var)``.

Decisions where the paper is silent (each a parameter):

- *η_i.* Not given; the authors' code draws every row from N(0.5, 1), so ``mean=0.5`` (a number for all tasks
  and features, or a [T, d] array of per-task means).
- *Flip count.* ``n_flip = 1`` position per task (10 % of the base's support), "the overall pattern well kept".
- *Noise.* ``N(0, 0.1·I)`` read as variance 0.1 (std ≈ 0.316); the authors' code uses std 0.01.
- *Contradicting tasks (Table 3,* "all tasks compete", *built "by a similar procedure").* With
  ``contradicting=True`` the second task of every twin pair gets the negated weight vector (task t is
  multiplied by ``(−1)^t``), so each pair points in exactly opposite directions and, within a base, half of
  the tasks oppose the other half: sharing between them can only hurt.

Rows are not split here: use ``data.split(...)`` (the paper gives no split; the code keeps 40 test points).
The loader registered as ``srdml-synthetic`` returns only the data; :func:`srdml_synthetic` also returns the
ground truth (:class:`SrdmlTruth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData


@dataclass(frozen=True)
class SrdmlTruth:
    """The generating parameters of an :func:`srdml_synthetic` draw.

    ``bases`` [n_bases, d] (orthogonal 0/1 indicator vectors of disjoint feature blocks); ``base`` [T] each
    task's base index; ``magnitude`` [T]; ``sign`` [T] (+1, or ±1 alternating when contradicting); ``twin`` [T]
    the index of each task's twin; ``W_clean`` [T, d] = sign·magnitude·base before the flips; ``flipped``
    [T, d] bool, the sign-flipped positions; ``W`` [T, d] the weights the labels use; ``means`` [T, d] the
    feature means η_t; ``noise_std`` the label-noise standard deviation; ``params`` the generating arguments.
    """

    bases: np.ndarray
    base: np.ndarray
    magnitude: np.ndarray
    sign: np.ndarray
    twin: np.ndarray
    W_clean: np.ndarray
    flipped: np.ndarray
    W: np.ndarray
    means: np.ndarray
    noise_std: float
    params: dict[str, Any] = field(default_factory=dict)

    def relation(self) -> np.ndarray:
        """The task-relation structure of Fig. 4b as a [T, T] matrix: 2 for twins (and a task with itself),
        1 for tasks of the same base, 0 for tasks of different bases."""
        same = self.base[:, None] == self.base[None, :]
        tw = (self.twin[:, None] == np.arange(len(self.twin))[None, :]) | np.eye(len(self.twin), dtype=bool)
        return same.astype(np.int64) + tw.astype(np.int64)


def srdml_synthetic(
    n_tasks: int = 12,
    m: int = 100,
    d: int = 20,
    n_bases: int = 2,
    magnitudes: tuple[float, ...] = (1.0, 2.0, 3.0),
    n_flip: int = 1,
    noise_var: float = 0.1,
    mean: float | np.ndarray = 0.5,
    contradicting: bool = False,
    seed: int = 0,
) -> tuple[MultiTaskData, SrdmlTruth]:
    """SRDML's synthetic regression tasks and their ground truth; the defaults are the paper's (§5.1, App. B).

    ``n_tasks`` must equal ``n_bases · 2 · len(magnitudes)`` (a twin pair per base and magnitude) and ``d`` be
    a multiple of ``n_bases`` (each base covers its own block of ``d / n_bases`` features). Tasks are ordered
    base by base, magnitude by magnitude, twins adjacent: ``b1-m1a, b1-m1b, b1-m2a, ...``. See the module
    docstring for the recipe and for the choices where the paper is silent.
    """
    if n_bases < 1 or not magnitudes:
        raise ValueError("need at least one base and one magnitude")
    if n_tasks != n_bases * 2 * len(magnitudes):
        raise ValueError(f"n_tasks={n_tasks} must be n_bases·2·len(magnitudes) = {n_bases * 2 * len(magnitudes)}"
                         " (one twin pair per base and magnitude)")
    if d < n_bases or d % n_bases:
        raise ValueError(f"d={d} must be a positive multiple of n_bases={n_bases}")
    block = d // n_bases
    if not 0 <= n_flip <= block:
        raise ValueError(f"n_flip must be in 0..{block} (the non-zero positions of a base), got {n_flip}")
    if m < 1:
        raise ValueError(f"m (rows per task) must be >= 1, got {m}")
    if not noise_var >= 0:
        raise ValueError(f"noise_var must be >= 0, got {noise_var}")
    if any(not mag > 0 for mag in magnitudes):
        raise ValueError(f"magnitudes must be positive, got {magnitudes}")
    means = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n_tasks, d)).copy()
    params: dict[str, Any] = dict(n_tasks=n_tasks, m=m, d=d, n_bases=n_bases, magnitudes=tuple(magnitudes),
                                  n_flip=n_flip, noise_var=noise_var, contradicting=contradicting, seed=seed,
                                  mean=mean if np.ndim(mean) == 0 else "array")
    rng = np.random.default_rng(seed)
    T = n_tasks
    bases = np.zeros((n_bases, d))
    for k in range(n_bases):
        bases[k, k * block:(k + 1) * block] = 1.0
    per_base = 2 * len(magnitudes)
    t_idx = np.arange(T)
    base = t_idx // per_base
    magnitude = np.asarray(magnitudes, dtype=np.float64)[(t_idx % per_base) // 2]
    twin = t_idx ^ 1  # 0<->1, 2<->3, ...
    sign = np.where(t_idx % 2 == 1, -1.0, 1.0) if contradicting else np.ones(T)
    W_clean = (sign * magnitude)[:, None] * bases[base]

    flipped = np.zeros((T, d), dtype=bool)
    for t in range(T):  # set-up code: a few positions per task
        support = np.flatnonzero(bases[base[t]])
        flipped[t, rng.choice(support, size=n_flip, replace=False)] = True
    W = np.where(flipped, -W_clean, W_clean)

    noise_std = float(np.sqrt(noise_var))
    Xs, ys = [], []
    for t in range(T):
        X = means[t] + rng.normal(size=(m, d))
        Xs.append(X)
        ys.append(X @ W[t] + noise_std * rng.normal(size=m))

    names = [f"b{base[t] + 1}-m{magnitude[t]:g}{'ab'[t % 2]}" for t in range(T)]
    truth = SrdmlTruth(bases=bases, base=base, magnitude=magnitude, sign=sign, twin=twin, W_clean=W_clean,
                       flipped=flipped, W=W, means=means, noise_std=noise_std, params=params)
    notes = [
        f"SRDML synthetic (KDD'22 §5.1, App. B): {T} regression tasks x {m} rows, d={d}, {n_bases} orthogonal "
        f"block bases, magnitudes {tuple(magnitudes)} as twin pairs, seed {seed}",
        f"sign flips at {n_flip} support position(s) per task; y = X w_t + N(0, {noise_var}) (variance); "
        f"X_t ~ N(eta_t, I), eta = {params['mean']}",
    ] + (["contradicting variant (Table 3): the second task of every twin pair has the negated weights"]
         if contradicting else [])
    data = MultiTaskData.from_tasks(Xs, ys, kind="regression", names=names, name="srdml-synthetic",
                                    feature_names=[f"x{j}" for j in range(d)], notes=notes)
    return data, truth


def load_srdml_synthetic(**kwargs: Any) -> MultiTaskData:
    """The data of :func:`srdml_synthetic` alone (keyword arguments pass through); the truth is dropped."""
    return srdml_synthetic(**kwargs)[0]
