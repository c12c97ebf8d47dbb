"""`amtfl-synthetic`: the synthetic regression data of Deep-AMTFL (Lee, Yang & Hwang, AAAI'18, §4.1).

The paper: six 30-dimensional true bases ``l_1..l_6``; 12 tasks whose predictors ``w_t`` each linearly combine
two bases, the *easy* ones picked "combinatorially" among ``{l_1..l_4}`` and the *hard* ones among
``{l_3..l_6}`` (so ``l_3, l_4`` are shared by both groups); noise ``N(0, σ)`` with σ = 1 for easy and σ = 2 for
hard tasks; five random train/val/test splits of 50/50/100 rows per easy task and 25/25/100 per hard task.

Recipe (numpy only, one ``np.random.default_rng(seed)`` drawn in the order below, so a seed fixes everything):

1. bases ``L ~ N(0, σ_l² I)``, shape [n_bases, d];
2. per task t (easy tasks first, then hard): its pair of bases is the next 2-subset of its group's bases in
   ``itertools.combinations`` order (C(4, 2) = 6 pairs, so the default 6 easy + 6 hard tasks use every pair
   exactly once; more tasks cycle through the pairs); coefficients ``c = ±U(coef_range)`` (random sign),
   ``w_t = Σ_j c_j l_(b_j)`` [d] (plus ``N(0, σ_w² I)`` when ``sigma_w > 0``);
3. per task t: ``X_t ~ N(0, σ_x² I)`` [n_t, d] and ``y_t = X_t w_t + ε``, ``ε ~ N(0, σ_t²)``;
4. per split and task: a random permutation of the task's rows, cut into train / val / test of the group's sizes.

Decisions where the paper is silent (each kept as a parameter):

- *Where the noise goes.* "we generate parameters for 12 tasks from them with noise ε ~ N(0, σ)" could also
  mean noise on ``w_t``; we put it on the labels (``y = Xw + ε``, σ is a standard deviation), the reading
  that makes σ a per-task difficulty for the regression loss. ``sigma_w`` adds parameter noise if wanted.
- *Distributions.* Bases, features: standard normal (``sigma_l = sigma_x = 1``); coefficients of magnitude
  U(0.5, 1.5) with a random sign, so each task uses exactly its two bases (no coefficient near 0). No intercept.
- *Rows per task.* By default each task has exactly as many rows as one split needs (200 easy, 150 hard) and
  the five splits are five random partitions of them; ``n_rows`` (≥ those totals) draws a larger pool, of
  which each split uses a random subset of the split's sizes.
- *Splits in the data.* ``MultiTaskData.predefined_splits`` holds 2-tuples (train, test), with validation
  carved from train by the caller, so each predefined split's "train" is the paper's train + val (100 easy,
  50 hard rows) and its test the 100 test rows. ``data.split_indices(tr, te, val_fraction=0.5)`` (or
  ``mtlkit train --dataset amtfl-synthetic --val 0.5``) gives the paper's 50/50 and 25/25 sizes; ``mtlkit
  bench`` carves its default 20 % instead (80/20, 40/10). :func:`amtfl_split` rebuilds split i with the exact
  val rows the truth records (``truth.splits[i]``).

The loader registered as ``amtfl-synthetic`` returns only the data; call :func:`amtfl_synthetic` for the
ground truth (:class:`AmtflTruth`) as well, e.g. to compare learned predictors with ``truth.W``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData

if TYPE_CHECKING:
    from mtlkit.data.splits import Split


@dataclass(frozen=True)
class AmtflTruth:
    """The generating parameters of an :func:`amtfl_synthetic` draw.

    ``bases`` [n_bases, d] (row k is ``l_(k+1)``); ``basis_idx`` [T, bases_per_task] 0-based basis indices of
    each task; ``coefs`` [T, bases_per_task] their coefficients; ``W`` [T, d] the task predictors; ``sigma`` [T]
    the label-noise standard deviation; ``easy`` [T] bool (False: hard); ``splits`` one dict per split with
    ``"train"``, ``"val"``, ``"test"`` lists of per-task row indices; ``params`` the generating arguments.
    """

    bases: np.ndarray
    basis_idx: np.ndarray
    coefs: np.ndarray
    W: np.ndarray
    sigma: np.ndarray
    easy: np.ndarray
    splits: list[dict[str, list[np.ndarray]]]
    params: dict[str, Any] = field(default_factory=dict)


def _basis_names(group: tuple[int, ...]) -> str:
    """``(0, 1)`` -> ``"l1, l2"``: the paper's 1-based basis names."""
    return ", ".join(f"l{i + 1}" for i in sorted(set(group)))


def amtfl_synthetic(
    n_easy: int = 6,
    n_hard: int = 6,
    d: int = 30,
    n_bases: int = 6,
    easy_bases: tuple[int, ...] = (0, 1, 2, 3),
    hard_bases: tuple[int, ...] = (2, 3, 4, 5),
    bases_per_task: int = 2,
    sigma_easy: float = 1.0,
    sigma_hard: float = 2.0,
    easy_sizes: tuple[int, int, int] = (50, 50, 100),
    hard_sizes: tuple[int, int, int] = (25, 25, 100),
    n_rows: int | None = None,
    n_splits: int = 5,
    coef_range: tuple[float, float] = (0.5, 1.5),
    sigma_l: float = 1.0,
    sigma_x: float = 1.0,
    sigma_w: float = 0.0,
    seed: int = 0,
) -> tuple[MultiTaskData, AmtflTruth]:
    """Deep-AMTFL's synthetic regression data set and its ground truth; the defaults are the paper's.

    Returns ``n_easy`` tasks ``easy1..`` then ``n_hard`` tasks ``hard1..``, each with ``d`` features, and an
    :class:`AmtflTruth`. Basis indices are 0-based (the paper's ``l_1..l_4`` are ``(0, 1, 2, 3)``);
    ``easy_sizes`` / ``hard_sizes`` are (train, val, test) rows per task. See the module docstring for the
    recipe and the choices where the paper is silent.
    """
    if min(n_easy, n_hard) < 0 or n_easy + n_hard < 1:
        raise ValueError(f"need at least one task, got n_easy={n_easy}, n_hard={n_hard}")
    if min(d, n_bases, bases_per_task, n_splits) < 1:
        raise ValueError("d, n_bases, bases_per_task and n_splits must be positive")
    for nm, group in (("easy_bases", easy_bases), ("hard_bases", hard_bases)):
        if len(set(group)) < bases_per_task or any(not 0 <= b < n_bases for b in group):
            raise ValueError(f"{nm} must hold at least {bases_per_task} distinct indices in 0..{n_bases - 1}")
    for nm, group_sizes in (("easy_sizes", easy_sizes), ("hard_sizes", hard_sizes)):
        if len(group_sizes) != 3 or group_sizes[0] < 1 or group_sizes[1] < 0 or group_sizes[2] < 1:
            raise ValueError(f"{nm} must be (train >= 1, val >= 0, test >= 1), got {group_sizes}")
    if n_rows is not None and n_rows < max(sum(easy_sizes), sum(hard_sizes)):
        raise ValueError(f"n_rows={n_rows} is fewer than one split needs "
                         f"({sum(easy_sizes)} easy, {sum(hard_sizes)} hard)")
    lo, hi = coef_range
    if not 0 <= lo <= hi:
        raise ValueError(f"coef_range must be 0 <= low <= high, got {coef_range}")
    params: dict[str, Any] = dict(
        n_easy=n_easy, n_hard=n_hard, d=d, n_bases=n_bases, easy_bases=tuple(easy_bases),
        hard_bases=tuple(hard_bases), bases_per_task=bases_per_task, sigma_easy=sigma_easy, sigma_hard=sigma_hard,
        easy_sizes=tuple(easy_sizes), hard_sizes=tuple(hard_sizes), n_rows=n_rows, n_splits=n_splits,
        coef_range=tuple(coef_range), sigma_l=sigma_l, sigma_x=sigma_x, sigma_w=sigma_w, seed=seed)
    rng = np.random.default_rng(seed)
    T = n_easy + n_hard
    easy = np.arange(T) < n_easy
    names = [f"easy{t + 1}" for t in range(n_easy)] + [f"hard{t + 1}" for t in range(n_hard)]

    bases = rng.normal(0.0, sigma_l, size=(n_bases, d))
    pairs = {True: list(itertools.combinations(sorted(set(easy_bases)), bases_per_task)),
             False: list(itertools.combinations(sorted(set(hard_bases)), bases_per_task))}
    basis_idx = np.array([pairs[bool(easy[t])][(t if easy[t] else t - n_easy) % len(pairs[bool(easy[t])])]
                          for t in range(T)], dtype=np.int64)
    coefs = rng.uniform(lo, hi, size=(T, bases_per_task)) * rng.choice([-1.0, 1.0], size=(T, bases_per_task))
    W = np.einsum("tj,tjd->td", coefs, bases[basis_idx])
    if sigma_w > 0:
        W = W + rng.normal(0.0, sigma_w, size=W.shape)
    sigma = np.where(easy, sigma_easy, sigma_hard).astype(np.float64)
    sizes = [easy_sizes if easy[t] else hard_sizes for t in range(T)]

    Xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for t in range(T):
        n = n_rows if n_rows is not None else sum(sizes[t])
        X = rng.normal(0.0, sigma_x, size=(n, d))
        Xs.append(X)
        ys.append(X @ W[t] + rng.normal(0.0, sigma[t], size=n))

    splits: list[dict[str, list[np.ndarray]]] = []
    for _ in range(n_splits):
        part: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
        for t in range(T):
            n_tr, n_va, n_te = sizes[t]
            perm = rng.permutation(len(Xs[t]))
            part["train"].append(np.sort(perm[:n_tr]))
            part["val"].append(np.sort(perm[n_tr:n_tr + n_va]))
            part["test"].append(np.sort(perm[n_tr + n_va:n_tr + n_va + n_te]))
        splits.append(part)
    predefined = [([np.sort(np.concatenate([s["train"][t], s["val"][t]])) for t in range(T)], s["test"])
                  for s in splits]

    truth = AmtflTruth(bases=bases, basis_idx=basis_idx, coefs=coefs, W=W, sigma=sigma, easy=easy, splits=splits,
                       params=params)
    notes = [
        f"Deep-AMTFL synthetic (AAAI'18 §4.1): {n_easy} easy + {n_hard} hard regression tasks, d={d}, "
        f"{n_bases} bases l_k ~ N(0, {sigma_l}^2 I), seed {seed}",
        f"w_t = sum of {bases_per_task} bases (combinations in order; easy from {{{_basis_names(easy_bases)}}}, "
        f"hard from {{{_basis_names(hard_bases)}}}) with coefficients +-U{tuple(coef_range)}"
        + (f", plus N(0, {sigma_w}^2) parameter noise" if sigma_w > 0 else ""),
        f"x ~ N(0, {sigma_x}^2 I); y = x w_t + N(0, sigma_t^2), sigma = {sigma_easy} easy, {sigma_hard} hard",
        f"{n_splits} random splits, train/val/test {'/'.join(map(str, easy_sizes))} easy, "
        f"{'/'.join(map(str, hard_sizes))} hard; predefined splits give train+val as train (carve val with "
        "val_fraction=0.5 for the paper's sizes; amtfl_split gives the exact val rows)",
    ]
    data = MultiTaskData.from_tasks(Xs, ys, kind="regression", names=names, name="amtfl-synthetic",
                                    feature_names=[f"x{j}" for j in range(d)], predefined_splits=predefined,
                                    notes=notes)
    return data, truth


def amtfl_split(data: MultiTaskData, truth: AmtflTruth, i: int = 0) -> Split:
    """Split ``i`` of an :func:`amtfl_synthetic` draw with the exact train/val/test rows of ``truth.splits[i]``."""
    s = truth.splits[i]
    return data.split_indices(s["train"], s["test"], val=s["val"])


def load_amtfl_synthetic(**kwargs: Any) -> MultiTaskData:
    """The data of :func:`amtfl_synthetic` alone (keyword arguments pass through); the truth is dropped."""
    return amtfl_synthetic(**kwargs)[0]
