"""`mtlkit report`: the papers' kind of tables from a results store — mean ± 95% CI per method and data set,
Δ vs STL, tasks hurt, mean rank, per-task tables — printed as Markdown and written as Markdown, CSV, LaTeX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_STORE = Path("results") / "results.sqlite"


def split_names(values: list[str] | None) -> list[str] | None:
    """Names given as repeated options, several per option, or comma-separated; None when none were given."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit report` on the CLI's sub-parsers."""
    p = sub.add_parser("report", help="tables from a results store (Markdown, CSV, LaTeX)",
                       description="Tables from a results store, grouped like the papers' tables: rows = methods, "
                                   "columns = data sets (mean ± 95%% CI over splits, mean rank), Δ vs STL (TOMATO "
                                   "Table 4's task-wise improvement), tasks hurt, per-task tables.")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})")
    p.add_argument("--experiment", default="bench",
                   help="experiment whose runs to report (default bench; 'all' for every experiment)")
    p.add_argument("--dataset", action="extend", nargs="+", metavar="D", help="only these data sets")
    p.add_argument("--method", action="extend", nargs="+", metavar="M", help="only these methods")
    p.add_argument("--metric", help="test metric to report (default: each data set's primary one: rmse, error, "
                                    "cross_entropy)")
    p.add_argument("--reference", help="the STL baseline for Δ and tasks hurt (default stl, else stl-linear)")
    p.add_argument("--format", choices=["md", "csv", "latex", "all"], default="all", help="files to write "
                   "(default all)")
    p.add_argument("--out", type=Path, help="folder for the files (default: the store's folder)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the report from the store, print its Markdown, write the files asked for."""
    from mtlkit.commands.common import check_output_path
    from mtlkit.experiments.report import FORMATS, report_from_store, to_markdown, write_report
    from mtlkit.experiments.store import ResultsStore

    store = ResultsStore(args.store, create=False)
    out = args.out if args.out is not None else args.store.parent
    check_output_path(out, "--out")
    experiment = None if args.experiment in ("all", "*", "") else args.experiment
    rep = report_from_store(store, experiment, split_names(args.dataset), split_names(args.method), args.metric,
                            args.reference)
    formats = FORMATS if args.format == "all" else (args.format,)
    paths = write_report(rep, out, formats, stem=f"report-{experiment or 'all'}")
    print(to_markdown(rep))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0
