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
from mtlkit.experiments.store import ResultsStore
from mtlkit.methods import registry
from mtlkit.progress import progress_bar
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


def make_splits(data: MultiTaskData, n_splits: int, seed: int = 0, test: float = 0.2,
                val: float = 0.2) -> list[tuple[str, Split]]:
    """The data set's own predefined splits when it has them (School: Argyriou's), else random ones."""
    if n_splits < 1:
        raise MtlkitError(f"--splits must be at least 1, got {n_splits}")
    out = []
    if data.predefined_splits:
        if n_splits > len(data.predefined_splits):
            raise MtlkitError(f"{data.name} has {len(data.predefined_splits)} predefined splits; asked for {n_splits}")
        for i in range(n_splits):
            tr, te = data.predefined_splits[i]
            out.append((f"given-{i + 1}", data.split_indices(tr, te, val_fraction=val, seed=seed + i)))
    else:
        for i in range(n_splits):
            out.append((f"seed-{seed + i}", data.split(test=test, val=val, seed=seed + i)))
    return out


def run_bench(data: MultiTaskData, methods: Sequence[str], n_splits: int = 3, seed: int = 0,
              device: str | None = None, store: ResultsStore | None = None, select: bool = True,
              hparams: dict[str, Any] | None = None, progress: bool | None = None,
              experiment: str = "bench", metric: str | None = None,
              grids: dict[str, dict[str, list[Any]]] | None = None, reuse: bool = False) -> BenchResult:
    """Train every method on every split (grid-selected on validation), record the runs, collect test scores.

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
    done = _recorded(store, experiment, data.name, checksum) if reuse and store is not None else {}
    res = BenchResult(data.name, checksum, data.kind, data.task_names, metric, [s for s, _ in splits],
                      notes=list(data.notes))
    for e in entries:
        res.scores[e.name] = np.full((len(splits), data.n_tasks), np.nan)
        res.seconds[e.name], res.hparams[e.name] = [], []
    with progress_bar(len(splits) * len(entries), f"bench {data.name}", progress) as bar:
        for i, (label, split) in enumerate(splits):
            for e in entries:
                hp = {k: v for k, v in (hparams or {}).items() if k in _known(e)}
                grid = (grids or {}).get(e.name, e.grid_for(data.kind)) if select else None
                grid = {k: v for k, v in (grid or {}).items() if k not in hp} or None
                prev = _matching(done.get((e.name, label), []), hp, grid)
                if prev is not None:
                    stored = prev["test_metrics"]["per_task"][metric]
                    res.scores[e.name][i] = [np.nan if v is None else v for v in stored]
                    res.seconds[e.name].append(float(prev["train_seconds"] or 0.0))
                    res.hparams[e.name].append(prev["hparams"])
                    bar.advance(status=f"{e.name} {label}: recorded")
                    continue
                t0 = time.perf_counter()
                run = train(e.name, split, hparams=hp, grid=grid, seed=seed + i, device=device, progress=False)
                test_ev = run.evaluate("test")
                val_ev = run.evaluate("val") if split.val is not None else None
                res.scores[e.name][i] = test_ev.per_task[metric]
                res.seconds[e.name].append(time.perf_counter() - t0)
                res.hparams[e.name].append(run.hparams)
                if store is not None:
                    store.add(run, experiment, label, val_ev, test_ev)
                bar.advance(status=f"{e.name} {label}: {metric} {test_ev.mean[metric]:.4g}")
    return res


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
    out += [f"| method | test {res.metric} ({arrow}), mean ± 95% CI | Δ vs {ref or 'STL'} (%) | tasks hurt | "
            "time (s) |", "|---|---|---|---|---|"]
    for r in rows:
        hurt = "–" if r.hurt is None else f"{r.hurt}/{len(res.task_names)}"
        out.append(f"| {r.method} | {r.mean:.3f} ± {_fmt(r.ci, '.3f')} | {_fmt(r.improvement)} | {hurt} | "
                   f"{r.seconds:.1f} |")
    out += ["", IMPROVEMENT_DEFINITION, "", f"## Per task: test {res.metric}, mean over splits", ""]
    methods = list(res.scores)
    out.append("| task | " + " | ".join(methods) + " |")
    out.append("|---|" + "---|" * len(methods))
    per_task = {m: report.task_summary(res.scores[m])[0] for m in methods}
    for t, nm in enumerate(res.task_names):
        out.append(f"| {nm} | " + " | ".join(_fmt(float(per_task[m][t]), ".3f") for m in methods) + " |")
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
    return "\n".join(out) + "\n"


def write_results(res: BenchResult, out_dir: str | Path, command: str = "", machine: str = "") -> list[Path]:
    """``bench-<dataset>.md`` (leaderboard + per-task table) and ``bench-<dataset>.csv`` (long format)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = d / f"bench-{res.dataset}.md"
    md.write_text(leaderboard_markdown(res, command, machine))
    csv = d / f"bench-{res.dataset}.csv"
    lines = [f"method,split,task,{res.metric}"]
    for m, s in res.scores.items():
        for i, sp in enumerate(res.splits):
            for t, nm in enumerate(res.task_names):
                lines.append(f"{m},{sp},{nm},{s[i, t]:.6g}")
    csv.write_text("\n".join(lines) + "\n")
    return [md, csv]
