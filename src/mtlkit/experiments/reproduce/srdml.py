"""`mtlkit reproduce srdml`: SRDML (Bai & Zhao, KDD 2022) — the synthetic experiment (Fig. 4b-d: learned ω, per-task
improvement over STL, λ sensitivity), the contradicting tasks of Table 3, and Table 2 / Table 4 analogues on the
CIFAR-MTL construction (ten one-vs-rest tasks on the same images) built from the staged MNIST test images.

Every comparison of methods (Fig. 4c: SRDML vs STL; Table 2: the twelve methods; Table 4: ω learned vs fixed) runs
under the equal-budget protocol (`mtlkit.experiments.reproduce.protocol.tune_then_evaluate`): the same number of
TPE trials per method over its declared search space on split 0's validation rows. The λ sensitivity curves
(Fig. 4d, Table 3) stay sweeps of λ around SRDML's tuned configuration. `claim_rows` turns the measurements into
the claims ledger's rows, each verdict by `mtlkit.experiments.claims.verdict`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from scipy import stats

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult, run_bench
from mtlkit.experiments.claims import Claim, verdict, write_claims
from mtlkit.experiments.reproduce.common import (
    Context,
    fmt,
    markdown_table,
    mean_ci_cell,
    provenance,
)
from mtlkit.experiments.reproduce.protocol import budget_lines, edge_warnings, tune_then_evaluate
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.stats import mean_ci, taskwise_improvement

DESCRIPTION = ("SRDML (Bai & Zhao, KDD 2022): synthetic Fig. 4b-d and Table 3; Tables 2 and 4 on CIFAR-MTL's "
               "construction from MNIST images")
PAPER = "SRDML (Bai & Zhao, KDD 2022)"
SOURCE = "srdml.md"
PARTS = ("synthetic", "images")
SEED = 0
SYN_SEED = 0
IMG_SEED = 0
STL_IMG = "stl-cnn"  # STL of the image part: T copies of the CNN
DEFAULT_TRIALS = 8   # TPE trials per method (the same for every method of a table); fits ~35 min on 2 CPU cores
QUICK_TRIALS = 2
SMALL_M = 20         # the diagnosis' under-determined synthetic data: 20 rows per task (≈ 13 training rows < d = 20)

# Table 2, CIFAR-MTL column: accuracy, AUC, precision, recall (%); our method name -> (paper name, numbers).
TABLE2_METHODS: list[tuple[str, str]] = [
    ("stl-cnn", "STL"), ("hard-share", "Hard-Share"), ("lasso", "Lasso"), ("l21", "L21"), ("rmtl", "RMTL"),
    ("mrn", "MRN"), ("mmoe", "MMoE"), ("ple", "PLE"), ("mgda-ub", "MGDA-UB"), ("pcgrad", "PCGrad"),
    ("srdml", "SRDML"), ("srdml+pcgrad", "SRDML (w/. PCGrad)"),
]
PAPER_TABLE2: dict[str, tuple[float, float, float, float]] = {
    "stl-cnn": (92.65, 66.20, 71.32, 69.83), "hard-share": (94.70, 95.56, 76.30, 72.28),
    "lasso": (91.48, 86.64, 68.90, 24.74), "l21": (91.50, 87.58, 68.01, 29.32), "rmtl": (92.28, 85.65, 61.54, 28.15),
    "mrn": (94.51, 96.67, 79.94, 76.95), "mmoe": (93.53, 93.17, 73.42, 69.32), "ple": (94.01, 93.32, 75.26, 70.15),
    "mgda-ub": (90.74, 84.38, 57.80, 24.10), "pcgrad": (95.11, 96.69, 79.03, 74.82),
    "srdml": (95.82, 96.43, 81.22, 75.93), "srdml+pcgrad": (96.03, 96.72, 82.59, 77.01),
}
TABLE2_METRICS = ("accuracy", "auc", "precision", "recall")
METRIC_SCALE = {"accuracy": 1.0, "auc": 100.0, "precision": 100.0, "recall": 100.0}  # all reported in %
SHALLOW = ("lasso", "l21", "rmtl")
DEEP = ("hard-share", "mrn", "mmoe", "ple", "mgda-ub", "pcgrad", "srdml", "srdml+pcgrad")
# Table 3 (contradicting tasks): λ -> (RMSE, MAE).
PAPER_TABLE3: dict[float, tuple[float, float]] = {
    1.0: (2.726, 2.198), 0.1: (1.550, 1.260), 0.01: (1.405, 1.127), 0.001: (1.393, 1.127), 0.0: (1.392, 1.126),
}
# Table 4 (accuracy on CIFAR-MTL): without ω, with ω.
PAPER_TABLE4 = (94.92, 95.82)
# λ sweep of Fig. 4d: the paper's grid {1e-3, 5e-3, ..., 0.5, 1} plus 0 (no regulariser).
LAMBDAS = (0.0, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)
TABLE3_LAMBDAS = (1.0, 0.1, 0.01, 0.001, 0.0)
SMALL_M_LAMBDAS = (0.0, 1e-2, 0.1, 0.5, 1.0)
IMG_LAMBDAS = (1e-3, 1e-2, 0.1)  # the image diagnosis: SRDML's tuned configuration with these λ (0.1: the authors')
T4_LAM = 0.1  # Table 4 with the regulariser on: the authors' CIFAR λ (their train.py's μ), METHOD_NOTES §3
GROUPS = {2: "twin pairs", 1: "same-base pairs (not twins)", 0: "cross-base pairs"}
CONTRA_GROUPS = {2: "same base, same sign", 1: "same base, opposite sign (incl. twins)", 0: "cross-base pairs"}
EXP_SYN = "reproduce-srdml-synthetic-tuned"
EXP_IMG = "reproduce-srdml-images-tuned"
EXP_IMG_FIXED = "reproduce-srdml-images-tuned-fixed-omega"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--splits", type=int, default=5, help="random splits of the synthetic data (the paper gives none)")
    p.add_argument("--image-splits", type=int, default=3,
                   help="random splits of the image data (CPU budget: 13 tuned image methods per split)")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"Optuna TPE trials per method, the same for every method of a table (--quick: "
                        f"{QUICK_TRIALS})")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    p.add_argument("--images-per-digit", type=int, default=200,
                   help="MNIST test images per digit in the shared image set (CPU budget; the paper has 2k/class)")
    p.add_argument("--epochs", type=int, default=20,
                   help="maximum epochs of every image run (early stopping on validation, patience 5)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny image set, a few epochs, 2 trials per method (numbers mean nothing)")


# ---------------------------------------------------------------------------------------------- settings
def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every size, epoch budget, trial budget and fixed value of the run; the quick smoke run shrinks all of them."""
    q = bool(args.quick)
    # Fixed for every method of a table (the paper fixes the network and trains every model with Adam); the rest
    # of each method's declared space is tuned. Like the authors' synthetic script the models are linear.
    syn_fixed = {"hidden": [20], "head_hidden": [], "activation": "identity", "batch_size": 32,
                 "optimizer": "adam", "momentum": 0.0, "epochs": 3 if q else 200, "patience": 20,
                 "saliency_rows": 0}  # SRDML's penalty on every pooled row, as the committed results were run
    # One small CNN for every neural method: 3×3 convs 16, 32 (2×2 max-pool between) shared, then task heads of
    # 32 units on the flattened last map (SRDML's A). STL (`stl-cnn`) is the same convs per task, pooled once more.
    img_fixed = {"backbone": "cnn", "channels": [16, 32], "hidden": [], "head_hidden": [32], "activation": "relu",
                 "kernels": [3, 3], "padding": 1, "pool": 2, "fc": [32], "batch_size": 64, "optimizer": "adam",
                 "momentum": 0.0, "epochs": 2 if q else args.epochs, "patience": 5, "max_iter": 50 if q else 2000,
                 "saliency_rows": 0}
    return {"syn_fixed": syn_fixed, "img_fixed": img_fixed, "trials": QUICK_TRIALS if q else args.trials,
            "lambdas": (0.0, 1e-2, 1.0) if q else LAMBDAS, "table3": (1.0, 0.0) if q else TABLE3_LAMBDAS,
            "small_m_lambdas": (0.0, 0.5) if q else SMALL_M_LAMBDAS, "img_lambdas": (0.1,) if q else IMG_LAMBDAS,
            "per_digit": 20 if q else args.images_per_digit,
            "img_splits": min(args.image_splits, args.splits) if q else args.image_splits,
            "seconds": []}  # the recorded runs' seconds (tuning included), summed into the provenance


def _protocol(args: argparse.Namespace, st: dict[str, Any], parts: list[str]) -> list[str]:
    n, ni, tr = args.splits, st["img_splits"], st["trials"]
    lines = [f"**Reduced protocol** (sized for ~35 min on 2 CPU cores; on the shared machine it took longer, see the "
             f"recorded training time above): {tr} Optuna TPE trials per method, the SAME for "
             f"every method of a table; {n} random splits of the synthetic data and {ni} of the image data (the "
             "paper states no repetitions); image runs of at most "
             f"{st['img_fixed']['epochs']} epochs on {10 * st['per_digit']} MNIST images instead of VGG-16 on "
             "CIFAR-10's 20k. Per task 20% test, then 20% of the rest validation; split i also seeds training. "
             "Ours: mean ± 95% Student-t CI over the splits; method differences paired over splits.",
             "Equal-budget tuning (`tune_then_evaluate`): every compared method gets the same number of trials over "
             "its declared search space (`mtlkit methods NAME`; regularisers include 0 = off, SRDML's λ is searched "
             "over log[1e-4, 10] ∪ {0}, which holds the paper's grid {1e-3, 5e-3, …, 0.5, 1} and λ = 0), on split "
             "0's validation rows; the choice is then trained and tested on every split. The network, the optimiser "
             "(Adam, as the paper trains every model) and the epoch budget are fixed, the same for every method; a "
             "value selected on the edge of its space is flagged ⚠ and searched once more past it (counted).",
             "The paper tunes SRDML's λ by grid search on {1e-3, 5e-3, …, 1} and does not say how the baselines were "
             "tuned; it reports the best test epoch (METHOD_NOTES §3). We keep the validation-selected epoch."]
    if "synthetic" in parts:
        s = st["syn_fixed"]
        lines += [
            "Synthetic (§5.1, `srdml-synthetic`, generator seed 0): 12 regression tasks × 100 rows, d = 20, two "
            "orthogonal block bases, magnitudes 1/2/3 as twin pairs, one sign flip per task, noise variance 0.1. "
            "Like the authors' synthetic script the task functions are linear: SRDML here is a shared linear "
            "layer 20→20 (activation `identity`) and linear heads, so the saliency ∇_A f_t is head t's weight "
            "vector; STL is the same linear model per task. Adam, batch 32 rows per task, at most "
            f"{s['epochs']} epochs, early stopping on validation loss (patience {s['patience']}), best epoch kept. "
            "Targets and features are standardised with the training rows' pooled statistics.",
            "Fig. 4c: STL and SRDML tuned with the same budget (lr, dropout; SRDML also λ). Fig. 4d (a sensitivity "
            f"curve, a sweep on purpose): SRDML's tuned configuration with λ set to each of "
            f"{{{', '.join(f'{x:g}' for x in st['lambdas'])}}}, on every split. λ* of the claims is the λ > 0 of "
            "the sweep with the lowest validation RMSE on split 0.",
            "ω (Fig. 4b): SRDML retrained (same seed, so the same model) on each split at the tuned λ (or, if tuning "
            "switched the regulariser off, at λ*); ω is rescaled so its mean over the 66 pairs is 1 (the penalty is "
            "invariant to ω's scale), then averaged over twin / same-base / cross-base pairs per split.",
            "Contradicting tasks (Table 3, a sensitivity table): the generator's `contradicting=True` variant (every "
            "second twin has the negated weights), SRDML's tuned configuration with λ in {1, 0.1, 0.01, 0.001, 0}.",
        ]
    if "images" in parts:
        h = st["img_fixed"]
        lines += [
            f"Images (Table 2 / 4 analogue): SRDML's CIFAR-MTL construction (one one-vs-rest binary task per class, "
            f"all tasks on the SAME images) from the staged MNIST test images: {st['per_digit']} images per digit "
            f"({10 * st['per_digit']} in all, seed {IMG_SEED}), 2×2 average-pooled to 14×14 pixels in [0, 1]. The "
            "paper: CIFAR-10, 2k training images per class, VGG-16 backbone fine-tuned.",
            "**Network (a small CNN instead of VGG-16)**: every multi-task neural method (Hard-Share, MRN, MMoE, PLE, "
            f"MGDA-UB, PCGrad, SRDML, SRDML+PCGrad) shares the same convolutions, `backbone=\"cnn\"`: 3×3 conv "
            f"{h['channels'][0]} → ReLU → 2×2 max-pool → 3×3 conv {h['channels'][1]} → ReLU, whose 7×7 map is SRDML's "
            f"A (its saliency is summed over space, Grad-CAM's channel weights). Task heads read the flattened map: "
            f"{h['head_hidden'][0]} ReLU units then the logit (MMoE's experts and PLE's expert width are tuned in "
            "their declared spaces). Hard-Share is thus exactly SRDML's network without the regulariser. "
            "MGDA-UB takes the min-norm point w.r.t. the flattened map; PCGrad projects the gradients of the shared "
            "convolutions (the paper's 'shared conv layers'). STL (`stl-cnn`) is the same convolutions per task, "
            f"pooled after the second one as well, then {h['fc'][0]} units and the logit per task. Lasso, L21 and "
            "RMTL are logistic linear models on the 196 pixels (FISTA).",
            f"Training: Adam, batch {h['batch_size']}, at most {h['epochs']} epochs, early stopping on validation "
            f"loss (patience {h['patience']}), best epoch kept, for every method. SRDML is trained end to end from "
            "scratch as the paper describes (§3.3); the authors' code first trains Hard-Share and starts SRDML from "
            "it (`warm_start=true`), which would give SRDML twice the epochs of the others, so it is not used here.",
            "Metrics on the test part, thresholded at 0.5, averaged over the 10 tasks: accuracy, AUC, precision, "
            "recall (all in %). Tuning's objective: validation error %.",
            "Table 4 ablation: SRDML with ω fixed at 1 (`learn_omega=False`, every pair weighted λ/45), tuned with "
            "the same budget over the same space.",
        ]
    if args.quick:
        lines.insert(0, "**QUICK SMOKE RUN**: tiny image set, 2-3 epochs, 2 trials per method; the numbers mean "
                        "nothing.")
    return lines


# ---------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the chosen parts; write ``srdml.md``, ``srdml.csv``, the figures and ``claims/srdml.csv`` into
    ``ctx.out``."""
    from mtlkit.errors import MtlkitError

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad or not parts:
        raise MtlkitError(f"unknown part(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(PARTS)}")
    if args.splits < 2 or args.image_splits < 2:
        raise MtlkitError("--splits and --image-splits must be at least 2 for a confidence interval")
    if args.trials < 1:
        raise MtlkitError(f"--trials must be at least 1, got {args.trials}")
    st = _settings(args)
    body: list[str] = []
    diag: list[str] = []
    budget: list[str] = []
    csv: list[str] = ["part,dataset,method,split,metric,value"]
    figs: list[Path] = []
    syn: dict[str, Any] | None = None
    img: dict[str, Any] | None = None
    if "synthetic" in parts:
        b, r, f, syn, bud, dg = _synthetic(ctx, args, st)
        body, csv, figs, budget, diag = body + b, csv + r, figs + f, budget + bud, diag + dg
    if "images" in parts:
        b, r, f, img, bud, dg = _images(ctx, args, st)
        body, csv, figs, budget, diag = body + b, csv + r, figs + f, budget + bud, diag + dg
    rows = claim_rows(syn, img)
    lines = ["# SRDML (Bai & Zhao, KDD 2022): Fig. 4, Tables 2-4 reproduced", ""]
    lines += provenance(ctx, f"splits {SEED}..{SEED + max(args.splits, st['img_splits']) - 1} (split i also seeds "
                             f"training); synthetic generator seed {SYN_SEED}; image sample seed {IMG_SEED}; TPE "
                             f"sampler seed {SEED}", _protocol(args, st, parts), train_seconds=sum(st["seconds"]))
    lines += ["", "## The paper's claims, checked here", "", *_claims_table(rows), "", "## Tuning budgets", "",
              *budget, "", *body, "## Diagnosis", "", *diag]
    md = ctx.out / "srdml.md"
    md.write_text("\n".join(lines) + "\n")
    out = ctx.out / "srdml.csv"
    out.write_text("\n".join(csv) + "\n")
    claims = write_claims(rows, ctx.out / "claims" / "srdml.csv")
    return [md, out, claims, *figs]


def _claims_table(rows: list[Claim]) -> list[str]:
    from mtlkit.experiments.claims import VERDICT_RULE

    def cell(c: Claim) -> str:
        if c.ours is None or not np.isfinite(c.ours):
            return "–"
        return f"{c.ours:+.3g}" + ("" if c.ci95 is None or not np.isfinite(c.ci95) else f" ± {c.ci95:.2g}")

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    return [VERDICT_RULE, "", *markdown_table(
        ["where", "claim", "paper", "ours", "unit", "verdict", "why"],
        [[esc(c.where), esc(c.claim), esc(c.paper_value), cell(c), esc(c.unit), f"**{c.verdict}**", esc(c.why)]
         for c in rows])]


# ---------------------------------------------------------------------------------------------- helpers
def pair_group_means(omega: np.ndarray, groups: np.ndarray) -> dict[int, float]:
    """Mean of ω over the unordered task pairs ``i < j`` of each group label in ``groups`` [T, T] (e.g. 2 twin,
    1 same base, 0 cross base), after rescaling ω so that its mean over all pairs is 1 (ω's scale is arbitrary)."""
    om = np.asarray(omega, dtype=np.float64)
    g = np.asarray(groups)
    if om.ndim != 2 or om.shape[0] != om.shape[1] or g.shape != om.shape:
        raise ValueError(f"omega and groups must be the same square [T, T] shape, got {om.shape} and {g.shape}")
    iu = np.triu_indices(om.shape[0], 1)
    w, lab = om[iu], g[iu]
    mean = w.mean()
    if not mean > 0:
        raise ValueError("ω has no positive pair weight: nothing to normalise")
    w = w / mean
    return {int(k): float(w[lab == k].mean()) for k in np.unique(lab)}


def contradicting_groups(base: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Pair labels for the contradicting data: 2 same base and sign, 1 same base opposite sign, 0 cross base."""
    same = base[:, None] == base[None, :]
    agree = sign[:, None] == sign[None, :]
    return np.where(same, np.where(agree, 2, 1), 0)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean ± 95% CI over splits of (task-mean of a) − (task-mean of b); ``a``, ``b`` are [splits, T] (or
    [splits] values already averaged)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (np.nanmean(a, axis=1) if a.ndim == 2 else a) - (np.nanmean(b, axis=1) if b.ndim == 2 else b)
    m, ci = mean_ci(d)
    return float(m), float(ci)


def _csv_rows(part: str, dataset: str, splits: list[str], scores: dict[str, np.ndarray], metric: str,
              label: str | None = None) -> list[str]:
    rows = []
    for m, s in scores.items():
        for i, sp in enumerate(splits):
            rows.append(f"{part},{dataset},{label or m},{sp},{metric},{np.nanmean(s[i]):.6g}")
    return rows


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def store_scores(ctx: Context, experiment: str, data: MultiTaskData, res: BenchResult, metric: str,
                 scale: float = 1.0) -> dict[str, np.ndarray]:
    """Another test metric of the runs behind ``res`` (a `tune_then_evaluate` result, which collects one): per
    method [splits, T] from the results store, the latest recorded run of each (method, split) whose
    hyper-parameters are the selected ones; NaN where none is recorded."""
    rows = ctx.store.rows(experiment=experiment, dataset=data.name, checksum=data.checksum())
    out = {}
    for m, s in res.scores.items():
        arr = np.full(s.shape, np.nan)
        for i, sp in enumerate(res.splits):
            want = _norm(res.hparams[m][i])
            hits = [r for r in rows if r["method"] == m and r["split"] == sp and r["test_metrics"] is not None
                    and _norm(r["hparams"]) == want]
            if hits:
                arr[i] = [np.nan if v is None else scale * v for v in hits[-1]["test_metrics"]["per_task"][metric]]
        out[m] = arr
    return out


def _budget_section(title: str, tuning: dict[str, dict[str, Any]], keys: list[str] | None = None) -> list[str]:
    """The protocol's budget table, every ⚠ edge line, and each widening round (first selection on an edge)."""
    warn = edge_warnings(tuning)
    widened = [f"- {m}: the first {t.get('budget')} trials selected {', '.join(names)} on the edge of the declared "
               f"space; the widened round searched {s['spaces'][r + 1]}"
               for m, t in tuning.items() for s in t.get("tuned", [])
               for r, names in enumerate(s.get("widened", []))]
    return [f"### {title}", "", *budget_lines(tuning, keys), "", *widened, *([""] if widened else []),
            *([f"- {w}" for w in warn] if warn else
              ["No selected value lies on the edge of its (widened) space."]), ""]


def _matching_row(rows: list[Any], method: str, split: str, hparams: dict[str, Any]) -> Any:
    want = _norm(hparams)
    hits = [r for r in rows if r["method"] == method and r["split"] == split and r["test_metrics"] is not None
            and _norm(r["hparams"]) == want]
    return hits[-1] if hits else None


# ---------------------------------------------------------------------------------------------- synthetic
def _sweep(ctx: Context, data: MultiTaskData, hp: dict[str, Any], lam: float, n_splits: int,
           tag: str, method: str = "srdml", metrics: tuple[str, ...] = ("rmse", "mae"),
           scale: float = 1.0) -> dict[str, Any]:
    """``method`` at one fixed configuration (for SRDML: λ = ``lam``) on every split, recorded under its own
    experiment name: the test ``metrics`` [splits, T] (times ``scale``) and split 0's validation value of the
    first one (``val``)."""
    exp = f"reproduce-srdml-{tag}-lam{lam:g}" if method == "srdml" else f"reproduce-srdml-{tag}-{method}"
    fixed = {**hp, "lam": lam} if method == "srdml" else dict(hp)
    res = run_bench(data, [method], n_splits=n_splits, seed=SEED, device=ctx.device, store=ctx.store, select=False,
                    hparams=fixed, progress=ctx.progress, experiment=exp, metric=metrics[0], reuse=True)
    rows = ctx.store.rows(experiment=exp, dataset=data.name, checksum=data.checksum())
    row0 = _matching_row(rows, method, res.splits[0], res.hparams[method][0])
    val = row0["val_metrics"]["mean"][metrics[0]] if row0 is not None and row0["val_metrics"] else None
    out: dict[str, Any] = {m: store_scores(ctx, exp, data, res, m, scale)[method] for m in metrics}
    out.update(val=float("nan") if val is None else scale * float(val), splits=res.splits,
               seconds=float(np.sum(res.seconds[method])))
    return out


def _omega(ctx: Context, data: MultiTaskData, hp: dict[str, Any],
           n_splits: int) -> tuple[list[np.ndarray], list[float]]:
    """SRDML's learned ω on every split (the same seeds as the recorded runs, so the same models) and each retrained
    run's mean test RMSE (to check that it is the recorded run)."""
    import mtlkit
    from mtlkit.analysis.relations import task_relations

    out, rmse = [], []
    for i, (_, split) in enumerate(make_splits(data, n_splits, SEED)):
        run = mtlkit.train("srdml", split, hparams=hp, seed=SEED + i, device=ctx.device, progress=ctx.progress)
        out.append(np.asarray(task_relations(run)["ω (task × task)"], dtype=np.float64))
        rmse.append(float(np.nanmean(run.evaluate("test").per_task["rmse"])))
    return out, rmse


def _group_table(omegas: list[np.ndarray], groups: np.ndarray, names: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """The table of mean ω per pair group and the per-split group means [splits, groups] (groups in ``names``'
    descending key order)."""
    per = [pair_group_means(o, groups) for o in omegas]
    keys = sorted(names, reverse=True)
    arr = np.array([[p.get(k, np.nan) for k in keys] for p in per])
    rows = []
    for j, k in enumerate(keys):
        m, ci = mean_ci(arr[:, j])
        n = int((groups[np.triu_indices(len(groups), 1)] == k).sum())
        rows.append([names[k], str(n), f"{fmt(float(m), 3)} ± {fmt(float(ci), 3)}"])
    return markdown_table(["pairs", "count", "mean ω (pair mean = 1), mean ± 95% CI over splits"], rows), arr


def _synthetic(ctx: Context, args: argparse.Namespace, st: dict[str, Any]
               ) -> tuple[list[str], list[str], list[Path], dict[str, Any], list[str], list[str]]:
    from mtlkit.analysis.plots import plot_relation_matrix, save_figure
    from mtlkit.datasets.srdml_synthetic import srdml_synthetic

    n = args.splits
    data, truth = srdml_synthetic(seed=SYN_SEED)
    ctx.record(data)
    names = list(data.task_names)
    T = len(names)
    # Fig. 4c: STL and SRDML, the same tuning budget
    res, tuning = tune_then_evaluate(ctx, data, ["stl", "srdml"], n, st["trials"], EXP_SYN, metric="rmse",
                                     hparams=st["syn_fixed"], seed=SEED)
    mae = store_scores(ctx, EXP_SYN, data, res, "mae")
    st["seconds"].append(sum(float(np.sum(v)) for v in res.seconds.values()))
    tuned = {m: {"rmse": res.scores[m], "mae": mae[m]} for m in ("stl", "srdml")}
    srd_hp = dict(res.hparams["srdml"][0])
    lam_tuned = float(srd_hp["lam"])
    base = {k: v for k, v in srd_hp.items() if k != "lam"}
    # Fig. 4d: λ around the tuned configuration
    sweep = {lam: _sweep(ctx, data, base, lam, n, "synthetic-sweep") for lam in st["lambdas"]}
    st["seconds"].append(sum(s["seconds"] for s in sweep.values()))
    pos = {lam: s["val"] for lam, s in sweep.items() if lam > 0}
    lam_star = min(pos, key=lambda k: (np.nan_to_num(pos[k], nan=np.inf), k))
    lam_omega = lam_tuned if lam_tuned > 0 else lam_star
    omegas, re_rmse = _omega(ctx, data, {**base, "lam": lam_omega}, n)
    ref = tuned["srdml"]["rmse"] if lam_tuned > 0 else sweep[lam_star]["rmse"]
    same = float(np.max(np.abs(np.array(re_rmse) - np.nanmean(ref, axis=1))))
    rel = truth.relation()
    group_lines, garr = _group_table(omegas, rel, GROUPS)
    iu = np.triu_indices(T, 1)
    rhos = np.array([stats.spearmanr(o[iu], rel[iu]).statistic for o in omegas])
    rho_m, rho_ci = mean_ci(rhos)
    low = truth.magnitude == truth.magnitude.min()
    small_cross = (rel == 0) & low[:, None] & low[None, :]
    other_cross = (rel == 0) & ~small_cross
    sc = np.mean([(o / o[iu].mean())[np.triu(small_cross, 1)].mean() for o in omegas])
    oc = np.mean([(o / o[iu].mean())[np.triu(other_cross, 1)].mean() for o in omegas])

    figs: list[Path] = []
    figs += plot_relation_matrix(truth.W, names, [f"x{j + 1}" for j in range(truth.W.shape[1])],
                                 "Fig. 4a: generating feature weights w_t (task × feature)",
                                 ctx.out / "srdml-synthetic-weights", "w")
    om0 = omegas[0] / omegas[0][iu].mean()
    np.fill_diagonal(om0, np.nan)  # no self pairs: grey, and the colour scale spans the pairs only
    figs += plot_relation_matrix(om0, names, names, f"Fig. 4b: SRDML's learned ω (split 0, λ = {lam_omega:.3g}; "
                                 "pair mean = 1)", ctx.out / "srdml-synthetic-omega", "ω")
    imp = {m: taskwise_improvement(np.nanmean(tuned["srdml"][m], 0), np.nanmean(tuned["stl"][m], 0), True)
           for m in ("rmse", "mae")}
    figs += save_figure(_improvement_figure(imp, names, lam_tuned), ctx.out / "srdml-synthetic-improvement")

    # Table 3: contradicting tasks, λ swept around the same configuration
    cdata, ctruth = srdml_synthetic(seed=SYN_SEED, contradicting=True)
    ctx.record(cdata)
    csweep = {lam: _sweep(ctx, cdata, base, lam, n, "contradicting-sweep") for lam in st["table3"]}
    st["seconds"].append(sum(s["seconds"] for s in csweep.values()))
    comegas, _ = _omega(ctx, cdata, {**base, "lam": lam_omega}, n)
    cgroups = contradicting_groups(ctruth.base, ctruth.sign)
    cgroup_lines, carr = _group_table(comegas, cgroups, CONTRA_GROUPS)
    figs += save_figure(_lambda_figure(sweep, csweep, tuned["stl"]), ctx.out / "srdml-synthetic-lambda")

    out = ["## Synthetic data (Fig. 4, Table 3)", "",
           f"### Fig. 4b: the learned task relation ω (SRDML, λ = {lam_omega:.3g})", "",
           ("λ is the tuned one." if lam_tuned > 0 else
            f"Tuning switched the regulariser off (λ = 0), which learns no ω; ω is shown at λ* = {lam_star:g}, the "
            "λ > 0 of the sweep with the lowest validation RMSE on split 0."), "",
           "Ground truth: tasks 2k-1 and 2k are twins (same base, same magnitude); tasks 1-6 use base 1, 7-12 "
           "base 2. The paper's Fig. 4b shows twins brightest, same-base pairs lighter, cross-base pairs dark.", "",
           *group_lines, "",
           f"Spearman ρ between ω and the truth level (twin 2 > same base 1 > cross base 0) over the 66 pairs: "
           f"{fmt(float(rho_m), 3)} ± {fmt(float(rho_ci), 3)}. (The retrained runs reproduce the recorded ones: "
           f"largest difference in mean test RMSE {same:.2g}.)", "",
           f"The ℓ1 distance is not normalised (the paper's default; its App. C), so two tasks with small weights are "
           f"close whatever their bases: the {int(np.triu(small_cross, 1).sum())} cross-base pairs whose tasks both "
           f"have the lowest magnitude get mean ω {sc:.2f}, the other cross-base pairs {oc:.2f}.", "",
           "![Fig. 4a: generating weights](srdml-synthetic-weights.png)", "",
           "![Fig. 4b: learned omega](srdml-synthetic-omega.png)", ""]
    out += [f"### Fig. 4c: SRDML vs STL, per task (both tuned with {st['trials']} trials; SRDML's λ = "
            f"{lam_tuned:.3g})", "",
            "Improvement = 100·(STL − SRDML)/STL of the split-averaged test metric (positive = SRDML better); "
            "the paper shows it as bars (no numbers).", ""]
    rows = []
    for m in ("rmse", "mae"):
        a, b = tuned["srdml"][m], tuned["stl"][m]
        d, ci = paired(b, a)
        rows.append([m.upper(), mean_ci_cell(b, 3), mean_ci_cell(a, 3), f"{d:+.3f} ± {fmt(ci, 3)}",
                     f"{float(np.nanmean(imp[m])):+.2f}", f"{int((imp[m] < 0).sum())}/{T}"])
    out += markdown_table(["metric", "STL", "SRDML", "STL − SRDML (paired)", "mean per-task improvement (%)",
                           "tasks hurt"], rows)
    out += ["", "| task | " + " | ".join(names) + " |", "|---|" + "---|" * T]
    for m in ("rmse", "mae"):
        out.append(f"| {m.upper()} improvement (%) | " + " | ".join(f"{x:+.1f}" for x in imp[m]) + " |")
    out += ["", "![Fig. 4c: per-task improvement](srdml-synthetic-improvement.png)", ""]
    out += ["### Fig. 4d: λ sensitivity (test RMSE / MAE, mean ± 95% CI over splits)", "",
            "SRDML's tuned configuration with λ set to each value (every other hyper-parameter as tuned). The "
            "paper: a U shape with its optimum near λ = 0.5. Our λ is not on the paper's scale (see the "
            "diagnosis).", ""]
    rows = [[f"{lam:g}", mean_ci_cell(sweep[lam]["rmse"], 3), mean_ci_cell(sweep[lam]["mae"], 3),
             fmt(sweep[lam]["val"], 3)] for lam in st["lambdas"]]
    out += markdown_table(["λ", "RMSE", "MAE", "val RMSE, split 0"], rows)
    out += ["", f"STL (tuned): RMSE {mean_ci_cell(tuned['stl']['rmse'], 3)}, MAE "
                f"{mean_ci_cell(tuned['stl']['mae'], 3)}. λ* (lowest split-0 validation RMSE among λ > 0) = "
                f"{lam_star:g}.", "", "![Fig. 4d: lambda sensitivity](srdml-synthetic-lambda.png)", ""]
    out += ["### Table 3: contradicting tasks", "",
            "Every second twin has negated weights, so half of each base's tasks oppose the other half. SRDML's "
            "tuned configuration (from the related data) with λ set to each value.", ""]
    rows = [[f"{lam:g}", fmt(PAPER_TABLE3[lam][0], 3), mean_ci_cell(csweep[lam]["rmse"], 3),
             fmt(PAPER_TABLE3[lam][1], 3), mean_ci_cell(csweep[lam]["mae"], 3)] for lam in st["table3"]]
    out += markdown_table(["λ", "RMSE paper", "RMSE ours", "MAE paper", "MAE ours"], rows)
    out += ["", f"Learned ω on the contradicting data (λ = {lam_omega:.3g}), by pair type:", "", *cgroup_lines, ""]

    csv = []
    for m in ("rmse", "mae"):
        csv += _csv_rows("synthetic", data.name, res.splits, {k: v[m] for k, v in tuned.items()}, m)
        for lam in st["lambdas"]:
            csv += _csv_rows("synthetic", data.name, res.splits, {"srdml": sweep[lam][m]}, m,
                             label=f"srdml(lam={lam:g})")
        for lam in st["table3"]:
            csv += _csv_rows("contradicting", cdata.name, res.splits, {"srdml": csweep[lam][m]}, m,
                             label=f"srdml(lam={lam:g})")
    budget = _budget_section(f"Fig. 4c, synthetic: STL vs SRDML ({data.name})", tuning)
    syn = {"stl": tuned["stl"], "srdml": tuned["srdml"], "sweep": {k: v["rmse"] for k, v in sweep.items()},
           "lam_star": lam_star, "lam_tuned": lam_tuned, "csweep": {k: v["rmse"] for k, v in csweep.items()},
           "omega": garr, "comega": carr, "small_cross": float(sc), "other_cross": float(oc),
           "n_small_cross": int(np.triu(small_cross, 1).sum())}
    diag = _synthetic_diagnosis(ctx, args, st, data, truth, res, base, syn)
    # the three synthetic draws share a name: label their checksums in the provenance
    small = ctx.datasets.pop(f"srdml-synthetic, m = {SMALL_M} (diagnosis)", None)
    ctx.datasets.pop(data.name, None)
    ctx.datasets["srdml-synthetic (Fig. 4, m = 100)"] = data.checksum()
    ctx.datasets["srdml-synthetic, contradicting (Table 3)"] = cdata.checksum()
    if small is not None:
        ctx.datasets[f"srdml-synthetic, m = {SMALL_M} (diagnosis)"] = small
    return out, csv, figs, syn, budget, diag


def _improvement_figure(imp: dict[str, np.ndarray], names: list[str], lam: float) -> Figure:
    """Fig. 4c: per-task improvement of SRDML over STL in RMSE and MAE, grouped bars in task order."""
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for k, (m, c) in enumerate((("rmse", "#2c7bb6"), ("mae", "#1a9850"))):
        ax.bar(x + (k - 0.5) * 0.38, imp[m], width=0.38, color=c,
               label=f"{m.upper()} (mean {float(np.nanmean(imp[m])):+.1f} %)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_ylabel("improvement over STL (%)")
    ax.set_xlabel("task (base-magnitude, twins a/b)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=9, frameon=False)
    ax.set_title(f"Fig. 4c: tuned SRDML (λ = {lam:.3g}) vs tuned STL per task\n100·(STL − SRDML)/STL of the "
                 "split-averaged test error", fontsize=10)
    return fig


def _lambda_figure(sweep: dict[float, dict[str, Any]], csweep: dict[float, dict[str, Any]],
                   stl: dict[str, np.ndarray]) -> Figure:
    """Fig. 4d: test RMSE vs λ (log axis; λ = 0 as a dotted level) on the related and the contradicting tasks."""
    fig = _figure(9.0, 4.6)
    axes = fig.subplots(1, 2)
    for ax, sw, title in ((axes[0], sweep, "related tasks (Fig. 4d)"), (axes[1], csweep, "contradicting (Table 3)")):
        lams = sorted(lam for lam in sw if lam > 0)
        for m, c in (("rmse", "#2c7bb6"), ("mae", "#1a9850")):
            mc = [mean_ci(np.nanmean(sw[lam][m], axis=1)) for lam in lams]
            mu = np.array([a for a, _ in mc], dtype=float)
            ci = np.nan_to_num(np.array([b for _, b in mc], dtype=float))
            ax.plot(lams, mu, "o-", color=c, label=f"SRDML {m.upper()}")
            ax.fill_between(lams, mu - ci, mu + ci, color=c, alpha=0.2, linewidth=0)
            if 0.0 in sw:
                ax.axhline(float(np.nanmean(sw[0.0][m])), color=c, linestyle=":", linewidth=1.2,
                           label=f"λ = 0 {m.upper()}")
            if sw is sweep:
                ax.axhline(float(np.nanmean(stl[m])), color=c, linestyle="--", linewidth=1.0,
                           label=f"STL {m.upper()}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("λ (log scale)")
        ax.set_ylabel("test error (log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle("SRDML λ sensitivity around its tuned configuration: test error, mean ± 95% CI over splits "
                 "(dotted: λ = 0, dashed: tuned STL)", fontsize=10)
    return fig


def noise_floor(data: MultiTaskData, W: np.ndarray, n_splits: int) -> dict[str, np.ndarray]:
    """Per split, the task-mean test RMSE of the generating weights (the noise floor no model can beat) and of
    ordinary least squares per task on the training rows (minimum-norm when a task has fewer rows than
    features): [splits] each."""
    oracle, ols = [], []
    for _, split in make_splits(data, n_splits, SEED):
        o, s = [], []
        for t in range(data.n_tasks):
            xtr, ytr = split.train.task_arrays(t)
            xte, yte = split.part("test").task_arrays(t)
            xtr, xte = np.asarray(xtr, dtype=np.float64), np.asarray(xte, dtype=np.float64)
            o.append(float(np.sqrt(np.mean((np.asarray(yte) - xte @ W[t]) ** 2))))
            A = np.hstack([xtr, np.ones((len(xtr), 1))])
            coef = np.linalg.lstsq(A, np.asarray(ytr, dtype=np.float64), rcond=None)[0]
            pred = np.hstack([xte, np.ones((len(xte), 1))]) @ coef
            s.append(float(np.sqrt(np.mean((np.asarray(yte) - pred) ** 2))))
        oracle.append(np.mean(o))
        ols.append(np.mean(s))
    return {"oracle": np.array(oracle), "ols": np.array(ols)}


def _synthetic_diagnosis(ctx: Context, args: argparse.Namespace, st: dict[str, Any], data: MultiTaskData,
                         truth: Any, res: BenchResult, base: dict[str, Any], syn: dict[str, Any]) -> list[str]:
    """Cheap checks behind the synthetic claims: the noise floor and OLS on the same splits; the paper's λ scale;
    the under-determined regime of the authors' script (m = 10 rows per task) at m = SMALL_M."""
    from mtlkit.datasets.srdml_synthetic import srdml_synthetic

    n = args.splits
    fl = noise_floor(data, truth.W, n)
    split0 = make_splits(data, 1, SEED)[0][1]
    ys = np.concatenate([np.asarray(split0.train.task_arrays(t)[1], dtype=np.float64) for t in range(data.n_tasks)])
    sigma = float(ys.std())
    stl, srd = syn["stl"]["rmse"], syn["srdml"]["rmse"]
    floor, stl_m, srd_m = float(np.mean(fl["oracle"])), float(np.nanmean(stl)), float(np.nanmean(srd))
    room = 100 * (stl_m - floor) / stl_m
    gain = 100 * (stl_m - srd_m) / stl_m
    d_ols, ci_ols = paired(srd, fl["ols"])
    n_train = int(round(np.mean([len(split0.train.task_arrays(t)[1]) for t in range(data.n_tasks)])))
    out = ["### Synthetic data", "",
           "**How much room is there for SRDML to beat STL?** The labels carry noise of variance 0.1, so no model "
           "can reach a test RMSE much below √0.1 ≈ 0.316. On the same splits:", "",
           *markdown_table(["model", "test RMSE (mean ± 95% CI over splits)"],
                           [["generating weights w_t (the noise floor)", mean_ci_cell(fl["oracle"][:, None], 3)],
                            ["ordinary least squares per task (numpy)", mean_ci_cell(fl["ols"][:, None], 3)],
                            ["our STL (tuned)", mean_ci_cell(stl, 3)], ["our SRDML (tuned)", mean_ci_cell(srd, 3)]]),
           "", f"With ≈ {n_train} training rows per task for d = 20 features every task is determined on its own: "
           f"even a perfect sharing method could lower STL's RMSE by at most {room:.1f} % (down to the floor); "
           f"tuned SRDML lowers it by {gain:+.1f} %. Plain least squares per task, an STL without tuning, "
           f"lowers it by {100 * (stl_m - float(np.mean(fl['ols']))) / stl_m:+.1f} % (SRDML − least squares = "
           f"{d_ols:+.3f} ± {fmt(ci_ols, 3)}, paired): "
           + ("SRDML's gain over our STL is no larger than a closed-form STL's, so it does not show sharing at "
              "work. " if d_ols + ci_ols >= 0 else "SRDML also beats it. ")
           + "A \"large margin\" over STL (Fig. 4c) needs more room than the "
           "paper's stated sizes (m = 100 rows per task) leave. The paper's Table 3 level (RMSE 1.392 at λ = 0) is "
           f"{PAPER_TABLE3[0.0][0] / floor:.1f}× this noise floor, so its models were far from a well-fitted one on "
           "data generated as §5.1 states; the authors' synthetic script uses m = 10 rows per task for d = 20 "
           "features (METHOD_NOTES §3), where every task is under-determined.", ""]
    om = np.asarray(syn["omega"], dtype=float)
    out += [f"**Fig. 4b's same-base vs cross-base pairs.** Twins get by far the largest ω ({np.mean(om[:, 0]):.2f} "
            f"vs pair mean 1), but same-base pairs ({np.mean(om[:, 1]):.2f}) are not above cross-base pairs "
            f"({np.mean(om[:, 2]):.2f}). The measure explains it: the ℓ1 distance between saliencies is not "
            "normalised (the paper's default, App. C), and with linear heads a saliency is the task's weight "
            f"vector, whose size grows with the task's magnitude; the {syn['n_small_cross']} cross-base pairs "
            f"of two magnitude-1 tasks are close in ℓ1 whatever their bases and get mean ω {syn['small_cross']:.2f}, "
            f"the other cross-base pairs {syn['other_cross']:.2f}. ω follows saliency size as much as task "
            "relation.", ""]
    # the under-determined regime: the same equal-budget comparison, then λ around the tuned SRDML
    small, struth = srdml_synthetic(seed=SYN_SEED, m=SMALL_M)
    sres, stune = tune_then_evaluate(ctx, small, ["stl", "srdml"], n, st["trials"], f"{EXP_SYN}-m{SMALL_M}",
                                     metric="rmse", hparams=st["syn_fixed"], seed=SEED)
    st["seconds"].append(sum(float(np.sum(v)) for v in sres.seconds.values()))
    sbase = {k: v for k, v in sres.hparams["srdml"][0].items() if k != "lam"}
    s_srd = {lam: _sweep(ctx, small, sbase, lam, n, f"diag-m{SMALL_M}-sweep") for lam in st["small_m_lambdas"]}
    st["seconds"].append(sum(x["seconds"] for x in s_srd.values()))
    sfl = noise_floor(small, struth.W, n)
    ctx.datasets[f"srdml-synthetic, m = {SMALL_M} (diagnosis)"] = small.checksum()
    s_stl, s_tuned = sres.scores["stl"], sres.scores["srdml"]
    d_t, ci_t = paired(s_tuned, s_stl)
    d_ls, ci_ls = paired(s_tuned, sfl["ols"])
    rows = [["generating weights (noise floor)", mean_ci_cell(sfl["oracle"][:, None], 3), "–"],
            ["least squares per task (minimum norm, no tuning)", mean_ci_cell(sfl["ols"][:, None], 3), "–"],
            ["STL (tuned)", mean_ci_cell(s_stl, 3), "–"],
            [f"SRDML (tuned, λ = {sres.hparams['srdml'][0]['lam']:.3g})", mean_ci_cell(s_tuned, 3),
             f"{d_t:+.3f} ± {fmt(ci_t, 3)}"]]
    for lam, x in s_srd.items():
        d, ci = paired(x["rmse"], s_stl)
        rows.append([f"SRDML's tuned configuration, λ = {lam:g} (split-0 val RMSE {x['val']:.3f})",
                     mean_ci_cell(x["rmse"], 3), f"{d:+.3f} ± {fmt(ci, 3)}"])
    small_gain = -100 * d_t / float(np.nanmean(s_stl))
    sel = "; ".join(f"{m}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in (t.get("best_params") or {}).items())
                    for m, t in stune.items())
    edges = edge_warnings(stune)
    if d_t + ci_t < 0 and small_gain > gain:
        verdict_text = (f"With the same tuning budget, SRDML beats STL by {small_gain:.1f} % here (CI excludes 0), "
                        f"against {gain:+.1f} % at m = 100: where tasks cannot be fitted alone the saliency penalty "
                        "has room to help. This supports the under-determined setting of the authors' script as the "
                        "reason for the paper's large Fig. 4c margin")
        verdict_text += ("; tuned SRDML also beats plain least squares per task "
                         f"({d_ls:+.3f} ± {fmt(ci_ls, 3)})." if d_ls + ci_ls < 0 else
                         f"; but it does not clearly beat plain least squares per task ({d_ls:+.3f} ± "
                         f"{fmt(ci_ls, 3)}), so part of the margin is STL's own fit.")
    else:
        verdict_text = (f"With the same tuning budget SRDML − STL = {d_t:+.3f} ± {fmt(ci_t, 3)} "
                        f"({small_gain:+.1f} %): the under-determined regime does not, by itself, produce a large "
                        "SRDML margin over STL here.")
    out += [f"**The under-determined regime.** The same generator with m = {SMALL_M} rows per task (≈ "
            f"{int(round(SMALL_M * 0.64))} training rows < d = 20), STL and SRDML tuned with the same budget as above "
            f"({st['trials']} trials each; selected {sel}"
            + (f"; {'; '.join(edges)}" if edges else "") + f"), {n} splits, then λ swept around the tuned SRDML:",
            "", *markdown_table(["model", "test RMSE", "SRDML − STL (paired)"], rows), "", verdict_text, "",
            f"**λ's scale.** Our regression targets are standardised (pooled training σ_y = {sigma:.2f} on split "
            "0), so the loss is the raw one / σ_y² and each saliency the raw one / σ_y; the regulariser is averaged "
            "over the batch (`reduction=\"mean\"`) while the authors' code sums it over the batch's B rows and "
            "halves the squared error. Our λ therefore corresponds to the paper's λ_p ≈ λ·σ_y / (2B): the paper's "
            f"λ_p = 0.5 with B = 32 is our λ ≈ {2 * 32 * 0.5 / sigma:.1f}, and our λ = 1 its λ_p ≈ "
            f"{sigma / 64:.3f}. Comparing λ values across the two tables is therefore only meaningful in order, "
            "not in value.", ""]
    return out


# ---------------------------------------------------------------------------------------------- images
def _images(ctx: Context, args: argparse.Namespace, st: dict[str, Any]
            ) -> tuple[list[str], list[str], list[Path], dict[str, Any], list[str], list[str]]:
    from mtlkit.datasets.mnist_shared import load_mnist_shared

    n = st["img_splits"]
    data = load_mnist_shared(args.data_dir, n_per_digit=st["per_digit"], pca=None, seed=IMG_SEED)
    methods = [m for m, _ in TABLE2_METHODS]
    fixed = st["img_fixed"]
    res, tuning = tune_then_evaluate(ctx, data, methods, n, st["trials"], EXP_IMG, metric="accuracy",
                                     hparams=fixed, seed=SEED)
    abl, abl_tuning = tune_then_evaluate(ctx, data, ["srdml"], n, st["trials"], EXP_IMG_FIXED, metric="accuracy",
                                         hparams=fixed, fixed={"srdml": {"learn_omega": False}}, seed=SEED)
    # Table 4 with the regulariser on: λ fixed at the authors' CIFAR value for both, lr and dropout tuned
    t4, t4_tuning = {}, {}
    for name, fx in (("learned", {"lam": T4_LAM}), ("fixed", {"lam": T4_LAM, "learn_omega": False})):
        t4[name], tt = tune_then_evaluate(ctx, data, ["srdml"], n, st["trials"], f"{EXP_IMG}-t4-{name}",
                                          metric="accuracy", hparams=fixed, fixed={"srdml": fx}, seed=SEED)
        t4_tuning[f"srdml (λ = {T4_LAM:g}, ω {name})"] = tt["srdml"]
    st["seconds"].append(sum(float(np.sum(v)) for r in (res, abl, *t4.values()) for v in r.seconds.values()))
    srd_img = dict(res.hparams["srdml"][0])
    img_sweep = {lam: _sweep(ctx, data, srd_img, lam, n, "images-diag", metrics=("accuracy",))
                 for lam in st["img_lambdas"]}
    st["seconds"].append(sum(s["seconds"] for s in img_sweep.values()))
    sc = {"accuracy": dict(res.scores)}
    for metric in TABLE2_METRICS[1:]:
        sc[metric] = store_scores(ctx, EXP_IMG, data, res, metric, METRIC_SCALE[metric])
    names = dict(TABLE2_METHODS)
    out = ["## Images: CIFAR-MTL's construction on MNIST (Table 2, Table 4)", "",
           f"Data `{data.name}`: {data.n_tasks} one-vs-rest tasks on {len(data.x)} shared images; "
           "the paper's numbers are CIFAR-MTL's (CIFAR-10, VGG-16), so compare orderings and differences, not "
           "levels.", "",
           f"### Table 2 analogue: test metrics (%), mean ± 95% CI over {n} splits; paper beside", ""]
    header = ["method (paper name)"] + [f"{k}: {w}" for k in ("Acc", "AUC", "Prec", "Rec") for w in ("paper", "ours")]
    rows = []
    for m in methods:
        row = [f"`{m}` ({names[m]})"]
        for j, metric in enumerate(TABLE2_METRICS):
            row += [fmt(PAPER_TABLE2[m][j]), mean_ci_cell(sc[metric][m])]
        rows.append(row)
    out += markdown_table(header, rows)
    acc = {m: float(np.nanmean(sc["accuracy"][m])) for m in methods}
    order = sorted(methods, key=lambda m: -acc[m])
    paper_order = sorted(methods, key=lambda m: -PAPER_TABLE2[m][0])
    out += ["", "Accuracy ranking here: " + " > ".join(f"`{m}`" for m in order) + ".", "",
            "The paper's: " + " > ".join(f"`{m}`" for m in paper_order) + ".", ""]
    a_with, a_without = sc["accuracy"]["srdml"], abl.scores["srdml"]
    d4, ci4 = paired(a_with, a_without)
    lam_w, lam_wo = res.hparams["srdml"][0].get("lam"), abl.hparams["srdml"][0].get("lam")
    b_with, b_without = t4["learned"].scores["srdml"], t4["fixed"].scores["srdml"]
    e4, ce4 = paired(b_with, b_without)

    def lr_of(r: BenchResult) -> str:
        return f"lr {r.hparams['srdml'][0]['lr']:.2g}, dropout {r.hparams['srdml'][0]['dropout']:g}"

    out += ["### Table 4 analogue: the adaptive ω (accuracy %)", "",
            "The paper's rows read \"w/o regularizer\" and \"w/. regularizer\" but its text removes only ω (each "
            "pair weighted by λ alone); we run that ablation, each side tuned with the same budget, twice: over the "
            f"full space (λ included) and with λ fixed at the authors' CIFAR value {T4_LAM:g} (lr and dropout "
            "tuned), so that the regulariser, and with it ω, is really on. The network without any regulariser "
            "(Hard-Share) is shown beside.", "",
            *markdown_table(["", "paper (CIFAR-MTL)", "ours, λ tuned", "selected", f"ours, λ = {T4_LAM:g}",
                             "selected"],
                            [["no regulariser at all (Hard-Share: SRDML's network at λ = 0)", "–",
                              mean_ci_cell(sc["accuracy"]["hard-share"]), "λ = 0", "", ""],
                             ["SRDML, ω fixed at 1 (no task-relation learning)", fmt(PAPER_TABLE4[0]),
                              mean_ci_cell(a_without), f"λ = {lam_wo:.3g}", mean_ci_cell(b_without),
                              lr_of(t4["fixed"])],
                             ["SRDML, ω learned", fmt(PAPER_TABLE4[1]), mean_ci_cell(a_with), f"λ = {lam_w:.3g}",
                              mean_ci_cell(b_with), lr_of(t4["learned"])],
                             ["learned − fixed (paired over splits)", f"{PAPER_TABLE4[1] - PAPER_TABLE4[0]:+.2f}",
                              f"{d4:+.2f} ± {fmt(ci4)}", "", f"{e4:+.2f} ± {fmt(ce4)}", ""]]), ""]
    if float(lam_w) == 0 and float(lam_wo) == 0:
        out += ["Over the full space both tunings switched the regulariser off (λ = 0): ω then has no effect and "
                "the two are the same model, so only the λ = "
                f"{T4_LAM:g} pair tests the adaptive ω.", ""]
    fig_hp = res.hparams["srdml"][0] if float(lam_w) > 0 else t4["learned"].hparams["srdml"][0]
    fig_lines, figs, om_stats = _image_figures(ctx, data, fig_hp, sc["accuracy"]["srdml"] if float(lam_w) > 0
                                               else b_with, sc["accuracy"][STL_IMG], float(lam_w) > 0)
    out += fig_lines
    csv = []
    for metric in TABLE2_METRICS:
        csv += _csv_rows("images", data.name, res.splits, sc[metric], metric)
    csv += _csv_rows("images", data.name, res.splits, {"srdml": a_without}, "accuracy", label="srdml(omega=1)")
    csv += _csv_rows("images", data.name, res.splits, {"srdml": b_with}, "accuracy", label=f"srdml(lam={T4_LAM:g})")
    csv += _csv_rows("images", data.name, res.splits, {"srdml": b_without}, "accuracy",
                     label=f"srdml(lam={T4_LAM:g},omega=1)")
    budget = _budget_section(f"Table 2, images ({data.name}): the twelve methods", tuning)
    budget += _budget_section("Table 4, images: SRDML with ω fixed at 1", abl_tuning)
    budget += _budget_section(f"Table 4, images: SRDML at λ = {T4_LAM:g}, ω learned vs fixed", t4_tuning)
    img = {"scores": sc, "fixed_omega": a_without, "t4": {"learned": b_with, "fixed": b_without},
           "lam_tuned": float(lam_w), "lam_tuned_fixed": float(lam_wo),
           "lam_tuned_pcgrad": float(res.hparams["srdml+pcgrad"][0]["lam"])}
    diag = _image_diagnosis(data, res, sc, abl, om_stats, img_sweep, tuning["srdml"])
    return out, csv, figs, img, budget, diag


def _image_figures(ctx: Context, data: MultiTaskData, hp: dict[str, Any], srdml_acc: np.ndarray,
                   stl_acc: np.ndarray, tuned: bool) -> tuple[list[str], list[Path], dict[str, float]]:
    """Fig. 5 analogue (SRDML's learned ω between the digits, split 0, configuration ``hp``) and per-task accuracy
    improvement bars of those SRDML runs (``srdml_acc``) over STL (``stl_acc``)."""
    import mtlkit
    from mtlkit.analysis.plots import plot_improvement_bars, plot_relation_matrix
    from mtlkit.analysis.relations import task_relations

    names = list(data.task_names)
    T = len(names)
    split0 = make_splits(data, 1, SEED)[0][1]
    run = mtlkit.train("srdml", split0, hparams=hp, seed=SEED, device=ctx.device, progress=ctx.progress)
    again = float(np.nanmean(run.evaluate("test").per_task["accuracy"]))
    om = np.asarray(task_relations(run)["ω (task × task)"], dtype=np.float64)
    iu = np.triu_indices(T, 1)
    pairs = om[iu] / om[iu].mean() if om[iu].mean() > 0 else om[iu]
    om = om / om[iu].mean() if om[iu].mean() > 0 else om
    np.fill_diagonal(om, np.nan)
    figs = plot_relation_matrix(om, names, names, f"SRDML's learned ω, digit tasks\n(split 0, λ = {hp['lam']:.3g}; "
                                "pair mean = 1)", ctx.out / "srdml-images-omega", "ω")
    order = np.argsort(-pairs, kind="stable")[:5]
    top = ", ".join(f"{names[iu[0][k]][0]}–{names[iu[1][k]][0]} ({pairs[k]:.2f})" for k in order)
    zero = int((pairs <= 1e-8).sum())
    imp = taskwise_improvement(np.nanmean(srdml_acc, 0), np.nanmean(stl_acc, 0), False)
    figs += plot_improvement_bars(imp, names, f"SRDML (λ = {hp['lam']:.3g}) vs tuned STL per digit task: test "
                                  "accuracy",
                                  ctx.out / "srdml-images-improvement")
    lines = ["### Learned task relation on the images (Fig. 5 analogue) and per-task improvement over STL", "",
             f"SRDML (λ = {hp['lam']:.3g}: "
             + ("the tuned configuration" if tuned else
                f"tuning chose λ = 0, so the Table 4 run at λ = {T4_LAM:g} is shown") + ") retrained on split 0 "
             f"(test accuracy {again:.2f}, the recorded run: {float(np.nanmean(srdml_acc[0])):.2f}). Digit pairs "
             f"with the largest ω: {top}; "
             f"{zero} of {len(pairs)} pairs have ω = 0; ω ranges {pairs.min():.2f}–{pairs.max():.2f} (pair mean 1, "
             f"coefficient of variation {pairs.std() / max(pairs.mean(), 1e-12):.2f})."
             + (" With λ = 0 the regulariser is off and ω is never trained: the map shows its initial value."
                if float(hp["lam"]) == 0 else ""), "",
             "![SRDML omega on the digit tasks](srdml-images-omega.png)", "",
             "![SRDML vs STL per digit task](srdml-images-improvement.png)", ""]
    return lines, figs, {"cv": float(pairs.std() / max(pairs.mean(), 1e-12)), "min": float(pairs.min()),
                         "max": float(pairs.max()), "lam": float(hp["lam"])}


def image_level_check(data: MultiTaskData, seed: int = SEED) -> dict[str, float]:
    """Test accuracy (%) on split 0, mean over the one-vs-rest tasks, of scikit-learn models on the raw pixels, each
    task's C chosen on the split's validation part: a logistic regression and an RBF SVM. If they sit at our
    table's level, the level gap to the paper is the data (MNIST digits are easier than CIFAR-10), not our
    training."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    def flat(x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1)

    split = make_splits(data, 1, seed)[0][1]
    tr, va, te = split.train, split.part("val"), split.part("test")
    out: dict[str, float] = {}
    for name, make, grid in (("logistic regression", lambda c: LogisticRegression(C=c, max_iter=2000),
                              (0.01, 0.1, 1.0, 10.0)),
                             ("RBF SVM", lambda c: SVC(C=c, gamma="scale"), (1.0, 10.0))):
        accs = []
        for t in range(data.n_tasks):
            (xtr, ytr), (xva, yva), (xte, yte) = (p.task_arrays(t) for p in (tr, va, te))
            best = None
            for c in grid:
                model = make(c).fit(flat(xtr), ytr)
                err = float(np.mean(model.predict(flat(xva)) != yva))
                if best is None or err < best[0]:
                    best = (err, model)
            assert best is not None
            accs.append(100.0 * float(np.mean(best[1].predict(flat(xte)) == yte)))
        out[name] = float(np.mean(accs))
    pos = [float(np.mean(te.task_arrays(t)[1])) for t in range(data.n_tasks)]
    out["majority class"] = float(np.mean([100.0 * max(p, 1 - p) for p in pos]))
    out["test rows per task"] = float(len(te.task_arrays(0)[1]))
    return out


def _image_diagnosis(data: MultiTaskData, res: BenchResult, sc: dict[str, dict[str, np.ndarray]], abl: BenchResult,
                     om: dict[str, float], img_sweep: dict[float, dict[str, Any]],
                     srd_tuning: dict[str, Any]) -> list[str]:
    lv = image_level_check(data)
    ours0 = {m: float(np.nanmean(sc["accuracy"][m][0])) for m in ("srdml", "hard-share", STL_IMG, "lasso")}
    best_cnn = max(float(np.nanmean(sc["accuracy"][m][0])) for m in sc["accuracy"] if m not in SHALLOW)
    n_test = int(lv["test rows per task"])
    lam_s, lam_p = res.hparams["srdml"][0]["lam"], res.hparams["srdml+pcgrad"][0]["lam"]
    d_hs, ci_hs = paired(sc["accuracy"]["srdml"], sc["accuracy"]["hard-share"])
    d_pc, ci_pc = paired(sc["accuracy"]["srdml+pcgrad"], sc["accuracy"]["srdml"])
    d_pch, ci_pch = paired(sc["accuracy"]["pcgrad"], sc["accuracy"]["hard-share"])
    out = ["### Images", "",
           "**The level (every method far above the paper's CIFAR-MTL numbers).** scikit-learn on split 0, raw "
           "pixels, each task's C chosen on validation, beside our split-0 runs (accuracy %, mean over the 10 "
           "tasks):", "",
           *markdown_table(["model", "accuracy, split 0"],
                           [["majority class (every image negative)", fmt(lv["majority class"])],
                            ["logistic regression per task (C ∈ {0.01, 0.1, 1, 10})", fmt(lv["logistic regression"])],
                            ["RBF SVM per task (C ∈ {1, 10})", fmt(lv["RBF SVM"])],
                            *[[f"our `{m}`", fmt(v)] for m, v in ours0.items()]]), "",
           (f"A plain RBF SVM on the pixels ({lv['RBF SVM']:.2f} %) reaches the level of our CNNs (best here "
            f"{best_cnn:.2f} %): the high level is the data (one-vs-rest MNIST digits are easy; the paper's "
            "CIFAR-10, with STL at 92.65 %, is not), not our training. " if abs(lv["RBF SVM"] - best_cnn) <= 1.0 else
            f"A plain RBF SVM on the pixels ({lv['RBF SVM']:.2f} %) is more than a point above our best CNN "
            f"({best_cnn:.2f} %): our CNNs are under-trained by this budget (epochs, trials). "
            if lv["RBF SVM"] > best_cnn else
            f"Our best CNN ({best_cnn:.2f} %) is above the RBF SVM ({lv['RBF SVM']:.2f} %) by more than a point, so "
            "the CNNs are not under-trained relative to a simple well-tuned model; the high level is the data "
            "(one-vs-rest MNIST digits are easier than the paper's CIFAR-10). ")
           + f"The majority class alone scores {lv['majority class']:.1f} %, so accuracy differences are squeezed "
           f"into the last few points: with {n_test} test images per task one misclassified image is "
           f"{100 / n_test:.2f} points of a task's accuracy and {100 / n_test / data.n_tasks:.3f} points of the "
           "10-task mean.", "",
           f"**SRDML vs Hard-Share.** The tuned λ is {lam_s:.3g} for SRDML and {lam_p:.3g} for SRDML+PCGrad"
           + (" — tuning on validation switched the regulariser off, so SRDML is Hard-Share's network with other "
              "tuned values" if float(lam_s) == 0 else "")
           + f"; SRDML − Hard-Share = {d_hs:+.2f} ± {fmt(ci_hs)} accuracy points over {len(res.splits)} splits "
           f"(the paper: +{PAPER_TABLE2['srdml'][0] - PAPER_TABLE2['hard-share'][0]:.2f}).", "",
           *_image_lambda_lines(res, sc, img_sweep, srd_tuning),
           f"**PCGrad.** SRDML+PCGrad (λ = {lam_p:.3g}) − SRDML = {d_pc:+.2f} ± {fmt(ci_pc)}; PCGrad − Hard-Share "
           f"(both plain networks) = {d_pch:+.2f} ± {fmt(ci_pch)} accuracy points. "
           + ("With both SRDML variants at λ = 0 the first is PCGrad's own effect on this network. "
              if float(lam_s) == 0 and float(lam_p) == 0 else "")
           + ("PCGrad does not help here. A plausible reason, not tested here: on ten one-vs-rest tasks of the same "
              "images the tasks' gradients on the shared convolutions conflict by construction (a digit is positive "
              "for one task, negative for the others), and projecting the conflicts away removes signal."
              if d_pc < 0 and d_pch <= 0 else ""), "",
           f"**Learned vs fixed ω (Table 4).** At λ = {om['lam']:.3g}, on split 0 the learned ω spans "
           f"{om['min']:.2f}–{om['max']:.2f} "
           f"(pair mean 1, coefficient of variation {om['cv']:.2f}); "
           + ("so the learned graph stays close to the uniform ω ≡ 1 of the ablation, and the two models can differ "
              "only slightly. " if om["cv"] < 0.25 else "so ω moves away from uniform. ")
           + f"The ablation's tuning selected λ = {abl.hparams['srdml'][0]['lam']:.3g} (learned ω: {lam_s:.3g}).",
           ""]
    return out


def _image_lambda_lines(res: BenchResult, sc: dict[str, dict[str, np.ndarray]], img_sweep: dict[float, dict[str, Any]],
                        srd_tuning: dict[str, Any]) -> list[str]:
    """Was SRDML's λ under-explored by the equal budget? Its tuned configuration re-run with λ > 0 on every split,
    against the tuned SRDML and Hard-Share."""
    trials = [t for s in srd_tuning.get("tuned", []) for t in s.get("trials", [])]
    on = [t for t in trials if float((t.get("params") or {}).get("lam", 0.0) or 0.0) > 0]
    done = [t for t in on if t.get("state") == "COMPLETE"]
    acc = sc["accuracy"]
    rows = [["tuned SRDML (as selected)", f"{res.hparams['srdml'][0]['lam']:.3g}", mean_ci_cell(acc["srdml"]),
             "–", "–"]]
    for lam, s in img_sweep.items():
        d_s, ci_s = paired(s["accuracy"], acc["srdml"])
        d_h, ci_h = paired(s["accuracy"], acc["hard-share"])
        rows.append([f"SRDML's tuned configuration, λ = {lam:g}", f"{lam:g}", mean_ci_cell(s["accuracy"]),
                     f"{d_s:+.2f} ± {fmt(ci_s)}", f"{d_h:+.2f} ± {fmt(ci_h)}"])
    val = {lam: 100.0 - s["val"] if np.isfinite(s["val"]) else np.nan for lam, s in img_sweep.items()}
    tuned_val = srd_tuning.get("best_value")
    return [f"**Was λ > 0 explored?** Of SRDML's {len(trials)} tuning trials, {len(on)} had the regulariser on "
            f"({len(done)} completed: "
            + (", ".join(f"λ = {float(t['params']['lam']):.2g} at lr {float(t['params'].get('lr', float('nan'))):.2g}"
                         f" → validation error {t['value']:.2f} %" for t in done) or "none")
            + "). The equal budget searches λ, lr and dropout together, so λ > 0 gets few trials at a good lr. A "
            "cheap check: SRDML's tuned configuration (lr, dropout) re-run with λ > 0 on every split:", "",
            *markdown_table(["run", "λ", "test accuracy", "− tuned SRDML (paired)", "− Hard-Share (paired)"], rows),
            "", "Split 0's validation error of these runs: "
            + ", ".join(f"λ = {lam:g}: {v:.2f} %" for lam, v in val.items())
            + (f" (the tuned choice: {float(tuned_val):.2f} %)." if tuned_val is not None else ".")
            + _lambda_conclusion(val, tuned_val, float(res.hparams["srdml"][0]["lam"])), ""]


def _lambda_conclusion(val: dict[float, float], tuned_val: float | None, lam: float) -> str:
    if tuned_val is None or lam > 0 or not val:
        return ""
    better = [k for k, v in val.items() if np.isfinite(v) and v < float(tuned_val)]
    if better:
        return (f" λ = {', '.join(f'{k:g}' for k in better)} would have been selected over the tuned choice: the "
                "budget under-explored λ > 0, and SRDML's Table 2 row understates it.")
    return (" None of them beats the tuned choice on validation, so λ = 0 is not an artefact of the small budget: on "
            "these data the saliency regulariser does not help at the tuned learning rate.")


# ---------------------------------------------------------------------------------------------- claims
def _claim(where: str, claim: str, paper_value: str, effect: float, ci: float, direction: int, unit: str,
           paper_effect: float | None = None) -> Claim:
    v, why = verdict(effect, ci, direction, paper_effect)
    return Claim(PAPER, where, claim, paper_value, effect, ci, unit, v, why, SOURCE)


def _untestable(where: str, claim: str, paper_value: str, why: str) -> Claim:
    return Claim(PAPER, where, claim, paper_value, None, None, "", "not testable here", why, SOURCE)


def claim_rows(syn: dict[str, Any] | None, img: dict[str, Any] | None) -> list[Claim]:
    """The paper's claims this reproduction tests, our effect (mean ± 95% CI over splits, paired where methods are
    compared) beside the paper's, each verdict by `mtlkit.experiments.claims.verdict`.

    ``syn`` (the synthetic part, arrays [splits, T] or [splits, groups]): ``stl`` and ``srdml`` → {``rmse``,
    ``mae``}; ``sweep`` / ``csweep``: λ → test RMSE of the related / contradicting λ sweeps; ``lam_star``: the
    sweep's λ > 0 selected on validation; ``omega``: per split mean ω of twin, same-base, cross-base pairs;
    ``comega``: same base same sign, same base opposite sign, cross base. ``img``: ``scores``: metric → method →
    test % [splits, T]; ``fixed_omega``: the ω ≡ 1 ablation's accuracy (λ tuned); ``lam_tuned`` /
    ``lam_tuned_fixed``: the λ those two tunings chose; ``t4``: {``learned``, ``fixed``} accuracies at λ = T4_LAM.
    A part that was not run is None."""
    rows: list[Claim] = []
    if syn is not None:
        om, cm = np.asarray(syn["omega"], dtype=float), np.asarray(syn["comega"], dtype=float)
        unit = "ω ratio to the pair mean, paired over splits"
        d, ci = mean_ci(om[:, 0] - om[:, 1])
        rows.append(_claim("Fig. 4b, synthetic", "twin tasks get a larger learned ω than same-base (non-twin) pairs",
                           "qualitative (heatmap: twins yellow, same base light green)", float(d), float(ci), 1, unit))
        d, ci = mean_ci(om[:, 1] - om[:, 2])
        rows.append(_claim("Fig. 4b, synthetic", "same-base pairs get a larger learned ω than cross-base pairs",
                           "qualitative (heatmap: same base light green, cross base dark purple)", float(d), float(ci),
                           1, unit))
        for m in ("rmse", "mae"):
            d, ci = paired(syn["srdml"][m], syn["stl"][m])
            rows.append(_claim("Fig. 4c, synthetic", f"SRDML has a lower test {m.upper()} than STL (\"by a large "
                               "margin\")", "bars, no numbers", d, ci, -1,
                               f"{m.upper()}, SRDML − STL, both tuned with the same budget, paired over splits"))
        sw = syn["sweep"]
        star = float(syn["lam_star"])
        if 0.0 in sw and star in sw:
            d, ci = paired(sw[star], sw[0.0])
            rows.append(_claim("Fig. 4d, synthetic", f"a λ > 0 beats λ = 0 (left arm of the U; here λ* = {star:g}, "
                               "selected on validation)", "U shape (figure)", d, ci, -1,
                               "RMSE, λ* − λ=0, paired over splits"))
        if 1.0 in sw and star in sw:
            d, ci = paired(sw[1.0], sw[star])
            rows.append(_claim("Fig. 4d, synthetic", f"a too large λ hurts (right arm of the U: λ = 1 vs λ* = "
                               f"{star:g})", "U shape (figure)", d, ci, 1, "RMSE, λ=1 − λ*, paired over splits"))
        if 0.5 in sw and 0.0 in sw:
            d, ci = paired(sw[0.5], sw[0.0])
            rows.append(_claim("Fig. 4d, synthetic", "the optimum lies near λ = 0.5: λ = 0.5 beats λ = 0",
                               "optimum ≈ 0.5 (figure)", d, ci, -1, "RMSE, λ=0.5 − λ=0, paired over splits"))
        cs = syn["csweep"]
        for lam in (1.0, 0.1, 0.01, 0.001):
            if lam in cs and 0.0 in cs:
                pe = PAPER_TABLE3[lam][0] - PAPER_TABLE3[0.0][0]
                d, ci = paired(cs[lam], cs[0.0])
                rows.append(_claim("Table 3, contradicting tasks", f"λ = {lam:g} has a higher test RMSE than λ = 0 "
                                   "(the error grows with λ)", f"{PAPER_TABLE3[lam][0]:.3f} vs "
                                   f"{PAPER_TABLE3[0.0][0]:.3f} ({pe:+.3f})", d, ci, 1,
                                   f"RMSE, λ={lam:g} − λ=0, paired over splits", pe))
        d, ci = mean_ci(cm[:, 0] - cm[:, 1])
        rows.append(_claim("Table 3, contradicting tasks", "the learned ω shrinks for competing tasks: same-base "
                           "pairs of opposite sign get a smaller ω than same-base pairs of the same sign",
                           "\"adaptively decrease the task-similarity weight to zero\" (text)", float(d), float(ci), 1,
                           "ω ratio to the pair mean, same sign − opposite sign, paired over splits"))
    if img is not None:
        sc = img["scores"]
        acc = sc["accuracy"]
        where = "Table 2, CIFAR-MTL (here: MNIST one-vs-rest)"
        deep = [m for m in DEEP if m in acc]
        shallow = [m for m in SHALLOW if m in acc]
        if deep and shallow:
            per = (np.mean([np.nanmean(acc[m], axis=1) for m in deep], axis=0)
                   - np.mean([np.nanmean(acc[m], axis=1) for m in shallow], axis=0))
            pe = float(np.mean([PAPER_TABLE2[m][0] for m in deep]) - np.mean([PAPER_TABLE2[m][0] for m in shallow]))
            d, ci = mean_ci(per)
            rows.append(_claim(where, "deep MTL methods beat shallow ones \"by a great margin\" (mean accuracy of the "
                               "8 deep vs the 3 shallow methods)", f"{pe:+.2f}", float(d), float(ci), 1,
                               "accuracy points, mean deep − mean shallow, per split", pe))
        for other, _ in TABLE2_METHODS:
            if other in ("srdml", "srdml+pcgrad") or other not in acc or "srdml" not in acc:
                continue
            metrics = ("accuracy", "auc") if other in (STL_IMG, "hard-share") else ("accuracy",)
            for metric in metrics:
                j = TABLE2_METRICS.index(metric)
                pe = PAPER_TABLE2["srdml"][j] - PAPER_TABLE2[other][j]
                d, ci = paired(sc[metric]["srdml"], sc[metric][other])
                rows.append(_claim(where, f"SRDML has a higher test {metric} than {dict(TABLE2_METHODS)[other]}",
                                   f"{PAPER_TABLE2['srdml'][j]:.2f} vs {PAPER_TABLE2[other][j]:.2f} ({pe:+.2f})",
                                   d, ci, 1, f"{metric} points, SRDML − {other}, paired over splits", pe))
                if img.get("lam_tuned") == 0:
                    rows[-1].why += "; tuned SRDML has λ = 0 (tuning switched the regulariser off)"
        if "srdml+pcgrad" in acc and "srdml" in acc:
            pe = PAPER_TABLE2["srdml+pcgrad"][0] - PAPER_TABLE2["srdml"][0]
            d, ci = paired(acc["srdml+pcgrad"], acc["srdml"])
            rows.append(_claim(where, "PCGrad on SRDML's shared convolutions improves SRDML", f"96.03 vs 95.82 "
                               f"({pe:+.2f})", d, ci, 1, "accuracy points, SRDML+PCGrad − SRDML, paired over splits",
                               pe))
            if img.get("lam_tuned") == 0 and img.get("lam_tuned_pcgrad") == 0:
                rows[-1].why += "; both tuned to λ = 0: PCGrad vs plain training of the same network"
        where4 = "Table 4, CIFAR-MTL (here: MNIST one-vs-rest)"
        pe = PAPER_TABLE4[1] - PAPER_TABLE4[0]
        paper4 = f"{PAPER_TABLE4[1]:.2f} vs {PAPER_TABLE4[0]:.2f} ({pe:+.2f})"
        if img.get("fixed_omega") is not None and "srdml" in acc:
            d, ci = paired(acc["srdml"], img["fixed_omega"])
            c = _claim(where4, "learning the task graph ω beats fixing ω = 1 (both tuned over the full space, λ "
                       "included)", paper4, d, ci, 1, "accuracy points, learned − fixed ω (each tuned with the same "
                       "budget), paired over splits", pe)
            if img.get("lam_tuned") == 0 and img.get("lam_tuned_fixed") == 0:
                c.why += "; tuning switched the regulariser off (λ = 0) in both, so ω had no effect: the same model"
            rows.append(c)
        t4 = img.get("t4")
        if t4 is not None:
            d, ci = paired(t4["learned"], t4["fixed"])
            rows.append(_claim(where4, f"learning the task graph ω beats fixing ω = 1, with the regulariser on (λ = "
                               f"{T4_LAM:g}, the authors' value; lr and dropout tuned)", paper4, d, ci, 1,
                               "accuracy points, learned − fixed ω (each tuned with the same budget), paired over "
                               "splits", pe))
    staged = "CelebA and MS-COCO are not staged in $MTLKIT_DATA"
    rows += [
        _untestable("Table 2, CelebA and COCO", "SRDML beats the baselines on CelebA (16 tasks) and MS-COCO (19 "
                    "tasks)", "CelebA 90.15 vs PCGrad 90.11; COCO 85.68 vs PCGrad 85.42 (accuracy)", staged),
        _untestable("Table 4, CelebA and COCO", "learning ω beats fixing it on CelebA and COCO",
                    "89.74 → 90.15; 85.18 → 85.68", staged),
        _untestable("Fig. 5", "the learned ω on CelebA/COCO groups semantically related attributes and objects",
                    "qualitative (heatmaps)", staged + "; the MNIST digits have no ground-truth relation to check "
                    "against (our ω map is shown, not judged)"),
        _untestable("Table 5 (App. C)", "normalising the saliencies changes the error little",
                    "CIFAR-MTL error 4.18 → 4.02", "our `srdml` has no saliency-normalisation option, and two of "
                    "the three data sets are not staged"),
    ]
    return rows
