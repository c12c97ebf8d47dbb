"""Feature transforms fitted on a split's training rows only (e.g. MNIST-MTL's PCA to 64)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.errors import DataError


class FittedTransform(Protocol):
    def apply(self, X: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...


class FeatureTransform(Protocol):
    def fit(self, train: MultiTaskData) -> FittedTransform: ...


@dataclass
class FittedPCA:
    """A fitted PCA projection: ``(X.reshape(n, -1) - mean) @ components.T``."""

    mean: np.ndarray
    components: np.ndarray

    def apply(self, X: np.ndarray) -> np.ndarray:
        return (X.reshape(len(X), -1) - self.mean) @ self.components.T

    def state(self) -> dict[str, np.ndarray]:
        return {"pca_mean": self.mean, "pca_components": self.components}


@dataclass
class PCA:
    """PCA to ``n_components`` fitted on the training rows of a split (unique rows, all tasks pooled)."""

    n_components: int
    seed: int = 0

    def fit(self, train: MultiTaskData) -> FittedPCA:
        from sklearn.decomposition import PCA as SkPCA

        xs = train.xs
        if xs is None:  # shared input: one feature array
            x = train.x
            assert x is not None
            xs = [x]
        rows = np.unique(np.concatenate([X.reshape(len(X), -1) for X in xs], axis=0).astype(np.float64, copy=False),
                         axis=0)  # float64 whatever the storage (float32 features are kept float32)
        if rows.shape[0] < self.n_components:
            raise DataError(f"PCA to {self.n_components} needs at least that many distinct training rows, "
                            f"got {rows.shape[0]}")
        p = SkPCA(n_components=self.n_components, random_state=self.seed).fit(rows)
        return FittedPCA(mean=p.mean_.astype(np.float64), components=p.components_.astype(np.float64))
