"""The equal-budget protocol every reproduction's table uses: each method tuned with the same number of trials
over its declared search space (`mtlkit.experiments.tuning.tune`, validation rows of split 0 only), the chosen
configuration then trained and tested on every split.

A method's outcome (test scores per split, seconds, configurations, the tuning's record) is kept in a small JSON
file beside the results store, keyed by experiment, data checksum, method and protocol, so a stopped
reproduction continues with the methods it has not finished and a changed protocol starts afresh."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult, run_bench
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.tables import escape_markdown, markdown_table
from mtlkit.methods import registry
from mtlkit.train.config import method_defaults

CACHE_FORMAT = "mtlkit-reproduce-tuned/1"


def _cache_path(ctx: Context, experiment: str, data: MultiTaskData, method: str, key: str) -> Path:
    folder = Path(ctx.store.path).parent / "tuning"
    safe = method.replace("+", "_").replace("/", "_")
    return folder / f"{experiment}-{data.name}-{data.checksum()[:12]}-{safe}-{key}.json"


def tune_then_evaluate(ctx: Context, data: MultiTaskData, methods: Sequence[str], n_splits: int, trials: int,
                       experiment: str, metric: str | None = None, hparams: Mapping[str, Any] | None = None,
                       seed: int = 0, widen: int = 1, fixed: Mapping[str, Mapping[str, Any]] | None = None,
                       cached_only: bool = False) -> tuple[BenchResult, dict[str, dict[str, Any]]]:
    """Tune every method with ``trials`` trials on split 0's validation part (``widen`` extra rounds past an edge,
    counted), then train the choice on every one of ``n_splits`` splits and test it.

    ``hparams``: values fixed for every method that has them (e.g. ``epochs``); ``fixed``: per method, values fixed
    for that method only (a protocol's architecture). ``cached_only``: train nothing; a method whose outcome is not
    recorded yet is left out of the result (the caller says so). Returns the scores as a `BenchResult` and, per
    method, the tuning's record (`TuningResult.to_json`)."""
    ctx.record(data)
    merged: BenchResult | None = None
    tuning: dict[str, dict[str, Any]] = {}
    for m in methods:
        known = set(method_defaults(registry.get(m)))
        fx = {k: v for k, v in {**(hparams or {}), **((fixed or {}).get(m, {}))}.items() if k in known}
        key = f"t{trials}-w{widen}-s{n_splits}-seed{seed}-" + \
            hashlib.sha256(json.dumps([fx, {k: v.text() for k, v in registry.search_space(m, data.kind).items()}],
                                      sort_keys=True, default=str).encode()).hexdigest()[:8]
        path = _cache_path(ctx, experiment, data, m, key)
        rec = read_record(path, CACHE_FORMAT)
        if rec is None and cached_only:
            continue
        if rec is None:
            t0 = time.perf_counter()
            res = run_bench(data, [m], n_splits=n_splits, seed=seed, device=ctx.device, store=ctx.store,
                            hparams=fx or None, progress=ctx.progress, experiment=experiment, metric=metric,
                            trials=trials, widen=widen, tune_on="first")
            rec = {"format": CACHE_FORMAT, "method": m, "splits": res.splits, "metric": res.metric,
                   "scores": [[None if not math.isfinite(v) else float(v) for v in row] for row in res.scores[m]],
                   "seconds": res.seconds[m], "hparams": res.hparams[m], "fixed": fx,
                   "tuning": res.tuning[m].to_json() if m in res.tuning else None}
            rec = write_record(path, rec)
            print(f"{experiment} {data.name}: {m} tuned and tested in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
        if merged is None:
            merged = BenchResult(data.name, data.checksum(), data.kind, data.task_names, rec["metric"],
                                 list(rec["splits"]), notes=list(data.notes))
            merged.selection = "tuned"
        merged.scores[m] = np.array([[np.nan if v is None else v for v in row] for row in rec["scores"]])
        merged.seconds[m] = list(rec["seconds"])
        merged.hparams[m] = list(rec["hparams"])
        if rec.get("tuning"):
            tuning[m] = rec["tuning"]
    if merged is None:  # nothing recorded (cached_only)
        merged = BenchResult(data.name, data.checksum(), data.kind, data.task_names, metric or "",
                             [], notes=list(data.notes))
    return merged, tuning


def read_record(path: Path, fmt: str) -> dict[str, Any] | None:
    """A cached outcome written by `write_record`, or None when absent, unreadable or of another ``format``."""
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == fmt else None


def write_record(path: Path, rec: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``rec`` as JSON atomically (a temporary file renamed into place) and return it as a later
    `read_record` will read it back."""
    text = json.dumps(rec, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return json.loads(text)


def budget_lines(tuning: Mapping[str, Mapping[str, Any]], keys: Sequence[str] | None = None) -> list[str]:
    """The budget table of a results file: per method the trials run, the space searched, the selected values
    (``keys`` only, if given) and ⚠ for a value on the edge of its space."""
    rows = []
    for m, t in tuning.items():
        sel = t.get("best_params") or {}
        shown = {k: v for k, v in sel.items() if keys is None or k in keys}
        edges = ", ".join(f"⚠ {k} ({side})" for k, side in (t.get("edges") or {}).items()) or "–"
        rows.append([m, str(t.get("budget_text", "")), escape_markdown(str(t.get("space_text", ""))),
                     ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) or "–", edges])
    budgets = {t.get("budget") for t in tuning.values()}
    head = ["Every method was tuned with the same budget: "
            + (f"{budgets.pop()} trials" if len(budgets) == 1 else f"budgets {sorted(map(str, budgets))}")
            + " of Optuna TPE (seeded; the first trial is the method's defaults; MedianPruner on the validation "
              "loss, pruned trials counted), on split 0's validation rows, over the method's declared search space "
              "(`mtlkit methods NAME`), which switches each regulariser off (= 0) as one of its choices; a selected "
              "value on the edge of its space is marked ⚠ and its space widened once by one more round (counted "
              "in the budget column).", ""]
    return head + markdown_table(["method", "budget used", "search space", "selected", "at edge"], rows)


def edge_warnings(tuning: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every ``⚠ at edge`` line of the tunings, prefixed by the method."""
    return [f"{m}: {line}" for m, t in tuning.items() for line in t.get("edge_lines", [])]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
