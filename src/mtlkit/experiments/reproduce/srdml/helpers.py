"""What the SRDML reproduction's parts share: ω pair means by group, paired differences over splits, reading
scores back from the results store, the λ sweeps around a tuned configuration, ω tables and figure helpers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult, run_bench
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.protocol import budget_lines, edge_warnings
from mtlkit.experiments.reproduce.srdml.base import SEED
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.tables import markdown_table, mean_ci_text


def pair_group_means(omega: np.ndarray, groups: np.ndarray) -> dict[int, float]:
    """Mean of ω over the unordered task pairs ``i < j`` of each group label in ``groups`` [T, T] (e.g. 2 twin,
    1 same base, 0 cross base), after rescaling ω so that its mean over all pairs is 1 (ω's scale is arbitrary)."""
    om = np.asarray(omega, dtype=np.float64)
    g = np.asarray(groups)
    if om.ndim != 2 or om.shape[0] != om.shape[1] or g.shape != om.shape:
        raise ValueError(f"omega and groups must be the same square [T, T] shape, got {om.shape} and {g.shape}")
    iu = np.triu_indices(om.shape[0], 1)
    w, lab = om[iu], g[iu]
    mean = w.mean()
    if not mean > 0:
        raise ValueError("ω has no positive pair weight: nothing to normalise")
    w = w / mean
    return {int(k): float(w[lab == k].mean()) for k in np.unique(lab)}


def contradicting_groups(base: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Pair labels for the contradicting data: 2 same base and sign, 1 same base opposite sign, 0 cross base."""
    same = base[:, None] == base[None, :]
    agree = sign[:, None] == sign[None, :]
    return np.where(same, np.where(agree, 2, 1), 0)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean ± 95% CI over splits of (task-mean of a) − (task-mean of b); ``a``, ``b`` are [splits, T] (or
    [splits] values already averaged)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (np.nanmean(a, axis=1) if a.ndim == 2 else a) - (np.nanmean(b, axis=1) if b.ndim == 2 else b)
    m, ci = mean_ci(d)
    return float(m), float(ci)


CSV_HEADER = ("part", "dataset", "method", "split", "metric", "value")


def _csv_rows(part: str, dataset: str, splits: list[str], scores: dict[str, np.ndarray], metric: str,
              label: str | None = None) -> list[list[str]]:
    """``srdml.csv``'s rows (`CSV_HEADER`) of one part: each method's task-mean ``metric`` per split."""
    return [[part, dataset, label or m, sp, metric, f"{np.nanmean(s[i]):.6g}"]
            for m, s in scores.items() for i, sp in enumerate(splits)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def store_scores(ctx: Context, experiment: str, data: MultiTaskData, res: BenchResult, metric: str,
                 scale: float = 1.0) -> dict[str, np.ndarray]:
    """Another test metric of the runs behind ``res`` (a `tune_then_evaluate` result, which collects one): per
    method [splits, T] from the results store, the latest recorded run of each (method, split) whose
    hyper-parameters are the selected ones; NaN where none is recorded."""
    rows = ctx.store.rows(experiment=experiment, dataset=data.name, checksum=data.checksum())
    out = {}
    for m, s in res.scores.items():
        arr = np.full(s.shape, np.nan)
        for i, sp in enumerate(res.splits):
            want = _norm(res.hparams[m][i])
            hits = [r for r in rows if r["method"] == m and r["split"] == sp and r["test_metrics"] is not None
                    and _norm(r["hparams"]) == want]
            if hits:
                arr[i] = [np.nan if v is None else scale * v for v in hits[-1]["test_metrics"]["per_task"][metric]]
        out[m] = arr
    return out


def _budget_section(title: str, tuning: dict[str, dict[str, Any]], keys: list[str] | None = None) -> list[str]:
    """The protocol's budget table, every ⚠ edge line, and each widening round (first selection on an edge)."""
    warn = edge_warnings(tuning)
    widened = [f"- {m}: the first {t.get('budget')} trials selected {', '.join(names)} on the edge of the declared "
               f"space; the widened round searched {s['spaces'][r + 1]}"
               for m, t in tuning.items() for s in t.get("tuned", [])
               for r, names in enumerate(s.get("widened", []))]
    return [f"### {title}", "", *budget_lines(tuning, keys), "", *widened, *([""] if widened else []),
            *([f"- {w}" for w in warn] if warn else
              ["No selected value lies on the edge of its (widened) space."]), ""]


def _matching_row(rows: list[Any], method: str, split: str, hparams: dict[str, Any]) -> Any:
    want = _norm(hparams)
    hits = [r for r in rows if r["method"] == method and r["split"] == split and r["test_metrics"] is not None
            and _norm(r["hparams"]) == want]
    return hits[-1] if hits else None


def _sweep(ctx: Context, data: MultiTaskData, hp: dict[str, Any], lam: float, n_splits: int,
           tag: str, method: str = "srdml", metrics: tuple[str, ...] = ("rmse", "mae"),
           scale: float = 1.0) -> dict[str, Any]:
    """``method`` at one fixed configuration (for SRDML: λ = ``lam``) on every split, recorded under its own
    experiment name: the test ``metrics`` [splits, T] (times ``scale``) and split 0's validation value of the
    first one (``val``)."""
    exp = f"reproduce-srdml-{tag}-lam{lam:g}" if method == "srdml" else f"reproduce-srdml-{tag}-{method}"
    fixed = {**hp, "lam": lam} if method == "srdml" else dict(hp)
    res = run_bench(data, [method], n_splits=n_splits, seed=SEED, device=ctx.device, store=ctx.store, select=False,
                    hparams=fixed, progress=ctx.progress, experiment=exp, metric=metrics[0], reuse=True)
    rows = ctx.store.rows(experiment=exp, dataset=data.name, checksum=data.checksum())
    row0 = _matching_row(rows, method, res.splits[0], res.hparams[method][0])
    val = row0["val_metrics"]["mean"][metrics[0]] if row0 is not None and row0["val_metrics"] else None
    out: dict[str, Any] = {m: store_scores(ctx, exp, data, res, m, scale)[method] for m in metrics}
    out.update(val=float("nan") if val is None else scale * float(val), splits=res.splits,
               seconds=float(np.sum(res.seconds[method])))
    return out


def _omega(ctx: Context, data: MultiTaskData, hp: dict[str, Any],
           n_splits: int) -> tuple[list[np.ndarray], list[float]]:
    """SRDML's learned ω on every split (the same seeds as the recorded runs, so the same models) and each retrained
    run's mean test RMSE (to check that it is the recorded run)."""
    import mtlkit
    from mtlkit.analysis.relations import task_relations

    out, rmse = [], []
    for i, (_, split) in enumerate(make_splits(data, n_splits, SEED)):
        run = mtlkit.train("srdml", split, hparams=hp, seed=SEED + i, device=ctx.device, progress=ctx.progress)
        out.append(np.asarray(task_relations(run)["ω (task × task)"], dtype=np.float64))
        rmse.append(float(np.nanmean(run.evaluate("test").per_task["rmse"])))
    return out, rmse


def _group_table(omegas: list[np.ndarray], groups: np.ndarray, names: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """The table of mean ω per pair group and the per-split group means [splits, groups] (groups in ``names``'
    descending key order)."""
    per = [pair_group_means(o, groups) for o in omegas]
    keys = sorted(names, reverse=True)
    arr = np.array([[p.get(k, np.nan) for k in keys] for p in per])
    rows = []
    for j, k in enumerate(keys):
        m, ci = mean_ci(arr[:, j])
        n = int((groups[np.triu_indices(len(groups), 1)] == k).sum())
        rows.append([names[k], str(n), mean_ci_text(float(m), float(ci), 3)])
    return markdown_table(["pairs", "count", "mean ω (pair mean = 1), mean ± 95% CI over splits"], rows), arr
