"""Feature and target standardisation fitted on training rows, kept with the model so predictions
on raw inputs come back on the original scale."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.rows import FlatReader, pairwise_sum, sequential_sum
from mtlkit.data.shared_labels import LabelCells


def _standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (X - mean) / std


def _square_dev(x: np.ndarray, mean: np.ndarray | float, k: int) -> np.ndarray:
    """``(x - mean)²`` of rows ``x`` as float64 ``[n, k]``, computed as numpy's ``std`` does (``d * d``)."""
    d = np.asarray(x, dtype=np.float64).reshape(len(x), k) - mean
    return np.multiply(d, d, out=d)


@dataclass
class Normalizer:
    """``x' = (x - x_mean) / x_std`` (per feature for vectors, one scalar for images) and, for
    regression, ``y' = (y - y_mean) / y_std`` pooled over all tasks (task offsets stay in the data)."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0

    @classmethod
    def identity(cls, feature_shape: tuple[int, ...]) -> Normalizer:
        shape = feature_shape if len(feature_shape) == 1 else ()
        return cls(np.zeros(shape), np.ones(shape))

    @classmethod
    def fit(cls, train: MultiTaskData, standardize_x: bool = True, standardize_y: bool = True) -> Normalizer:
        """Statistics of the training rows (all tasks pooled); constant features keep std 1.

        Streamed: the rows are read block by block in float64 (`Rows.blocks`), never concatenated, and the sums
        are numpy's own, reproduced bit for bit (`sequential_sum` for per-feature statistics of two or more
        features, `pairwise_sum` otherwise), so the statistics equal those of the concatenated rows exactly."""
        vector = len(train.feature_shape) == 1
        if not standardize_x:
            norm = cls.identity(train.feature_shape)
        else:
            parts = train.feature_rows()
            n = sum(len(p) for p in parts)
            k = parts[0].row_size
            if vector and k >= 2:  # numpy reduces axis 0 of [n, k >= 2] row after row
                def rows() -> Iterator[np.ndarray]:
                    return (b for p in parts for _, b in p.blocks())

                mean = sequential_sum(rows(), k) / n
                sq = sequential_sum((_square_dev(b, mean, k) for b in rows()), k)
                std = np.sqrt(sq / n)
                norm = cls(mean, np.where(std > 1e-12, std, 1.0))
            else:  # one feature, or one statistic for images: numpy's pairwise sum over the flat rows
                total = n * k
                s = pairwise_sum(FlatReader(parts), total)
                m = s / total
                sq_flat = pairwise_sum(FlatReader(parts, lambda x: _square_dev(x, m, k)), total)
                sd = float(np.sqrt(sq_flat / total))
                if vector:
                    norm = cls(np.array([m]), np.where(np.array([sd]) > 1e-12, sd, 1.0))
                else:
                    norm = cls(np.asarray(np.float64(m)), np.asarray(sd if sd > 1e-12 else 1.0))
        if standardize_y and train.kind == "regression":
            ys = np.concatenate([train.task_labels(t) for t in range(train.n_tasks)])
            norm.y_mean = float(ys.mean())
            norm.y_std = float(ys.std()) if ys.std() > 1e-12 else 1.0
        return norm

    def x(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_mean) / self.x_std

    def y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_mean) / self.y_std

    def y_inverse(self, y: np.ndarray) -> np.ndarray:
        return y * self.y_std + self.y_mean

    def apply(self, data: MultiTaskData) -> MultiTaskData:
        """Standardised ``data`` (targets too, for regression). The features are standardised when read
        (`MultiTaskData.map_features`: e.g. block by block into `DeviceData`), never copied whole."""
        out = data.map_features(functools.partial(_standardize, mean=np.asarray(self.x_mean),
                                                  std=np.asarray(self.x_std)))
        if data.kind == "regression" and (self.y_mean != 0.0 or self.y_std != 1.0):
            if out.ys is not None:
                out.ys = [self.y(y) for y in out.ys]
            elif isinstance(out.y, LabelCells):
                out.y = out.y.map_values(self.y)
            else:
                assert out.y is not None  # shared input: no per-task ys
                out.y = self.y(out.y)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"x_mean": np.asarray(self.x_mean, dtype=np.float64),
                "x_std": np.asarray(self.x_std, dtype=np.float64),
                "y_mean": np.asarray([self.y_mean]), "y_std": np.asarray([self.y_std])}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray]) -> Normalizer:
        return cls(np.asarray(s["x_mean"]), np.asarray(s["x_std"]), float(s["y_mean"][0]), float(s["y_std"][0]))
