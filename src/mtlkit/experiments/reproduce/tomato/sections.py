"""The results file's tables: protocol, Table 3, Table 4, the claims table and the tuning budgets."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from mtlkit.experiments import report
from mtlkit.experiments.bench import BenchResult
from mtlkit.experiments.claims import Claim
from mtlkit.experiments.reproduce.protocol import budget_lines, edge_warnings
from mtlkit.experiments.reproduce.tomato.settings import METHODS, PAPER_NAMES, PAPER_TABLE3, PAPER_TABLE4, SEED, _trials
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.tables import fmt, markdown_table, mean_ci_cell


def _protocol(args: argparse.Namespace) -> list[str]:
    lines = [
        f"{args.splits} random splits per data set (seeds {SEED}..{SEED + args.splits - 1}); per task 20% test, "
        "then 20% of the rest validation (the paper's stage-wise split; exact counts per task).",
        f"Hyper-parameters: every method gets the same budget, {_trials(args)} trials of Optuna TPE over its declared "
        "search space (`mtlkit methods NAME`; the optimiser Adam or SGD, the learning rate, widths, dropout and the "
        "method's own regularisers, each of which can be switched off, = 0; TOMATO also K ∈ {1, 2, 4, 8, 16}, m, "
        "λ ∈ {0} ∪ [1e-5, 0.1], the rate decay), scored on split 0's validation rows by the primary metric "
        "(cross-entropy on the soft-label synthetic data, error % on the others), one more round when a selected "
        "value lies on the edge of its space; the chosen configuration is then trained on every split. The paper "
        "tunes on validation per data set too, with an unstated budget.",
        f"Every run: at most {3 if args.quick else args.epochs} epochs, batch 32 rows per task, early stopping "
        "on the validation loss (patience 20 epochs), the epoch with the lowest validation loss kept; widths, "
        "dropout and the optimiser as tuned (the budget table at the end lists each method's selection).",
        "Test metric: misclassification % (argmax of the prediction vs argmax of the label), averaged over "
        "tasks, mean ± 95% Student-t CI over splits.",
        "Table 4's improvement: the relative gain in accuracy, per task 100·(acc_method − acc_Separate)/acc_Separate "
        "on the split-averaged accuracies (accuracy = 100 − misclassification %), averaged over tasks; the paper's "
        "own numbers follow this definition (synthetic TOMATO-el: (85.91 − 83.45)/83.45 = 2.95 vs its 2.94).",
        "mnist-mtl is built from the 10k MNIST test images (the training images are not staged); PCA-64 is "
        "fitted on each split's training rows. The paper fits PCA on the MNIST training images.",
    ]
    if getattr(args, "omit", ""):
        lines.insert(0, f"**Not run** (compute): {args.omit.replace(',', ', ')}; their cells read 'not run', and "
                        "claims against 'every baseline' are tested against the baselines that were run.")
    if args.quick:
        lines.insert(0, "**QUICK SMOKE RUN**: small synthetic data, 6 tasks × ≤ 100 rows of the real data sets, "
                        "one-point grids and 3 epochs; the numbers mean nothing.")
    elif args.splits < 10:
        lines.insert(0, f"**Reduced protocol**: {args.splits} splits instead of the paper's 10, {_trials(args)} tuning "
                        "trials per method (the same for all), to fit a 2-core CPU.")
    return lines


def _table3(results: dict[str, BenchResult], methods: list[str]) -> list[str]:
    names = dict(METHODS)
    out = ["## Table 3: test misclassification % (lower is better)", "",
           "Ours: mean ± 95% CI over splits. Paper: the published mean over its 10 splits. Rank: ours among "
           "the methods run here (1 = lowest error).", ""]
    header = ["method (paper name)"]
    for ds in results:
        header += [f"{PAPER_NAMES[ds]}: paper", f"{PAPER_NAMES[ds]}: ours", "rank"]
    rows = []
    ranks = {ds: _ranks(res) for ds, res in results.items()}
    for m in methods:
        row = [f"{m} ({names[m]})"]
        for ds, res in results.items():
            paper = PAPER_TABLE3[ds][[k for k, _ in METHODS].index(m)]
            if m not in res.scores:
                row += [fmt(paper), "not run", "–"]
                continue
            row += [fmt(paper), mean_ci_cell(res.scores[m]), str(ranks[ds][m])]
        rows.append(row)
    return out + markdown_table(header, rows)


def _ranks(res: BenchResult) -> dict[str, int]:
    means = {m: float(np.nanmean(s)) for m, s in res.scores.items()}
    order = sorted(means, key=lambda m: means[m])
    return {m: order.index(m) + 1 for m in means}


def _improvement(res: BenchResult, m: str) -> report.Comparison | None:
    if "stl" not in res.scores or m == "stl" or m not in res.scores:
        return None
    return report.compare(res.scores[m], res.splits, res.scores["stl"], res.splits, True, "stl", "error")


def _table4(results: dict[str, BenchResult], methods: list[str]) -> list[str]:
    out = ["## Table 4: mean per-task relative gain in accuracy over Separate (%), and tasks hurt", "",
           "Per task 100·(acc − acc_Separate)/acc_Separate, averaged over tasks; positive = better than Separate. "
           "Tasks hurt: tasks whose split-averaged error is above Separate's.", ""]
    header = ["method"] + [f"{PAPER_NAMES[ds]}: {w}" for ds in results for w in ("paper", "ours", "hurt")]
    rows = []
    for m in methods:
        if m == "stl":
            continue
        row = [m]
        for ds, res in results.items():
            c = _improvement(res, m)
            names = [k for k, _ in METHODS]
            paper = PAPER_TABLE4[ds][names.index(m)] if m in names else None
            row += [fmt(paper), fmt(c.improvement if c else None),
                    f"{c.hurt}/{c.n_tasks}" if c else "–"]
        rows.append(row)
    return out + markdown_table(header, rows)


def _paired(res: BenchResult, a: str, b: str) -> tuple[float, float]:
    """Mean ± 95% CI over splits of (task-mean error of a) − (task-mean error of b)."""
    d = np.nanmean(res.scores[a], axis=1) - np.nanmean(res.scores[b], axis=1)
    mean, ci = mean_ci(d)
    return float(mean), float(ci)


def _claims_section(rows: list[Claim]) -> list[str]:
    """The claims this reproduction tests, as in the ledger (`claims.verdict`'s rule)."""
    from mtlkit.experiments.claims import VERDICT_RULE, claims_markdown

    return ["## The paper's claims, checked here", "", VERDICT_RULE, "", *claims_markdown(rows)]


def _hparams(tuning: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    out = ["## Tuning budget and selected hyper-parameters (on split 0's validation part)", ""]
    for ds, t in tuning.items():
        out += [f"### {ds}", "", *budget_lines(t), ""]
        warn = edge_warnings(t)
        out += [f"- {w}" for w in warn] or ["No selected value lies on the edge of its search space."]
        out.append("")
    return out
