"""`mtlkit reproduce NAME`: re-run a paper's experiments; tables (paper numbers beside ours), plots and
provenance go to docs/results/ by default, every run to a results store so a stopped run continues."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("docs") / "results"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit reproduce` with one sub-command per reproduction."""
    from mtlkit.cli import add_data_dir_argument
    from mtlkit.experiments.reproduce import REPRODUCTIONS, get

    p = sub.add_parser("reproduce", help="re-run a paper's tables and write them beside the paper's numbers",
                       description="Re-run a paper's experiments. Results (Markdown with the paper's numbers "
                                   "beside ours, CSV, plots) go to --out; every trained run goes to --store, and "
                                   "runs already there are reused, so an interrupted reproduction continues.")
    names = p.add_subparsers(dest="reproduction", required=True, metavar="NAME")
    for name in REPRODUCTIONS:
        mod = get(name)
        r = names.add_parser(name, help=mod.DESCRIPTION, description=mod.DESCRIPTION)
        mod.add_arguments(r)
        add_data_dir_argument(r)
        r.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the results (default {DEFAULT_OUT})")
        r.add_argument("--store", type=Path,
                       help="results store for every run (default results/reproduce-NAME.sqlite); delete it to "
                            "start over")
        r.add_argument("--device", help="cpu or cuda (default: cuda when available)")
        r.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the chosen reproduction and list the files it wrote."""
    from mtlkit.experiments.reproduce import get
    from mtlkit.experiments.reproduce.common import Context, command_line
    from mtlkit.experiments.store import ResultsStore

    store = args.store or Path("results") / f"reproduce-{args.reproduction}.sqlite"
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.out, ResultsStore(store), device=args.device, command=command_line())
    paths = get(args.reproduction).run(args, ctx)
    print(f"runs recorded in {store}", file=sys.stderr)
    for p in paths:
        print(f"wrote {p}")
    return 0
