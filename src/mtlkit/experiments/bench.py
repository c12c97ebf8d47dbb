"""`mtlkit bench`: several methods on one data set over several splits, each selected on validation,
summarised as a leaderboard (mean ± 95% CI, task-wise improvement over STL, tasks hurt).

The leaderboard's numbers come from `mtlkit.experiments.report` (`summarize`, `compare`), the same
functions behind `mtlkit report`, so a bench and a report of its store agree."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments import report
from mtlkit.experiments.splits import make_splits as make_splits  # re-exported: the splits moved out
from mtlkit.experiments.store import ResultsStore
from mtlkit.experiments.tables import csv_text, markdown_table, mean_ci_text
from mtlkit.methods import registry
from mtlkit.progress import progress_bar, scope
from mtlkit.train.metrics import LOWER_IS_BETTER, METRICS_BY_KIND, PRIMARY_METRIC
from mtlkit.train.run import train

IMPROVEMENT_DEFINITION = report.IMPROVEMENT_DEFINITION + " " + report.HURT_DEFINITION


@dataclass
class BenchResult:
    """Test metric per method, split and task (``scores[method]`` is ``[splits, T]``) and the runs' details."""

    dataset: str
    checksum: str
    kind: str
    task_names: tuple[str, ...]
    metric: str
    splits: list[str]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    hparams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    selection: str = "grid"  # "grid" (each method's default grid), "tuned" (equal budgets, `tuning`), "none"
    grid_sizes: dict[str, int] = field(default_factory=dict)  # configurations per split and method (grid mode)
    tuning: dict[str, Any] = field(default_factory=dict)  # method -> `mtlkit.experiments.tuning.TuningResult`

    def edges(self, method: str) -> dict[str, str]:
        """The method's tuned values on the edge of their search space (name -> low/high); empty untuned."""
        t = self.tuning.get(method)
        return dict(t.edges) if t is not None else {}

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller value of the metric is better."""
        return LOWER_IS_BETTER[self.metric]

    def result_sets(self) -> list[report.ResultSet]:
        """The scores as `report.ResultSet`s, one per method, for the report's tables and computations."""
        return [report.ResultSet(self.dataset, m, self.kind, self.metric, self.task_names, list(self.splits), s,
                                 list(self.seconds[m]), self.checksum) for m, s in self.scores.items()]


@dataclass
class LeaderboardRow:
    """One method's line: mean ± 95% CI over splits, Δ vs STL (%), tasks hurt, total time."""

    method: str
    mean: float
    ci: float
    improvement: float | None
    hurt: int | None
    seconds: float


def run_bench(data: MultiTaskData, methods: Sequence[str], n_splits: int = 3, seed: int = 0,
              device: str | None = None, store: ResultsStore | None = None, select: bool = True,
              hparams: dict[str, Any] | None = None, progress: bool | None = None,
              experiment: str = "bench", metric: str | None = None,
              grids: dict[str, dict[str, list[Any]]] | None = None, reuse: bool = False,
              trials: int | None = None, time_budget: float | None = None, widen: int = 0,
              tune_on: str = "first", groups: Any = None) -> BenchResult:
    """Train every method on every split (grid-selected on validation), record the runs, collect test scores.

    ``trials``: equal-budget tuning instead of the grids: every method gets ``trials`` TPE trials over its declared
    search space (`mtlkit.experiments.tuning.tune`, scored on validation rows), ``time_budget`` seconds at most,
    ``widen`` re-searches past an edge, on the first split's validation (``tune_on="first"``, the choice then
    trained on every split) or on each split's own (``"each"``); the results are in ``BenchResult.tuning``.
    ``reuse`` applies to grid selection only. ``groups`` (``"auto"``, a number of groups, a groups file or index
    groups): also ``METHOD@groups``, one model per group of tasks (`mtlkit.experiments.affinity.add_grouped`).

    ``metric``: the test metric collected (default: the kind's primary one; selection always uses the
    primary one). ``grids``: a selection grid per method name replacing its default grid. ``reuse``: take
    a (method, split) already recorded in ``store`` under this experiment, data checksum and split name
    instead of training it again, so an interrupted run continues where it stopped; only a run whose recorded
    hyper-parameters agree with this call's (fixed values equal, searched ones on the grid) is reused, so a
    changed protocol retrains."""
    entries = [registry.get(m) for m in methods]
    for e in entries:
        if data.kind not in e.kinds:
            raise MtlkitError(f"method {e.name!r} does not handle {data.kind} tasks")
    unknown = sorted(set(hparams or {}) - set().union(*(_known(e) for e in entries)))
    if unknown:
        raise MtlkitError(f"hyper-parameter(s) {', '.join(unknown)} belong to none of the methods "
                          f"{', '.join(e.name for e in entries)} (see `mtlkit methods NAME`)")
    splits = make_splits(data, n_splits, seed)
    metric = metric or PRIMARY_METRIC[data.kind]
    if metric not in METRICS_BY_KIND[data.kind]:
        raise MtlkitError(f"metric {metric!r} is not computed for {data.kind} tasks; choose from "
                          f"{', '.join(METRICS_BY_KIND[data.kind])}")
    checksum = data.checksum()
    reuse = reuse and trials is None  # a tuned configuration is known only after tuning
    done = _recorded(store, experiment, data.name, checksum) if reuse and store is not None else {}
    res = BenchResult(data.name, checksum, data.kind, data.task_names, metric, [s for s, _ in splits],
                      notes=list(data.notes), selection="tuned" if trials is not None else "grid" if select else "none")
    tune_kw = dict(trials=trials, time_budget=time_budget, widen=widen, selection=tune_on, seed=seed, device=device,
                   progress=False if progress is False else None)
    for e in entries:
        res.scores[e.name] = np.full((len(splits), data.n_tasks), np.nan)
        res.seconds[e.name], res.hparams[e.name] = [], []
    desc = f"{experiment} {data.name}"  # "bench digits": progress lines read "bench digits: stl seed-0 done in ..."
    with progress_bar(len(splits) * len(entries), desc, progress) as bar:
        for i, (label, split) in enumerate(splits):
            for e in entries:
                hp = {k: v for k, v in (hparams or {}).items() if k in _known(e)}
                grid = (grids or {}).get(e.name, e.grid_for(data.kind)) if select else None
                grid = {k: v for k, v in (grid or {}).items() if k not in hp} or None
                res.grid_sizes[e.name] = math.prod(len(v) for v in (grid or {}).values())
                prev = _matching(done.get((e.name, label), []), hp, grid)
                if prev is not None:
                    stored = prev["test_metrics"]["per_task"][metric]
                    res.scores[e.name][i] = [np.nan if v is None else v for v in stored]
                    res.seconds[e.name].append(float(prev["train_seconds"] or 0.0))
                    res.hparams[e.name].append(prev["hparams"])
                    bar.advance(status=f"{e.name} {label} recorded ({metric} {np.nanmean(res.scores[e.name][i]):.4g})")
                    continue
                t0 = time.perf_counter()
                with scope(f"{desc}: {e.name} {label}"):  # labels the run's own epoch progress
                    if trials is not None:
                        run = _tuned_run(res, e.name, i, splits, hp, tune_kw)
                    else:
                        run = train(e.name, split, hparams=hp, grid=grid, seed=seed + i, device=device,
                                    progress=False if progress is False else None)
                test_ev = run.evaluate("test")
                val_ev = run.evaluate("val") if split.val is not None else None
                res.scores[e.name][i] = test_ev.per_task[metric]
                res.seconds[e.name].append(time.perf_counter() - t0)
                res.hparams[e.name].append(run.hparams)
                if store is not None:
                    store.add(run, experiment, label, val_ev, test_ev)
                bar.advance(status=f"{e.name} {label} done in {res.seconds[e.name][-1]:.1f} s "
                                   f"({metric} {test_ev.mean[metric]:.4g})")
    if groups is not None:  # one model per group of tasks, beside all-in-one and STL (issue 14)
        from mtlkit.experiments.affinity import add_grouped

        add_grouped(res, splits, [e.name for e in entries], groups, select=select, grids=grids, hparams=hparams,
                    seed=seed, device=device, progress=progress)
    return res


def _tuned_run(res: BenchResult, method: str, i: int, splits: list[tuple[str, Split]], fixed: dict[str, Any],
               tune_kw: dict[str, Any]) -> Any:
    """Split ``i``'s run of a tuned method: the method is tuned when first met (its budget, on the first or on every
    split), then each split gets its selected configuration (the tuning's own run when it trained it)."""
    from mtlkit.experiments.tuning import tune, tuned_run

    if method not in res.tuning:
        res.tuning[method] = tune(method, splits, fixed=fixed, **tune_kw)
    return tuned_run(res.tuning[method], i, splits[i][1], device=tune_kw.get("device"),
                     progress=tune_kw.get("progress"))


def _recorded(store: ResultsStore, experiment: str, dataset: str, checksum: str) -> dict[tuple[str, str], list[Any]]:
    """The recorded runs per (method, split) of this experiment on exactly these data, oldest first."""
    out: dict[tuple[str, str], list[Any]] = {}
    for r in store.rows(experiment=experiment, dataset=dataset, checksum=checksum):
        if r["test_metrics"] is not None:
            out.setdefault((r["method"], r["split"]), []).append(r)
    return out


def _matching(rows: list[Any], hp: dict[str, Any], grid: dict[str, list[Any]] | None) -> Any:
    """The latest recorded run whose hyper-parameters agree with this call's: every fixed value equal and every
    searched one on the grid. Runs recorded under other settings (an older protocol) are not reused."""
    def norm(v: Any) -> Any:
        return json.loads(json.dumps(v))

    for r in reversed(rows):
        rec = r["hparams"] or {}
        if all(k in rec and rec[k] == norm(v) for k, v in hp.items()) and \
                all(k in rec and rec[k] in norm(list(vs)) for k, vs in (grid or {}).items()):
            return r
    return None


def _known(entry: Any) -> set[str]:
    from mtlkit.train.config import method_defaults

    return set(method_defaults(entry))


def leaderboard(res: BenchResult, reference: str | None = None) -> list[LeaderboardRow]:
    """Per-method mean ± 95% CI (over splits) of the task-averaged test metric, Δ vs the reference, tasks hurt."""
    ref = reference or report.default_reference(res.scores)
    if ref is not None and ref not in res.scores:
        raise MtlkitError(f"reference method {ref!r} was not benchmarked; methods: {', '.join(res.scores)}")
    rows = []
    for m, s in res.scores.items():
        mean, ci = report.summarize(s)
        c = None
        if ref is not None and m != ref:
            c = report.compare(s, res.splits, res.scores[ref], res.splits, res.lower_is_better, ref, res.metric)
        rows.append(LeaderboardRow(m, mean, ci, c.improvement if c else None, c.hurt if c else None,
                                   float(np.sum(res.seconds[m]))))
    return rows


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def leaderboard_markdown(res: BenchResult, command: str = "", machine: str = "") -> str:
    """The leaderboard and the per-task table as Markdown, with the provenance a reader needs."""
    rows = leaderboard(res)
    ref = report.default_reference(res.scores)
    arrow = "lower is better" if res.lower_is_better else "higher is better"
    out = [f"# mtlkit bench: {res.dataset}", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += [f"Data: {res.dataset} ({len(res.task_names)} {res.kind} tasks), checksum `{res.checksum}`; "
            f"splits: {', '.join(res.splits)}" + (f"; machine: {machine}" if machine else ""), ""]
    out += [f"- {n}" for n in res.notes] + ([""] if res.notes else [])
    tuned = bool(res.tuning)
    lb = []
    for r in rows:
        hurt = "–" if r.hurt is None else f"{r.hurt}/{len(res.task_names)}"
        lb.append([r.method, mean_ci_text(r.mean, r.ci, 3), _fmt(r.improvement), hurt, f"{r.seconds:.1f}"]
                  + ([_trials_cell(res, r.method), edge_text(res, r.method)] if tuned else []))
    out += markdown_table(["method", f"test {res.metric} ({arrow}), mean ± 95% CI", f"Δ vs {ref or 'STL'} (%)",
                           "tasks hurt", "time (s)", *(["trials", "at edge"] if tuned else [])], lb, escape=True)
    out += ["", IMPROVEMENT_DEFINITION, "", *budget_lines(res), "",
            f"## Per task: test {res.metric}, mean over splits", ""]
    methods = list(res.scores)
    per_task = {m: report.task_summary(res.scores[m])[0] for m in methods}
    out += markdown_table(["task", *methods], [[nm, *(_fmt(float(per_task[m][t]), ".3f") for m in methods)]
                                               for t, nm in enumerate(res.task_names)], escape=True)
    out += ["", "## Hyper-parameters", "",
            "Values that differ between splits were selected on each split's validation part (listed per "
            "split); the others were the same for every split.", ""]
    for m in methods:
        hps = res.hparams[m]
        if not hps:
            continue
        varying = sorted(k for k in hps[0] if any(h.get(k) != hps[0][k] for h in hps))
        fixed = ", ".join(f"{k}={v}" for k, v in hps[0].items() if k not in varying)
        line = f"- **{m}**: {fixed}"
        if varying:
            per_split = zip(res.splits, hps, strict=True)
            line += "; selected: " + "; ".join(f"{sp}: " + ", ".join(f"{k}={h.get(k)}" for k in varying)
                                               for sp, h in per_split)
        out.append(line)
    if res.tuning:
        out += ["", "### Tuning (equal budgets)", ""]
        for m in methods:
            if m in res.tuning:
                out += [res.tuning[m].text().rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


def edge_text(res: BenchResult, method: str) -> str:
    """``⚠ lam (low)`` for each tuned value on the edge of its space; ``–`` when none (or not tuned)."""
    edges = res.edges(method)
    return ", ".join(f"⚠ {k} ({side})" for k, side in edges.items()) or "–"


def _trials_cell(res: BenchResult, method: str) -> str:
    t = res.tuning.get(method)
    return "–" if t is None else str(t.n_trials)


def budget_lines(res: BenchResult) -> list[str]:
    """How the hyper-parameters were chosen and with what budget per method, in words (a section of the results)."""
    out = ["## Selection and budget", ""]
    if res.selection == "tuned" and res.tuning:
        first = next(iter(res.tuning.values()))
        out.append(f"**Equal budget**: every method had {first.budget} trials (TPE, seed {first.seed}) over its "
                   f"declared search space (`mtlkit methods NAME`), {first.selection_text()}; scored on validation "
                   f"{first.metric} (mean over tasks), never on test rows. Pruned trials count toward the budget.")
        from mtlkit.experiments.tuning import params_text, space_text

        rows = [[m, t.budget_text(), space_text(t.space),
                 " / ".join(dict.fromkeys(params_text({k: h[k] for k in t.space if k in h}) for h in t.hparams)),
                 edge_text(res, m)] for m, t in res.tuning.items()]
        out += ["", *markdown_table(["method", "budget used", "search space", "selected", "at edge"], rows,
                                    escape=True)]
        lines = [f"- {t.method}: {line}" for t in res.tuning.values() for line in t.edge_lines()]
        out += [""] + lines if lines else []
    elif res.selection == "grid":
        sizes = ", ".join(f"{m}: {n}" for m, n in res.grid_sizes.items())
        out.append("Hyper-parameters were selected from each method's default grid (`mtlkit methods NAME`) on each "
                   "split's validation part; **the budgets are unequal** (configurations tried per split: "
                   f"{sizes}). For equal budgets use `--trials N`.")
    else:
        out.append("No selection (`--no-select`): every method ran with its defaults and the fixed values.")
    return out


def write_results(res: BenchResult, out_dir: str | Path, command: str = "", machine: str = "") -> list[Path]:
    """``bench-<dataset>.md`` (leaderboard + per-task table) and ``bench-<dataset>.csv`` (long format)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = d / f"bench-{res.dataset}.md"
    md.write_text(leaderboard_markdown(res, command, machine))
    csv = d / f"bench-{res.dataset}.csv"
    csv.write_text(csv_text(["method", "split", "task", res.metric],
                            [[m, sp, nm, f"{s[i, t]:.6g}"] for m, s in res.scores.items()
                             for i, sp in enumerate(res.splits) for t, nm in enumerate(res.task_names)]))
    return [md, csv]
