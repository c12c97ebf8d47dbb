"""The `mtlkit` command: `bench`, `datasets`, `methods`. Input errors print one line and exit 2."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from mtlkit.commands.common import (
    add_data_arguments,
    load_data_from_args,
    machine_description,
    parse_hparams,
)
from mtlkit.errors import MtlkitError

DEFAULT_METHODS = "stl,single,hard-share"

# Commands that live in mtlkit/commands/<name>.py; each module defines add_parser(subparsers), whose
# parser sets `func` (args -> exit code) and raises MtlkitError for bad input.
COMMANDS: tuple[str, ...] = ("sweep", "train", "report", "plot", "reproduce", "affinity")


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mtlkit._optional import require
    from mtlkit.experiments.bench import IMPROVEMENT_DEFINITION, edge_text, leaderboard, run_bench, write_results
    from mtlkit.experiments.store import ResultsStore
    from mtlkit.experiments.tables import mean_ci_text

    tuning = [f for f, v in (("--time-budget", args.time_budget), ("--widen", args.widen),
                             ("--tune-on", args.tune_on)) if v]
    if args.trials is None and tuning:
        raise MtlkitError(f"{', '.join(tuning)} need equal-budget tuning: give --trials N")
    if args.trials is not None and args.no_select:
        raise MtlkitError("--trials and --no-select contradict each other: tune, or use the defaults")
    if args.trials is not None:
        require("optuna", "equal-budget tuning (bench --trials)")
    data = load_data_from_args(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise MtlkitError("--methods is empty")
    out_dir = Path(args.out)
    store = ResultsStore(out_dir / "results.sqlite")
    console = Console()
    console.print(f"[bold]{data!r}[/bold]")
    res = run_bench(data, methods, n_splits=args.splits, seed=args.seed, device=args.device, store=store,
                    select=not args.no_select, hparams=parse_hparams(args.set), trials=args.trials,
                    time_budget=args.time_budget, widen=args.widen or 0, tune_on=args.tune_on or "first",
                    groups=args.groups)
    arrow = "lower is better" if res.lower_is_better else "higher is better"
    table = Table(title=f"{data.name}: test {res.metric} ({arrow}) over {len(res.splits)} splits")
    cols = ["method", f"{res.metric} mean ± 95% CI", "Δ vs STL (%)", "tasks hurt", "time (s)"]
    cols += ["trials", "at edge"] if res.tuning else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("method", "at edge") else "right")
    for r in sorted(leaderboard(res), key=lambda r: r.mean if res.lower_is_better else -r.mean):
        extra = [str(res.tuning[r.method].n_trials) if r.method in res.tuning else "–", edge_text(res, r.method)] \
            if res.tuning else []
        table.add_row(r.method, mean_ci_text(r.mean, r.ci, 3),
                      "–" if r.improvement is None else f"{r.improvement:+.2f}",
                      "–" if r.hurt is None else f"{r.hurt}/{data.n_tasks}", f"{r.seconds:.1f}", *extra)
    console.print(table)
    console.print(IMPROVEMENT_DEFINITION, style="dim")
    if res.tuning:
        first = next(iter(res.tuning.values()))
        console.print(f"equal budget: {first.budget} trials per method, {first.selection_text()}", style="dim")
        for t in res.tuning.values():
            for line in t.edge_lines():
                console.print(f"{t.method}: {line}")
    else:
        console.print("selection: " + ("each method's default grid, unequal budgets (configurations per split: "
                                       + ", ".join(f"{m} {n}" for m, n in res.grid_sizes.items())
                                       + "); --trials N gives every method the same budget"
                                       if res.selection == "grid" else "none (--no-select)"), style="dim")
    command = "mtlkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("mtlkit") else ""
    files = write_results(res, out_dir, command=command, machine=machine_description())
    console.print(f"results: {', '.join(map(str, files))} and {store.path}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from mtlkit import datasets

    for n in datasets.names():
        d = datasets.info(n)
        where = f"reads ${datasets.ENV_VAR} / --data-dir" if d.needs_data_dir else "embedded"
        print(f"{n:<17} {d.summary} [{where}]")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from mtlkit import methods

    names = [args.name] if args.name else methods.names()
    for n in names:
        d = methods.describe(n)
        alias = f" (alias: {', '.join(d['aliases'])})" if d["aliases"] else ""
        print(f"{n}{alias}: {d['summary']}")
        print(f"    paper: {d['paper']}")
        print(f"    tasks: {', '.join(d['kinds'])}; training: {d['training']}")
        if args.name:
            print("    hyper-parameters:")
            for k, h in d["hyperparameters"].items():
                search = f"; tuned over {h['search']}" if h["search"] else ""
                doc = f" — {h['doc']}" if h["doc"] else ""
                print(f"      {k} = {h['default']!r} ({h['valid']}{search}){doc}")
        else:
            print("    hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in d["defaults"].items()))
        grids = {k: v for k, v in d["grid"].items() if v}
        if grids:
            distinct = {str(v) for v in grids.values()}
            shown = next(iter(grids.values())) if len(distinct) == 1 else grids
            print(f"    default selection grid: {shown}")
    if not args.name:
        from mtlkit.optim.combiners import COMBINERS

        for kind, title in (("weighting", "Loss weightings"), ("aggregator", "Gradient aggregators")):
            print(f"\n{title} (train any SGD method with one as METHOD+NAME, e.g. hard-share+NAME):")
            for n, spec in COMBINERS.items():
                if spec.kind == kind:
                    print(f"{n}: {spec.summary}\n    paper: {spec.paper}")
                    if spec.defaults:
                        print("    hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in spec.defaults.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mtlkit import __version__

    p = argparse.ArgumentParser(prog="mtlkit", description="Multi-task learning: train, compare and inspect methods.")
    p.add_argument("--version", action="version", version=f"mtlkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="compare methods on one data set over several splits")
    add_data_arguments(b)
    b.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    b.add_argument("--splits", type=int, default=3, help="number of splits (default 3)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    b.add_argument("--out", default="results", help="folder for results.sqlite and the tables (default results/)")
    b.add_argument("--no-select", action="store_true", help="skip the validation grid: use default hyper-parameters")
    b.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a hyper-parameter for every method that has it, e.g. --set epochs=50")
    b.add_argument("--trials", type=int, metavar="N",
                   help="equal-budget tuning: every method gets N TPE trials over its declared search space, scored "
                        "on validation (default: each method's own grid, unequal budgets)")
    b.add_argument("--time-budget", type=float, metavar="S",
                   help="with --trials: at most S seconds of tuning per method")
    b.add_argument("--widen", type=int, metavar="K",
                   help="with --trials: search again (up to K times, half the budget each) past a selected value "
                        "on the edge of its space")
    b.add_argument("--tune-on", choices=["first", "each"],
                   help="with --trials: tune on the first split's validation, then train the choice on every split "
                        "(first, default), or tune on each split's own validation (each: trials × splits runs)")
    b.add_argument("--groups", metavar="auto|K|FILE",
                   help="also train each sharing method once per group of tasks (METHOD@groups): auto / K groups from "
                        "the lookahead affinity measured on each split's training rows (`mtlkit affinity`), or the "
                        "groups in FILE (its -groups.json, or one comma-separated group of task names per line)")
    b.add_argument("--quiet", action=importlib.import_module("mtlkit.progress").QuietFlag)
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("datasets", help="list the data sets")
    d.set_defaults(func=cmd_datasets)
    m = sub.add_parser("methods", help="list the methods with their paper and hyper-parameters")
    m.add_argument("name", nargs="?", help="one method")
    m.set_defaults(func=cmd_methods)
    for name in COMMANDS:  # further commands, each in its own module mtlkit/commands/<name>.py
        importlib.import_module(f"mtlkit.commands.{name}").add_parser(sub)
    return p


# OSErrors about a named path (no permission, no such folder, a file in the way, disk full): a problem with the
# paths a user gave, printed as one line. Any other exception is a bug and keeps its traceback.
_PATH_ERRNOS = frozenset(getattr(errno, n) for n in ("EACCES", "EPERM", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST",
                                                     "EROFS", "ENOSPC", "EDQUOT", "ENAMETOOLONG", "ELOOP")
                         if hasattr(errno, n))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input (`MtlkitError`) and a file-system error on a named path print one line,
    ``mtlkit: error: ...``, on stderr and exit 2; argparse's own usage errors exit 2 as well."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # inside: a sub-parser completed on demand may raise (a missing extra)
        return int(args.func(args))
    except MtlkitError as e:
        print("mtlkit: error: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtlkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (`mtlkit methods | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.filename is None or e.errno not in _PATH_ERRNOS:
            raise
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        print(f"mtlkit: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
