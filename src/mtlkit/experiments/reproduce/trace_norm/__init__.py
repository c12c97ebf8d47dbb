"""`mtlkit reproduce trace-norm`: Yang & Hospedales' Omniglot experiment (Trace Norm Regularised Deep MTL, Fig. 1):
STL vs the LAF / Tucker / TT tensor-trace-norm networks — test accuracy, training-loss curves, the three norms of
every shareable layer over training, and sharing strength by layer — under the equal-budget protocol: every method
tuned with the same number of Optuna TPE trials over its declared search space (γ = 0 among the trace-norm
methods' choices; STL tunes its optimiser) on split 0's validation rows, the choice then trained on every split with
its training curves and norms recorded, and the paper's claims judged by `mtlkit.experiments.claims.verdict`.

The package: `settings` (constants, options, splits), `recording` (`train_recording`: one network through the
Trainer with its norms per epoch), `experiment` (tuning, the recorded runs, `Results`), `claims` (`claim_rows`),
`report` and `diagnosis` (the results file's sections) and `figures`; this module holds the options and `run`."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mtlkit.experiments.claims import write_claims
from mtlkit.experiments.reproduce.common import Context, provenance
from mtlkit.experiments.reproduce.trace_norm.claims import (
    _paired,
    bottom_minus_top,
    claim_rows,
    norm_reduction,
)
from mtlkit.experiments.reproduce.trace_norm.diagnosis import _diagnosis
from mtlkit.experiments.reproduce.trace_norm.experiment import Results, _experiment, level_check, tune_methods
from mtlkit.experiments.reproduce.trace_norm.figures import _figures
from mtlkit.experiments.reproduce.trace_norm.recording import NormRecorder, Recorded, train_recording
from mtlkit.experiments.reproduce.trace_norm.report import (
    _accuracy_section,
    _budget_section,
    _claims_section,
    _loss_section,
    _norm_section,
    _protocol,
    _sharing_section,
)
from mtlkit.experiments.reproduce.trace_norm.settings import (
    DEFAULTS,
    DESCRIPTION,
    METHODS,
    NAMES,
    PAPER,
    QUICK,
    QUICK_ALPHABETS,
    SEED,
    _settings,
    fixed_hparams,
    make_splits,
)
from mtlkit.methods.trace_norm import KINDS

__all__ = [
    "DEFAULTS", "DESCRIPTION", "KINDS", "METHODS", "NAMES", "PAPER", "QUICK", "QUICK_ALPHABETS", "NormRecorder",
    "Recorded", "Results", "_paired", "add_arguments", "bottom_minus_top", "claim_rows", "fixed_hparams",
    "level_check", "make_splits", "norm_reduction", "run", "train_recording", "tune_methods",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                   help=f"random splits (paper: 10; default {DEFAULTS['repeats']}, which with the tuning fits about "
                        "35 minutes on a shared 2-core CPU)")
    p.add_argument("--trials", type=int, default=DEFAULTS["trials"],
                   help=f"tuning trials per method, the same for every method (default {DEFAULTS['trials']}; "
                        f"--quick: {QUICK['trials']})")
    p.add_argument("--size", type=int, default=DEFAULTS["size"],
                   help=f"image side after area downsampling from 105 (paper: 105; default {DEFAULTS['size']}, "
                        "exactly 3x3 block means, about 9x less compute per image on a CPU)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help=f"training epochs of every run, tuning trials included; no early stopping, the epoch with "
                        f"the lowest validation loss is kept (default {DEFAULTS['epochs']})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {', '.join(QUICK_ALPHABETS)}, {QUICK['repeats']} repeats, "
                        f"{QUICK['size']}x{QUICK['size']} images, {QUICK['epochs']} epochs, {QUICK['trials']} "
                        "trials (numbers are meaningless; for testing)")


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the experiment; write ``trace-norm.md``, ``trace-norm.csv``, the figures and ``claims/trace-norm.csv``
    into ``ctx.out``."""
    from mtlkit.datasets import load

    s = _settings(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny SVDs of the penalty are ~100x slower multi-threaded on a busy CPU
    try:
        data = load("omniglot", args.data_dir, size=s["size"], alphabets=QUICK_ALPHABETS if args.quick else None)
        ctx.record(data)
        splits = make_splits(data, s["repeats"])
        res = _experiment(ctx, data, splits, s["epochs"], s["trials"])
        level = level_check(splits[0])
    finally:
        torch.set_num_threads(threads)
    figs = _figures(res, ctx.out)
    rows = claim_rows(res)
    claims_csv = write_claims(rows, ctx.out / "claims" / "trace-norm.csv")
    lines = ["# Trace norm regularised deep MTL (Yang & Hospedales, ICLR-W 2017): Omniglot, Fig. 1 reproduced", ""]
    protocol = _protocol(args, s, data.notes)
    if res.reused:
        protocol.insert(1, f"{res.reused} of {res.runs} final runs (the table's and the diagnostics') were read "
                           f"back from the run cache `{res.cache}` (written by an earlier invocation with the same "
                           "configuration and data; tunings likewise from `tuning/` beside the store); the time "
                           "above counts this invocation only, the training time of every run is at the end.")
    seeds = (f"splits {SEED}..{SEED + s['repeats'] - 1} (`Split` seed r for repeat r); every network of repeat r "
             "initialised with torch seed r (the four methods start from identical weights; tuning trials on repeat 0 "
             f"with seed {SEED}); TPE seeded with {SEED}")
    lines += provenance(ctx, seeds, protocol)
    lines += ["", *_budget_section(res), "", *_accuracy_section(res), "", *_loss_section(res), "",
              *_norm_section(res), "", *_sharing_section(res), "", *_claims_section(rows), "",
              *_diagnosis(res, level, rows)]
    secs = ", ".join(f"{NAMES[m]} {res.seconds[m] / 60:.1f}" for m in res.methods)
    tune_secs = ", ".join(f"{NAMES[m]} {float(res.tuning[m].get('seconds', 0.0)) / 60:.1f}" for m in res.methods
                          if m in res.tuning)
    lines += ["", f"Training time of the final runs (minutes, all repeats): {secs}. Tuning (minutes): {tune_secs}."]
    md = ctx.out / "trace-norm.md"
    md.write_text("\n".join(lines) + "\n")
    csv = ctx.out / "trace-norm.csv"
    out = ["method,repeat,task,test_accuracy,test_cross_entropy,train_cross_entropy,test_accuracy_last_epoch,"
           "train_cross_entropy_last_epoch,best_epoch"]
    for m in res.methods:
        for r in range(res.accuracy[m].shape[0]):
            for t, name in enumerate(res.task_names):
                out.append(f"{m},{r},{name},{res.accuracy[m][r, t]:.6g},{res.test_ce[m][r, t]:.6g},"
                           f"{res.train_ce[m][r, t]:.6g},{res.accuracy_last[m][r, t]:.6g},"
                           f"{res.train_ce_last[m][r, t]:.6g},{int(res.best_epoch[m][r])}")
    csv.write_text("\n".join(out) + "\n")
    return [md, csv, claims_csv, *figs]
