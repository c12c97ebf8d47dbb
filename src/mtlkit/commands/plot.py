"""`mtlkit plot`: figures from the results store and from saved runs, each as PNG and SVG —
``improvement`` (per-task improvement over STL, sorted bars), ``curves`` (per-task learning curves),
``relations`` (a saved run's learned task-relation matrices)."""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from mtlkit.commands.report import DEFAULT_STORE, split_names
from mtlkit.errors import MtlkitError


def slug(text: str) -> str:
    """A file-name-safe ASCII form of a name (``ω`` -> ``omega``, ``‖θˢ_kt‖`` -> ``thetas_kt``)."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in "-_."):
            out.append(ch)
            continue
        name = unicodedata.name(ch, "")
        out.append(name.split()[-1].lower() if "LETTER" in name else "_")
    s = re.sub(r"_+", "_", "".join(out)).strip("_.")
    return s or "matrix"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit plot {improvement, curves, relations}` on the CLI's sub-parsers."""
    p = sub.add_parser("plot", help="figures (PNG + SVG): improvement over STL, learning curves, task relations")
    kinds = p.add_subparsers(dest="plot", required=True)

    imp = kinds.add_parser("improvement", help="per-task improvement over STL as a sorted bar chart, one per method")
    _store_args(imp)
    imp.add_argument("--method", action="extend", nargs="+", metavar="M",
                     help="methods to plot (default: every method compared with STL)")
    imp.add_argument("--metric", help="test metric (default: the data set's primary one)")
    imp.add_argument("--reference", help="the STL baseline (default stl, else stl-linear)")
    imp.set_defaults(func=run_improvement)

    cur = kinds.add_parser("curves", help="per-task training and validation loss by epoch")
    _store_args(cur)
    cur.add_argument("--method", required=True, help="the method whose runs to plot")
    cur.add_argument("--split", action="extend", nargs="+", metavar="S", help="splits to plot (default: all)")
    cur.add_argument("--max-tasks", type=int, default=12,
                     help="above this many tasks draw the mean and a 10-90%% band instead of one line each "
                          "(default 12)")
    cur.set_defaults(func=run_curves)

    rel = kinds.add_parser("relations", help="a saved run's learned task-relation matrices as heatmaps")
    rel.add_argument("--run", type=Path, required=True, help="a saved run's folder (run.save / mtlkit.load)")
    rel.add_argument("--out", type=Path, help="folder for the figures (default: <run>/plots)")
    rel.set_defaults(func=run_relations)
    return p


def _require_matplotlib() -> None:
    """A plot command without matplotlib installed: one line naming the extra."""
    from mtlkit._optional import require

    require("matplotlib", "mtlkit plot")


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})")
    p.add_argument("--experiment", default="bench", help="experiment whose runs to use (default bench; 'all')")
    p.add_argument("--dataset", required=True, help="the data set")
    p.add_argument("--out", type=Path, help="folder for the figures (default: <store folder>/plots)")


def _experiment(args: argparse.Namespace) -> str | None:
    return None if args.experiment in ("all", "*", "") else args.experiment


def _out(args: argparse.Namespace, default: Path) -> Path:
    """The figures' folder (``--out``, else ``default``), refused in one line if it cannot be written."""
    from mtlkit.commands.common import check_output_path

    out = args.out if args.out is not None else default
    check_output_path(out, "--out")
    return out


def _report_written(paths: list[Path]) -> None:
    for p in paths:
        print(p)


def run_improvement(args: argparse.Namespace) -> int:
    """One sorted bar chart per method: each task's improvement over STL (%), on the splits both have."""
    _require_matplotlib()
    from mtlkit.analysis.plots import plot_improvement_bars
    from mtlkit.experiments.report import report_from_store
    from mtlkit.experiments.store import ResultsStore

    store = ResultsStore(args.store, create=False)
    rep = report_from_store(store, _experiment(args), [args.dataset], None, args.metric, args.reference)
    ds = args.dataset
    results, comps, ref = rep.results[ds], rep.comparisons[ds], rep.references[ds]
    if ref is None:
        raise MtlkitError(f"no STL reference on {ds} (looked for {args.reference or 'stl, stl-linear'}); "
                          f"methods there: {', '.join(results)}")
    asked = split_names(args.method)
    for m in asked or ():
        if m not in results:
            raise MtlkitError(f"no runs of {m!r} on {ds}; methods there: {', '.join(results)}")
        if m == ref:
            raise MtlkitError(f"{m!r} is the reference; pick another method (methods: {', '.join(results)})")
        if comps[m] is None:
            raise MtlkitError(f"{m!r} shares no split with {ref!r} on {ds}, so it has no improvement to plot")
    methods = asked or [m for m in rep.methods if comps.get(m) is not None]
    if not methods:
        raise MtlkitError(f"no method besides {ref!r} on {ds} to compare with it")
    out = _out(args, args.store.parent / "plots")
    written: list[Path] = []
    for m in methods:
        c = comps[m]
        assert c is not None
        r = results[m]
        title = (f"{m} vs {ref} on {ds}, test {r.metric}, {len(c.splits)} split{'s' * (len(c.splits) != 1)}\n"
                 f"mean improvement {c.improvement:+.2f} %, {c.hurt}/{c.n_tasks} tasks hurt")
        written += plot_improvement_bars(c.per_task, r.task_names, title, out / f"improvement-{slug(ds)}-{slug(m)}")
    _report_written(written)
    return 0


def run_curves(args: argparse.Namespace) -> int:
    """Learning curves of one method on one data set, one figure per split, from the histories in the store."""
    _require_matplotlib()
    from mtlkit.analysis.plots import plot_learning_curves
    from mtlkit.experiments.report import latest_rows
    from mtlkit.experiments.store import ResultsStore

    store = ResultsStore(args.store, create=False)
    where: dict[str, Any] = {"dataset": args.dataset, "method": args.method}
    if _experiment(args):
        where["experiment"] = _experiment(args)
    rows, _ = latest_rows(store.rows(**where))
    if not rows:
        have = sorted({r["method"] for r in store.rows(dataset=args.dataset)})
        raise MtlkitError(f"no runs of {args.method!r} on {args.dataset!r} in {store.path}"
                          + (f" (experiment {_experiment(args)!r})" if _experiment(args) else "")
                          + f"; methods there: {', '.join(have) or 'none'}")
    asked = split_names(args.split)
    if asked:
        missing = [s for s in asked if s not in {r["split"] for r in rows}]
        if missing:
            raise MtlkitError(f"no run of {args.method!r} on {args.dataset!r} for split(s) {', '.join(missing)}; "
                              f"splits: {', '.join(r['split'] for r in rows)}")
        rows = [r for r in rows if r["split"] in asked]
    with_history = [r for r in rows if r.get("history")]
    if not with_history:
        raise MtlkitError(f"the runs of {args.method!r} on {args.dataset!r} have no training history (the method is "
                          "not trained by SGD, or the runs were recorded before the store kept histories)")
    out = _out(args, args.store.parent / "plots")
    written: list[Path] = []
    for r in with_history:
        h = r["history"]
        stop = " (stopped early)" if h.get("stopped_early") else " (diverged)" if h.get("diverged") else ""
        title = f"{args.method} on {args.dataset}, split {r['split']}: per-task loss{stop}"
        written += plot_learning_curves(h, r["task_names"], out / f"curves-{slug(args.dataset)}-{slug(args.method)}-"
                                        f"{slug(r['split'])}", title=title, max_tasks=args.max_tasks)
    if len(with_history) < len(rows):
        print(f"{len(rows) - len(with_history)} run(s) without a training history skipped", file=sys.stderr)
    _report_written(written)
    return 0


def run_relations(args: argparse.Namespace) -> int:
    """Heatmaps of every task-relation matrix the saved run's model exposes (``task_relations()``)."""
    _require_matplotlib()
    from mtlkit.analysis.plots import plot_relation_matrix
    from mtlkit.analysis.relations import axis_labels, task_relations
    from mtlkit.train import run as run_module

    saved = run_module.load(args.run)  # a damaged or edited run: an MtlkitError naming the file
    out = _out(args, args.run / "plots")
    mats = task_relations(saved)
    if not mats:
        raise MtlkitError(f"method {saved.method!r} exposes no task-relation matrix (its model defines no "
                          "task_relations()); nothing to plot")
    names = saved.info.spec.names
    written: list[Path] = []
    for name, m in mats.items():
        rows = axis_labels(m.shape[0], names)
        cols = axis_labels(m.shape[1], names)
        title = f"{saved.method} on {saved.dataset}: {name} ({m.shape[0]}×{m.shape[1]})"
        written += plot_relation_matrix(m, rows, cols, title, out / f"relations-{slug(saved.method)}-{slug(name)}",
                                        value_label=name)
    _report_written(written)
    return 0
