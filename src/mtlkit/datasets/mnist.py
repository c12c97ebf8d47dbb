"""`mnist-mtl`: TOMATO's MNIST-MTL recipe from the staged MNIST test images (the train images are not staged)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.transforms import PCA
from mtlkit.datasets._paths import data_file
from mtlkit.datasets.digits import one_vs_rest_tasks
from mtlkit.errors import DataError

IMAGES = "mnist/raw/t10k-images-idx3-ubyte.gz"
LABELS = "mnist/raw/t10k-labels-idx1-ubyte.gz"


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format): big-endian magic, dims, then uint8 data."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file")
    nd = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * nd], dtype=">u4").astype(int)
    data = np.frombuffer(raw[4 + 4 * nd:], dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims.tolist()} but holds {data.size} values")
    return data.reshape(*dims)


def read_mnist_test(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images [10000, 28, 28] uint8 and their digits."""
    images = read_idx(data_file(data_dir, IMAGES, "mnist-mtl"))
    labels = read_idx(data_file(data_dir, LABELS, "mnist-mtl"))
    return images, labels


def load_mnist_mtl(data_dir: str | Path | None = None, n_pos: int = 900, n_neg_per_other: int = 100,
                   pca: int | None = 64, seed: int = 2019) -> MultiTaskData:
    images, labels = read_mnist_test(data_dir)
    counts = np.bincount(labels, minlength=10)
    short = {d: int(c) for d, c in enumerate(counts) if c < n_pos}
    Xs, ys, names = one_vs_rest_tasks(images / 255.0, labels, n_pos, n_neg_per_other, seed)
    notes = [f"TOMATO's MNIST-MTL from the 10k MNIST test images (train images are not staged): per task "
             f"{n_pos} positives + {n_neg_per_other} of each other digit, seed {seed}"]
    if short:
        notes.append("digits with fewer images than asked use all they have: "
                     + ", ".join(f"digit {d}: {c}" for d, c in short.items()))
    if pca:
        notes.append(f"PCA to {pca} fitted on each split's training rows only")
    return MultiTaskData.from_tasks(Xs, ys, kind="binary", names=names, name="mnist-mtl",
                                    transform=PCA(pca) if pca else None, notes=notes)
