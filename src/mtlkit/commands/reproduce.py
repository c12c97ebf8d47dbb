"""`mtlkit reproduce NAME`: re-run a paper's experiments; tables (paper numbers beside ours), plots and
provenance go to docs/results/ by default, every run to a results store so a stopped run continues.
``--quick`` smoke runs go to results/quick/NAME/ (store included) unless ``--out`` names a folder, so they
never overwrite the committed results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("docs") / "results"
QUICK_OUT = Path("results") / "quick"  # --quick: <QUICK_OUT>/<name>/, the store inside it


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit reproduce` with one sub-command per reproduction. A reproduction's module (torch,
    scipy, matplotlib) is imported only when that reproduction is chosen or the list is shown, so `mtlkit
    --help` stays fast."""
    from mtlkit.experiments.reproduce import REPRODUCTIONS

    p = sub.add_parser("reproduce", help="re-run a paper's tables and write them beside the paper's numbers",
                       description="Re-run a paper's experiments. Results (Markdown with the paper's numbers "
                                   "beside ours, CSV, plots) go to --out; every trained run goes to --store, and "
                                   "runs already there are reused, so an interrupted reproduction continues.")
    names = p.add_subparsers(dest="reproduction", required=True, metavar="NAME", action=_Reproductions)
    for name in REPRODUCTIONS:
        names.add_parser(name, help="")  # options and help filled in by _Reproductions
    return p


class _Reproductions(argparse._SubParsersAction):
    """The reproductions' sub-parsers, completed (module imported, its options added) only when one is
    parsed or the list's help is printed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values and values[0] in self._name_parser_map:
            _complete(values[0], self._name_parser_map[values[0]])
        super().__call__(parser, namespace, values, option_string)

    def _get_subactions(self) -> list[argparse.Action]:
        from mtlkit.experiments.reproduce import get

        require_reproduction_extras()
        for a in self._choices_actions:
            if not a.help:
                a.help = get(a.dest).DESCRIPTION
        return super()._get_subactions()


def require_reproduction_extras() -> None:
    """The reproductions tune (optuna), draw figures (matplotlib) and build tables (pandas): a missing one is a
    one-line error naming ``mtlkit[all]``, before any reproduction module is imported."""
    from mtlkit._optional import require

    for name in ("optuna", "matplotlib", "pandas"):
        require(name, "mtlkit reproduce", extra="all")


def _complete(name: str, r: argparse.ArgumentParser) -> None:
    """Add reproduction ``name``'s own options and the common ones to its (still empty) parser."""
    if getattr(r, "_mtlkit_complete", False):
        return
    from mtlkit.commands.common import add_data_dir_argument
    from mtlkit.experiments.reproduce import get
    from mtlkit.progress import QuietFlag

    require_reproduction_extras()
    mod = get(name)
    r.description = mod.DESCRIPTION
    mod.add_arguments(r)
    add_data_dir_argument(r)
    r.add_argument("--out", type=Path, default=None,
                   help=f"folder for the results (default {DEFAULT_OUT}; with --quick {QUICK_OUT / name})")
    r.add_argument("--store", type=Path,
                   help="results store for every run (default results/reproduce-NAME.sqlite; with --quick "
                        "reproduce-NAME.sqlite in the quick folder); delete it to start over")
    r.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    r.add_argument("--quiet", action=QuietFlag)
    r.set_defaults(func=run)
    r._mtlkit_complete = True  # type: ignore[attr-defined]


def output_paths(name: str, quick: bool, out: Path | None = None, store: Path | None = None) -> tuple[Path, Path]:
    """Where a reproduction writes its files and its store. A ``--quick`` smoke run goes to a scratch folder
    (``results/quick/NAME/``) unless ``out`` is given: its numbers mean nothing and must never replace the
    committed ``docs/results/``."""
    if out is None:
        out = QUICK_OUT / name if quick else DEFAULT_OUT
    if store is None:
        store = out / f"reproduce-{name}.sqlite" if quick else Path("results") / f"reproduce-{name}.sqlite"
    return out, store


def run(args: argparse.Namespace) -> int:
    """Run the chosen reproduction and list the files it wrote."""
    from mtlkit.experiments.reproduce import get
    from mtlkit.experiments.reproduce.common import Context, command_line
    from mtlkit.experiments.store import ResultsStore

    quick = bool(getattr(args, "quick", False))
    args.out, store = output_paths(args.reproduction, quick, args.out, args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    if quick:
        print(f"--quick: a smoke run (numbers meaningless), written to {args.out}/", file=sys.stderr)
    ctx = Context(args.out, ResultsStore(store), device=args.device, command=command_line())
    paths = get(args.reproduction).run(args, ctx)
    print(f"runs recorded in {store}", file=sys.stderr)
    for p in paths:
        print(f"wrote {p}")
    return 0
