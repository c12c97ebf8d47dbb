"""SRDML's CIFAR-MTL construction (ten one-vs-rest binary tasks on the SAME images) built from the staged MNIST
test images: the image part of `mtlkit reproduce srdml`.

SRDML (Bai & Zhao, KDD 2022, §5.1) follows Rosenbaum et al.: one task per CIFAR-10 class, task t asks "is this
image of class t?", and every task sees every image (shared input, 10 % positives per task). Here the images are
MNIST digits (the only images staged; CIFAR-10 is not), a balanced random sample of ``n_per_digit`` images per
digit, optionally average-pooled by ``pool`` (28×28 → 14×14 for ``pool=2``) and scaled to [0, 1]. Features keep
the image shape ``[N, 1, s, s]``; with ``pca`` a PCA to that many components is fitted on each split's training
rows only (`mtlkit.data.transforms.PCA`) and every method sees those vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.transforms import PCA


def pool_images(images: np.ndarray, pool: int) -> np.ndarray:
    """Average-pool ``[N, H, W]`` images by ``pool × pool`` blocks (H, W are cropped to multiples of ``pool``)."""
    if pool < 1:
        raise ValueError(f"pool must be a positive integer, got {pool}")
    n, h, w = images.shape
    h2, w2 = h // pool, w // pool
    x = images[:, :h2 * pool, :w2 * pool].reshape(n, h2, pool, w2, pool)
    return x.mean(axis=(2, 4))


def mnist_shared(images: np.ndarray, labels: np.ndarray, n_per_digit: int = 300, pool: int = 2,
                 pca: int | None = 64, seed: int = 0) -> MultiTaskData:
    """Ten one-vs-rest tasks on shared images: ``n_per_digit`` images of each digit drawn without replacement
    (``np.random.default_rng(seed)``, digit by digit), pooled by ``pool``, in [0, 1]; ``Y[i, t] = 1`` iff image
    i shows digit t. Rows are in random order. ``pca``: components of the per-split PCA (None: raw pixels)."""
    if n_per_digit < 1:
        raise ValueError(f"n_per_digit must be >= 1, got {n_per_digit}")
    if pca is not None and pca < 1:
        raise ValueError(f"pca must be a positive number of components or None, got {pca}")
    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"need images [N, H, W] and N labels, got {images.shape} and {labels.shape}")
    digits = np.unique(labels)
    rng = np.random.default_rng(seed)
    rows = []
    for d in digits:
        have = np.flatnonzero(labels == d)
        if len(have) < n_per_digit:
            raise ValueError(f"digit {d} has {len(have)} images, fewer than n_per_digit={n_per_digit}")
        rows.append(rng.choice(have, size=n_per_digit, replace=False))
    idx = rng.permutation(np.concatenate(rows))
    x = pool_images(images[idx].astype(np.float64) / 255.0, pool)[:, None]  # [N, 1, s, s]
    y = (labels[idx][:, None] == digits[None, :]).astype(np.float64)  # [N, T] one-vs-rest
    notes = [f"SRDML's CIFAR-MTL construction on MNIST test images: {len(digits)} one-vs-rest tasks sharing "
             f"{len(idx)} images ({n_per_digit} per digit, seed {seed}), {pool}x{pool} average-pooled to "
             f"{x.shape[2]}x{x.shape[3]}, pixels in [0, 1]"]
    if pca:
        notes.append(f"PCA to {pca} fitted on each split's training rows only")
    return MultiTaskData.from_shared(x, y, kind="binary", names=[f"{d}-vs-rest" for d in digits],
                                     name="mnist-shared", transform=PCA(pca) if pca else None, notes=notes)


def load_mnist_shared(data_dir: str | Path | None = None, n_per_digit: int = 300, pool: int = 2,
                      pca: int | None = 64, seed: int = 0) -> MultiTaskData:
    """:func:`mnist_shared` on the 10k MNIST test images read from the data directory."""
    from mtlkit.datasets.mnist import read_mnist_test

    images, labels = read_mnist_test(data_dir)
    return mnist_shared(images, labels, n_per_digit, pool, pca, seed)
