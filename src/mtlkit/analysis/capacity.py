"""Shared-module capacity sweep (Wu, Zhang & Ré, ICLR'20, §2.2 and §3.3 / Fig. 6): train a hard-share model whose
shared module has output width r, and single-task models of width r, for every r in a list; then compare per task
the STL model at its OWN best width (chosen per task on validation) with the MTL model at ONE shared width
(chosen on the task-averaged validation metric). The paper's claim: the best shared capacity is well below the sum
of the STL capacities, and MTL at that capacity matches or beats STL.

`capacity_table` turns the validation/test matrices into the per-task table (pure, so it can be checked by hand);
the sweep that trains the models (`mtlkit.experiments.capacity.capacity_sweep`) sits above the Trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.errors import MtlkitError

HIGHER_IS_BETTER = frozenset({"accuracy", "auc", "r2", "spearman", "precision", "recall", "f1", "explained_variance"})


@dataclass
class CapacityResult:
    """Per width (rows) and task (columns) validation and test metrics of the MTL and STL models."""

    widths: list[int]
    task_names: tuple[str, ...]
    metric: str
    mtl_val: np.ndarray
    mtl_test: np.ndarray
    stl_val: np.ndarray
    stl_test: np.ndarray
    train_seconds: float = 0.0
    runs: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)  # ("mtl"|"stl", width) -> Run

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    def table(self) -> Any:
        """The per-task comparison as a pandas DataFrame (see `capacity_table`)."""
        return capacity_table(self.widths, self.task_names, self.mtl_val, self.mtl_test, self.stl_val,
                              self.stl_test, self.higher_is_better)


def _best(values: np.ndarray, higher: bool) -> int:
    """Index of the best value (first on ties); NaN never wins."""
    v = np.where(np.isnan(values), -np.inf if higher else np.inf, values)
    return int(np.argmax(v) if higher else np.argmin(v))


def capacity_table(widths: Sequence[int], task_names: Sequence[str], mtl_val: np.ndarray, mtl_test: np.ndarray,
                   stl_val: np.ndarray, stl_test: np.ndarray, higher_is_better: bool) -> Any:
    """Rows per task + ``Overall``: STL width (per-task best on val), STL test, MTL width (one, best on the
    task-mean val), MTL test, MTL − STL. Overall: STL capacity = SUM of the per-task widths (the paper's 1205),
    metrics = task means."""
    from mtlkit._optional import require

    pd = require("pandas", "the capacity table")

    W, T = len(widths), len(task_names)
    arrs = [np.asarray(a, dtype=np.float64) for a in (mtl_val, mtl_test, stl_val, stl_test)]
    for a in arrs:
        if a.shape != (W, T):
            raise MtlkitError(f"capacity_table needs [widths={W}, tasks={T}] matrices, got {a.shape}")
    mv, mt, sv, st = arrs
    j_mtl = _best(np.nanmean(mv, axis=1), higher_is_better)
    rows = []
    for t, name in enumerate(task_names):
        j = _best(sv[:, t], higher_is_better)
        rows.append({"task": name, "stl_width": int(widths[j]), "stl_test": st[j, t],
                     "mtl_width": int(widths[j_mtl]), "mtl_test": mt[j_mtl, t],
                     "mtl_minus_stl": mt[j_mtl, t] - st[j, t]})
    df = pd.DataFrame(rows)
    overall: dict[str, Any] = {"task": "Overall", "stl_width": int(df["stl_width"].sum()),
                               "stl_test": float(df["stl_test"].mean()), "mtl_width": int(widths[j_mtl]),
                               "mtl_test": float(df["mtl_test"].mean())}
    overall["mtl_minus_stl"] = overall["mtl_test"] - overall["stl_test"]
    return pd.concat([df, pd.DataFrame([overall])], ignore_index=True)
