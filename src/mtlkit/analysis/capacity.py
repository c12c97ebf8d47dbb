"""Shared-module capacity sweep (Wu, Zhang & Ré, ICLR'20, §2.2 and §3.3 / Fig. 6): train a hard-share model whose
shared module has output width r, and single-task models of width r, for every r in a list; then compare per task
the STL model at its OWN best width (chosen per task on validation) with the MTL model at ONE shared width
(chosen on the task-averaged validation metric). The paper's claim: the best shared capacity is well below the sum
of the STL capacities, and MTL at that capacity matches or beats STL.

`capacity_sweep` trains (``mtl`` and ``stl`` methods, ``hidden = [*prefix, r]``); `capacity_table` turns the
validation/test matrices into the per-task table (pure, so it can be checked by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.data.splits import Split
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
    import pandas as pd

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
    overall = {"task": "Overall", "stl_width": int(df["stl_width"].sum()), "stl_test": float(df["stl_test"].mean()),
               "mtl_width": int(widths[j_mtl]), "mtl_test": float(df["mtl_test"].mean())}
    overall["mtl_minus_stl"] = overall["mtl_test"] - overall["stl_test"]
    return pd.concat([df, pd.DataFrame([overall])], ignore_index=True)


def capacity_sweep(split: Split, widths: Sequence[int], hparams: dict[str, Any] | None = None,
                   prefix: Sequence[int] = (), metric: str | None = None, seed: int = 0, device: Any = None,
                   mtl: str = "hard-share", stl: str = "stl", progress: bool | None = False,
                   keep_runs: bool = False, stl_hparams: dict[str, Any] | None = None) -> CapacityResult:
    """Train ``mtl`` and ``stl`` with ``hidden = [*prefix, r]`` for every width r (other hyper-parameters from
    ``hparams``, e.g. ``head_hidden=[]`` for linear heads; ``stl_hparams``, when given, replaces them for the STL
    method, e.g. each method's own tuned training settings) and collect val/test ``metric`` (default: primary).

    The STL method trains the T single-task networks batched in one run (one early-stopping epoch for all tasks);
    per-task width selection happens afterwards on the per-task validation metric. ``keep_runs`` keeps every
    trained `Run` in ``result.runs[("mtl" | "stl", r)]``.
    """
    import mtlkit

    ws = [int(w) for w in widths]
    if not ws or any(w < 1 for w in ws) or len(set(ws)) != len(ws):
        raise ValueError(f"widths must be distinct positive integers, got {list(widths)}")
    if any(int(p) < 1 for p in prefix):
        raise ValueError(f"prefix widths must be positive integers, got {list(prefix)}")
    if split.val is None or split.test is None:
        raise MtlkitError("capacity_sweep needs a split with validation and test parts")
    hp = dict(hparams or {})
    shp = dict(stl_hparams) if stl_hparams is not None else hp
    if "hidden" in hp or "hidden" in shp:
        raise ValueError("capacity_sweep sets 'hidden' itself (hidden = [*prefix, r]); pass prefix instead")
    T = split.train.n_tasks
    out = {k: np.full((len(ws), T), np.nan) for k in ("mv", "mt", "sv", "st")}
    secs, name = 0.0, metric
    runs: dict[tuple[str, int], Any] = {}
    for i, r in enumerate(ws):
        for method, (kv, kt), base in ((mtl, ("mv", "mt"), hp), (stl, ("sv", "st"), shp)):
            run = mtlkit.train(method, split, {**base, "hidden": [*map(int, prefix), r]}, seed=seed, device=device,
                               progress=progress)
            secs += run.train_seconds
            if keep_runs:
                runs[("mtl" if method == mtl else "stl", r)] = run
            ev_val, ev_test = run.evaluate("val"), run.evaluate("test")
            name = name or ev_val.primary
            if name not in ev_val.per_task:
                raise MtlkitError(f"metric {name!r} is not computed for {ev_val.kind} tasks; known: "
                                  f"{', '.join(ev_val.per_task)}")
            out[kv][i], out[kt][i] = ev_val.per_task[name], ev_test.per_task[name]
    return CapacityResult(ws, split.train.task_names, str(name), out["mv"], out["mt"], out["sv"], out["st"], secs, runs)
