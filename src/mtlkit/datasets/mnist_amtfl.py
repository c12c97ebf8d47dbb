"""MNIST for the Deep-AMTFL reproduction (AAAI'18), built from the staged 10k MNIST test images.

* Table 1 (shallow): the split of Kang, Grauman & Sha (ICML 2011) that Go-MTL and the paper use (`kang_split`:
  1000/500/500 train/val/test rows, ≈100/50/50 per digit, 87 PCA scores of which the first 64 are the paper's
  PCA-64 input; only their split 1 is staged), and `kang_resplit` to draw further splits of the same rows with the
  same per-digit counts. Ten one-vs-all binary tasks on shared input.
* A substitute kept for other uses: per split ``n_train / n_val / n_test`` images per digit from the 10k test
  images with PCA fitted on the split's training images only (`one_vs_all_data` with ``pca``).
* Deep part (the authors' imbalanced demo): 200, 180, ..., 20 training images for digits 0..9, a balanced
  validation set, every remaining image as test.
* Scores: the multi-class prediction of ten one-vs-all task scores is their argmax (`ova_error`); the deep
  tables report per-class error (`per_class_error`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.transforms import PCA

DIGITS = 10
IMBALANCED_COUNTS: tuple[int, ...] = tuple(range(200, 0, -20))  # 200, 180, ..., 20 for digits 0..9
KANG_FILE = "mnist/kang2011/split1_mnist_1000train.mat"
KANG_DIMS = 64  # the paper's PCA-64: the first 64 of the 87 staged PCA scores (columns by decreasing variance)


def mnist_images(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The staged MNIST test images as float rows in [0, 1] [10000, 28, 28] and their digits [10000]."""
    from mtlkit.datasets.mnist import read_mnist_test

    images, labels = read_mnist_test(data_dir)
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


def one_vs_all_data(images: np.ndarray, labels: np.ndarray, pca: int | None = None, name: str = "mnist-amtfl",
                    classes: Sequence[int] = tuple(range(DIGITS))) -> MultiTaskData:
    """One binary task per digit of ``classes`` on shared input: task c's label is 1 for digit ``classes[c]``,
    else 0 (``images`` [N, ...]); with ``pca`` the rows are flattened and carry a PCA fitted on each split's
    training rows."""
    y = (labels[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    x = images.reshape(len(images), -1) if pca else images
    notes = [f"MNIST one-vs-all: {len(classes)} binary tasks on shared input from the 10k MNIST test images"]
    if pca:
        notes.append(f"PCA to {pca} fitted on each split's training rows only")
    return MultiTaskData.from_shared(x, y, kind="binary", names=[f"digit{d}" for d in classes], name=name,
                                     transform=PCA(pca) if pca else None, notes=notes)


def per_class_split(labels: np.ndarray, counts: Sequence[int] | int, n_val: int, n_test: int | None,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test): per digit ``counts[d]`` training rows, ``n_val`` validation rows and
    ``n_test`` test rows (``None``: every remaining row), drawn without overlap by ``default_rng(seed)``."""
    counts = [int(counts)] * DIGITS if isinstance(counts, int) else [int(c) for c in counts]
    if len(counts) != DIGITS or min(counts) < 1 or n_val < 0 or (n_test is not None and n_test < 1):
        raise ValueError(f"need {DIGITS} positive training counts, n_val >= 0 and n_test >= 1 or None; got "
                         f"{counts}, {n_val}, {n_test}")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for d in range(DIGITS):
        rows = rng.permutation(np.flatnonzero(labels == d))
        need = counts[d] + n_val + (n_test or 0)
        if len(rows) < need:
            raise ValueError(f"digit {d} has {len(rows)} images; the split needs {need}")
        tr, va = rows[:counts[d]], rows[counts[d]:counts[d] + n_val]
        te = rows[counts[d] + n_val:] if n_test is None else rows[counts[d] + n_val:need]
        for p, r in zip(parts, (tr, va, te), strict=True):
            p.append(r)
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def ova_predict(scores: np.ndarray) -> np.ndarray:
    """The digit of each row from ten one-vs-all task scores ``[T, N]``: the task with the highest score."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 3:  # [T, N, 1]
        s = s[..., 0]
    return s.argmax(0)


def ova_error(scores: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class error % of the argmax over ten one-vs-all task scores ``[T, N]`` against ``labels`` [N]."""
    return float(100.0 * np.mean(ova_predict(scores) != np.asarray(labels)))


def per_class_error(pred: np.ndarray, labels: np.ndarray, n_classes: int = DIGITS) -> np.ndarray:
    """Per-class error % [n_classes]: the share of each class's rows predicted as another class (NaN if absent)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = labels == c
        if m.any():
            out[c] = 100.0 * float(np.mean(pred[m] != c))
    return out


def kang_split(data_dir: str | Path | None, dims: int = KANG_DIMS, keep_pca_scale: bool = False
               ) -> tuple[MultiTaskData, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Kang et al.'s MNIST split 1 (``mnist/kang2011/split1_mnist_1000train.mat``): ten one-vs-all binary tasks on
    the first ``dims`` PCA scores, its 2000 rows stacked train, validation, test; the digits [2000] (the file's
    labels 1..10 are digits 0..9) and the row indices of its (train, val, test) parts.

    ``keep_pca_scale``: each row as a ``[1, dims]`` array instead of a vector, so that the library standardises the
    scores with one pooled mean and std (as it does image rows) and keeps PCA's variance profile; per-feature
    standardisation of PCA scores whitens them, blowing the low-variance (noisy) components up to the leading
    ones' scale."""
    from scipy.io import loadmat

    from mtlkit.datasets._paths import data_file

    path = data_file(data_dir, KANG_FILE, "mnist-kang")
    m = loadmat(path)
    parts = [(np.asarray(m[f"digit_{p}x"], dtype=np.float64), np.asarray(m[f"digit_{p}y"]).ravel().astype(np.int64))
             for p in ("train", "valid", "test")]
    if not 1 <= dims <= parts[0][0].shape[1]:
        raise ValueError(f"dims must lie in 1..{parts[0][0].shape[1]}, got {dims}")
    x = np.concatenate([p[0][:, :dims] for p in parts])
    if keep_pca_scale:
        x = x[:, None, :]
    labels = np.concatenate([p[1] for p in parts]) - 1
    if labels.min() != 0 or labels.max() != DIGITS - 1:
        raise ValueError(f"{path}: labels should be 1..{DIGITS}, got {labels.min() + 1}..{labels.max() + 1}")
    n = np.cumsum([0, *(len(p[1]) for p in parts)])
    idx = tuple(np.arange(n[i], n[i + 1]) for i in range(3))
    y = (labels[:, None] == np.arange(DIGITS)[None, :]).astype(np.float64)
    data = MultiTaskData.from_shared(
        x, y, kind="binary", names=[f"digit{d}" for d in range(DIGITS)], name="mnist-kang",
        notes=[f"Kang, Grauman & Sha (2011) MNIST split 1 as staged: {len(idx[0])}/{len(idx[1])}/{len(idx[2])} "
               f"train/val/test rows, the first {dims} of its PCA scores, ten one-vs-all tasks"
               + (" (rows [1, dims]: one pooled standardisation keeps the PCA variance profile)"
                  if keep_pca_scale else "")])
    return data, labels, idx  # type: ignore[return-value]


def kang_resplit(labels: np.ndarray, idx: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Another random (train, val, test) partition of the same rows with, per digit, the same numbers of train,
    validation and test rows as ``idx`` (Kang's split): a stand-in for their unstaged splits 2..5."""
    rng = np.random.default_rng(seed)
    out: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for d in range(DIGITS):
        counts = [int((labels[i] == d).sum()) for i in idx]
        rows = rng.permutation(np.concatenate([i[labels[i] == d] for i in idx]))
        edges = np.cumsum([0, *counts])
        for k in range(3):
            out[k].append(rows[edges[k]:edges[k + 1]])
    return tuple(np.sort(np.concatenate(o)) for o in out)  # type: ignore[return-value]
