"""`mtlkit reproduce claims`: rebuild the claims ledger (``claims.md``, ``claims.csv``) from the claim files the
reproductions wrote into ``<out>/claims/``, and the README's summary block from it. Trains nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlkit.experiments.claims import build_ledger
from mtlkit.experiments.reproduce.common import Context

DESCRIPTION = "rebuild docs/results/claims.md and the README summary from every reproduction's claim file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ledger's own options."""
    p.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="README whose generated claims summary block is rewritten (default README.md; skipped when "
                        "it has no such block)")


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Write the ledger into ``ctx.out`` and return the files written."""
    return build_ledger(ctx.out, args.readme)
