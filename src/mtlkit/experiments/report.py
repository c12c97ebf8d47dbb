"""Report tables from the results store, grouped like the papers' tables: rows = methods, columns = data sets
(task-averaged test metric, mean ± 95% CI over splits, and the mean rank across data sets), then Δ vs STL
(TOMATO Table 4's task-wise improvement) and tasks hurt, then one per-task table per data set; rendered as
Markdown, CSV (long form) and LaTeX (booktabs).

The computations live here once: `summarize` (mean ± CI) and `compare` (Δ vs the reference, tasks hurt,
on the splits both have) are what `mtlkit bench`'s leaderboard uses too.

CSV columns: ``dataset, method, task, split, metric, lower_is_better, statistic, value, reference``. An
empty ``task`` means averaged over tasks, an empty ``split`` means over splits, an empty ``dataset`` means
across data sets (mean rank). Statistics: ``value`` (one split, one task), ``mean``, ``ci95`` (half-width),
``n_splits``, ``delta_pct`` (Δ vs ``reference``, %), ``tasks_hurt``, ``n_tasks``, ``mean_rank``, ``n_datasets``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from mtlkit.errors import MtlkitError
from mtlkit.experiments.stats import mean_ci, nanmean, summarize, tasks_hurt, taskwise_improvement
from mtlkit.experiments.store import ResultsStore
from mtlkit.experiments.tables import Table, csv_text, decimals_for, latex_escape, markdown_table, mean_ci_text, number
from mtlkit.train.metrics import LOWER_IS_BETTER, METRICS_BY_KIND, PRIMARY_METRIC

REFERENCES = ("stl", "stl-linear")  # the single-task baseline Δ is measured against, first one present
FORMATS = ("md", "csv", "latex")

IMPROVEMENT_DEFINITION = ("Δ vs STL: TOMATO Table 4's task-wise relative gain, per task 100·(acc − acc_STL)/acc_STL on "
                          "the accuracy (a classification error e is taken as accuracy 100 − e); for metrics with no "
                          "accuracy (RMSE, MAE, cross-entropy) 100·(m_STL − m)/m_STL; averaged over tasks. Each task's "
                          "metric is first averaged over splits, using only the splits both the method and STL were "
                          "run on. Positive = better than STL.")
HURT_DEFINITION = ("Tasks hurt: tasks whose split-averaged metric is worse than STL's (negative transfer), on the "
                   "splits both were run on.")
CI_DEFINITION = ("Each cell: the test metric averaged over tasks, then mean ± half-width of the 95% Student-t "
                 "confidence interval over splits (no ± with a single split).")
RANK_DEFINITION = ("Mean rank: methods ranked within each data set by that mean (1 = best, ties share the average "
                   "rank), averaged over the data sets the method was run on (their number in brackets).")


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class ResultSet:
    """One method's test metric on one data set: ``scores`` is ``[splits, T]``, rows in the order of ``splits``."""

    dataset: str
    method: str
    kind: str
    metric: str
    task_names: tuple[str, ...]
    splits: list[str]
    scores: np.ndarray
    seconds: list[float] = field(default_factory=list)
    checksum: str = ""
    run_ids: list[int] = field(default_factory=list)

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller value of ``metric`` is better (error, RMSE) or a larger one (accuracy, AUC)."""
        return LOWER_IS_BETTER[self.metric]


@dataclass
class Comparison:
    """A method against the reference on the splits both have: per-task Δ (%), its task mean, tasks hurt."""

    reference: str
    splits: list[str]
    per_task: np.ndarray
    improvement: float
    hurt: int
    n_tasks: int


def task_summary(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each task's mean ± 95% CI half-width over splits, each ``[T]``."""
    mean, ci = mean_ci(np.asarray(scores, dtype=np.float64), axis=0)
    return np.asarray(mean), np.asarray(ci)


def compare(scores: np.ndarray, splits: Sequence[str], ref_scores: np.ndarray, ref_splits: Sequence[str],
            lower_is_better: bool, reference: str = "stl", metric: str | None = None) -> Comparison | None:
    """Δ vs the reference (TOMATO Table 4) and tasks hurt, on the split labels both have; None when none match.

    Each task's metric is averaged over the common splits first, then ``taskwise_improvement`` per task and
    its mean over tasks (tasks where the reference's metric is 0 have no defined Δ and are left out); for
    ``metric="error"`` Δ is taken on the accuracy (``stats.improvement_basis``), as TOMATO's Table 4.
    """
    common = [s for s in splits if s in set(ref_splits)]
    if not common:
        return None
    a = nanmean(np.asarray(scores, dtype=np.float64)[[list(splits).index(s) for s in common]], axis=0)
    b = nanmean(np.asarray(ref_scores, dtype=np.float64)[[list(ref_splits).index(s) for s in common]], axis=0)
    per = taskwise_improvement(a, b, lower_is_better, metric)
    return Comparison(reference, common, per, float(nanmean(per)), tasks_hurt(a, b, lower_is_better), len(per))


def default_reference(methods: Iterable[str]) -> str | None:
    """The STL baseline among ``methods``: ``stl`` if present, else ``stl-linear``, else None."""
    have = set(methods)
    return next((m for m in REFERENCES if m in have), None)


def mean_ranks(means: dict[str, dict[str, float]], lower_is_better: dict[str, bool]) -> dict[str, tuple[float, int]]:
    """Method -> (mean rank, number of data sets): rank within each data set by its mean (1 = best, ties
    averaged, NaN means left out), averaged over the data sets where the method has a rank."""
    ranks: dict[str, list[float]] = {}
    for ds, by_method in means.items():
        ok = {m: v for m, v in by_method.items() if math.isfinite(v)}
        if not ok:
            continue
        sign = 1.0 if lower_is_better[ds] else -1.0
        r = rankdata([sign * v for v in ok.values()], method="average")
        for m, rk in zip(ok, r, strict=True):
            ranks.setdefault(m, []).append(float(rk))
    return {m: (float(np.mean(v)), len(v)) for m, v in ranks.items()}


# ---------------------------------------------------------------------------------------------------- loading
def latest_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], int]]:
    """One row per (data set, method, split): the latest (highest id) of re-runs; and how many runs each
    re-run key had. Order: by the first appearance of each key."""
    keep: dict[tuple[str, str, str], dict[str, Any]] = {}
    count: dict[tuple[str, str, str], int] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        key = (r["dataset"], r["method"], r["split"])
        keep[key] = r
        count[key] = count.get(key, 0) + 1
    return list(keep.values()), {k: n for k, n in count.items() if n > 1}


def _no_rows(store: ResultsStore, experiment: str | None, what: str) -> MtlkitError:
    def have(col: str) -> str:
        vals = store.distinct(col)
        return ", ".join(vals) if vals else "none"

    return MtlkitError(f"no runs in {store.path} for {what}; the store has experiments: {have('experiment')}; "
                       f"data sets: {have('dataset')}; methods: {have('method')}")


def check_metric(metric: str, kind: str, dataset: str) -> None:
    """Raise a `MtlkitError` naming the metrics available when ``metric`` does not apply to ``kind`` tasks."""
    allowed = METRICS_BY_KIND.get(kind, ())
    if metric not in allowed:
        raise MtlkitError(f"unknown metric {metric!r} for {dataset} ({kind} tasks); metrics: {', '.join(allowed)}")


def load_results(store: ResultsStore, experiment: str | None = "bench", datasets: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None, metric: str | None = None
                 ) -> tuple[list[ResultSet], list[str]]:
    """Test scores per (data set, method) from the store, and notes on what was left out or replaced.

    Re-runs of the same (method, data set, split) keep the latest; runs on an older version of a data set
    (another checksum than its latest run) are left out. ``metric`` defaults to each data set's primary one.
    """
    where: dict[str, Any] = {}
    if experiment:
        where["experiment"] = experiment
    if datasets:
        where["dataset"] = list(datasets)
    if methods:
        where["method"] = list(methods)
    rows = [r for r in store.rows(**where) if r["test_metrics"] is not None]
    what = ", ".join(f"{k} {' or '.join(map(repr, v)) if isinstance(v, list) else repr(v)}" for k, v in where.items())
    if not rows:
        raise _no_rows(store, experiment, what or "any experiment")
    for col, asked in (("dataset", datasets), ("method", methods)):
        missing = [a for a in asked or () if a not in {r[col] for r in rows}]
        if missing:
            raise _no_rows(store, experiment, f"{col} {', '.join(map(repr, missing))}"
                           + (f" (experiment {experiment!r})" if experiment else ""))
    notes: list[str] = []
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_ds.setdefault(r["dataset"], []).append(r)
    out: list[ResultSet] = []
    replaced: dict[tuple[str, str, str], int] = {}
    for ds, ds_rows in by_ds.items():
        last = max(ds_rows, key=lambda r: r["id"])
        old = [r for r in ds_rows if r["checksum"] != last["checksum"]]
        if old:
            notes.append(f"{ds}: {len(old)} run(s) on another version of the data (checksum other than "
                         f"`{last['checksum']}` of its latest run) are left out.")
        kept, rep = latest_rows([r for r in ds_rows if r["checksum"] == last["checksum"]])
        replaced.update(rep)
        kind, names = last["kind"], tuple(last["task_names"])
        m = metric or PRIMARY_METRIC[kind]
        check_metric(m, kind, ds)
        per_method: dict[str, list[dict[str, Any]]] = {}
        for r in kept:
            per_method.setdefault(r["method"], []).append(r)
        for meth, mrows in per_method.items():
            scores = np.full((len(mrows), len(names)), np.nan)
            for i, r in enumerate(mrows):
                vals = r["test_metrics"]["per_task"].get(m)
                if vals is None:
                    raise MtlkitError(f"run {r['id']} ({meth} on {ds}, split {r['split']}) has no test {m!r}; it "
                                      f"has {', '.join(r['test_metrics']['per_task'])}")
                if len(vals) != len(names):
                    raise MtlkitError(f"run {r['id']} ({meth} on {ds}) has {len(vals)} task metrics; the data set "
                                      f"has {len(names)} tasks")
                scores[i] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
            out.append(ResultSet(ds, meth, kind, m, names, [r["split"] for r in mrows], scores,
                                 [float(r["train_seconds"] or 0.0) for r in mrows], last["checksum"],
                                 [int(r["id"]) for r in mrows]))
    if replaced:
        shown = "; ".join(f"{meth} on {ds}, split {sp} ({n} runs)" for (ds, meth, sp), n in list(replaced.items())[:8])
        more = f"; and {len(replaced) - 8} more" if len(replaced) > 8 else ""
        notes.append(f"Re-runs: where a (method, data set, split) was recorded more than once, the latest run is "
                     f"used: {shown}{more}.")
    return out, notes


# ---------------------------------------------------------------------------------------------------- report
@dataclass
class Report:
    """Everything the tables show: results per data set and method, summaries, comparisons, ranks, notes."""

    results: dict[str, dict[str, ResultSet]]
    summaries: dict[str, dict[str, tuple[float, float]]]
    references: dict[str, str | None]
    comparisons: dict[str, dict[str, Comparison | None]]
    ranks: dict[str, tuple[float, int]]
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    source: str = ""
    experiment: str | None = None

    @property
    def datasets(self) -> list[str]:
        """Data sets in the order they first appear in the store."""
        return list(self.results)


def build_report(results: Sequence[ResultSet], notes: Sequence[str] = (), reference: str | None = None,
                 source: str = "", experiment: str | None = None) -> Report:
    """Summaries, comparisons with the STL reference (per data set) and mean ranks for a set of results."""
    by_ds: dict[str, dict[str, ResultSet]] = {}
    for r in results:
        by_ds.setdefault(r.dataset, {})[r.method] = r
    notes = list(notes)
    if reference is not None and not any(reference in d for d in by_ds.values()):
        raise MtlkitError(f"reference method {reference!r} has no runs in the selection; methods: "
                          f"{', '.join(sorted({r.method for r in results}))}")
    summaries = {ds: {m: summarize(r.scores) for m, r in d.items()} for ds, d in by_ds.items()}
    refs: dict[str, str | None] = {}
    comps: dict[str, dict[str, Comparison | None]] = {}
    for ds, d in by_ds.items():
        ref = reference if reference is not None else default_reference(d)
        if ref is not None and ref not in d:
            notes.append(f"{ds}: no runs of the reference {ref!r}, so no Δ or tasks hurt.")
            ref = None
        refs[ds], comps[ds] = ref, {}
        for m, r in d.items():
            if ref is None or m == ref:
                comps[ds][m] = None
                continue
            c = compare(r.scores, r.splits, d[ref].scores, d[ref].splits, r.lower_is_better, ref, r.metric)
            comps[ds][m] = c
            if c is None:
                notes.append(f"{m} on {ds}: no split in common with {ref}, so no Δ or tasks hurt.")
            elif len(c.splits) < max(len(r.splits), len(d[ref].splits)):
                notes.append(f"{m} on {ds}: Δ and tasks hurt use the {len(c.splits)} split(s) both it and {ref} "
                             f"were run on ({', '.join(c.splits)}).")
    lib = {ds: next(iter(d.values())).lower_is_better for ds, d in by_ds.items()}
    ranks = mean_ranks({ds: {m: s[0] for m, s in d.items()} for ds, d in summaries.items()}, lib)
    all_methods = list(dict.fromkeys(r.method for r in results))
    order = sorted(all_methods, key=lambda m: (ranks.get(m, (math.inf, 0))[0], all_methods.index(m)))
    return Report(by_ds, summaries, refs, comps, ranks, order, notes, source, experiment)


def report_from_store(store: ResultsStore, experiment: str | None = "bench", datasets: Sequence[str] | None = None,
                      methods: Sequence[str] | None = None, metric: str | None = None,
                      reference: str | None = None) -> Report:
    """`load_results` then `build_report`: the report behind `mtlkit report`."""
    results, notes = load_results(store, experiment, datasets, methods, metric)
    return build_report(results, notes, reference, source=str(store.path), experiment=experiment)


# ---------------------------------------------------------------------------------------------------- tables
def _ds_decimals(rep: Report, ds: str) -> int:
    """One precision for a data set's column (from the median task-averaged mean), so its cells line up."""
    vals = [s[0] for s in rep.summaries[ds].values() if math.isfinite(s[0])]
    return decimals_for(float(np.median(vals))) if vals else 3


def _arrow(lower_is_better: bool) -> str:
    return "↓" if lower_is_better else "↑"


def _best(values: dict[int, float], lower_is_better: bool) -> set[int]:
    ok = {k: v for k, v in values.items() if math.isfinite(v)}
    if len(ok) < 2:
        return set()
    best = min(ok.values()) if lower_is_better else max(ok.values())
    return {k for k, v in ok.items() if v == best}


def _metric_label(metric: str) -> str:
    return f"{metric} %" if metric in ("error", "accuracy") else metric


def tables(rep: Report) -> list[Table]:
    """The report's tables in reading order: summary with mean rank, Δ vs STL, tasks hurt, then per task."""
    ds_list, methods = rep.datasets, rep.methods
    lib = {ds: next(iter(d.values())).lower_is_better for ds, d in rep.results.items()}
    metric = {ds: next(iter(d.values())).metric for ds, d in rep.results.items()}
    dec = {ds: _ds_decimals(rep, ds) for ds in ds_list}
    out: list[Table] = []

    header = ["method", *(f"{ds}: {_metric_label(metric[ds])} {_arrow(lib[ds])}" for ds in ds_list),
              "mean rank ↓"]
    rows: list[list[str]] = []
    bold: set[tuple[int, int]] = set()
    for j, ds in enumerate(ds_list, start=1):
        means = {i: rep.summaries[ds][m][0] for i, m in enumerate(methods) if m in rep.results[ds]}
        bold |= {(i, j) for i in _best(means, lib[ds])}
    for m in methods:
        cells = [m]
        for ds in ds_list:
            if m not in rep.results[ds]:
                cells.append("–")
                continue
            n, n_max = len(rep.results[ds][m].splits), max(len(r.splits) for r in rep.results[ds].values())
            cells.append(mean_ci_text(*rep.summaries[ds][m], dec[ds]) + (f" (n={n})" if n != n_max else ""))
        rk = rep.ranks.get(m)
        cells.append("–" if rk is None else f"{rk[0]:.2f} ({rk[1]})")
        rows.append(cells)
    splits_note = "; ".join(f"{ds}: {max(len(r.splits) for r in rep.results[ds].values())} splits" for ds in ds_list)
    out.append(Table("summary", "Test metric, mean ± 95% CI over splits", header, rows, bold,
                     [CI_DEFINITION + f" ({splits_note}; n= marks a method with fewer.) ↓ lower is better, "
                      "↑ higher is better; best in bold.", RANK_DEFINITION]))

    others = [m for m in methods if any(rep.comparisons[ds].get(m) is not None for ds in ds_list)]
    refs = sorted({r for r in rep.references.values() if r})
    ref_name = ", ".join(refs) if refs else "STL"
    head = ["method", *ds_list]
    d_rows: list[list[str]] = []
    h_rows: list[list[str]] = []
    d_bold: set[tuple[int, int]] = set()
    for j, ds in enumerate(ds_list, start=1):
        vals = {i: c.improvement for i, m in enumerate(others) if (c := rep.comparisons[ds].get(m)) is not None}
        d_bold |= {(i, j) for i in _best(vals, lower_is_better=False)}
    for m in others:
        d_cells, h_cells = [m], [m]
        for ds in ds_list:
            c = rep.comparisons[ds].get(m)
            d_cells.append("–" if c is None else number(c.improvement, "+.2f"))
            h_cells.append("–" if c is None else f"{c.hurt}/{c.n_tasks}")
        d_rows.append(d_cells)
        h_rows.append(h_cells)
    if others:
        mixed = len({rep.references[ds] for ds in ds_list}) > 1
        per_ds = ", ".join(f"{ds}: {rep.references[ds] or 'none'}" for ds in ds_list)
        ref_note = [f"Reference per data set: {per_ds}."] if mixed else []
        out.append(Table("delta", f"Δ vs STL ({ref_name}), task-wise improvement (%) ↑", head, d_rows, d_bold,
                         [IMPROVEMENT_DEFINITION, *ref_note]))
        out.append(Table("hurt", f"Tasks hurt vs STL ({ref_name}) ↓", head, h_rows, set(),
                         [HURT_DEFINITION, *ref_note]))

    for ds in ds_list:
        d = rep.results[ds]
        ms = [m for m in methods if m in d]
        stats = {m: task_summary(d[m].scores) for m in ms}
        names = next(iter(d.values())).task_names
        t_rows: list[list[str]] = []
        t_bold: set[tuple[int, int]] = set()
        for t, nm in enumerate(names):
            t_rows.append([nm, *(mean_ci_text(float(stats[m][0][t]), float(stats[m][1][t]), dec[ds]) for m in ms)])
            t_bold |= {(t, j + 1) for j in _best({j: float(stats[m][0][t]) for j, m in enumerate(ms)}, lib[ds])}
        t_rows.append(["mean over tasks", *(mean_ci_text(*rep.summaries[ds][m], dec[ds]) for m in ms)])
        out.append(Table(f"per-task:{ds}", f"{ds}: test {_metric_label(metric[ds])} per task {_arrow(lib[ds])}",
                         ["task", *ms], t_rows, t_bold,
                         ["Each cell: the task's test metric, mean ± 95% CI over splits; best per task in bold. "
                          "Last row: the summary table's cell."]))
    return out


# ---------------------------------------------------------------------------------------------------- renderers
def to_markdown(rep: Report, title: str = "") -> str:
    """The report as Markdown: provenance, the data sets, every table with its definitions underneath."""
    exp = f"experiment `{rep.experiment}`" if rep.experiment else "all experiments"
    out = [f"# {title or 'mtlkit report'}", "",
           f"Source: `{rep.source}`, {exp}; {len(rep.datasets)} data set(s), {len(rep.methods)} method(s).", ""]
    data_rows = []
    for ds, d in rep.results.items():
        r = next(iter(d.values()))
        splits = list(dict.fromkeys(s for x in d.values() for s in x.splits))
        data_rows.append([ds, str(len(r.task_names)), r.kind,
                          f"{r.metric} ({'lower' if r.lower_is_better else 'higher'} is better)", ", ".join(splits),
                          f"`{r.checksum}`"])
    out += markdown_table(["data set", "tasks", "kind", "metric", "splits", "checksum"], data_rows, escape=True)
    out.append("")
    out += [f"- {n}" for n in rep.notes] + ([""] if rep.notes else [])
    for tb in tables(rep):
        out += [f"## {tb.title}", "", *tb.markdown(align="l" + "r" * (len(tb.header) - 1))]
        out += [""] + [f"{n}" for n in tb.notes] + [""]
    return "\n".join(out)


def to_csv(rep: Report) -> str:
    """The report in long (tidy) form, one value a line; see the module docstring for the columns."""
    rows: list[list[Any]] = []

    def num(x: float | int) -> str:
        return number(x, ".10g", "")

    for ds, d in rep.results.items():
        for m in [m for m in rep.methods if m in d]:
            r = d[m]
            base = [ds, m]
            lib = str(r.lower_is_better).lower()
            for i, sp in enumerate(r.splits):
                for t, nm in enumerate(r.task_names):
                    rows.append([*base, nm, sp, r.metric, lib, "value", num(float(r.scores[i, t])), ""])
            mean, ci = task_summary(r.scores)
            c = rep.comparisons[ds].get(m)
            for t, nm in enumerate(r.task_names):
                rows.append([*base, nm, "", r.metric, lib, "mean", num(float(mean[t])), ""])
                rows.append([*base, nm, "", r.metric, lib, "ci95", num(float(ci[t])), ""])
                if c is not None:
                    rows.append([*base, nm, "", r.metric, lib, "delta_pct", num(float(c.per_task[t])), c.reference])
            s_mean, s_ci = rep.summaries[ds][m]
            rows.append([*base, "", "", r.metric, lib, "mean", num(s_mean), ""])
            rows.append([*base, "", "", r.metric, lib, "ci95", num(s_ci), ""])
            rows.append([*base, "", "", r.metric, lib, "n_splits", len(r.splits), ""])
            rows.append([*base, "", "", r.metric, lib, "n_tasks", len(r.task_names), ""])
            if c is not None:
                rows.append([*base, "", "", r.metric, lib, "delta_pct", num(c.improvement), c.reference])
                rows.append([*base, "", "", r.metric, lib, "tasks_hurt", c.hurt, c.reference])
    for m in rep.methods:
        if m in rep.ranks:
            rows.append(["", m, "", "", "", "true", "mean_rank", num(rep.ranks[m][0]), ""])
            rows.append(["", m, "", "", "", "true", "n_datasets", rep.ranks[m][1], ""])
    return csv_text(["dataset", "method", "task", "split", "metric", "lower_is_better", "statistic", "value",
                     "reference"], rows)


def to_latex(rep: Report) -> str:
    """The report's tables as LaTeX ``table`` environments with booktabs rules (needs ``\\usepackage{booktabs}``)."""
    exp = f"experiment {rep.experiment}" if rep.experiment else "all experiments"
    out = [f"% mtlkit report: {latex_escape(rep.source)}, {latex_escape(exp)}",
           "% needs \\usepackage{booktabs}", ""]
    for n in rep.notes:
        out.append("% " + latex_escape(n))
    for tb in tables(rep):
        last = {len(tb.rows) - 1} if tb.key.startswith("per-task") else set()
        out += [*tb.latex(midrule_before=last), ""]
    return "\n".join(out)


def write_report(rep: Report, out_dir: str | Path, formats: Sequence[str] = FORMATS, stem: str = "report",
                 title: str = "") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and/or ``<stem>.tex`` under ``out_dir``; returns the paths."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise MtlkitError(f"unknown report format(s) {', '.join(bad)}; formats: {', '.join(FORMATS)}")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in formats:
        p = d / f"{stem}.{'tex' if f == 'latex' else f}"
        p.write_text({"md": lambda: to_markdown(rep, title), "csv": lambda: to_csv(rep),
                      "latex": lambda: to_latex(rep)}[f]())
        paths.append(p)
    return paths
