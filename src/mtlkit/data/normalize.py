"""Feature and target standardisation fitted on training rows, kept with the model so predictions
on raw inputs come back on the original scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtlkit.data.multitask import MultiTaskData


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
        """Statistics of the training rows (all tasks pooled); constant features keep std 1."""
        xs = train.xs if train.xs is not None else [train.x]
        rows = np.concatenate([X.reshape(len(X), -1) for X in xs], axis=0)
        vector = len(train.feature_shape) == 1
        if not standardize_x:
            norm = cls.identity(train.feature_shape)
        elif vector:
            mean, std = rows.mean(0), rows.std(0)
            norm = cls(mean, np.where(std > 1e-12, std, 1.0))
        else:
            mean, std = rows.mean(), rows.std()
            norm = cls(np.asarray(mean), np.asarray(std if std > 1e-12 else 1.0))
        if standardize_y and train.kind == "regression":
            ys = np.concatenate([train.task_arrays(t)[1] for t in range(train.n_tasks)])
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
        """Standardised copy of ``data`` (targets too, for regression)."""
        out = data.with_features(self.x)
        if data.kind == "regression" and (self.y_mean != 0.0 or self.y_std != 1.0):
            if out.ys is not None:
                out.ys = [self.y(y) for y in out.ys]
            else:
                out.y = self.y(out.y)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"x_mean": np.asarray(self.x_mean, dtype=np.float64),
                "x_std": np.asarray(self.x_std, dtype=np.float64),
                "y_mean": np.asarray([self.y_mean]), "y_std": np.asarray([self.y_std])}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray]) -> Normalizer:
        return cls(np.asarray(s["x_mean"]), np.asarray(s["x_std"]), float(s["y_mean"][0]), float(s["y_std"][0]))
