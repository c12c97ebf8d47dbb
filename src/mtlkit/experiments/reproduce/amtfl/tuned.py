"""The equal-budget protocol on the paper's own splits and scores (`tuned_table`, `Tuned`), the per-method
JSON cache beside the results store, and the small formatters every section shares."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mtlkit import progress
from mtlkit.data.splits import Split
from mtlkit.experiments.reproduce.amtfl.settings import CACHE_FORMAT, SEED, WIDEN, ScoreFn, Spec
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.protocol import (
    budget_lines,
    edge_warnings,
    read_record,
    write_record,
)
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.tables import mean_ci_text


def _cell(values: ArrayLike, decimals: int = 2) -> str:
    """``mean ± CI`` over splits of one value per split (`mtlkit.experiments.tables.mean_ci_text`: the mean alone
    when there is no CI)."""
    return mean_ci_text(*_mci(values), decimals)


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[float, float]:
    """Mean ± 95% CI over splits of a − b."""
    return _mci(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def _mci(v: ArrayLike) -> tuple[float, float]:
    """Mean and 95% CI half-width (NaN with fewer than 2 values) of per-split values."""
    m, c = mean_ci(np.asarray(v, dtype=np.float64))
    return float(m), float(c)


def rmse_scores(run: Any, split: Split, part: str) -> np.ndarray:
    """Per-task RMSE [T] of a run on a split's part."""
    return np.asarray(run.evaluate(part).per_task["rmse"], dtype=np.float64)


@dataclasses.dataclass
class Tuned:
    """One method's outcome in a table: test scores ``[splits, n]``, training seconds and configuration per split,
    the tuning's record (`TuningResult.to_json`) and ``inspect(run, split)`` of the selected run per split."""

    label: str
    method: str
    splits: list[str]
    scores: np.ndarray
    seconds: list[float]
    hparams: list[dict[str, Any]]
    tuning: dict[str, Any]
    inspected: list[Any]

    def matrix(self) -> np.ndarray:
        """Scores as [splits, n]."""
        return self.scores

    def per_split(self) -> np.ndarray:
        """The score averaged over tasks (or classes), one value per split."""
        return np.nanmean(self.scores, axis=1)


def _split_key(splits: Sequence[tuple[str, Split]]) -> str:
    """A digest of the splits: labels, the data's checksum and every part's row indices."""
    h = hashlib.sha256()
    src = splits[0][1].source or splits[0][1].train
    h.update(src.checksum().encode())
    for label, s in splits:
        h.update(label.encode())
        for part in ("train", "val", "test"):
            idx = s.indices.get(part)
            arrs = idx if isinstance(idx, (list, tuple)) else [idx]
            for a in arrs:
                if a is not None:
                    h.update(np.ascontiguousarray(np.asarray(a), dtype=np.int64).tobytes())
    return h.hexdigest()[:12]


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _cache_dir(ctx: Context) -> Path:
    return Path(ctx.store.path).parent / "tuning"


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_record(path, CACHE_FORMAT)


def _write_json(path: Path, rec: dict[str, Any]) -> dict[str, Any]:
    return write_record(path, _jsonable(rec))


def tuned_table(ctx: Context, experiment: str, splits: Sequence[tuple[str, Split]], specs: Mapping[str, Spec],
                trials: int, score: ScoreFn, *, widen: int = WIDEN,
                inspect: Mapping[str, Callable[[Any, Split], Any]] | None = None) -> dict[str, Tuned]:
    """The equal-budget protocol on the paper's own splits and scores: per method (``specs``: label → (registry
    method, fixed values)), `mtlkit.experiments.tuning.tune` with ``trials`` trials on split 0's validation rows,
    then the selected configuration trained on every split (`tuned_run`, seed = split index), tested by
    ``score(run, split, "test")`` and recorded in the store; ``inspect[label](run, split)`` (JSON-able) is kept per
    split. Each method's outcome is cached beside the store (keyed by method, fixed values, space, trials, splits
    and code version), so a stopped reproduction continues where it stopped."""
    from mtlkit.experiments.tuning import tune, tuned_run
    from mtlkit.methods import registry

    src = splits[0][1].source or splits[0][1].train
    ctx.record(src)
    kind = splits[0][1].train.kind
    skey = _split_key(splits)
    out: dict[str, Tuned] = {}
    for label, (method, fixed) in specs.items():
        look = (inspect or {}).get(label)
        space = {k: v.text() for k, v in registry.search_space(method, kind).items()}
        key = hashlib.sha256(json.dumps(
            [CACHE_FORMAT, method, _jsonable(fixed), space,
             trials, widen, SEED, skey, getattr(score, "__qualname__", str(score)),
             getattr(look, "__qualname__", None)], sort_keys=True, default=str).encode()).hexdigest()[:12]
        safe = label.lower().replace(" ", "-")
        path = _cache_dir(ctx) / f"{experiment}-{safe}-{key}.json"
        rec = _read_json(path)
        if rec is None:
            t0 = time.perf_counter()
            res = tune(method, list(splits), trials=trials, seed=SEED, fixed=fixed, widen=widen, device=ctx.device,
                       progress=ctx.progress)
            scores, secs, hps, insp = [], [], [], []
            for i, (name, split) in enumerate(splits):
                run = tuned_run(res, i, split, device=ctx.device, progress=ctx.progress)
                scores.append(np.asarray(score(run, split, "test"), dtype=np.float64))
                secs.append(float(run.train_seconds))
                hps.append(dict(run.hparams))
                insp.append(look(run, split) if look is not None else None)
                ctx.store.add(run, experiment, name, run.evaluate("val") if split.val is not None else None,
                              run.evaluate("test"))
            rec = _write_json(path, {"format": CACHE_FORMAT, "label": label, "method": method,
                                     "splits": [n for n, _ in splits], "scores": [s.tolist() for s in scores],
                                     "seconds": secs, "hparams": hps, "tuning": res.to_json(), "inspected": insp})
            progress.step(f"{experiment}: {label} tuned ({trials} trials) and tested on {len(splits)} split(s) in "
                          f"{time.perf_counter() - t0:.0f} s", ctx.progress)
        out[label] = Tuned(label, method, list(rec["splits"]),
                           np.array([[np.nan if v is None else v for v in row] for row in rec["scores"]],
                                    dtype=np.float64),
                           list(rec["seconds"]), list(rec["hparams"]), rec["tuning"], list(rec["inspected"]))
    return out


def _budget_section(title: str, tables: Mapping[str, Any]) -> list[str]:
    """The budget table and every ⚠ at-edge line of one table's tuning records."""
    tuning = {lbl: (t.tuning if isinstance(t, Tuned) else t) for lbl, t in tables.items()}
    lines = [f"**Tuning budget ({title})**", "", *budget_lines(tuning)]
    edges = edge_warnings(tuning)
    lines += ["", *(f"- {e}" for e in edges)] if edges else ["", "No selected value on the edge of its space."]
    return lines


def _selected(t: Tuned, keys: Sequence[str] | None = None) -> str:
    sel = t.tuning.get("best_params") or {}
    return ", ".join(f"{k}={_g(v)}" for k, v in sel.items() if keys is None or k in keys) or "defaults"


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _cached(ctx: Context, name: str, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once per ``key`` (a JSON-able description of its inputs), kept beside the store."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, _jsonable(key)], sort_keys=True, default=str).encode())
    path = _cache_dir(ctx) / f"{name}-{digest.hexdigest()[:12]}.json"
    rec = _read_json(path)
    if rec is None:
        rec = _write_json(path, {"format": CACHE_FORMAT, **compute()})
    return rec
