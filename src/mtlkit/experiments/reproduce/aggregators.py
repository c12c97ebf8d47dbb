"""`mtlkit reproduce aggregators` (issue 16): every loss weighting and gradient aggregator against plain summation
(EW) under one equal tuning budget.

The methods are derived from the registry, never listed by hand: single-task learning (`stl`, the reference of Δ vs
STL), hard parameter sharing trained on the plain sum of the task losses (`hard-share` = EW), and `hard-share+NAME`
for every named combiner of `mtlkit.optim.combiners.COMBINERS` but ``ew`` itself (which is `hard-share`). Each is
tuned with the same number of TPE trials over its declared search space, the combiner's own hyper-parameters
included (`mtlkit.experiments.reproduce.protocol.tune_then_evaluate`), on School (139 regression tasks, per-task
input) and on a shared-input image set (ten one-vs-rest digit tasks on the same MNIST test images,
`mtlkit.datasets.mnist_shared`). Per method: mean ± 95% CI over splits of the primary test metric, Δ vs STL, tasks
hurt, and the difference from EW paired over splits; one claim per (combiner, data set), "NAME beats EW", judged by
`mtlkit.experiments.claims.verdict` — Xin et al. (NeurIPS 2022) and Kurin et al. (NeurIPS 2022) found that a
well-tuned EW is rarely beaten, so "does not hold" is an expected outcome, reported as measured."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult
from mtlkit.experiments.claims import VERDICT_RULE, Claim, claims_markdown, verdict, write_claims
from mtlkit.experiments.reproduce.common import Context, provenance, quick_subset
from mtlkit.experiments.reproduce.protocol import budget_lines, edge_warnings, tune_then_evaluate
from mtlkit.experiments.stats import mean_ci, nanmean, summarize
from mtlkit.experiments.tables import fmt, markdown_table, mean_ci_text, write_csv

DESCRIPTION = ("every loss weighting and gradient aggregator (hard-share+NAME) against EW and STL with one equal "
               "tuning budget, on School and a shared-input MNIST set (issue 16)")
PAPER = "Loss weightings and gradient aggregators vs EW (issue 16)"
SOURCE = "aggregators.md"
EXPERIMENT = "reproduce-aggregators"
DATASETS = ("school", "mnist-shared")
EW = "hard-share"
STL = "stl"
SEED = 0
DEFAULTS = {"splits": 5, "trials": 5, "epochs": 40, "patience": 10, "images_per_digit": 200}
QUICK = {"splits": 2, "trials": 1, "epochs": 2, "patience": 2, "images_per_digit": 20}
SIZING = ("one `hard-share` run on School with the defaults (at most 100 epochs, early stopping with patience 20: "
          "stopped after 34) took 6.0 s on this machine; one epoch of the slowest aggregator took up to 0.3 s on "
          "School and 1.5 s on 3,000 shared MNIST images (`hard-share+mgda-ub`), with other jobs sharing the 2 cores; "
          "a first pass with 3 splits, 3 trials, at most 30 epochs and 150 images per digit took 11.4 min, so the "
          "defaults were raised to the protocol below, whose committed run took 22.2 min")
CSV_HEADER = ("dataset", "method", "kind", "split", "metric", "value")


def methods() -> list[str]:
    """`stl`, `hard-share` (= EW), then `hard-share+NAME` for every named combiner but ``ew``, in `COMBINERS`'
    order (aggregators, then weightings)."""
    from mtlkit.optim.combiners import COMBINERS

    return [STL, EW] + [f"{EW}+{n}" for n in COMBINERS if n != "ew"]


def kind_of(method: str) -> str:
    """``reference`` (STL), ``EW`` or the combiner's kind (``aggregator`` / ``weighting``)."""
    from mtlkit.optim.combiners import COMBINERS

    if method == STL:
        return "reference"
    if method == EW:
        return "EW"
    return COMBINERS[method.rpartition("+")[2]].kind


def paper_of(method: str) -> str:
    """The paper a method comes from (the combiner's, for `hard-share+NAME`)."""
    from mtlkit.methods import registry
    from mtlkit.optim.combiners import COMBINERS

    if "+" in method:
        return COMBINERS[method.rpartition("+")[2]].paper
    return registry.get(method).paper


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    d, q = DEFAULTS, QUICK
    p.add_argument("--splits", type=int, default=d["splits"],
                   help=f"splits per data set (School: Argyriou's first ones; default {d['splits']}, sized for a "
                        f"2-core CPU; --quick: {q['splits']})")
    p.add_argument("--trials", type=int, default=d["trials"],
                   help=f"TPE trials per method, the same for every method (default {d['trials']}; --quick: "
                        f"{q['trials']})")
    p.add_argument("--epochs", type=int, default=d["epochs"],
                   help=f"maximum epochs of every run, the same for every method (default {d['epochs']}; early "
                        "stopping on validation loss)")
    p.add_argument("--patience", type=int, default=d["patience"],
                   help=f"early-stopping patience in epochs, the same for every method (default {d['patience']})")
    p.add_argument("--images-per-digit", type=int, default=d["images_per_digit"],
                   help=f"MNIST test images per digit in the shared-input set (default {d['images_per_digit']})")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help=f"comma-separated data sets: {', '.join(DATASETS)} or any `mtlkit datasets` name")
    p.add_argument("--methods", default="",
                   help="comma-separated subset of the methods (default: stl, hard-share and hard-share+NAME for "
                        "every named combiner)")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing new: write the results of the methods already recorded in the store's folder; "
                        "the others are listed as not finished")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: small subsets, 2 epochs, 1 trial, 2 splits (numbers mean nothing)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Splits, trials, epochs, patience and images per digit of this call (the quick smoke run's are tiny)."""
    src = QUICK if args.quick else {k: getattr(args, k) for k in DEFAULTS}
    return dict(src)


def load_data(name: str, args: argparse.Namespace, st: dict[str, Any]) -> MultiTaskData:
    """Data set ``name``: ``mnist-shared`` (PCA-64 vectors of the pooled images, fitted on each split's training
    rows) built from the staged MNIST test images, any other through `mtlkit.datasets.load`; a quick run's subset."""
    if name == "mnist-shared":
        from mtlkit.datasets.mnist_shared import load_mnist_shared

        return load_mnist_shared(args.data_dir, n_per_digit=st["images_per_digit"], pca=16 if args.quick else 64,
                                 seed=SEED)
    from mtlkit import datasets

    data = datasets.load(name, args.data_dir)
    return quick_subset(data) if args.quick else data


# ---------------------------------------------------------------------------------------------- measurements
def better_than(scores: np.ndarray, ref: np.ndarray, lower_is_better: bool) -> tuple[float, float]:
    """How much better a method is than a reference, paired over splits: mean ± 95% CI over splits of the task-mean
    metric's difference, signed so that positive = better (``ref − method`` for a lower-is-better metric)."""
    d = nanmean(np.asarray(ref, dtype=np.float64), axis=1) - nanmean(np.asarray(scores, dtype=np.float64), axis=1)
    m, ci = mean_ci(d if lower_is_better else -d)
    return float(m), float(ci)


def measure(res: BenchResult) -> dict[str, dict[str, Any]]:
    """Per method of ``res``: the test metric's mean and CI, Δ vs STL (%), tasks hurt, and the paired difference
    from EW with its verdict (``None`` for EW and STL)."""
    from mtlkit.experiments.report import compare

    lower = res.lower_is_better
    stl, ew = res.scores.get(STL), res.scores.get(EW)
    out: dict[str, dict[str, Any]] = {}
    for m, s in res.scores.items():
        mean, ci = summarize(s)
        rec: dict[str, Any] = {"mean": mean, "ci": ci, "delta": float("nan"), "hurt": None, "vs_ew": None}
        if stl is not None and m != STL:
            c = compare(s, res.splits, stl, res.splits, lower, STL, res.metric)
            if c is not None:
                rec["delta"], rec["hurt"] = c.improvement, c.hurt
        if ew is not None and m not in (EW, STL):
            d, dci = better_than(s, ew, lower)
            rec["vs_ew"] = (d, dci, *verdict(d, dci, +1))
        out[m] = rec
    return out


def claim_rows(results: dict[str, BenchResult]) -> list[Claim]:
    """One claim per (combiner, data set): "hard-share+NAME beats EW", our paired difference (positive = better than
    EW) and the ledger's verdict; the combiner's paper names where it comes from."""
    rows = []
    for ds, res in results.items():
        meas = measure(res)
        unit = f"{res.metric} of EW − method (positive: better than EW)" if res.lower_is_better else \
            f"{res.metric} of method − EW (positive: better than EW)"
        for m in res.scores:
            r = meas[m]["vs_ew"]
            if r is None:
                continue
            d, ci, v, why = r
            rows.append(Claim(PAPER, f"{ds}: {paper_of(m)}", f"{m} beats EW (hard-share, plain sum) on {ds}",
                              "better than EW (the method's premise)", d, ci, unit, v, why, SOURCE))
    return rows


# ---------------------------------------------------------------------------------------------- report
def _metric_text(res: BenchResult) -> str:
    return f"test {res.metric} ({'lower' if res.lower_is_better else 'higher'} is better)"


def _dataset_section(res: BenchResult, data: MultiTaskData, tuning: dict[str, Any], st: dict[str, Any]) -> list[str]:
    """A data set's table (methods in listing order) with its ranking, summary counts and budget table."""
    meas = measure(res)
    shared = "shared input" if data.x is not None else "per-task input"
    header = ["method", "kind", res.metric + " (mean ± 95% CI)", "Δ vs STL (%)", f"tasks hurt (of {data.n_tasks})",
              "better than EW by (paired ± 95% CI)", "verdict vs EW", "s per run"]
    rows = []
    for m in res.scores:
        r = meas[m]
        vs = r["vs_ew"]
        secs = res.seconds.get(m) or []
        rows.append([f"`{m}`", kind_of(m), mean_ci_text(r["mean"], r["ci"], None),
                     "–" if m == STL else fmt(r["delta"]), "–" if r["hurt"] is None else str(r["hurt"]),
                     "–" if vs is None else mean_ci_text(vs[0], vs[1], "+.3g", ".2g"),
                     "–" if vs is None else f"**{vs[2]}**", fmt(float(np.mean(secs)) if secs else None, 1)])
    order = sorted((m for m in res.scores if np.isfinite(meas[m]["mean"])), key=lambda m: meas[m]["mean"],
                   reverse=not res.lower_is_better)
    verdicts = [meas[m]["vs_ew"][2] for m in res.scores if meas[m]["vs_ew"] is not None]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(
        ("holds", "holds in direction only", "does not hold", "not testable here")) if verdicts.count(v))
    out = [f"## {data.name}: {data.n_tasks} {data.kind} tasks, {shared}", "",
           f"{_metric_text(res)}, mean over tasks, then mean ± 95% Student-t CI over {len(res.splits)} splits "
           f"({', '.join(res.splits)}). Δ vs STL: TOMATO Table 4's task-wise relative gain averaged over tasks"
           + (" (on the accuracy, 100 − error)" if res.metric == "error" else "")
           + "; tasks hurt: tasks worse than STL (split means). 'Better than EW by': the task-mean metric of EW "
             "minus the method's (or the reverse for a higher-is-better metric), per split, mean ± 95% CI over the "
             "splits; its verdict by the claims ledger's rule (holds = the CI lies above 0). 's per run': mean "
             "training seconds of the evaluated runs.", "",
           *markdown_table(header, rows, align="llrrrrlr"), "",
           f"Ranking by the mean: {' > '.join(f'`{m}`' for m in order)}.", "",
           f"Combiners against EW on {data.name}: {counts or 'none measured'} (of {len(verdicts)}). With "
           f"{len(verdicts)} comparisons at 95 % each, about {0.05 * len(verdicts):.1f} would 'hold' by chance "
           "alone if no combiner differed from EW.", "",
           f"### Tuning budgets on {data.name}", "", *budget_lines(tuning)]
    warn = edge_warnings(tuning)
    out += ["", *([f"- {w}" for w in warn] if warn else ["No selected value lies on the edge of its (widened) space."])]
    return out


def _summary(results: dict[str, BenchResult]) -> list[str]:
    """Mean rank over the data sets and the count of combiners that beat EW on each."""
    from mtlkit.experiments.report import mean_ranks

    means = {ds: {m: measure(r)[m]["mean"] for m in r.scores} for ds, r in results.items()}
    ranks = mean_ranks(means, {ds: r.lower_is_better for ds, r in results.items()})
    order = sorted(ranks, key=lambda m: ranks[m][0])
    rows = [[f"`{m}`", kind_of(m), f"{ranks[m][0]:.1f}", str(ranks[m][1])] for m in order]
    beat = {ds: [m for m, x in measure(r).items() if x["vs_ew"] is not None and x["vs_ew"][2] == "holds"]
            for ds, r in results.items()}
    lines = ["## Summary", ""]
    for ds, ms in beat.items():
        res, meas = results[ds], measure(results[ds])
        n = sum(1 for m in res.scores if m not in (EW, STL))
        worse = sum(1 for x in meas.values() if x["vs_ew"] is not None and x["vs_ew"][0] < 0)
        text = (f"- {ds}: {len(ms)} of {n} combiners beat EW with a 95% CI above 0"
                + (f" ({', '.join(f'`{m}`' for m in ms)})" if ms else "")
                + f" (about {0.05 * n:.1f} would by chance alone with no real difference); {worse} have a worse "
                  "mean than EW")
        gains = {m: x["vs_ew"][0] for m, x in meas.items() if x["vs_ew"] is not None}
        ew_mean = meas[EW]["mean"] if EW in meas else float("nan")
        if gains and np.isfinite(ew_mean) and ew_mean != 0:
            best = max(gains, key=lambda m: gains[m])
            text += (f"; the largest mean gain over EW is `{best}`'s {gains[best]:+.3g} {res.metric} "
                     f"({100 * gains[best] / abs(ew_mean):+.2g} % of EW's {ew_mean:.4g})")
        if STL in meas and EW in meas:
            text += (f"; EW's {res.metric} {meas[EW]['mean']:.4g} against STL's {meas[STL]['mean']:.4g} "
                     f"(Δ vs STL {meas[EW]['delta']:+.2f} %)")
        lines.append(text + ".")
    lines += ["", "Mean rank by the test metric's mean (1 = best) over the data sets (their number in the last "
              "column):", "", *markdown_table(["method", "kind", "mean rank", "data sets"], rows, align="llrr")]
    return lines


def _protocol(args: argparse.Namespace, st: dict[str, Any], datasets: Sequence[str]) -> list[str]:
    lines = [f"**Reduced protocol** (sized so that the whole reproduction takes at most ~45 min on the 2 shared CPU "
             f"cores: {SIZING}): {st['trials']} Optuna TPE trial(s) per method (the first is the method's defaults)"
             + ("" if args.quick else f" and one widening round of {max(1, st['trials'] // 2)} trial(s) when a "
                                      "selected value lies on the edge of its space")
             + f", the SAME for every method; {st['splits']} splits per data set; every run at most "
             f"{st['epochs']} epochs with early stopping on the validation loss (patience {st['patience']}), the "
             "best epoch kept — the same for every method. A full protocol would take 10 splits, 20+ trials and "
             "100 epochs (the fair-comparison budget of `mtlkit bench --trials`).",
             "Methods (derived from the registry): `stl` (one MLP per task, the reference of Δ vs STL), `hard-share` "
             "(shared MLP bottom + task heads trained on the plain sum of the task losses: EW) and `hard-share+NAME` "
             "for every named combiner of `mtlkit.optim.combiners.COMBINERS` (`mtlkit methods` lists them with their "
             "papers); `hard-share+ew` is `hard-share` and is not repeated.",
             "Equal-budget tuning (`tune_then_evaluate`): each method is tuned over its declared search space "
             "(`mtlkit methods NAME`: optimiser, learning rate, momentum, widths, dropout, and the combiner's own "
             "hyper-parameters where it declares a space), on split 0's validation rows; the selection is then "
             "trained and tested on every split (split i seeds training with i). Test rows are never read in "
             "selection.",
             "Paired comparisons: every method runs on the same splits, so its difference from EW is taken per "
             "split and its 95% CI is over the splits."]
    if "school" in datasets:
        lines.append("School: Argyriou et al.'s train/test splits (the first ones), 20% of each task's training rows "
                     "held out for validation; features and targets standardised on the training rows; RMSE on the "
                     "original score scale.")
    if "mnist-shared" in datasets:
        lines.append(f"mnist-shared (the shared-input data set): SRDML's CIFAR-MTL construction on the staged MNIST "
                     f"test images — {st['images_per_digit']} images per digit ({10 * st['images_per_digit']} in "
                     "all, seed 0), 2×2 average-pooled to 14×14, PCA to "
                     f"{16 if args.quick else 64} fitted on each split's training rows; ten one-vs-rest binary tasks "
                     "on the SAME images (every task labels every image). Random 60/20/20 train/validation/test "
                     "splits. Reduced from the 10k staged images for the CPU budget.")
    if args.quick:
        lines.insert(0, "**QUICK SMOKE RUN**: small subsets, 2 epochs, 1 trial per method; the numbers mean nothing.")
    return lines


def _csv_rows(ds: str, res: BenchResult) -> list[list[str]]:
    return [[ds, m, kind_of(m), sp, res.metric, f"{float(nanmean(s[i])):.8g}"]
            for m, s in res.scores.items() for i, sp in enumerate(res.splits)]


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Tune, train and test every method on every data set; write ``aggregators.md``, ``aggregators.csv`` and
    ``claims/aggregators.csv`` into ``ctx.out``."""
    from mtlkit.errors import MtlkitError

    st = _settings(args)
    if st["splits"] < 2:
        raise MtlkitError("--splits must be at least 2 for a confidence interval")
    if st["trials"] < 1 or st["epochs"] < 1 or st["patience"] < 1:
        raise MtlkitError("--trials, --epochs and --patience must be at least 1")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    everything = methods()
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()] or everything
    bad = [m for m in chosen if m not in everything]
    if bad or not datasets:
        raise MtlkitError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(everything)}" if bad
                          else "--datasets names no data set")
    hp = {"epochs": st["epochs"], "patience": st["patience"]}
    results: dict[str, BenchResult] = {}
    body: list[str] = []
    csv: list[list[str]] = []
    unfinished: list[str] = []
    seconds = 0.0
    for ds in datasets:
        data = load_data(ds, args, st)
        res, tuning = tune_then_evaluate(ctx, data, chosen, st["splits"], st["trials"], EXPERIMENT, hparams=hp,
                                         seed=SEED, widen=0 if args.quick else 1,
                                         cached_only=bool(getattr(args, "cached_only", False)))
        unfinished += [f"{ds}:{m}" for m in chosen if m not in res.scores]
        seconds += sum(float(t.get("seconds") or 0.0) for t in tuning.values())
        seconds += sum(float(np.sum(v[1:])) for v in res.seconds.values())
        if not res.scores:
            continue
        results[ds] = res
        body += [*_dataset_section(res, data, tuning, st), ""]
        csv += _csv_rows(ds, res)
    rows = claim_rows(results)
    protocol = _protocol(args, st, datasets)
    if unfinished:
        protocol.append("**Not finished within this session's compute budget** (written with --cached-only): "
                        + ", ".join(unfinished) + ".")
    lines = ["# Loss weightings and gradient aggregators against EW, one equal tuning budget (issue 16)", ""]
    lines += provenance(ctx, f"splits {SEED}..{SEED + st['splits'] - 1} (split i also seeds training); TPE sampler "
                             f"seed {SEED}; MNIST sample seed {SEED}", protocol, train_seconds=seconds)
    lines += ["", *(_summary(results) if results else []), "", "## Claims checked: does a combiner beat EW?", "",
              "Each combiner's paper reports gains over equal weighting; Xin et al. (NeurIPS 2022, 'Do Current "
              "Multi-Task Optimization Methods in Deep Learning Even Help?') and Kurin et al. (NeurIPS 2022, 'In "
              "Defense of the Unitary Scalarization for Deep Multi-Task Learning') found that a well-tuned EW is "
              "rarely beaten. Here every method had the same budget.", "", VERDICT_RULE, "",
              *claims_markdown(rows, ("where", "claim", "ours", "unit", "verdict", "why")), "", *body]
    md = ctx.out / "aggregators.md"
    md.write_text("\n".join(lines).rstrip() + "\n")
    out = write_csv(ctx.out / "aggregators.csv", CSV_HEADER, csv)
    claims = write_claims(rows, ctx.out / "claims" / "aggregators.csv")
    return [md, out, claims]
