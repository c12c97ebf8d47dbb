"""Fig. 5's ablations: the tuned TOMATO retrained with the sparsity off (λ = 0) or one topic (K = 1), and their
table."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.protocol import tune_then_evaluate
from mtlkit.experiments.reproduce.tomato.settings import PAPER_NAMES, SEED, _cached_only
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.tables import markdown_table, mean_ci_cell, mean_ci_text

ABLATIONS: dict[str, dict[str, Any]] = {"lam=0": {"lam": 0.0}, "K=1": {"K": 1}}
"""Fig. 5's two ablations, each from the tuned configuration: the sparsity prox off (λ = 0: TOMATO's topic-task
sparsity disabled) and one topic (K = 1: conventional MTL architecture)."""


def _ablations(ctx: Context, args: argparse.Namespace, data: MultiTaskData, res: BenchResult,
               hp: dict[str, Any]) -> dict[tuple[str, str], BenchResult]:
    """Each TOMATO variant retrained on every split with its tuned configuration but one ablation applied (no
    tuning: the configuration is fixed), for the paired comparisons of Fig. 5."""
    out: dict[tuple[str, str], BenchResult] = {}
    for m in ("tomato-el", "tomato-ex"):
        if m not in res.hparams:
            continue
        chosen = dict(res.hparams[m][0])
        for name, change in ABLATIONS.items():
            if all(chosen.get(k) == v for k, v in change.items()):
                continue  # the tuned configuration already is the ablation: nothing to compare
            cfg = {**chosen, **change, "epochs": hp["epochs"]}
            r, _ = tune_then_evaluate(ctx, data, [m], args.splits, 1, f"reproduce-tomato-ablation-{name}",
                                      metric="error", seed=SEED, widen=0, fixed={m: cfg},
                                      cached_only=_cached_only(args))
            if m in r.scores:
                out[(m, name)] = r
    return out


def _ablation_diff(res: BenchResult, abl: BenchResult, m: str) -> tuple[float, float]:
    """Mean ± 95% CI over splits of (tuned error) − (ablated error), paired by split."""
    d = np.nanmean(res.scores[m], axis=1) - np.nanmean(abl.scores[m], axis=1)
    mean, ci = mean_ci(d)
    return float(mean), float(ci)


def _ablation_section(results: dict[str, BenchResult],
                      ablations: dict[str, dict[tuple[str, str], BenchResult]]) -> list[str]:
    out = ["## Fig. 5 ablations: the tuned TOMATO against itself with the sparsity off (λ = 0) or one topic (K = 1)",
           "", "Tuned minus ablated test error % (paired over splits; negative = the tuned configuration is better). "
           "The ablation is skipped where tuning already selected it.", ""]
    rows = []
    for ds, res in results.items():
        for m in ("tomato-el", "tomato-ex"):
            if m not in res.hparams:
                continue
            chosen = res.hparams[m][0]
            cells = [f"λ={chosen.get('lam', float('nan')):g}, K={chosen.get('K')}"]
            for name in ABLATIONS:
                abl = ablations.get(ds, {}).get((m, name))
                if abl is None:
                    selected = all(chosen.get(k) == v for k, v in ABLATIONS[name].items())
                    cells.append("selected by tuning" if selected else "not run")
                    continue
                d, ci = _ablation_diff(res, abl, m)
                cells.append(f"{mean_ci_cell(abl.scores[m])} ({mean_ci_text(d, ci, '+.2f')})")
            rows.append([PAPER_NAMES[ds], m, mean_ci_cell(res.scores[m]), *cells])
    return out + markdown_table(["data", "method", "tuned: error %", "tuned λ, K", "λ = 0: error % (Δ)",
                                 "K = 1: error % (Δ)"], rows)
