"""Shared-module capacity sweep (Wu, Zhang & Ré, ICLR'20, §2.2 and §3.3 / Fig. 6): train a hard-share model whose
shared module has output width r, and single-task models of width r, for every r in a list, and collect the
validation / test metrics that `mtlkit.analysis.capacity.capacity_table` compares per task.

An experiment (it trains), so it sits above the Trainer; the pure comparison stays in `mtlkit.analysis.capacity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlkit.analysis.capacity import CapacityResult
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.train.run import train

__all__ = ["capacity_sweep"]


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
            run = train(method, split, {**base, "hidden": [*map(int, prefix), r]}, seed=seed, device=device,
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
