"""`mtlkit reproduce amtfl`: Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018) — the synthetic experiment (Fig. 4, Fig. 5a-c),
Table 1's School and MNIST columns (six shallow models; MNIST on Kang et al.'s split), and Table 2 / Table 3 / Fig. 6
analogues with small CNNs on imbalanced MNIST (200, 180, ..., 20 training images per digit, the authors' own demo).

Every table is an equal-budget comparison: each method of a table gets the same number of Optuna TPE trials over
its declared search space (`mtlkit methods NAME`) on split 0's validation rows, and the choice is then trained and
tested on every split (`mtlkit.experiments.reproduce.protocol.tune_then_evaluate` for School; `tuned.tuned_table`,
`tune` + `tuned_run`, where the splits or the scores are the paper's own). Each method's outcome is cached beside the
results store, so a stopped run continues. The claims each part tests are `claim_rows`, judged by
`mtlkit.experiments.claims.verdict`.

The package, by part: `settings` (the paper's numbers, seeds, budgets), `tuned` (`tuned_table`: the equal-budget
protocol on the paper's own splits, with its per-method cache), `synthetic` (Fig. 4-5), `table1` (School, MNIST),
`deep` (the Tables 2-3 and Fig. 6 analogues), `claims` (`claim_rows`) and `report` (protocol text, Diagnosis); this
module holds the command's options and `run`, which assembles the results file. Every model is trained by the
Trainer (`mtlkit.train`, or `tuning.tune` + `tuned_run`) through its registered method."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.experiments.claims import write_claims
from mtlkit.experiments.reproduce.amtfl.claims import _claims_md, claim_rows
from mtlkit.experiments.reproduce.amtfl.deep import DEEP_METHODS, _deep, downsample, penultimate, per_class_scores
from mtlkit.experiments.reproduce.amtfl.report import _diagnosis, _protocol
from mtlkit.experiments.reproduce.amtfl.settings import (
    DESCRIPTION,
    PAPER,
    PAPER_FIG6,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PARTS,
    QUICK_TRIALS,
    SEED,
    SYN_SEED,
    SYN_TRIALS,
    TRIALS,
    _settings,
    _trials,
)
from mtlkit.experiments.reproduce.amtfl.synthetic import (
    FEEDBACK_ACTIVE,
    SYN_METHODS,
    _block_means,
    _synthetic,
    amtfl_feedback,
    fig4h_claim,
    fig4h_effect,
    learned_bases,
    linear_weights,
    project_bases,
    transfer_direction,
)
from mtlkit.experiments.reproduce.amtfl.table1 import (
    T1_METHODS,
    _mnist,
    _school,
    _table1,
    level_check_mnist,
    level_check_school,
    mnist_scores,
)
from mtlkit.experiments.reproduce.amtfl.tuned import Tuned, rmse_scores, tuned_table
from mtlkit.experiments.reproduce.common import Context, parse_parts, provenance

__all__ = [
    "DEEP_METHODS", "DESCRIPTION", "FEEDBACK_ACTIVE", "PAPER", "PAPER_FIG6", "PAPER_TABLE1", "PAPER_TABLE2",
    "PAPER_TABLE3", "PARTS", "SYN_METHODS", "T1_METHODS", "Tuned", "_block_means", "add_arguments", "amtfl_feedback",
    "claim_rows", "downsample", "fig4h_claim", "fig4h_effect", "learned_bases", "level_check_mnist",
    "level_check_school", "linear_weights", "mnist_scores", "per_class_scores", "penultimate", "project_bases",
    "rmse_scores", "run", "transfer_direction", "tuned_table",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--splits", type=int, default=5,
                   help="splits for synthetic, School and MNIST (paper: 5; MNIST: Kang's split 1, then re-draws)")
    p.add_argument("--deep-splits", type=int, default=3, help="random imbalanced-MNIST splits for the CNNs")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    p.add_argument("--trials", type=int, default=TRIALS,
                   help=f"Optuna TPE trials per method, the same for every method of a table: Table 1 (School, "
                        f"MNIST) and the deep tables (default {TRIALS}; --quick: {QUICK_TRIALS})")
    p.add_argument("--syn-trials", type=int, default=SYN_TRIALS,
                   help=f"trials per method of the synthetic table (Fig. 4-5), cheap models (default {SYN_TRIALS}; "
                        f"--quick: {QUICK_TRIALS})")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny data, a few epochs, 2 trials (numbers are meaningless; for testing)")


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the chosen parts and write ``amtfl.md``, ``amtfl.csv``, ``claims/amtfl.csv`` and the figures into
    ``ctx.out``."""
    from mtlkit.errors import MtlkitError

    parts = parse_parts(args.parts, PARTS)
    if args.splits < 1 or args.deep_splits < 1:
        raise MtlkitError("--splits and --deep-splits must be at least 1")
    if args.quick:  # a smoke run: 2 splits (the fewest a CI needs), 1 imbalanced-MNIST split
        args.splits, args.deep_splits = min(args.splits, 2), min(args.deep_splits, 1)
    st = _settings(args.quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared CPU: one thread is many times faster than two fighting
    try:
        return _run(args, ctx, parts, st)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, ctx: Context, parts: list[str], st: dict[str, Any]) -> list[Path]:
    trials, syn_trials = _trials(args)
    body: list[str] = []
    csv: list[str] = []
    figs: list[Path] = []
    syn = school = school_x = mnist = mnist_x = deep = None
    if "synthetic" in parts:
        o, f, c, syn = _synthetic(ctx, args, st, syn_trials)
        body += ["", *o]
        figs += f
        csv += c
    if "school" in parts:
        school, c, school_x = _school(ctx, args, st, trials)
        csv += c
    if "mnist" in parts:
        mnist, c, mnist_x = _mnist(ctx, args, st, trials)
        csv += c
    if school or mnist:
        body += ["", *_table1(school, mnist)]
    if "deep" in parts:
        o, f, c, deep = _deep(ctx, args, st, trials)
        body += ["", *o]
        figs += f
        csv += c
    rows = claim_rows(syn=syn,
                      mnist={m: mnist[m].per_split() for m in T1_METHODS} if mnist else None,
                      school={m: school[m].per_split() for m in T1_METHODS} if school else None,
                      deep=deep["deep"] if deep else None, transfer=deep["transfer"] if deep else None)
    claims_csv = write_claims(rows, ctx.out / "claims" / "amtfl.csv")
    lines = ["# Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018) reproduced", ""]
    tables = [t for part in (syn and syn["tuned"], school, mnist, deep and deep["tuned"]) if part
              for t in part.values()]
    spent = sum(float(t.tuning.get("seconds") or 0.0) + float(np.sum(t.seconds[1:])) for t in tables)
    lines += provenance(ctx, f"training seed = split index ({SEED}, {SEED + 1}, ...); tuning seed {SEED}; synthetic "
                             f"data seed {SYN_SEED}; MNIST Kang re-draws seeds 1..; imbalanced-MNIST splits seeds "
                             "100.., transfer target draws seeds 200..", _protocol(args, st, trials, syn_trials),
                        train_seconds=spent)
    lines += ["", *_claims_md(rows), *body, "",
              *_diagnosis(syn, school, school_x, mnist, mnist_x, deep, rows)]
    md = ctx.out / "amtfl.md"
    md.write_text("\n".join(lines) + "\n")
    csv_path = ctx.out / "amtfl.csv"
    # ``what``: the task name for the synthetic per-task RMSEs, else the metric's name
    csv_path.write_text("\n".join(["part,method,split,what,value", *csv]) + "\n")
    return [md, csv_path, claims_csv, *(p for p in figs if p.suffix == ".png")]
