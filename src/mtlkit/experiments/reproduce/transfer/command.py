"""`mtlkit reproduce transfer`: its options, sizes (`Settings`) and `run`, which writes ``information-transfer.md``
(+ CSV, figures) and ``claims/transfer.csv``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mtlkit.errors import MtlkitError
from mtlkit.experiments.claims import claims_markdown, write_claims
from mtlkit.experiments.reproduce.common import Context, parse_parts, provenance
from mtlkit.experiments.reproduce.transfer.base import (
    CACHE_STATS,
    DEFAULT_TRIALS,
    NAME,
    OUT_NAME,
    PARTS,
    QUICK_TRIALS,
    SEED,
)
from mtlkit.experiments.reproduce.transfer.noise import NOISE_FIXED, NOISE_SHARES, noise_experiment
from mtlkit.experiments.reproduce.transfer.paper_claims import claim_rows
from mtlkit.experiments.reproduce.transfer.sections import _noise_section, _synthetic_runs, _synthetic_section
from mtlkit.experiments.reproduce.transfer.sentiment import SENT_TRAIN, SENT_WIDTH, SENT_WIDTHS, sentiment_experiment
from mtlkit.experiments.reproduce.transfer.sentiment_section import _sentiment_section
from mtlkit.experiments.reproduce.transfer.solvers import ALIGN_HP
from mtlkit.experiments.tables import write_csv

if TYPE_CHECKING:
    from mtlkit.experiments.reproduce.transfer.noise import NoiseResult
    from mtlkit.experiments.reproduce.transfer.sentiment import SentimentResult
    from mtlkit.experiments.reproduce.transfer.synthetic import Fig3Result, Fig8Result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    p.add_argument("--splits", type=int, default=5,
                   help="random 80/10/10 splits of the sentiment data (paper: 5 seeds); Fig. 3 and Fig. 8 use "
                        "max(3, splits) random draws")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"tuning trials per method, the same for every method of a table (default {DEFAULT_TRIALS}; "
                        f"--quick: {QUICK_TRIALS})")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny synthetic sizes, 2 noise pairs, 300 sentences per task, 2 widths, "
                        f"{QUICK_TRIALS} trials (numbers are meaningless; for testing)")


@dataclass
class Settings:
    """Sizes of every part; the defaults fit ≈ 35 minutes on a shared 2-core CPU, ``quick`` a smoke test."""

    trials: int = DEFAULT_TRIALS
    widen: int = 1
    fig3_sizes: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000, 9000)
    fig3_repeats: int = 5
    fig8_distances: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
    fig8_repeats: int = 5
    fig8_steps: int = 600
    d: int = 100
    noise_pairs: int = 20
    noise_fixed: dict[str, Any] | None = None
    noise_related: int = 10
    noise_shares: tuple[float, ...] = NOISE_SHARES
    noise_share_pairs: int = 10
    vocab: int = 1000
    per_task: int | None = 4000
    widths: tuple[int, ...] = SENT_WIDTHS
    sent_width: int = SENT_WIDTH
    splits: int = 5
    pairs: bool = True
    transfer: bool = True
    transfer_targets: int = 5
    sent_hp: dict[str, Any] | None = None
    quick: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if args.splits < 1:
            raise MtlkitError(f"--splits must be at least 1, got {args.splits}")
        trials = getattr(args, "trials", DEFAULT_TRIALS)
        if trials < 1:
            raise MtlkitError(f"--trials must be at least 1, got {trials}")
        if args.quick:
            return cls(trials=QUICK_TRIALS, widen=0, fig3_sizes=(20, 60), fig3_repeats=2, fig8_distances=(0.0, 1.0),
                       fig8_repeats=2, fig8_steps=50, d=10, noise_pairs=2, noise_fixed={"epochs": 3},
                       noise_related=1, noise_shares=(0.25,), noise_share_pairs=1, vocab=200, per_task=300,
                       widths=(5, 20), sent_width=20, splits=1, pairs=False, transfer_targets=2,
                       sent_hp={"epochs": 2}, quick=True)
        return cls(trials=trials, fig3_repeats=max(3, args.splits), fig8_repeats=max(3, args.splits),
                   splits=args.splits)


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the chosen parts; write ``information-transfer.md`` (+ CSV, figures) and ``claims/transfer.csv`` into
    ``ctx.out``."""
    parts = parse_parts(args.parts, PARTS)
    st = Settings.from_args(args)
    CACHE_STATS.update(reused=0, computed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is several times faster on a shared CPU
    written: list[Path] = []
    body: list[str] = []
    diag: list[str] = []
    budgets: list[str] = []
    csv_rows: list[list[Any]] = []
    f3: list[Fig3Result] | None = None
    f8: Fig8Result | None = None
    nres: NoiseResult | None = None
    sres: SentimentResult | None = None
    try:
        if "synthetic" in parts:
            f3, f8, f3_check = _synthetic_runs(st)
            b, d, w = _synthetic_section(ctx, st, f3, f8, f3_check, csv_rows)
            body, diag, written = body + b, diag + d, written + w
        if "noise" in parts:
            nres = noise_experiment(n_pairs=st.noise_pairs, trials=st.trials, fixed=st.noise_fixed,
                                    device=ctx.device, ctx=ctx, related=st.noise_related, shares=st.noise_shares,
                                    share_pairs=st.noise_share_pairs, widen=st.widen)
            b, d, w, bl = _noise_section(ctx, st, nres, csv_rows)
            body, diag, written, budgets = body + b, diag + d, written + w, budgets + bl
        if "sentiment" in parts:
            from mtlkit.datasets.sentiment import load_sentiment

            data = load_sentiment(args.data_dir, vocab_size=st.vocab, max_per_task=st.per_task, seed=SEED)
            ctx.record(data)
            sres = sentiment_experiment(data, st, ctx, ctx.device)
            b, d, w, bl = _sentiment_section(ctx, st, sres, csv_rows)
            body, diag, written, budgets = body + b, diag + d, written + w, budgets + bl
    finally:
        torch.set_num_threads(threads)
    rows = claim_rows(f3, f8, nres, sres)
    claims_csv = write_claims(rows, ctx.out / "claims" / f"{NAME}.csv")
    lines = ["# Wu, Zhang & Ré (ICLR 2020): information transfer in MTL, reproduced", ""]
    seeds = (f"synthetic draws seeded {SEED}.., digit pairs and flips seeded {SEED}, sentiment splits "
             f"{SEED}..{SEED + st.splits - 1} (split i also seeds training), TPE seeded {SEED}")
    lines += provenance(ctx, seeds, _protocol(st, parts))
    lines += ["", "## The paper's claims, checked here", "",
              "Each claim with the paper's number, ours (mean ± 95% CI; over draws, pairs or splits as the unit "
              "says) and the verdict of the project's one rule (`mtlkit.experiments.claims.verdict`: **holds** = the "
              "CI lies on the claimed side and reaches the paper's size where it gives one; **holds in direction "
              "only** = the mean is on the claimed side but the CI includes 0 or stays short of the paper's size; "
              "**does not hold** = the mean is 0 or on the other side). Also in `claims/transfer.csv` and the "
              "ledger `claims.md`.", ""]
    lines += claims_markdown(rows)
    if budgets:
        lines += ["", "## Tuning budgets", "", *budgets]
    lines += ["", *body]
    if diag:
        lines += ["", "## Diagnosis", "", *diag]
    md = ctx.out / f"{OUT_NAME}.md"
    md.write_text("\n".join(lines) + "\n")
    csv_path = write_csv(ctx.out / f"{OUT_NAME}.csv", ["part", "quantity", "method", "unit_index", "task", "value"],
                         [[f"{x:.6g}" if isinstance(x, float) else x for x in r] for r in csv_rows])
    return [md, csv_path, claims_csv, *written]


def _protocol(st: Settings, parts: Sequence[str]) -> list[str]:
    out = [
        "Runtime budget: sized for ≈ 35 minutes on a 2-core CPU shared with other jobs (one torch thread); every "
        "expensive step is cached beside the results store (`results/tuning/transfer-*.json`), so a stopped run "
        "continues and a changed protocol recomputes. This call computed "
        f"{int(CACHE_STATS['computed'])} steps and reused {int(CACHE_STATS['reused'])} cached by earlier calls with "
        "the same protocol; the time above covers this call only.",
        f"**Equal tuning budgets**: every method of a comparison gets the same {st.trials} trials of Optuna TPE "
        "(seeded; the first trial is the method's defaults; a selected value on the edge of its range widens that "
        "range once, with half the trials more, counted) over its declared search space (`mtlkit methods NAME`; "
        "`align` switches the alignment off as one of its choices), on the first split's (first pair's) validation "
        "rows, the choice then trained and tested on every split (pair). The budget tables below list each "
        "method's budget, space and selection.",
        "MTL throughout is hard parameter sharing (Eq. 1): one shared module, one output layer per task; "
        "STL is the same network per task alone.",
        f"**Reduced protocol** against the paper: {st.trials} tuning trials per method (the paper tunes by small "
        f"grids it does not list for the sentiment tasks); synthetic Fig. 3 with {st.fig3_repeats} draws and Fig. 8 "
        f"with {st.fig8_repeats} draws per distance (paper: 20 task pairs); label noise on the 8×8 digits "
        f"({st.noise_pairs} pairs, paper: 20 ChestX-ray14 pairs) with at most "
        f"{(st.noise_fixed or {}).get('epochs', NOISE_FIXED['epochs'])} epochs (paper: CheXNet, 20 epochs); "
        f"sentiment with {st.splits} splits (paper: 5 seeds), at most {st.per_task} sentences per task (paper: all), "
        f"a {st.vocab}-word bag-of-words embedding encoder instead of GloVe + LSTM, at most "
        f"{(st.sent_hp or {}).get('epochs', SENT_TRAIN['epochs'])} epochs with early stopping (patience "
        f"{SENT_TRAIN['patience']}); alignment's second phase and the transfer fine-tuning at most "
        f"{ALIGN_HP['epochs']} epochs (paper: 5-10). Not reproduced: GLUE / BERT (Fig. 5a), ChestX-ray14.",
        "Every trained run of the tables is recorded in the results store (experiments `reproduce-transfer-noise-*`, "
        "`reproduce-transfer-sentiment`).",
    ]
    if st.quick:
        out.insert(0, "**QUICK SMOKE RUN**: tiny sizes, 2-3 epochs and 2 trials; the numbers mean nothing.")
    return out
