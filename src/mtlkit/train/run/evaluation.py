"""Per-task metrics of a trained model on one data part (`Evaluation`), computed in bounded blocks of tasks
(`blocked_metrics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.train.metrics import PRIMARY_METRIC, compute_metrics


@dataclass
class Evaluation:
    """Per-task metrics of one data part: ``per_task[metric]`` is ``[T]``; ``mean`` averages tasks."""

    kind: str
    task_names: tuple[str, ...]
    per_task: dict[str, np.ndarray]
    mean: dict[str, float] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        """The metric model selection and leaderboards use (rmse, error %, or cross-entropy)."""
        return PRIMARY_METRIC[self.kind]

    def __str__(self) -> str:
        names = list(self.per_task)
        w = max(8, *(len(n) for n in self.task_names))
        lines = ["task".ljust(w) + "".join(f"{m:>20}" for m in names)]
        for t, nm in enumerate(self.task_names):
            lines.append(nm.ljust(w) + "".join(f"{self.per_task[m][t]:>20.4f}" for m in names))
        lines.append("mean".ljust(w) + "".join(f"{self.mean[m]:>20.4f}" for m in names))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"per_task": {m: [clean(x) for x in v] for m, v in self.per_task.items()},
                "mean": {m: clean(v) for m, v in self.mean.items()}}


#: Padded label cells (times 1 + P) one block of `blocked_metrics` holds.
METRIC_CELLS = 1 << 22


def blocked_metrics(kind: str, data: MultiTaskData, pred: np.ndarray, n_classes: Any = None,
                    max_cells: int = METRIC_CELLS) -> dict[str, np.ndarray]:
    """`compute_metrics` of predictions ``pred`` (one per labelled cell, in `Run._cell_predictions`' order)
    against ``data``'s labels, walking the tasks in blocks: each block is laid out ``[k, N(, P)]`` as the
    padded layout is (N: the part's largest task, or its rows for shared input), so every task gets exactly
    the numbers one call on the whole padded layout gives, without holding ``T x N`` cells."""
    T = data.n_tasks
    if data.xs is not None:
        assert data.ys is not None
        counts = np.array([len(v) for v in data.ys], dtype=np.int64)
        N = int(counts.max())
    else:
        assert data.y is not None
        counts = np.array([int(data.label_mask(t).sum()) for t in range(T)], dtype=np.int64)
        N = len(data.y)
    starts = np.concatenate([[0], np.cumsum(counts)])
    tail = pred.shape[1:]
    k = max(1, min(T, max_cells // max(1, N * (1 + int(np.prod(tail))))))
    pieces = []
    for t0 in range(0, T, k):
        t1 = min(T, t0 + k)
        if data.xs is not None:
            assert data.ys is not None
            mask = np.arange(N)[None, :] < counts[t0:t1, None]
            y = np.zeros((t1 - t0, N, *np.shape(data.ys[0])[1:]))
            y[mask] = np.concatenate(data.ys[t0:t1])
        else:
            assert data.y is not None
            yy = np.moveaxis(data.y[:, t0:t1], 1, 0)  # [k, N(, P)]
            mask = ~np.isnan(yy) if yy.ndim == 2 else ~np.isnan(yy).any(-1)
            y = np.nan_to_num(yy, nan=0.0).astype(np.float64)
        p = np.zeros((t1 - t0, N, *tail))
        p[mask] = pred[starts[t0]:starts[t1]]
        pieces.append(compute_metrics(kind, y, p, mask, n_classes=None if n_classes is None else n_classes[t0:t1]))
    return {m: np.concatenate([pc[m] for pc in pieces]) for m in pieces[0]}
