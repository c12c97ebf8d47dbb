"""`digits`: scikit-learn's embedded 8×8 digits as 10 one-vs-rest tasks, sampled like TOMATO's MNIST-MTL."""

from __future__ import annotations

import numpy as np

from mtlkit.data.multitask import MultiTaskData


def one_vs_rest_tasks(images: np.ndarray, labels: np.ndarray, n_pos: int | None, n_neg_per_other: int | None,
                      seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Task d: ``n_pos`` images of digit d (all when None) labelled 1, plus ``n_neg_per_other`` images of
    each other digit labelled 0 (when None: as many negatives as positives, spread evenly)."""
    rng = np.random.default_rng(seed)
    digits = np.unique(labels)
    by = {int(d): np.flatnonzero(labels == d) for d in digits}
    Xs, ys, names = [], [], []
    for d in digits:
        d = int(d)
        pos = by[d] if n_pos is None else rng.choice(by[d], size=min(n_pos, len(by[d])), replace=False)
        others = [o for o in by if o != d]
        if n_neg_per_other is None:  # equal total, spread over the other digits
            q, r = divmod(len(pos), len(others))
            counts = [q + (i < r) for i in range(len(others))]
        else:
            counts = [n_neg_per_other] * len(others)
        neg = np.concatenate([rng.choice(by[o], size=c, replace=False) for o, c in zip(others, counts, strict=True)])
        rows = np.concatenate([pos, neg])
        Xs.append(images[rows].reshape(len(rows), -1).astype(np.float64))
        ys.append(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
        names.append(f"digit{d}")
    return Xs, ys, names


def load_digits(seed: int = 0) -> MultiTaskData:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    Xs, ys, names = one_vs_rest_tasks(d.data, d.target, None, None, seed)
    return MultiTaskData.from_tasks(Xs, ys, kind="binary", names=names, name="digits",
                                    notes=["scikit-learn 8x8 digits; task d: all ~180 images of d vs an equal "
                                           f"number of other digits (20 of each), sampled with seed {seed}"])
