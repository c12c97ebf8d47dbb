"""What every part of the transfer reproduction shares: its name, seeds and budgets, the per-step cache beside
the results store, and small numeric helpers."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.stats import mean_ci

NAME = "transfer"
DESCRIPTION = ("Wu, Zhang & Ré (ICLR 2020) information transfer: synthetic Figs. 3 and 8, SVD re-weighting under "
               "label noise, sentiment STL/MTL/alignment (equal tuning budgets), capacity, similarity, transfer")
PARTS = ("synthetic", "noise", "sentiment")
SEED = 0
OUT_NAME = "information-transfer"
PAPER = "Wu, Zhang & Ré (ICLR 2020)"
SOURCE = f"{OUT_NAME}.md"
DEFAULT_TRIALS = 16
QUICK_TRIALS = 2
CACHE_FORMAT = "mtlkit-transfer-cache/1"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    return str(o)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_json_default))


CACHE_STATS: dict[str, float] = {"reused": 0, "computed": 0}  # this process's cache use, for the provenance


def cached(ctx: Context | None, part: str, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` (a JSON-able dict), kept in a file beside the results store (``tuning/transfer-PART-*.json``)
    under ``key`` (the protocol: data checksum, trials, splits, sizes), so a stopped reproduction continues with
    the parts it has not finished and a changed protocol computes afresh. ``ctx=None``: no file."""
    k = _jsonable(key)
    if ctx is None:
        return _jsonable(compute())
    h = hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(ctx.store.path).parent / "tuning" / f"{NAME}-{part}-{h}.json"
    if path.is_file():
        try:
            rec = json.loads(path.read_text())
            if rec.get("format") == CACHE_FORMAT and rec.get("key") == k:
                CACHE_STATS["reused"] += 1
                return rec["value"]
        except (OSError, json.JSONDecodeError):
            pass
    t0 = time.perf_counter()
    value = _jsonable(compute())
    CACHE_STATS["computed"] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "key": k, "value": value}))
    tmp.replace(path)
    print(f"{NAME}: {part} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return value


def _nanmean0(a: np.ndarray) -> np.ndarray:
    """``nanmean`` over axis 0, NaN (silently) where every value is NaN (a pair matrix's diagonal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=0)


def _fmtv(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").lower()


def _mc(x: Any) -> tuple[float, float]:
    """Mean and 95% CI half-width (NaN with fewer than two values) of a 1-d array, NaNs ignored."""
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    m, c = mean_ci(v)
    return float(m), float(c)
