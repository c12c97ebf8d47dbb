"""`mtlkit reproduce all`: every reproduction in turn with its default protocol (each with its own results store
beside this call's), then the claims ledger; the time each took is printed and written into its results file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mtlkit.experiments.reproduce.common import Context

DESCRIPTION = "run every reproduction with its default protocol, then rebuild the claims ledger"
PAPERS = ("tomato", "amtfl", "trace-norm", "transfer", "srdml", "aggregators", "affinity")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options passed on to every reproduction."""
    p.add_argument("--only", default=",".join(PAPERS), help=f"comma-separated subset of {', '.join(PAPERS)}")
    p.add_argument("--quick", action="store_true", help="each reproduction's smoke run (numbers meaningless)")
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="README whose claims summary is rebuilt")


def _defaults(name: str, args: argparse.Namespace) -> argparse.Namespace:
    """Reproduction ``name``'s own options at their defaults, with this call's data folder and quick flag."""
    from mtlkit.experiments.reproduce import get

    p = argparse.ArgumentParser()
    get(name).add_arguments(p)
    sub = p.parse_args([])
    for k in ("data_dir", "quick", "device", "quiet"):
        if hasattr(args, k) and (hasattr(sub, k) or k in ("data_dir", "device")):
            setattr(sub, k, getattr(args, k))
    return sub


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the chosen reproductions, then the ledger; return every file written."""
    from mtlkit.errors import MtlkitError
    from mtlkit.experiments.reproduce import get, ledger
    from mtlkit.experiments.store import ResultsStore

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = sorted(set(names) - set(PAPERS))
    if bad:
        raise MtlkitError(f"unknown reproduction(s) {', '.join(bad)}; choose from {', '.join(PAPERS)}")
    written: list[Path] = []
    folder = Path(ctx.store.path).parent if getattr(ctx.store, "path", None) else Path("results")
    for name in names:
        t0 = time.perf_counter()
        sub_ctx = Context(ctx.out, ResultsStore(folder / f"reproduce-{name}.sqlite"), device=ctx.device,
                          progress=ctx.progress, command=ctx.command)
        written += get(name).run(_defaults(name, args), sub_ctx)
        print(f"reproduce {name}: {(time.perf_counter() - t0) / 60:.1f} min", file=sys.stderr)
    # a smoke run's claims mean nothing: its ledger stays in its own folder and the README is left alone
    written += ledger.run(argparse.Namespace(readme=None if args.quick else args.readme), ctx)
    return written
