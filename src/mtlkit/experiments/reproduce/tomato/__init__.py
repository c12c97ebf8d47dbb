"""`mtlkit reproduce tomato`: TOMATO's Table 3 (misclassification % of ten methods) and Table 4 (mean
per-task improvement over Separate) on the synthetic data, MNIST-MTL and School-3class, plus the Fig. 4
analogue: the learned topic × task deviation norms ‖θˢ_kt‖ against the generating ‖w^s_kt‖.

The package: `settings` (the paper's numbers, constants), `sections` (protocol, Tables 3-4, claims and budget
tables), `ablations` (Fig. 5), `case_study` (Fig. 4), `claims` (`claim_rows`) and `diagnosis` (the level check);
this module holds the options and `run`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.datasets import load
from mtlkit.experiments.bench import BenchResult
from mtlkit.experiments.claims import write_claims
from mtlkit.experiments.reproduce.common import Context, provenance, quick_subset
from mtlkit.experiments.reproduce.protocol import tune_then_evaluate
from mtlkit.experiments.reproduce.tomato.ablations import ABLATIONS, _ablation_section, _ablations
from mtlkit.experiments.reproduce.tomato.case_study import _case_study, _match_topics
from mtlkit.experiments.reproduce.tomato.claims import claim_rows
from mtlkit.experiments.reproduce.tomato.diagnosis import LEVEL_MODELS, _diagnosis, level_check
from mtlkit.experiments.reproduce.tomato.sections import _claims_section, _hparams, _protocol, _table3, _table4
from mtlkit.experiments.reproduce.tomato.settings import (
    DATASETS,
    DESCRIPTION,
    METHODS,
    PAPER,
    PAPER_NAMES,
    PAPER_TABLE3,
    PAPER_TABLE4,
    QUICK_SPLITS,
    QUICK_SYNTHETIC,
    SEED,
    _cached_only,
    _trials,
)

__all__ = ["ABLATIONS", "DATASETS", "DESCRIPTION", "LEVEL_MODELS", "METHODS", "PAPER", "PAPER_NAMES", "PAPER_TABLE3",
           "PAPER_TABLE4", "_match_topics", "add_arguments", "claim_rows", "level_check", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--splits", type=int, default=5, help="random splits per data set (paper: 10; default 5 to fit a "
                                                         "2-core CPU)")
    p.add_argument("--omit", default="", metavar="DATASET:METHOD,...",
                   help="(data set, method) pairs not run, e.g. school-3class:cross-stitch when compute does not "
                        "allow it; the results file lists them and their cells read 'not run'")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing new: write the results of the (data set, method) pairs and ablations already "
                        "recorded in the store's folder (a reproduction cut short by its compute budget); the "
                        "others are listed as not finished")
    p.add_argument("--trials", type=int, default=8, help="tuning trials per method, the same for every method "
                                                         "(default 8; --quick: 2)")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {', '.join(DATASETS)}")
    p.add_argument("--methods", default=",".join(m for m, _ in METHODS), help="comma-separated subset of Table 3")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs per run (paper: 100; early stopping)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: small synthetic data, subsets of the real ones, {QUICK_SPLITS} splits, "
                        "one-point grids, 3 epochs (numbers are meaningless; for testing)")


def _omitted(args: argparse.Namespace, datasets: list[str], methods: list[str]) -> set[tuple[str, str]]:
    """The ``--omit`` pairs, checked against the data sets and methods of this call."""
    from mtlkit.errors import MtlkitError

    out = set()
    for item in (x.strip() for x in str(getattr(args, "omit", "") or "").split(",") if x.strip()):
        ds, _, m = item.partition(":")
        if ds not in datasets or m not in methods:
            raise MtlkitError(f"--omit {item!r}: expected DATASET:METHOD with a data set of --datasets and a method "
                              "of --methods")
        out.add((ds, m))
    return out


def _load(name: str, args: argparse.Namespace) -> MultiTaskData:
    if name == "tomato-synthetic" and args.quick:
        return load(name, **QUICK_SYNTHETIC)
    return quick_subset(load(name, args.data_dir)) if args.quick else load(name, args.data_dir)


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the experiments and write ``tomato.md``, ``tomato.csv`` and the heatmaps into ``ctx.out``."""
    from mtlkit.errors import MtlkitError

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = sorted(set(datasets) - set(DATASETS)) + sorted(set(methods) - {m for m, _ in METHODS})
    if bad:
        raise MtlkitError(f"not part of TOMATO's Tables 3-4: {', '.join(bad)}")
    if args.quick:
        args.splits = min(args.splits, QUICK_SPLITS)
    omit = _omitted(args, datasets, methods)
    unfinished: list[tuple[str, str]] = []
    hp: dict[str, Any] = {"epochs": 3 if args.quick else args.epochs}
    results: dict[str, BenchResult] = {}
    tuning: dict[str, dict[str, dict[str, Any]]] = {}
    levels: dict[str, dict[str, float]] = {}
    for ds in datasets:
        data = _load(ds, args)
        if ds != "tomato-synthetic":
            levels[ds] = level_check(data)
        run_here = [m for m in methods if (ds, m) not in omit]
        results[ds], tuning[ds] = tune_then_evaluate(ctx, data, run_here, args.splits, _trials(args),
                                                     "reproduce-tomato", metric="error", hparams=hp, seed=SEED,
                                                     widen=0 if args.quick else 1, cached_only=_cached_only(args))
        unfinished += [(ds, m) for m in run_here if m not in results[ds].scores]
    ablations = {ds: _ablations(ctx, args, _load(ds, args), results[ds], hp) for ds in datasets}
    written: list[Path] = []
    case: list[str] = []
    fig4: dict[str, tuple[float, int]] = {}
    if "tomato-synthetic" in datasets:
        case, figs, fig4 = _case_study(ctx, args, results["tomato-synthetic"], hp)
        written += figs
    lines = ["# TOMATO (Zhang & Lee, CIKM 2020): Tables 3-4 and Fig. 4 reproduced", ""]
    lines += provenance(ctx, f"splits {SEED}..{SEED + args.splits - 1} (split i also seeds training); "
                             "tomato-synthetic generated with seed 2019; mnist-mtl sampled with seed 2019",
                        _protocol(args) + ([
                            "**Not finished within this session's compute budget** (written with --cached-only; their "
                            "cells read 'not run'): " + ", ".join(f"{d}:{m}" for d, m in unfinished) + "."]
                            if unfinished else []),
                        train_seconds=sum(float(np.sum(v)) for r in results.values() for v in r.seconds.values()))
    claim_list = claim_rows(results, fig4, ablations)
    lines += ["", *_table3(results, methods), "", *_table4(results, methods), "", *_claims_section(claim_list),
              "", *_ablation_section(results, ablations)]
    if levels:
        lines += ["", *_diagnosis(results, levels)]
    if case:
        lines += ["", *case]
    lines += ["", *_hparams(tuning)]
    md = ctx.out / "tomato.md"
    md.write_text("\n".join(lines) + "\n")
    csv = ctx.out / "tomato.csv"
    rows = ["dataset,method,split,mean_error"]
    for ds, res in results.items():
        for m, s in res.scores.items():
            for i, sp in enumerate(res.splits):
                rows.append(f"{ds},{m},{sp},{np.nanmean(s[i]):.6g}")
    csv.write_text("\n".join(rows) + "\n")
    claims = write_claims(claim_list, ctx.out / "claims" / "tomato.csv")
    return [md, csv, claims, *written]
