"""`mtlkit reproduce amtfl`: Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018) — the synthetic experiment (Fig. 4, Fig. 5a-c),
Table 1's School and MNIST columns (six shallow models; MNIST on Kang et al.'s split), and Table 2 / Table 3 / Fig. 6
analogues with small CNNs on imbalanced MNIST (200, 180, ..., 20 training images per digit, the authors' own demo).

Every table is an equal-budget comparison: each method of a table gets the same number of Optuna TPE trials over
its declared search space (`mtlkit methods NAME`) on split 0's validation rows, and the choice is then trained and
tested on every split (`mtlkit.experiments.reproduce.protocol.tune_then_evaluate` for School; `tuned_table` below,
`tune` + `tuned_run`, where the splits or the scores are the paper's own). Each method's outcome is cached beside the
results store, so a stopped run continues. The claims each part tests are `claim_rows`, judged by
`mtlkit.experiments.claims.verdict`."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit import progress
from mtlkit.data.splits import Split
from mtlkit.experiments.claims import Claim, verdict, write_claims
from mtlkit.experiments.reproduce.common import Context, fmt, markdown_table, provenance
from mtlkit.experiments.reproduce.protocol import (
    budget_lines,
    edge_warnings,
    read_record,
    tune_then_evaluate,
    write_record,
)
from mtlkit.experiments.stats import mean_ci

DESCRIPTION = ("Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018): synthetic Fig. 4-5, Table 1 (School, MNIST Kang split), "
               "Tables 2-3 and Fig. 6 analogues on imbalanced MNIST")
PAPER = "Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018)"
PARTS = ("synthetic", "school", "mnist", "deep")
SEED = 0
SYN_SEED = 0
TRIALS = 8  # --trials default: what fits a ~35 min run on 2 shared CPU cores (measured; see the results file)
SYN_TRIALS = 32  # --syn-trials default: the synthetic table's models train in about a second each
QUICK_TRIALS = 2
WIDEN = 1  # one more round (half the trials, counted) past a selected value on the edge of its space
CACHE_FORMAT = "mtlkit-amtfl-tuned/1"
# Table 1 (RMSE for School, error % for MNIST), the paper's ± (its "standard error for 95% CI").
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "STL": {"mnist": (14.8, 0.6), "school": (10.16, 0.08)},
    "Go-MTL": {"mnist": (14.4, 1.3), "school": (9.87, 0.06)},
    "AMTL": {"mnist": (12.9, 1.4), "school": (10.13, 0.08)},
    "NN": {"mnist": (10.1, 1.0), "school": (9.89, 0.03)},
    "MT-NN": {"mnist": (8.84, 1.1), "school": (9.91, 0.04)},
    "AMTFL": {"mnist": (8.52, 1.1), "school": (9.89, 0.09)},
}
# Table 2 (average per-class error %, CIFAR-100 / AWA-C / ImageNet-352) and Table 3 (AWA transfer, error %).
PAPER_TABLE2: dict[str, tuple[float, float, float]] = {
    "CNN": (19.65, 11.36, 66.54), "MT-CNN": (19.65, 10.54, 65.69), "Deep-AMTL": (19.51, 10.27, 65.61),
    "Deep-AMTFL": (19.20, 9.96, 64.49),
}
PAPER_TABLE2_DATA = ("CIFAR-100", "AWA-C", "ImageNet-352")
PAPER_TABLE3: dict[str, float] = {"CNN": 5.00, "Deep-AMTL": 5.00, "Deep-AMTFL": 4.33}
PAPER_FIG6 = (41, 50)  # Deep-AMTFL better than the base CNN on 41 of AWA's 50 classes

ScoreFn = Callable[[Any, Split, str], np.ndarray]
Spec = tuple[str, dict[str, Any]]  # (registry method, values fixed for it by the protocol)


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


# ---------------------------------------------------------------------------------------------- protocol
def _settings(quick: bool) -> dict[str, Any]:
    """Epoch budgets and sizes of every part (the quick smoke run shrinks all of them)."""
    if quick:
        return {"syn_epochs": 3, "school_epochs": 2, "mnist_epochs": 2,
                "deep_epochs": 1, "deep_counts": (20, 18, 16, 14, 12, 10, 8, 6, 4, 2), "deep_val": 5,
                "deep_test": 10, "scaling_T": (4, 8), "transfer_train": 5, "go_iters": 2,
                "go_inner": 10, "widen": 0}
    return {"syn_epochs": 300, "school_epochs": 60, "mnist_epochs": 100, "deep_epochs": 60,
            "deep_counts": (200, 180, 160, 140, 120, 100, 80, 60, 40, 20),
            "deep_val": 30, "deep_test": None, "scaling_T": (12, 24, 48), "transfer_train": 10, "go_iters": 20,
            "go_inner": 100, "widen": WIDEN}


CNN_ARCH = {"channels": [8, 16], "hidden": [64]}
SOURCE_DIGITS = tuple(range(7))  # Table 3 analogue: train on digits 0-6, transfer to 7-9
TARGET_DIGITS = (7, 8, 9)


def _trials(args: argparse.Namespace) -> tuple[int, int]:
    """(trials of the real-data tables, trials of the synthetic table)."""
    from mtlkit.errors import MtlkitError

    for name in ("trials", "syn_trials"):
        if getattr(args, name) < 1:
            raise MtlkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.quick:
        return min(args.trials, QUICK_TRIALS), min(args.syn_trials, QUICK_TRIALS)
    return args.trials, args.syn_trials


def _protocol(args: argparse.Namespace, st: dict[str, Any], trials: int, syn_trials: int) -> list[str]:
    widen = ("no widening" if not st["widen"] else "one widening round of half the trials, counted in the budget, "
             "past a value selected on the edge of its space")
    lines = [
        f"**Equal budget**: every method of a table gets the same number of Optuna TPE trials ({syn_trials} in "
        f"the synthetic table, whose models train in about a second; {trials} in Table 1 and the deep tables) "
        "(seeded; trial 0 = "
        "the method's defaults with the protocol's fixed values; MedianPruner on the validation loss, pruned "
        f"trials counted; {widen}) "
        "over its declared search space (`mtlkit methods NAME`; each regulariser with 0 = off among its choices), "
        "scored on split 0's validation rows by the kind's primary metric (RMSE; mean one-vs-all binary error "
        "for MNIST's ten tasks; multi-class error for the softmax CNN); the chosen configuration is then trained "
        "on every split (training seed = split index) and tested. Values the protocol fixes (architecture, epochs) "
        "are the same for every method that has them and are listed per part. The paper tunes on validation too, "
        "over grids it does not list.",
        "SGD-trained models: at most the stated epochs, early stopping on the validation loss (patience below), "
        "the epoch with the lowest validation loss kept. Inputs standardised on the training rows (regression "
        "targets too).",
        f"**Synthetic (Fig. 4-5)**: `amtfl_synthetic(seed={SYN_SEED})`, the paper's sizes (6 easy tasks σ=1 with "
        "50/50/100 rows, 6 hard σ=2 with 25/25/100, d=30, 6 bases), its first "
        f"{args.splits} splits with the exact validation rows. STL = `stl-linear` (ridge); Go-MTL k=6 fixed, "
        f"{st['go_iters']} alternations; AMTL with `nonneg=false` (the paper removes B ≥ 0 for this data); AMTFL "
        "with no hidden non-linearity (`activation=identity`, the paper's choice here) and k=6 fixed; AMTL and "
        f"AMTFL batch 100 (full batch), {st['syn_epochs']} epochs max, patience 30. Our γ weighs the *mean* "
        "reconstruction error over rows on standardised targets, Eq. 6's a Frobenius *sum* over the N rows on raw "
        "targets: γ = N·γ_paper/y_std², ≈ 7·γ_paper here (see the Diagnosis). **Reductions**: the paper "
        "implements every baseline as a network and adds ℓ1 on L to all of them; we use the library's STL / "
        "Go-MTL / AMTL solvers without that ℓ1.",
        f"Fig. 5c: T ∈ {{{', '.join(map(str, st['scaling_T']))}}} tasks (half easy, half hard; pairs of bases "
        f"cycle), the first {min(args.splits, 3)} splits of each draw, each method's configuration tuned on the "
        "T=12 data; training time is wall-clock on this shared CPU (only the trend is meaningful). The paper goes "
        "to larger T.",
        f"**School (Table 1)**: Argyriou's splits 1-{args.splits} (the paper: the first 5 of 10), 20% of each "
        "split's training rows per task carved out as validation (the paper does not say how it validates), "
        "`tune_then_evaluate`. RMSE in exam-score units, averaged over the 139 schools. NN / MT-NN / AMTFL one "
        "hidden layer of 15 ReLU units fixed (the paper: 10 or 15); Go-MTL "
        f"{st['go_iters']} alternations of {st['go_inner']} inner steps; batch 64 rows per task, "
        f"{st['school_epochs']} epochs max, patience 10.",
        "**MNIST (Table 1)**: the split of Kang, Grauman & Sha (2011) that Go-MTL and the paper use: split 0 here "
        "*is* their split 1 as staged (1000/500/500 train/val/test rows, ≈100/50/50 per digit, the first 64 of "
        "its PCA scores = the paper's PCA-64); their splits 2-5 are not staged, so splits 1.. here are random "
        "re-partitions of the same 2000 rows with the same per-digit train/val/test counts (seed = split index). "
        "The re-drawn test sets overlap, so the CI over splits understates the paper's split-to-split spread; the "
        "Kang-split-1 column is the exact paper data. The 64 scores are standardised with one pooled mean and std "
        "(rows given as [1, 64]), not per feature: per-feature standardisation whitens PCA scores, blowing the "
        "noisy low-variance components up to the leading ones' scale (see the Diagnosis). Ten one-vs-all "
        "logistic tasks on shared input. Error % = "
        "multi-class error of the argmax over the ten task scores. Go-MTL "
        f"{max(1, st['go_iters'] // 4)} alternations of {max(1, st['go_inner'] // 2)} inner steps (cost); "
        f"NN / MT-NN / AMTFL 200 hidden ReLU units fixed (the paper's width), batch 64, {st['mnist_epochs']} "
        "epochs max, patience 15.",
        "**Deep (Table 2 / Fig. 6 analogue)**: CIFAR-100 / AWA / ImageNet-352 and their WRN / ResNet-50 networks "
        "are not available here; instead imbalanced MNIST as the authors' demo: "
        f"{', '.join(map(str, st['deep_counts']))} training images for digits 0..9, {st['deep_val']} validation "
        f"images per digit, every other staged test image as test; {args.deep_splits} random splits. Images "
        "averaged down to 14×14 (cost). Network for all four: a small LeNet-style CNN (5×5 conv "
        f"{CNN_ARCH['channels'][0]} → pool → 5×5 conv {CNN_ARCH['channels'][1]} → pool → fc ReLU = Z, its width "
        "tuned) instead of LeNet's 20/50/500, trained from scratch, batch 50, "
        f"{st['deep_epochs']} epochs max, patience 10 (cost; the authors' demo runs 1000 epochs). "
        "CNN: `stl-cnn` on one 10-class task (softmax). MT-CNN: ten one-vs-all sigmoid tasks, each task's loss "
        "its own mean and μ‖S‖₁ on the last layer = `deep-amtfl` with α=γ=δ=0 fixed (the paper's MT-CNN divides "
        "each class's softmax loss by its N_t; in one-vs-all form each class is its own task). Deep-AMTL: "
        "`deep-amtl` (AMTL's objective on the last layer). Deep-AMTFL: `deep-amtfl` (reconstruction from the "
        "sigmoid outputs). δ/√N_t with N_t = the digit's number of *positive* training images (`task_sizes`, as "
        "the authors' code). The paper fine-tunes its MTL models from MT-CNN; ours train from scratch. Metric: "
        "per-class error (1 − recall) averaged over the ten digits.",
        f"**Transfer (Table 3 analogue)**: AWA's 40→10 class split is not available; source = digits "
        f"{SOURCE_DIGITS[0]}-{SOURCE_DIGITS[-1]} with the imbalanced counts above, target = digits "
        f"{', '.join(map(str, TARGET_DIGITS))} with {st['transfer_train']} training images each. Each source "
        "network is trained with its Table-2 configuration (not re-tuned) and frozen; a softmax classifier "
        "(multinomial logistic regression, C=1, on standardised penultimate features Z) is fitted on the target "
        "training images and tested on all other staged images of the target digits.",
        "Each method's tuning and test outcome is cached beside the results store (`results/tuning/`), so a "
        "re-run reuses it: the minutes \"in this call\" above count only what was not cached (Fig. 5c, the "
        "checks of the Diagnosis), the recorded training time sums every tuning trial and training run.",
        "Every table: mean ± 95% Student-t CI over splits (t-based half-width, n−1 dof) of the task- or "
        "class-averaged metric; claims use differences paired over splits. The paper's ± is its \"standard error "
        "for 95% confidence interval\".",
    ]
    reduced = []
    if args.splits < 5:
        reduced.append(f"{args.splits} splits instead of the paper's 5")
    reduced.append(f"{trials} tuning trials per method in Table 1 and the deep tables, {syn_trials} in the "
                   "synthetic one (the paper's budget is not stated)")
    reduced.append(f"{args.deep_splits} imbalanced-MNIST splits")
    if args.quick:
        lines.insert(0, "**QUICK SMOKE RUN**: tiny data, a few epochs and trials; the numbers mean nothing.")
    else:
        lines.insert(0, "**Reduced protocol**: " + "; ".join(reduced) + "; the networks and data of Tables 2-3 "
                        "replaced by small CNNs on imbalanced MNIST (see below).")
    return lines


# ---------------------------------------------------------------------------------------------- shared helpers
def _cell(values: Sequence[float], decimals: int = 2) -> str:
    """``mean ± CI`` over splits of one value per split."""
    m, c = mean_ci(np.asarray(values, dtype=np.float64))
    return f"{fmt(float(m), decimals)} ± {fmt(float(c), decimals)}"


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean ± 95% CI over splits of a − b."""
    return _mci(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def _mci(v: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95% CI half-width (NaN with fewer than 2 values) of per-split values."""
    m, c = mean_ci(np.asarray(v, dtype=np.float64))
    return float(m), float(c)


def rmse_scores(run: Any, split: Split, part: str) -> np.ndarray:
    """Per-task RMSE [T] of a run on a split's part."""
    return np.asarray(run.evaluate(part).per_task["rmse"], dtype=np.float64)


@dataclasses.dataclass
class Tuned:
    """One method's outcome in a table: test scores ``[splits, n]``, training seconds and configuration per split,
    the tuning's record (`TuningResult.to_json`) and ``inspect(run, split)`` of the selected run per split."""

    label: str
    method: str
    splits: list[str]
    scores: np.ndarray
    seconds: list[float]
    hparams: list[dict[str, Any]]
    tuning: dict[str, Any]
    inspected: list[Any]

    def matrix(self) -> np.ndarray:
        """Scores as [splits, n]."""
        return self.scores

    def per_split(self) -> np.ndarray:
        """The score averaged over tasks (or classes), one value per split."""
        return np.nanmean(self.scores, axis=1)


def _split_key(splits: Sequence[tuple[str, Split]]) -> str:
    """A digest of the splits: labels, the data's checksum and every part's row indices."""
    h = hashlib.sha256()
    src = splits[0][1].source or splits[0][1].train
    h.update(src.checksum().encode())
    for label, s in splits:
        h.update(label.encode())
        for part in ("train", "val", "test"):
            idx = s.indices.get(part)
            arrs = idx if isinstance(idx, (list, tuple)) else [idx]
            for a in arrs:
                if a is not None:
                    h.update(np.ascontiguousarray(np.asarray(a), dtype=np.int64).tobytes())
    return h.hexdigest()[:12]


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _cache_dir(ctx: Context) -> Path:
    return Path(ctx.store.path).parent / "tuning"


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_record(path, CACHE_FORMAT)


def _write_json(path: Path, rec: dict[str, Any]) -> dict[str, Any]:
    return write_record(path, _jsonable(rec))


def tuned_table(ctx: Context, experiment: str, splits: Sequence[tuple[str, Split]], specs: Mapping[str, Spec],
                trials: int, score: ScoreFn, *, widen: int = WIDEN,
                inspect: Mapping[str, Callable[[Any, Split], Any]] | None = None) -> dict[str, Tuned]:
    """The equal-budget protocol on the paper's own splits and scores: per method (``specs``: label → (registry
    method, fixed values)), `mtlkit.experiments.tuning.tune` with ``trials`` trials on split 0's validation rows,
    then the selected configuration trained on every split (`tuned_run`, seed = split index), tested by
    ``score(run, split, "test")`` and recorded in the store; ``inspect[label](run, split)`` (JSON-able) is kept per
    split. Each method's outcome is cached beside the store (keyed by method, fixed values, space, trials, splits
    and code version), so a stopped reproduction continues where it stopped."""
    from mtlkit.experiments.tuning import tune, tuned_run
    from mtlkit.methods import registry

    src = splits[0][1].source or splits[0][1].train
    ctx.record(src)
    kind = splits[0][1].train.kind
    skey = _split_key(splits)
    out: dict[str, Tuned] = {}
    for label, (method, fixed) in specs.items():
        look = (inspect or {}).get(label)
        space = {k: v.text() for k, v in registry.search_space(method, kind).items()}
        key = hashlib.sha256(json.dumps(
            [CACHE_FORMAT, method, _jsonable(fixed), space,
             trials, widen, SEED, skey, getattr(score, "__qualname__", str(score)),
             getattr(look, "__qualname__", None)], sort_keys=True, default=str).encode()).hexdigest()[:12]
        safe = label.lower().replace(" ", "-")
        path = _cache_dir(ctx) / f"{experiment}-{safe}-{key}.json"
        rec = _read_json(path)
        if rec is None:
            t0 = time.perf_counter()
            res = tune(method, list(splits), trials=trials, seed=SEED, fixed=fixed, widen=widen, device=ctx.device,
                       progress=ctx.progress)
            scores, secs, hps, insp = [], [], [], []
            for i, (name, split) in enumerate(splits):
                run = tuned_run(res, i, split, device=ctx.device, progress=ctx.progress)
                scores.append(np.asarray(score(run, split, "test"), dtype=np.float64))
                secs.append(float(run.train_seconds))
                hps.append(dict(run.hparams))
                insp.append(look(run, split) if look is not None else None)
                ctx.store.add(run, experiment, name, run.evaluate("val") if split.val is not None else None,
                              run.evaluate("test"))
            rec = _write_json(path, {"format": CACHE_FORMAT, "label": label, "method": method,
                                     "splits": [n for n, _ in splits], "scores": [s.tolist() for s in scores],
                                     "seconds": secs, "hparams": hps, "tuning": res.to_json(), "inspected": insp})
            progress.step(f"{experiment}: {label} tuned ({trials} trials) and tested on {len(splits)} split(s) in "
                          f"{time.perf_counter() - t0:.0f} s", ctx.progress)
        out[label] = Tuned(label, method, list(rec["splits"]),
                           np.array([[np.nan if v is None else v for v in row] for row in rec["scores"]],
                                    dtype=np.float64),
                           list(rec["seconds"]), list(rec["hparams"]), rec["tuning"], list(rec["inspected"]))
    return out


def _budget_section(title: str, tables: Mapping[str, Any]) -> list[str]:
    """The budget table and every ⚠ at-edge line of one table's tuning records."""
    tuning = {lbl: (t.tuning if isinstance(t, Tuned) else t) for lbl, t in tables.items()}
    lines = [f"**Tuning budget ({title})**", "", *budget_lines(tuning)]
    edges = edge_warnings(tuning)
    lines += ["", *(f"- {e}" for e in edges)] if edges else ["", "No selected value on the edge of its space."]
    return lines


def _selected(t: Tuned, keys: Sequence[str] | None = None) -> str:
    sel = t.tuning.get("best_params") or {}
    return ", ".join(f"{k}={_g(v)}" for k, v in sel.items() if keys is None or k in keys) or "defaults"


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------- synthetic
SYN_METHODS = ("STL", "Go-MTL", "AMTL", "AMTFL")
FEEDBACK_ACTIVE = 0.5
"""A reconstruction share (`mtlkit.methods.amtfl.reconstruction_share`) below this: the feedback is off and
AMTFL's ``AS`` is optimiser noise, not a transfer pattern."""


def _syn_specs(st: dict[str, Any]) -> dict[str, Spec]:
    sgd = {"epochs": st["syn_epochs"], "patience": 30, "batch_size": 100}
    return {
        "STL": ("stl-linear", {}),
        "Go-MTL": ("go-mtl", {"k": 6, "iters": st["go_iters"], "inner": st["go_inner"]}),
        "AMTL": ("amtl", {**sgd, "nonneg": False}),
        "AMTFL": ("amtfl", {**sgd, "activation": "identity", "hidden": 6}),
    }


def linear_weights(run: Any, d: int) -> np.ndarray:
    """The effective linear predictor of every task in raw units [T, d], probed as f(e_i) − f(0) (exact for the
    linear models here: STL, Go-MTL, AMTL and AMTFL without a hidden non-linearity)."""
    base = run.predict_proba(np.zeros((1, d)))  # [T, 1]
    probe = run.predict_proba(np.eye(d))  # [T, d]
    return np.asarray(probe - base, dtype=np.float64)


def learned_bases(run: Any, d: int) -> np.ndarray | None:
    """The learned latent bases in raw input units [d, k] (Go-MTL's L, AMTFL's first-layer weights), else None."""
    model = run.model
    scale = np.diag(run.normalizer.x(np.eye(d)) - run.normalizer.x(np.zeros((1, d))))  # 1 / x_std per feature
    if hasattr(model, "L") and isinstance(model.L, torch.Tensor):
        L = model.L.detach().cpu().numpy()
    elif hasattr(model, "backbone"):
        L = next(p for p in model.backbone.parameters() if p.dim() == 2).detach().cpu().numpy().T
    else:
        return None
    return scale[:, None] * L


def project_bases(true_bases: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each true basis projected onto the span of the learned bases (columns of ``L`` [d, k]), and the share of
    its squared norm that span captures (1 = inside it). Learned bases are defined up to an invertible k×k
    transform, so the span is what can be compared."""
    Q, _ = np.linalg.qr(L)
    proj = true_bases @ Q @ Q.T  # [n_bases, d]
    captured = (proj ** 2).sum(1) / (true_bases ** 2).sum(1)
    return proj, captured


def amtfl_feedback(run: Any, split: Split) -> dict[str, Any] | None:
    """An AMTFL run's transfer matrix ``AS`` [T, T] (row: from task, column: to task) and its feedback's
    reconstruction share on the split's standardised training rows (None for a model without feedback)."""
    from mtlkit.methods.amtfl import reconstruction_share

    model = run.model
    if getattr(model, "A", None) is None:
        return None
    train = split.train
    X = np.concatenate(train.xs if train.xs is not None else [train.x], axis=0)
    p0 = next(model.parameters())
    with torch.no_grad():
        z = model.features(torch.as_tensor(run.normalizer.x(X), dtype=p0.dtype, device=p0.device))
        AS = (model.A @ model.S).cpu().numpy().astype(np.float64)
    return {"AS": AS, "share": reconstruction_share(model, z)}


def _syn_inspector(truth: Any, label: str) -> Callable[[Any, Split], dict[str, Any]]:
    """Per split: the learned predictors' relative error (easy, hard), the true bases' share captured by the
    learned span (Go-MTL, AMTFL), AMTFL's transfer ``AS`` and reconstruction share; W and the projections too."""
    d = truth.W.shape[1]

    def syn_inspect(run: Any, split: Split) -> dict[str, Any]:
        W = linear_weights(run, d)
        rel = np.linalg.norm(W - truth.W, axis=1) / np.linalg.norm(truth.W, axis=1)
        out: dict[str, Any] = {"W": W, "rel_easy": float(rel[truth.easy].mean()),
                               "rel_hard": float(rel[~truth.easy].mean())}
        L = learned_bases(run, d) if label in ("Go-MTL", "AMTFL") else None
        if L is not None:
            proj, captured = project_bases(truth.bases, L)
            out.update(proj=proj, captured=captured)
        fb = amtfl_feedback(run, split)
        if fb is not None:
            out.update(AS=fb["AS"], share=fb["share"])
        return out

    syn_inspect.__qualname__ = f"syn_inspect/{label}/v1"
    return syn_inspect


def transfer_direction(feedback: Sequence[dict[str, Any] | None], easy: np.ndarray) -> dict[str, Any]:
    """Fig. 4h over splits: per split the block means of |AS| (`_block_means`), their easy→hard / hard→easy
    ratio and the reconstruction share; ``active`` = the splits whose share reaches `FEEDBACK_ACTIVE` (only there
    is AS a transfer pattern). Means over all splits and over the active ones."""
    fb = [f for f in feedback if f is not None]
    blocks = [_block_means(f["AS"], easy) for f in fb]
    ratio = np.array([b["easy→hard"] / max(b["hard→easy"], 1e-12) for b in blocks])
    share = np.array([f["share"] for f in fb], dtype=np.float64)
    active = share >= FEEDBACK_ACTIVE
    out: dict[str, Any] = {"blocks": blocks, "ratio": ratio, "share": share, "active": active}
    for key, sel in (("all", np.ones(len(fb), dtype=bool)), ("act", active)):
        eh = [b["easy→hard"] for b, a in zip(blocks, sel, strict=True) if a]
        he = [b["hard→easy"] for b, a in zip(blocks, sel, strict=True) if a]
        out[f"eh_{key}"] = float(np.mean(eh)) if eh else float("nan")
        out[f"he_{key}"] = float(np.mean(he)) if he else float("nan")
    return out


def _block_means(AS: Any, easy: np.ndarray) -> dict[str, float]:
    """Mean |AS| over the easy→hard block (rows easy, columns hard), hard→easy, and the two diagonal blocks
    (self-transfer on the diagonal left out)."""
    A = np.abs(np.asarray(AS, dtype=np.float64)).copy()
    np.fill_diagonal(A, np.nan)
    return {"easy→hard": float(np.nanmean(A[np.ix_(easy, ~easy)])),
            "hard→easy": float(np.nanmean(A[np.ix_(~easy, easy)])),
            "easy→easy": float(np.nanmean(A[np.ix_(easy, easy)])),
            "hard→hard": float(np.nanmean(A[np.ix_(~easy, ~easy)]))}


def fig4h_claim(d: dict[str, Any]) -> str:
    """The Fig. 4h verdict from `transfer_direction`: judged on the splits where the feedback is active only."""
    n, act = len(d["ratio"]), d["active"]
    head = (f"- **Fig. 4h, \"easy→hard transfer, little hard→easy\"** (selected AMTFL, {n} splits): mean |AS| "
            f"easy→hard {d['eh_all']:.4f} vs hard→easy {d['he_all']:.4f} (ratio "
            f"{d['eh_all'] / max(d['he_all'], 1e-12):.2f}; per split " + ", ".join(f"{r:.2f}" for r in d["ratio"])
            + "); reconstruction share per split " + ", ".join(f"{s:.2f}" for s in d["share"]) + ": ")
    if not act.any():
        return head + ("not measurable: the feedback is off in every split (A in the ℓ1 dead zone, AS is optimiser "
                       "noise), so the selected model transfers nothing in either direction.")
    ratio = d["eh_act"] / max(d["he_act"], 1e-12)
    r_act = d["ratio"][act]
    verdict_ = ("holds in direction in every active split" if (r_act > 1).all() else
                "holds on average" if ratio > 1 else "does not hold")
    strong = " (\"none hard→easy\" not reproduced: hard→easy stays comparable)" if ratio < 3 and ratio > 1 else ""
    return head + (f"on the {int(act.sum())} split(s) with active feedback easy→hard / hard→easy = {ratio:.2f}: "
                   f"{verdict_}{strong}.")


def fig4h_effect(d: dict[str, Any]) -> tuple[float, float, int]:
    """Fig. 4h as a measured effect: per *active* split (`transfer_direction`) 1 − (hard→easy)/(easy→hard), the
    share by which hard→easy transfer falls short of easy→hard (1 = none hard→easy, the paper's picture; 0 = the
    same both ways); mean, 95% CI half-width and the number of active splits (NaN mean when none is active)."""
    act = np.asarray(d["active"], dtype=bool)
    if not act.any():
        return math.nan, math.nan, 0
    v = [1.0 - b["hard→easy"] / max(b["easy→hard"], 1e-12) for b, a in zip(d["blocks"], act, strict=True) if a]
    m, c = _mci(v)
    return m, c, len(v)


def _synthetic(ctx: Context, args: argparse.Namespace, st: dict[str, Any], trials: int
               ) -> tuple[list[str], list[Path], list[str], dict[str, Any]]:
    """The synthetic experiment: Fig. 5a table, Fig. 5b per-task reductions, Fig. 4 (bases, predictors, AS),
    Fig. 5c scaling; returns (Markdown, figures, CSV rows, measures for the claims)."""
    from mtlkit.analysis.plots import plot_improvement_bars
    from mtlkit.datasets.amtfl_synthetic import amtfl_split, amtfl_synthetic

    n = args.splits
    data, truth = amtfl_synthetic(seed=SYN_SEED, n_splits=n)
    splits = [(f"split-{i}", amtfl_split(data, truth, i)) for i in range(n)]
    res = tuned_table(ctx, "reproduce-amtfl-synthetic", splits, _syn_specs(st), trials, rmse_scores,
                      widen=st["widen"], inspect={m: _syn_inspector(truth, m) for m in SYN_METHODS})
    easy = truth.easy
    csv = [f"synthetic,{m},{splits[i][0]},{t},{v:.6g}" for m, s in res.items() for i, row in enumerate(s.scores)
           for t, v in zip(data.task_names, row, strict=True)]
    out = ["## Synthetic data (§4.1): Fig. 5a, average test RMSE", "",
           "Mean ± 95% CI over splits of the RMSE averaged over the easy (σ=1), hard (σ=2) or all tasks. The "
           "paper gives Fig. 5a as bars without numbers; its claims: AMTFL below STL on both groups, Go-MTL above "
           "STL on the hard tasks, AMTFL below Go-MTL and well below AMTL.", ""]
    rows = []
    grp = {}
    for m, s in res.items():
        M = s.matrix()
        grp[m] = {"easy": M[:, easy].mean(1), "hard": M[:, ~easy].mean(1), "all": M.mean(1)}
        rows.append([m, _cell(grp[m]["easy"], 3), _cell(grp[m]["hard"], 3), _cell(grp[m]["all"], 3),
                     _selected(s)])
    out += markdown_table(["method", "easy tasks", "hard tasks", "all tasks", "selected on split 0"], rows)
    out += ["", *_budget_section("synthetic", res)]
    # Fig. 5b
    stl = res["STL"].matrix().mean(0)
    figs: list[Path] = []
    out += ["", "## Fig. 5b: per-task RMSE reduction over STL (%)", "",
            "Per task 100·(RMSE_STL − RMSE_method)/RMSE_STL of the split-averaged RMSEs; positive = better than "
            "STL.", ""]
    red = {m: 100.0 * (stl - res[m].matrix().mean(0)) / stl for m in SYN_METHODS if m != "STL"}
    out += markdown_table(["task", *red], [[t, *(f"{red[m][i]:+.1f}" for m in red)]
                                           for i, t in enumerate(data.task_names)])
    out += ["", "Tasks made worse than STL (split-averaged): " + "; ".join(
        f"{m} {int((red[m][easy] < 0).sum())}/{int(easy.sum())} easy, {int((red[m][~easy] < 0).sum())}/"
        f"{int((~easy).sum())} hard" for m in red) + "."]
    worse = [i for i in range(len(easy)) if any(red[m][i] < 0 for m in red)]
    if worse:
        shared = set(truth.params["easy_bases"]) & set(truth.params["hard_bases"])
        out += ["", "Tasks some MTL method makes worse than STL, with their generating bases (l3, l4 are shared by "
                "the easy and the hard group): "
                + "; ".join(f"{data.task_names[i]} (" + ", ".join(f"l{b + 1}" for b in truth.basis_idx[i])
                            + (", only shared bases" if set(truth.basis_idx[i]) <= shared else "") + ")"
                            for i in worse) + "."]
    for m in ("Go-MTL", "AMTFL"):
        figs += plot_improvement_bars(red[m], list(data.task_names), f"{m}: per-task RMSE reduction over STL "
                                      "(synthetic, Fig. 5b)", ctx.out / f"amtfl-fig5b-{m.lower()}")
        out.append(f"![{m} Fig. 5b](amtfl-fig5b-{m.lower()}.png)")
    fig4, figs4, direction = _fig4(ctx, data, truth, res)
    out += ["", *fig4]
    figs += figs4
    sens = _fig4h_sensitivity(ctx, splits, truth, res["AMTFL"])
    out += ["", *_sensitivity_lines(sens)]
    scal, figs5, scaling = _scaling(ctx, st, res, n)
    out += ["", *scal]
    figs += figs5
    shared_bases = set(truth.params["easy_bases"]) & set(truth.params["hard_bases"])
    measures = {"grp": grp, "tasks": {m: res[m].matrix() for m in SYN_METHODS}, "easy": easy,
                "fig4": {m: {k: np.array([s[k] if s is not None and k in s else np.nan for s in res[m].inspected])
                             for k in ("rel_easy", "rel_hard")}
                         | {"captured": np.array([float(np.mean(s["captured"])) if s and "captured" in s else np.nan
                                                  for s in res[m].inspected])}
                         for m in SYN_METHODS},
                "fig4h": direction, "scaling": scaling, "tuned": res, "sensitivity": sens,
                "amtfl_hparams": dict(res["AMTFL"].hparams[0]),
                "worse": {m: [(data.task_names[i], [f"l{b + 1}" for b in truth.basis_idx[i]],
                               set(truth.basis_idx[i]) <= shared_bases)
                              for i in range(len(easy)) if red[m][i] < 0] for m in red}}
    return out, figs, csv, measures


SENS_ALPHAS = (0.1, 1.0, 10.0)
SENS_GAMMA = 1.0


def _fig4h_sensitivity(ctx: Context, splits: Sequence[tuple[str, Split]], truth: Any, sel: Tuned
                       ) -> dict[str, Any]:
    """A deliberate sweep, not part of the comparison: the selected AMTFL retrained on every split with α ∈
    `SENS_ALPHAS` (the loss-weighted ℓ1 that is meant to make transfer asymmetric) at γ = `SENS_GAMMA` (a feedback
    that reconstructs); per α the reconstruction shares, the Fig. 4h effect (`fig4h_effect`) and the test RMSE."""
    import mtlkit

    def compute() -> dict[str, Any]:
        out = {}
        for a in SENS_ALPHAS:
            fbs, rmse = [], []
            for i, (_, split) in enumerate(splits):
                run = mtlkit.train("amtfl", split, hparams={**sel.hparams[0], "alpha": a, "gamma": SENS_GAMMA},
                                   seed=SEED + i, device=ctx.device, progress=False)
                fbs.append(amtfl_feedback(run, split))
                rmse.append(float(np.mean(rmse_scores(run, split, "test"))))
            out[str(a)] = {"feedback": fbs, "rmse": rmse}
        return out

    key = [sel.hparams[0], [n for n, _ in splits], _split_key(splits), SENS_ALPHAS, SENS_GAMMA, "v1"]
    rec = _cached(ctx, "reproduce-amtfl-fig4h-sensitivity", key, compute)
    res = {}
    for a in SENS_ALPHAS:
        r = rec[str(a)]
        d = transfer_direction(r["feedback"], truth.easy)
        m, c, n = fig4h_effect(d)
        res[a] = {"share": d["share"], "ratio": d["ratio"], "effect": (m, c, n), "rmse": np.asarray(r["rmse"])}
    insp = [s for s in sel.inspected if s is not None and "AS" in s]
    d = transfer_direction([{"AS": s["AS"], "share": s["share"]} for s in insp], truth.easy)
    m, c, n = fig4h_effect(d)
    res["selected"] = {"share": d["share"], "ratio": d["ratio"], "effect": (m, c, n),
                       "rmse": sel.per_split(), "alpha": sel.hparams[0].get("alpha"),
                       "gamma": sel.hparams[0].get("gamma")}
    return res


def _sensitivity_lines(sens: Mapping[Any, Any]) -> list[str]:
    out = [f"**Sensitivity of Fig. 4h to α** (a deliberate sweep, not part of the equal-budget comparison): the "
           f"selected AMTFL retrained on every split with α ∈ {{{', '.join(f'{a:g}' for a in SENS_ALPHAS)}}} at "
           f"γ = {SENS_GAMMA:g}. α is the loss-weighted ℓ1 (1 + α‖a_t‖₁)(L_t + δ/√N_t) that should make the hard "
           "(high-loss) tasks' outgoing transfer sparser.", ""]
    rows = []
    sel = sens["selected"]
    for label, r in [(f"selected (α={_g(sel['alpha'])}, γ={_g(sel['gamma'])})", sel),
                     *((f"α={a:g}, γ={SENS_GAMMA:g}", sens[a]) for a in SENS_ALPHAS)]:
        m, c, n = r["effect"]
        rows.append([label, ", ".join(f"{v:.2f}" for v in r["share"]), ", ".join(f"{v:.2f}" for v in r["ratio"]),
                     "–" if n == 0 else f"{m:+.2f} ± {fmt(c)} ({n} active)", _cell(r["rmse"], 3)])
    return out + markdown_table(["AMTFL", "reconstruction share per split", "easy→hard / hard→easy per split",
                                 "1 − h→e/e→h (active splits)", "test RMSE (all tasks)"], rows)


def _fig4(ctx: Context, data: Any, truth: Any, res: dict[str, Tuned]
          ) -> tuple[list[str], list[Path], dict[str, Any] | None]:
    """Fig. 4: true vs learned bases and predictors (split 0), and AMTFL's transfer matrix AS (every split)."""
    from mtlkit.analysis.plots import plot_relation_matrix

    d = data.feature_shape[0]
    tasks = list(data.task_names)
    feats = [f"x{j + 1}" for j in range(d)]
    bases = [f"l{k + 1}" for k in range(len(truth.bases))]
    figs = plot_relation_matrix(truth.bases, bases, feats, "true bases l_k (Fig. 4a)",
                                ctx.out / "amtfl-fig4-bases-true", annotate=False)
    figs += plot_relation_matrix(truth.W, tasks, feats, "true predictors w_t (Fig. 4b)", ctx.out / "amtfl-fig4-W-true",
                                 annotate=False)
    out = ["## Fig. 4: bases, predictors and the transfer matrix", "",
           "Learned bases are defined only up to an invertible k×k transform, so each true basis is compared with "
           "its projection on the span of the learned ones (captured = share of ‖l_k‖² inside the span; 1 is "
           "perfect). Predictors: the effective linear w_t of each model in raw units; error ‖ŵ_t − w_t‖/‖w_t‖ "
           "averaged over a group. Mean ± 95% CI over splits; the heatmaps are split 0's.", ""]
    rows = []
    for m in SYN_METHODS:
        insp = [s for s in res[m].inspected if s is not None]
        cap = "–"
        if insp and "captured" in insp[0]:
            C = np.array([s["captured"] for s in insp])
            cap = ", ".join(f"{c:.2f}" for c in C.mean(0)) + f" (mean {_cell(C.mean(1))})"
            figs += plot_relation_matrix(np.asarray(insp[0]["proj"]), bases, feats,
                                         f"true bases projected on {m}'s learned span",
                                         ctx.out / f"amtfl-fig4-bases-{m.lower()}", annotate=False)
        figs += plot_relation_matrix(np.asarray(insp[0]["W"]), tasks, feats, f"{m}: learned predictors w_t",
                                     ctx.out / f"amtfl-fig4-W-{m.lower()}", annotate=False)
        rows.append([m, _cell([s["rel_easy"] for s in insp], 3), _cell([s["rel_hard"] for s in insp], 3), cap])
    out += markdown_table(["method", "‖ŵ−w‖/‖w‖ easy", "‖ŵ−w‖/‖w‖ hard", "captured share of l1..l6 (split mean)"],
                          rows)
    direction = None
    sel = res["AMTFL"]
    fbs = [{"AS": s["AS"], "share": s["share"]} if s is not None and "AS" in s else None for s in sel.inspected]
    if any(f is not None for f in fbs):
        direction = transfer_direction(fbs, truth.easy)
        f0 = next(f for f in fbs if f is not None)
        figs += plot_relation_matrix(np.asarray(f0["AS"]), tasks, tasks,
                                     "AMTFL transfer AS (row: from task, column: to task)",
                                     ctx.out / "amtfl-fig4-AS", "AS", annotate=True)
        out += ["", "AMTFL's transfer matrix AS (entry (i, j): how much task i's output feeds task j's predictor "
                "through the features it reconstructs; Fig. 4h; the paper: significant easy→hard transfer, none "
                "hard→easy). AS is a transfer pattern only where the feedback reconstructs the features: "
                "reconstruction share 1 − ‖Z − Ẑ‖²/‖Z − Z̄‖² on the training rows (≤ 0: A sits in the ℓ1 dead zone and "
                f"AS is optimiser noise; counted as active from {FEEDBACK_ACTIVE}). Selected AMTFL ("
                f"{_selected(sel)}), mean |AS| per block, diagonal left out:", ""]
        rows = [[str(i), f"{b['easy→hard']:.4f}", f"{b['hard→easy']:.4f}", f"{b['easy→easy']:.4f}",
                 f"{b['hard→hard']:.4f}", f"{r:.2f}", f"{sh:.2f}"]
                for i, (b, r, sh) in enumerate(zip(direction["blocks"], direction["ratio"], direction["share"],
                                                   strict=True))]
        out += markdown_table(["split", "easy→hard", "hard→easy", "easy→easy", "hard→hard", "ratio e→h / h→e",
                               "reconstruction share"], rows)
        out += ["", fig4h_claim(direction)]
        trials = [t for s in sel.tuning.get("tuned", []) for t in s.get("trials", [])]
        if trials:
            out += ["", "AMTFL's tuning trials on split 0 (validation RMSE; – = pruned or failed):", ""]
            out += markdown_table(["trial", "α", "γ", "lr", "optimizer", "state", "val RMSE"], [
                [str(t["number"]), _g(t["params"].get("alpha", "–")), _g(t["params"].get("gamma", "–")),
                 _g(t["params"].get("lr", "–")), str(t["params"].get("optimizer", "–")), t["state"].lower(),
                 "–" if t["value"] is None else f"{t['value']:.3f}"] for t in trials])
    out += ["", "![true bases](amtfl-fig4-bases-true.png) ![Go-MTL span](amtfl-fig4-bases-go-mtl.png) "
            "![AMTFL span](amtfl-fig4-bases-amtfl.png)", "",
            "![true W](amtfl-fig4-W-true.png) ![AMTL W](amtfl-fig4-W-amtl.png) ![Go-MTL W](amtfl-fig4-W-go-mtl.png) "
            "![AMTFL W](amtfl-fig4-W-amtfl.png)", "", "![AS](amtfl-fig4-AS.png)"]
    return out, figs, direction


def _scaling(ctx: Context, st: dict[str, Any], res: dict[str, Tuned], n_splits: int
             ) -> tuple[list[str], list[Path], dict[str, Any]]:
    """Fig. 5c: average RMSE and training time as the number of tasks grows (the T=12 tuned configurations),
    over the first few splits of each draw."""
    import mtlkit
    from mtlkit.analysis.plots import save_figure
    from mtlkit.datasets.amtfl_synthetic import amtfl_split, amtfl_synthetic

    Ts = st["scaling_T"]
    ns = min(n_splits, 3)
    rmse = {m: np.full((len(Ts), ns), np.nan) for m in SYN_METHODS}
    secs = {m: np.full((len(Ts), ns), np.nan) for m in SYN_METHODS}
    for a, T in enumerate(Ts):
        data, truth = amtfl_synthetic(n_easy=T // 2, n_hard=T - T // 2, seed=SYN_SEED, n_splits=ns)
        for s in range(ns):
            split = amtfl_split(data, truth, s)
            for m in SYN_METHODS:
                run = mtlkit.train(res[m].method, split, hparams=res[m].hparams[0], seed=SEED + s, device=ctx.device,
                                   progress=False)
                secs[m][a, s] = float(run.train_seconds)
                rmse[m][a, s] = float(np.mean(rmse_scores(run, split, "test")))
        progress.step(f"reproduce-amtfl Fig. 5c: T={T} done", ctx.progress)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for m in SYN_METHODS:
        ax1.errorbar(Ts, rmse[m].mean(1), yerr=rmse[m].std(1), marker="o", label=m, capsize=3)
        ax2.plot(Ts, secs[m].mean(1), marker="o", label=m)
    ax1.set(xlabel="number of tasks T", ylabel="test RMSE (all tasks)", title="RMSE vs T (mean, ± sd over splits)")
    ax2.set(xlabel="number of tasks T", ylabel="training seconds", title="training time vs T", yscale="log")
    ax1.legend(fontsize=8)
    figs = save_figure(fig, ctx.out / "amtfl-fig5c")
    out = ["## Fig. 5c: RMSE and training time as T grows", "",
           f"Mean over the first {ns} split(s) of each draw; each method's configuration tuned on the T=12 data; "
           "seconds on this shared CPU.", ""]
    out += markdown_table(["T", *(f"{m} RMSE" for m in SYN_METHODS), *(f"{m} s" for m in SYN_METHODS)],
                          [[str(T), *(f"{rmse[m][i].mean():.3f}" for m in SYN_METHODS),
                            *(f"{secs[m][i].mean():.2f}" for m in SYN_METHODS)] for i, T in enumerate(Ts)])
    out += ["", "![Fig. 5c](amtfl-fig5c.png)"]
    return out, figs, {"Ts": list(Ts), "rmse": rmse, "secs": secs}


# ---------------------------------------------------------------------------------------------- Table 1
T1_METHODS = ("STL", "Go-MTL", "AMTL", "NN", "MT-NN", "AMTFL")
SCHOOL_GAMMA_CHECK = 100.0  # the diagnosis' check: the selected AMTFL with the γ that switched its feedback on
T1_REGISTRY = {"STL": "stl-linear", "Go-MTL": "go-mtl", "AMTL": "amtl", "NN": "nn", "MT-NN": "mt-nn",
               "AMTFL": "amtfl"}


def _cached(ctx: Context, name: str, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once per ``key`` (a JSON-able description of its inputs), kept beside the store."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, _jsonable(key)], sort_keys=True, default=str).encode())
    path = _cache_dir(ctx) / f"{name}-{digest.hexdigest()[:12]}.json"
    rec = _read_json(path)
    if rec is None:
        rec = _write_json(path, {"format": CACHE_FORMAT, **compute()})
    return rec


def _school(ctx: Context, args: argparse.Namespace, st: dict[str, Any], trials: int
            ) -> tuple[dict[str, Tuned], list[str], dict[str, Any]]:
    """Table 1's School column: the six models on Argyriou's splits, `tune_then_evaluate`; AMTFL's feedback
    reconstruction share per split from its selected configuration retrained on each split."""
    import mtlkit
    from mtlkit.datasets import load
    from mtlkit.experiments.bench import make_splits

    data = load("school", args.data_dir)
    go = {"iters": st["go_iters"], "inner": st["go_inner"]}
    fixed = {"go-mtl": go, "nn": {"hidden": 15}, "mt-nn": {"hidden": 15}, "amtfl": {"hidden": 15}}
    bench, tuning = tune_then_evaluate(ctx, data, [T1_REGISTRY[m] for m in T1_METHODS], args.splits, trials,
                                       "reproduce-amtfl-school", hparams={"epochs": st["school_epochs"], "patience": 10,
                                                                          "batch_size": 64},
                                       seed=SEED, widen=st["widen"], fixed=fixed)
    res = {m: Tuned(m, T1_REGISTRY[m], list(bench.splits), bench.scores[T1_REGISTRY[m]],
                    list(bench.seconds[T1_REGISTRY[m]]), list(bench.hparams[T1_REGISTRY[m]]),
                    tuning.get(T1_REGISTRY[m], {}), []) for m in T1_METHODS}
    splits = make_splits(data, args.splits, SEED)

    def shares() -> dict[str, Any]:
        out = []
        for i, (_, split) in enumerate(splits):
            run = mtlkit.train("amtfl", split, hparams=res["AMTFL"].hparams[i], seed=SEED + i, device=ctx.device,
                               progress=False)
            fb = amtfl_feedback(run, split)
            out.append({"share": None if fb is None else fb["share"],
                        "rmse": float(np.mean(rmse_scores(run, split, "test")))})
        return {"splits": out}

    fb = _cached(ctx, "reproduce-amtfl-school-feedback", [data.checksum(), res["AMTFL"].hparams, args.splits],
                 shares)["splits"]

    def gamma_check() -> dict[str, Any]:
        out = []
        for i, (_, split) in enumerate(splits):
            run = mtlkit.train("amtfl", split, hparams={**res["AMTFL"].hparams[i], "gamma": SCHOOL_GAMMA_CHECK},
                               seed=SEED + i, device=ctx.device, progress=False)
            f = amtfl_feedback(run, split)
            out.append({"share": None if f is None else f["share"],
                        "rmse": float(np.mean(rmse_scores(run, split, "test")))})
        return {"splits": out}

    gc = _cached(ctx, "reproduce-amtfl-school-gamma", [data.checksum(), res["AMTFL"].hparams, args.splits,
                                                        SCHOOL_GAMMA_CHECK], gamma_check)["splits"]
    csv = [f"school,{m},{res[m].splits[i]},mean_rmse,{float(v):.6g}" for m in T1_METHODS
           for i, v in enumerate(res[m].per_split())]
    return res, csv, {"shares": [f["share"] for f in fb], "retrained_rmse": [f["rmse"] for f in fb],
                      "gamma_check": {"share": [f["share"] for f in gc], "rmse": [f["rmse"] for f in gc]},
                      "level": level_check_school(data, splits),
                      "stl_grid": stl_grid_check(splits[0][1], ctx, 4 if args.quick else 13)}


def mnist_scores(images: np.ndarray, labels: np.ndarray, flatten: bool = True) -> ScoreFn:
    """A score function for one-vs-all MNIST runs: the multi-class error % of the argmax over the ten task
    scores on a split's part (its raw rows looked up by the split's row indices; flattened first unless
    ``flatten`` is False)."""
    from mtlkit.datasets.mnist_amtfl import ova_error

    flat = images.reshape(len(images), -1) if flatten else images

    def score(run: Any, split: Split, part: str) -> np.ndarray:
        idx = split.indices[part]
        return np.array([ova_error(run.predict_proba(flat[idx]), labels[idx])])

    return score


def _mnist(ctx: Context, args: argparse.Namespace, st: dict[str, Any], trials: int
           ) -> tuple[dict[str, Tuned], list[str], dict[str, Any]]:
    """Table 1's MNIST column on Kang et al.'s split 1 (split 0 here) and re-partitions of its rows."""
    from mtlkit.datasets.mnist_amtfl import kang_resplit, kang_split

    data, labels, idx = kang_split(args.data_dir, keep_pca_scale=True)
    splits = [("kang-1", data.split_indices(idx[0], idx[2], val=idx[1]))]
    for i in range(1, args.splits):
        tr, va, te = kang_resplit(labels, idx, seed=SEED + i)
        splits.append((f"kang-redraw-{i}", data.split_indices(tr, te, val=va)))
    sgd = {"epochs": st["mnist_epochs"], "patience": 15, "batch_size": 64}
    specs: dict[str, Spec] = {
        "STL": ("stl-linear", {}),
        "Go-MTL": ("go-mtl", {"iters": max(1, st["go_iters"] // 4), "inner": max(1, st["go_inner"] // 2)}),
        "AMTL": ("amtl", sgd),
        "NN": ("nn", {**sgd, "hidden": 200}),
        "MT-NN": ("mt-nn", {**sgd, "hidden": 200}),
        "AMTFL": ("amtfl", {**sgd, "hidden": 200}),
    }
    assert data.x is not None
    res = tuned_table(ctx, "reproduce-amtfl-mnist", splits, specs, trials, mnist_scores(data.x, labels, False),
                      widen=st["widen"])
    csv = [f"mnist,{m},{s.splits[i]},error_pct,{float(r[0]):.6g}" for m, s in res.items()
           for i, r in enumerate(s.scores)]
    return res, csv, {"level": level_check_mnist(data.x.reshape(len(data.x), -1), labels, idx, quick=args.quick)}


def level_check_mnist(x: np.ndarray, labels: np.ndarray, idx: tuple[np.ndarray, np.ndarray, np.ndarray],
                      quick: bool = False) -> dict[str, float]:
    """The level Kang's split 1 allows, by scikit-learn on the same 64 PCA scores ``x`` [n, 64], scaled two ways
    (one pooled mean and std, as our models see them, or per-feature standardised, i.e. whitened): one-vs-rest
    logistic regression (C on the validation rows) and an MLP of 200 ReLU units (α on validation); test
    multi-class error %."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neural_network import MLPClassifier

    tr, va, te = idx
    per_feature = (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-12)
    pooled = (x - x[tr].mean()) / x[tr].std()

    def best(make: Callable[[float], Any], grid: Sequence[float], z: np.ndarray) -> float:
        pick = (math.inf, math.nan)
        for c in grid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m = make(c).fit(z[tr], labels[tr])
            v = 100.0 * float(np.mean(m.predict(z[va]) != labels[va]))
            if v < pick[0]:
                pick = (v, 100.0 * float(np.mean(m.predict(z[te]) != labels[te])))
        return pick[1]

    grid = (0.001, 0.01, 0.1, 1.0, 10.0)
    out = {}
    for scaling, z in (("pooled scale, PCA profile kept (ours)", pooled), ("per-feature standardised", per_feature)):
        out[f"one-vs-rest logistic regression (STL), C ∈ {{1e-3 … 10}}, {scaling}"] = best(
            lambda c: OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000)), grid, z)
        out[f"MLP, 200 ReLU units (NN), α ∈ {{1e-4, 1e-2, 0.1, 1}}, {scaling}"] = best(
            lambda a: MLPClassifier((200,), alpha=a, learning_rate_init=1e-2, max_iter=20 if quick else 500,
                                    random_state=0), (1.0,) if quick else (1e-4, 1e-2, 0.1, 1.0), z)
    return out


def level_check_school(data: Any, splits: Sequence[tuple[str, Split]]) -> dict[str, list[float]]:
    """The level Argyriou's splits allow, by scikit-learn on raw features: a ridge per school (STL) and one ridge
    pooled over all schools, α chosen on each split's validation rows, trained on the training rows alone (as our
    models) and refitted on training + validation rows (all of the paper's training rows); per split, test RMSE
    averaged over the schools."""
    from sklearn.linear_model import Ridge

    def rmse(models: Sequence[Any], part: Any) -> float:
        return float(np.mean([np.sqrt(np.mean((m.predict(x) - y) ** 2))
                              for m, x, y in zip(models, part.xs, part.ys, strict=True)]))

    def fit(a: float, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], pooled: bool) -> list[Any]:
        if pooled:
            return [Ridge(alpha=a).fit(np.concatenate(xs), np.concatenate(ys))] * len(xs)
        return [Ridge(alpha=a).fit(x, y) for x, y in zip(xs, ys, strict=True)]

    out: dict[str, list[float]] = {}
    grid = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    for _, split in splits:
        tr, va, te = split.train, split.part("val"), split.part("test")
        assert tr.xs is not None and va.xs is not None and te.xs is not None
        for name, pooled in (("ridge per school (STL)", False), ("one ridge pooled over all schools", True)):
            a = min(grid, key=lambda a: rmse(fit(a, tr.xs, tr.ys, pooled), va))  # type: ignore[arg-type]
            out.setdefault(f"{name}, trained on the training rows", []).append(rmse(fit(a, tr.xs, tr.ys, pooled), te))
            both_x = [np.concatenate([x, v]) for x, v in zip(tr.xs, va.xs, strict=True)]
            both_y = [np.concatenate([y, v]) for y, v in zip(tr.ys, va.ys, strict=True)]  # type: ignore[arg-type]
            out.setdefault(f"{name}, refitted on training + validation rows", []).append(
                rmse(fit(a, both_x, both_y, pooled), te))
    return out


def stl_grid_check(split: Split, ctx: Context, points: int = 13) -> dict[str, float]:
    """How much the equal budget leaves to a dense search in one dimension: `stl-linear` (closed form) on split 0
    for ``points`` α on a log grid over its declared space, the α with the lowest validation RMSE and its test
    RMSE."""
    import mtlkit

    best = (math.inf, math.nan, math.nan)
    for a in np.logspace(-2, 3, points):
        run = mtlkit.train("stl-linear", split, hparams={"alpha": float(a)}, device=ctx.device, progress=False)
        v = float(run.evaluate("val").mean["rmse"])
        if v < best[0]:
            best = (v, float(a), float(run.evaluate("test").mean["rmse"]))
    return {"val": best[0], "alpha": best[1], "test": best[2], "points": points}


def _ranks(res: Mapping[str, Tuned]) -> dict[str, int]:
    means = {m: float(np.mean(res[m].per_split())) for m in res}
    order = sorted(means, key=means.__getitem__)
    return {m: order.index(m) + 1 for m in means}


def _table1(school: dict[str, Tuned] | None, mnist: dict[str, Tuned] | None) -> list[str]:
    out = ["## Table 1: shallow models on MNIST (error %) and School (RMSE)", "",
           "Ours: mean ± 95% CI over splits. Paper: Table 1's mean ± its 95% CI. Rank: ours among the six "
           "(1 = best). MNIST \"Kang split 1\": our model on the exact split the paper's Table 1 draws from.", ""]
    header = ["model"]
    if mnist:
        header += ["MNIST: paper", "MNIST: ours", "Kang split 1", "rank"]
    if school:
        header += ["School: paper", "School: ours", "rank"]
    rk_m = _ranks(mnist) if mnist else {}
    rk_s = _ranks(school) if school else {}
    rows = []
    for m in T1_METHODS:
        row = [m]
        if mnist:
            p, c = PAPER_TABLE1[m]["mnist"]
            row += [f"{p:.2f} ± {c:.2f}", _cell(mnist[m].per_split(), 2), f"{mnist[m].per_split()[0]:.2f}",
                    str(rk_m[m])]
        if school:
            p, c = PAPER_TABLE1[m]["school"]
            row += [f"{p:.3f} ± {c:.3f}", _cell(school[m].per_split(), 3), str(rk_s[m])]
        rows.append(row)
    out += markdown_table(header, rows)
    for key, res in (("MNIST", mnist), ("School", school)):
        if res:
            out += ["", f"Selected on split 0's validation ({key}): " + "; ".join(
                f"{m}: {_selected(res[m])}" for m in T1_METHODS) + "."]
            out += ["", f"Mean training seconds per split of the selected configuration ({key}): " + ", ".join(
                f"{m} {np.mean(res[m].seconds):.1f} s" for m in T1_METHODS) + "."]
    if mnist:
        out += ["", *_budget_section("Table 1, MNIST", mnist)]
    if school:
        out += ["", *_budget_section("Table 1, School", school)]
    return out


# ---------------------------------------------------------------------------------------------- deep
DEEP_METHODS = ("CNN", "MT-CNN", "Deep-AMTL", "Deep-AMTFL")


def downsample(images: np.ndarray) -> np.ndarray:
    """28×28 images to 14×14 by averaging 2×2 blocks (a 4× cheaper CNN on this CPU)."""
    n, h, w = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))


def _deep_splits(images: np.ndarray, labels: np.ndarray, st: dict[str, Any], i: int, classes: Sequence[int]
                 ) -> tuple[Split, Split, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split i of the imbalanced protocol restricted to ``classes``: (one-vs-all split, softmax split, positives
    per class, the row indices)."""
    from mtlkit.data.multitask import MultiTaskData
    from mtlkit.datasets.mnist_amtfl import one_vs_all_data, per_class_split

    tr, va, te = per_class_split(labels, st["deep_counts"], st["deep_val"], st["deep_test"], seed=100 + i)
    keep = np.isin(labels, classes)
    tr, va, te = tr[keep[tr]], va[keep[va]], te[keep[te]]
    remap = np.full(10, -1)
    remap[list(classes)] = np.arange(len(classes))
    ova = one_vs_all_data(images, labels, classes=classes, name="mnist-imbalanced")
    y_mc = np.where(keep, remap[labels], np.nan)[:, None]  # other digits: no label (never in the split's rows)
    mc = MultiTaskData.from_shared(images, y_mc, kind="multiclass",
                                   n_classes=len(classes), names=["digit"], name="mnist-imbalanced-softmax")
    pos = np.array([int((labels[tr] == c).sum()) for c in classes])
    return (ova.split_indices(tr, te, val=va), mc.split_indices(tr, te, val=va), pos, (tr, va, te))


def _deep_specs(st: dict[str, Any], pos: Sequence[int]) -> tuple[dict[str, Spec], dict[str, Spec]]:
    """The four deep models: the softmax CNN (one 10-class task) and the three one-vs-all ones, the same small
    CNN for all (its fc width tuned), N_t = the positives."""
    sgd = {"epochs": st["deep_epochs"], "patience": 10, "batch_size": 50}
    cnn = {**sgd, "backbone": "cnn", "channels": list(CNN_ARCH["channels"]), "kernels": [5, 5], "padding": 2,
           "pool": 2, "activation": "relu", "hidden": list(CNN_ARCH["hidden"])}  # hidden: the mlp's, unused
    ova = {**sgd, "backbone": "cnn", "channels": list(CNN_ARCH["channels"]), "task_sizes": [int(c) for c in pos]}
    return ({"CNN": ("stl-cnn", cnn)},
            {"MT-CNN": ("deep-amtfl", {**ova, "alpha": 0.0, "gamma": 0.0, "delta": 0.0}),
             "Deep-AMTL": ("deep-amtl", ova), "Deep-AMTFL": ("deep-amtfl", ova)})


def per_class_scores(images: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> ScoreFn:
    """A score function for the deep models: per-class error % [classes] of a split's part (raw rows looked up by
    the split's row indices); the class is the softmax argmax (one multi-class task) or the argmax over the
    one-vs-all task scores."""
    from mtlkit.datasets.mnist_amtfl import ova_predict, per_class_error

    remap = np.full(int(max(labels.max(), max(classes))) + 1, -1)
    remap[list(classes)] = np.arange(len(classes))

    def score(run: Any, split: Split, part: str) -> np.ndarray:
        idx = split.indices[part]
        p = run.predict_proba(images[idx])
        pred = p[0].argmax(-1) if run.info.spec.kind == "multiclass" else ova_predict(p)
        return per_class_error(pred, remap[labels[idx]], len(classes))

    return score


def penultimate(run: Any, X: np.ndarray) -> np.ndarray:
    """A trained deep model's penultimate features Z [n, k] for raw rows ``X``: the input of its last (task)
    layer (`AmtflNet.head`, or the last layer of the trace-norm networks `stl-cnn` uses)."""
    model = run.model
    last = getattr(model, "head", None)
    if last is None:
        last = model.fcs[-1]
    grab: dict[str, torch.Tensor] = {}
    handle = last.register_forward_hook(lambda mod, inp, out: grab.__setitem__("z", inp[0].detach()))
    try:
        run.predict_proba(X)
    finally:
        handle.remove()
    z = grab["z"]
    return (z[0] if z.dim() == 3 else z).float().cpu().numpy()


def _deep(ctx: Context, args: argparse.Namespace, st: dict[str, Any], trials: int
          ) -> tuple[list[str], list[Path], list[str], dict[str, Any]]:
    """Table 2 analogue (per-class error on imbalanced MNIST), Fig. 6 analogue (per-digit improvement over the
    CNN) and Table 3 analogue (transfer to held-out digits)."""
    from mtlkit.analysis.plots import improvement_bars_figure, save_figure
    from mtlkit.datasets.mnist_amtfl import mnist_images

    images, labels = mnist_images(args.data_dir)
    images = downsample(images)
    digits = tuple(range(10))
    ova_splits, mc_splits = [], []
    pos = np.zeros(10)
    for i in range(args.deep_splits):
        ova, mc, pos, _ = _deep_splits(images, labels, st, i, digits)
        ova_splits.append((f"split-{i}", ova))
        mc_splits.append((f"split-{i}", mc))
    specs_mc, specs_ova = _deep_specs(st, pos)
    score = per_class_scores(images, labels, digits)
    res = tuned_table(ctx, "reproduce-amtfl-deep", mc_splits, specs_mc, trials, score, widen=st["widen"])
    res.update(tuned_table(ctx, "reproduce-amtfl-deep", ova_splits, specs_ova, trials, score, widen=st["widen"]))
    per = {m: res[m].matrix() for m in DEEP_METHODS}  # [splits, digits]
    out = ["## Table 2 analogue: deep models on imbalanced MNIST, per-class error %", "",
           f"Training images per digit 0..9: {', '.join(map(str, st['deep_counts']))}. Ours: mean ± 95% CI over "
           f"{args.deep_splits} splits of the per-class error averaged over digits, then each digit's error "
           "(split mean). Paper: Table 2's CIFAR-100 / AWA-C / ImageNet-352 (other data, other networks; shown for "
           "the ordering only).", ""]
    header = ["model", *(f"paper {d}" for d in PAPER_TABLE2_DATA), "ours (mean over digits)",
              *(f"digit {d} (n={c})" for d, c in zip(digits, st["deep_counts"], strict=True)), "train s"]
    rows = []
    for m in DEEP_METHODS:
        P = per[m]
        rows.append([m, *(f"{v:.2f}" for v in PAPER_TABLE2[m]), _cell(np.nanmean(P, 1)),
                     *(f"{v:.1f}" for v in P.mean(0)), f"{np.mean(res[m].seconds):.0f}"])
    out += markdown_table(header, rows)
    out += ["", "Selected on split 0's validation: " + "; ".join(f"{m}: {_selected(res[m])}" for m in DEEP_METHODS)
            + "."]
    out += ["", *_budget_section("Table 2 analogue", {m: res[m] for m in DEEP_METHODS})]
    gain = per["CNN"].mean(0) - per["Deep-AMTFL"].mean(0)
    fig = improvement_bars_figure(gain, [f"digit {d} (n={c})" for d, c in zip(digits, st["deep_counts"], strict=True)],
                                  "Deep-AMTFL vs CNN: per-digit error reduction (Fig. 6 analogue)",
                                  caption="Per digit: the CNN's per-class error − Deep-AMTFL's (percentage points, "
                                  "split means); positive = Deep-AMTFL better. n = the digit's training images.")
    ax = fig.axes[0]
    ax.set_ylabel("error reduction vs the CNN (points)")
    ax.set_xlabel("digit (sorted by reduction)")
    for text in ax.get_legend().get_texts():
        text.set_text(text.get_text().replace("STL", "the CNN").replace(" %", " points").replace("tasks", "digits"))
    figs = save_figure(fig, ctx.out / "amtfl-fig6")
    worse = [f"{d} (n={c})" for d, c, g in zip(digits, st["deep_counts"], gain, strict=True) if g < 0]
    out += ["", "## Fig. 6 analogue: per-class improvement of Deep-AMTFL over the CNN", "",
            f"Deep-AMTFL has a lower split-mean error than the CNN on {int((gain > 0).sum())} of 10 digits, a higher "
            f"one on {int((gain < 0).sum())}" + (f" (digits {', '.join(worse)})" if worse else "")
            + f" (paper, AWA: better on {PAPER_FIG6[0]} of {PAPER_FIG6[1]} classes).",
            "", "![Fig. 6 analogue](amtfl-fig6.png)"]
    csv = [f"deep,{m},{res[m].splits[i]},per_class_error_pct,{float(np.nanmean(p)):.6g}" for m in DEEP_METHODS
           for i, p in enumerate(per[m])]
    t_out, t_csv, errs = _transfer(ctx, args, st, images, labels, res)
    return out + [""] + t_out, figs, csv + t_csv, {"deep": per, "transfer": errs, "tuned": res}


def _transfer(ctx: Context, args: argparse.Namespace, st: dict[str, Any], images: np.ndarray, labels: np.ndarray,
              res: dict[str, Tuned]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Table 3 analogue: source networks on digits 0-6 (each with its Table-2 configuration), a softmax on their
    frozen Z for digits 7-9."""
    import mtlkit

    def compute() -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        errs: dict[str, list[float]] = {m: [] for m in DEEP_METHODS}
        for i in range(args.deep_splits):
            ova, mc, pos, _ = _deep_splits(images, labels, st, i, SOURCE_DIGITS)
            rng = np.random.default_rng(200 + i)
            t_tr = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == d), st["transfer_train"],
                                                      replace=False) for d in TARGET_DIGITS]))
            t_te = np.setdiff1d(np.flatnonzero(np.isin(labels, TARGET_DIGITS)), t_tr)
            for m in DEEP_METHODS:
                hp = dict(res[m].hparams[0])
                if "task_sizes" in hp:
                    hp["task_sizes"] = [int(c) for c in pos]
                run = mtlkit.train(res[m].method, mc if m == "CNN" else ova, hparams=hp, seed=SEED + i,
                                   device=ctx.device, progress=False)
                z_tr, z_te = penultimate(run, images[t_tr]), penultimate(run, images[t_te])
                sc = StandardScaler().fit(z_tr)
                clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(z_tr), labels[t_tr])
                errs[m].append(100.0 * float(np.mean(clf.predict(sc.transform(z_te)) != labels[t_te])))
            progress.step(f"reproduce-amtfl transfer: split {i} done", ctx.progress)
        return {"errs": errs}

    key = [{m: res[m].hparams[0] for m in DEEP_METHODS}, args.deep_splits, st["deep_counts"], st["deep_val"],
           st["deep_test"], st["transfer_train"], SOURCE_DIGITS, TARGET_DIGITS, images.shape, float(images.sum())]
    errs = {m: np.asarray(v, dtype=np.float64) for m, v in
            _cached(ctx, "reproduce-amtfl-transfer", key, compute)["errs"].items()}
    out = ["## Table 3 analogue: transfer to held-out digits", "",
           f"Source networks trained on digits {SOURCE_DIGITS[0]}-{SOURCE_DIGITS[-1]} (imbalanced counts, each "
           "with its Table-2 configuration); a softmax on their frozen penultimate features, fitted on "
           f"{st['transfer_train']} images of each target digit {', '.join(map(str, TARGET_DIGITS))}, tested on all "
           f"their other staged images. Error %, mean ± 95% CI over {args.deep_splits} splits. Paper: AWA 40 → 10 "
           "classes.", ""]
    rows = [[m, fmt(PAPER_TABLE3.get(m)), _cell(errs[m])] for m in DEEP_METHODS]
    out += markdown_table(["source network", "paper (AWA target error %)", "ours (target error %)"], rows)
    csv = [f"transfer,{m},split-{i},target_error_pct,{v:.6g}" for m, vs in errs.items() for i, v in enumerate(vs)]
    return out, csv, errs


# ---------------------------------------------------------------------------------------------- claims
def _claim(where: str, claim: str, paper_value: str, values: Sequence[float] | np.ndarray, direction: int,
           unit: str, paper_effect: float | None = None, note: str = "") -> Claim:
    """One measured claim: the per-split effects' mean ± 95% CI, judged by `claims.verdict`."""
    m, c = _mci(np.asarray(values, dtype=np.float64))
    v, why = verdict(m, c, direction, paper_effect)
    return Claim(PAPER, where, claim, paper_value, m, c, unit, v, why + (f"; {note}" if note else ""), "amtfl.md")


def _untestable(where: str, claim: str, paper_value: str, why: str) -> Claim:
    return Claim(PAPER, where, claim, paper_value, None, None, "", "not testable here", why, "amtfl.md")


def _reduction(stl: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per split and task 100·(RMSE_STL − RMSE_m)/RMSE_STL ([splits, T])."""
    return 100.0 * (stl - m) / stl


def claim_rows(syn: Mapping[str, Any] | None = None, mnist: Mapping[str, Sequence[float]] | None = None,
               school: Mapping[str, Sequence[float]] | None = None, deep: Mapping[str, np.ndarray] | None = None,
               transfer: Mapping[str, Sequence[float]] | None = None) -> list[Claim]:
    """Every claim of the paper this reproduction tests, with the paper's number beside ours (mean ± 95% CI over
    splits of a paired difference) and the verdict of `mtlkit.experiments.claims.verdict`.

    ``syn``: ``grp`` (method → {"easy", "hard", "all"}: per-split mean RMSE), ``tasks`` (method → [splits, T] RMSE),
    ``fig4`` (method → {"rel_easy", "rel_hard", "captured"}: per split), ``fig4h`` (`transfer_direction` or None),
    ``scaling`` ({"Ts", "rmse": method → [len(Ts), splits], "secs": same}). ``mnist`` / ``school``: Table 1
    method → per-split score. ``deep``: method → [splits, classes] per-class error %. ``transfer``: method →
    per-split target error %. A part left None is not claimed."""
    rows: list[Claim] = []
    if syn is not None:
        g, paper5a = syn["grp"], "Fig. 5a bars (no numbers)"
        unit = "RMSE, paired over splits"
        rows += [
            _claim("Fig. 5a, synthetic", "AMTFL has a lower RMSE than STL on the easy tasks", paper5a,
                   g["AMTFL"]["easy"] - g["STL"]["easy"], -1, unit),
            _claim("Fig. 5a, synthetic", "AMTFL has a lower RMSE than STL on the hard tasks", paper5a,
                   g["AMTFL"]["hard"] - g["STL"]["hard"], -1, unit),
            _claim("Fig. 5a, synthetic", "Go-MTL has a higher RMSE than STL on the hard tasks (negative transfer)",
                   paper5a, g["Go-MTL"]["hard"] - g["STL"]["hard"], 1, unit),
            _claim("Fig. 5a, synthetic", "AMTFL has a lower RMSE than Go-MTL (all tasks)", paper5a,
                   g["AMTFL"]["all"] - g["Go-MTL"]["all"], -1, unit),
            _claim("Fig. 5a, synthetic", "AMTFL has a lower RMSE than AMTL by a significant margin (all tasks)",
                   paper5a, g["AMTFL"]["all"] - g["AMTL"]["all"], -1, unit),
        ]
        t = syn["tasks"]
        red = {m: _reduction(t["STL"], t[m]) for m in ("Go-MTL", "AMTL", "AMTFL")}
        rows += [
            _claim("Fig. 5b, synthetic", "AMTFL makes no task worse than STL (prevents negative transfer)",
                   "no negative AMTFL bar", red["AMTFL"].min(1), 1,
                   "% RMSE reduction over STL of the worst task, per split"),
            _claim("Fig. 5b, synthetic", "Go-MTL makes some tasks worse than STL (negative transfer)",
                   "negative Go-MTL bars", red["Go-MTL"].min(1), -1,
                   "% RMSE reduction over STL of the worst task, per split"),
            _claim("Fig. 5b, synthetic", "AMTFL improves more over STL than AMTL (mean per-task reduction)",
                   "AMTFL bars above AMTL's", red["AMTFL"].mean(1) - red["AMTL"].mean(1), 1,
                   "points of mean % reduction, paired over splits"),
        ]
        f = syn["fig4"]
        rows.append(_claim("Fig. 4d/f, synthetic", "AMTFL's learned bases L resemble the true bases more closely "
                           "than Go-MTL's", "heatmaps (qualitative)", f["AMTFL"]["captured"] - f["Go-MTL"]["captured"],
                           1, "share of ‖l_k‖² inside the learned span (mean over the 6 bases), paired over splits"))
        for base in ("Go-MTL", "AMTL"):
            for grp in ("easy", "hard"):
                rows.append(_claim("Fig. 4c/e/g, synthetic", f"AMTFL's predictors W are closer to the true ones than "
                                   f"{base}'s on the {grp} tasks", "heatmaps (qualitative)",
                                   f["AMTFL"][f"rel_{grp}"] - f[base][f"rel_{grp}"], -1,
                                   "relative error ‖ŵ−w‖/‖w‖ (group mean), paired over splits"))
        d = syn.get("fig4h")
        claim4h = "AMTFL's transfer AS is asymmetric: significant easy→hard transfer, none hard→easy"
        if d is None:
            rows.append(_untestable("Fig. 4h, synthetic", claim4h, "none hard→easy (heatmap)", "AMTFL has no feedback"))
        else:
            m, c, n = fig4h_effect(d)
            if n == 0:
                g = (syn.get("amtfl_hparams") or {}).get("gamma")
                cause = ("the equal-budget tuning selected γ = 0, no reconstruction at all" if g == 0 else
                         "A in the ℓ1 dead zone")
                rows.append(_untestable("Fig. 4h, synthetic", claim4h, "none hard→easy (heatmap)",
                                        "the selected AMTFL's feedback is off in every split (reconstruction share "
                                        f"< {FEEDBACK_ACTIVE}: {cause}), so AS is optimiser noise; the Diagnosis' "
                                        "α sweep with the feedback on shows what it gives"))
            else:
                v, why = verdict(m, c, 1, 1.0)
                rows.append(Claim(PAPER, "Fig. 4h, synthetic", claim4h, "none hard→easy (= 1)", m, c,
                                  f"1 − (hard→easy)/(easy→hard) mean |AS|, over the {n} split(s) whose feedback is "
                                  f"active (reconstruction share ≥ {FEEDBACK_ACTIVE}) of {len(d['active'])}", v, why,
                                  "amtfl.md"))
        sc = syn.get("scaling")
        if sc is not None and len(sc["Ts"]) > 1:
            Ts, r, s = sc["Ts"], sc["rmse"], sc["secs"]
            rows += [
                _claim("Fig. 5c, synthetic", "AMTFL's error goes down as the number of tasks grows",
                       "falls with T (plot)", r["AMTFL"][-1] - r["AMTFL"][0], -1,
                       f"RMSE at T={Ts[-1]} − at T={Ts[0]}, per split"),
                _claim("Fig. 5c, synthetic", "AMTFL is more accurate than AMTL with many tasks",
                       "below AMTL (plot)", r["AMTFL"][-1] - r["AMTL"][-1], -1,
                       f"RMSE at T={Ts[-1]}, paired over splits"),
                _claim("Fig. 5c, synthetic", "AMTFL trains faster than AMTL with many tasks", "faster (plot)",
                       s["AMTFL"][-1] - s["AMTL"][-1], -1, f"training seconds at T={Ts[-1]}, paired over splits",
                       note="wall-clock on a shared CPU; both trained by the same SGD loop, not the authors' "
                            "solvers, and T is far below the paper's largest"),
            ]
    for key, res, unit, name in (("mnist", mnist, "error % points, paired over splits", "MNIST"),
                                 ("school", school, "RMSE, paired over splits", "School")):
        if res is None:
            continue
        pa = PAPER_TABLE1["AMTFL"][key][0]
        for base in ("STL", "Go-MTL", "AMTL", "NN", "MT-NN"):
            pb = PAPER_TABLE1[base][key][0]
            if pa >= pb:  # the paper itself does not have AMTFL below this baseline here
                continue
            rows.append(_claim(f"Table 1, {name}", f"AMTFL has a lower {'error' if key == 'mnist' else 'RMSE'} "
                               f"than {base}", f"{pa:g} vs {pb:g} ({pa - pb:+.2f})",
                               np.asarray(res["AMTFL"], dtype=np.float64) - np.asarray(res[base], dtype=np.float64),
                               -1, unit, paper_effect=pa - pb))
    rows += [_untestable("Table 1, AWA-A", "AMTFL has the lowest error on AWA-A (85 attributes)",
                         "25.2 vs MT-NN 26.2", "AwA (DeCAF features) is not obtainable here"),
             _untestable("Table 1, Room", "AMTFL has the lowest error on Room (20 indoor scenes)",
                         "40.1 vs AMTL 40.8", "the Room subset of ImageNet is not public")]
    if deep is not None:
        mean = {m: np.nanmean(np.asarray(v, dtype=np.float64), axis=1) for m, v in deep.items()}
        where = "Table 2 analogue (imbalanced MNIST)"
        unit = "per-class error % points, paired over splits"
        for base in ("CNN", "MT-CNN", "Deep-AMTL"):
            pv = ", ".join(f"{d} {PAPER_TABLE2['Deep-AMTFL'][i] - PAPER_TABLE2[base][i]:+.2f}"
                           for i, d in enumerate(PAPER_TABLE2_DATA))
            rows.append(_claim(where, f"Deep-AMTFL has a lower per-class error than {base}", pv,
                               mean["Deep-AMTFL"] - mean[base], -1, unit,
                               note="other data and networks than the paper's, so its size is not compared"))
        pv = ", ".join(f"{d} {PAPER_TABLE2['Deep-AMTL'][i] - PAPER_TABLE2['MT-CNN'][i]:+.2f}"
                       for i, d in enumerate(PAPER_TABLE2_DATA))
        rows.append(_claim(where, "Deep-AMTL has a lower per-class error than MT-CNN", pv,
                           mean["Deep-AMTL"] - mean["MT-CNN"], -1, unit,
                           note="other data and networks than the paper's, so its size is not compared"))
        cnn, amtfl = np.asarray(deep["CNN"], dtype=np.float64), np.asarray(deep["Deep-AMTFL"], dtype=np.float64)
        better = (amtfl < cnn).mean(1) - 0.5
        rows.append(_claim("Fig. 6 analogue (imbalanced MNIST)", "Deep-AMTFL improves over the base CNN on most "
                           "classes", f"{PAPER_FIG6[0]} of {PAPER_FIG6[1]} AWA classes "
                           f"({PAPER_FIG6[0] / PAPER_FIG6[1] - 0.5:+.2f} above half)", better, 1,
                           "share of digits with a lower error than the CNN − 0.5, per split",
                           note="10 digits, not 50 classes; size not compared"))
        rows += [_untestable("Table 2", "Deep-AMTFL beats CNN, MT-CNN and Deep-AMTL on CIFAR-100 (WRN-28-10), AWA-C "
                             "and ImageNet-352 (ResNet-50)", "19.20 / 9.96 / 64.49",
                             "those data sets and networks are not available here; tested on the imbalanced-MNIST "
                             "analogue above"),
                 _untestable("Fig. 6", "the classes Deep-AMTFL degrades (cow, hamster) are those with a large "
                             "training loss", "AWA per-class plot", "AWA is not obtainable here")]
    if transfer is not None:
        where, unit = "Table 3 analogue (digits 0-6 → 7-9)", "target error % points, paired over splits"
        for base in ("CNN", "Deep-AMTL"):
            pe = PAPER_TABLE3["Deep-AMTFL"] - PAPER_TABLE3[base]
            rows.append(_claim(where, f"Deep-AMTFL's features transfer better than {base}'s",
                               f"{PAPER_TABLE3['Deep-AMTFL']:.2f} vs {PAPER_TABLE3[base]:.2f} ({pe:+.2f}, AWA)",
                               np.asarray(transfer["Deep-AMTFL"], dtype=np.float64)
                               - np.asarray(transfer[base], dtype=np.float64), -1, unit,
                               note="other data than the paper's AWA, so its size is not compared"))
    return rows


def _claims_md(rows: Sequence[Claim]) -> list[str]:
    out = ["## Claims checked", "",
           "Each claim of the paper this reproduction tests: the paper's number, ours (mean ± 95% CI over splits of "
           "the stated effect) and the verdict by the project's one rule (`mtlkit.experiments.claims.verdict`: "
           "**holds** = CI on the claimed side of 0 and reaching the paper's size where it gives one; **holds in "
           "direction only** = mean on the claimed side, CI includes 0 or falls short of the paper's size; **does "
           "not hold** = mean at 0 or on the other side). Written to `claims/amtfl.csv`.", ""]
    body = [[c.where, c.claim, c.paper_value,
             "–" if c.ours is None else f"{c.ours:+.3g} ± " + ("–" if c.ci95 is None or not math.isfinite(c.ci95)
                                                              else f"{c.ci95:.2g}"),
             c.unit, f"**{c.verdict}**", c.why] for c in rows]
    return out + markdown_table(["where", "claim", "paper", "ours", "unit", "verdict", "why"],
                                [[x.replace("|", "\\|") for x in r] for r in body])


# ---------------------------------------------------------------------------------------------- diagnosis
def _find(rows: Sequence[Claim], where: str, words: str) -> Claim | None:
    return next((c for c in rows if c.where == where and words in c.claim), None)


def _v(c: Claim | None) -> str:
    if c is None or c.ours is None:
        return "–"
    ci = "–" if c.ci95 is None or not math.isfinite(c.ci95) else f"{c.ci95:.2g}"
    return f"{c.ours:+.3g} ± {ci} ({c.verdict})"


def _diagnosis(syn: Mapping[str, Any] | None, school: Mapping[str, Tuned] | None, school_x: Mapping[str, Any] | None,
               mnist: Mapping[str, Tuned] | None, mnist_x: Mapping[str, Any] | None, deep: Mapping[str, Any] | None,
               rows: Sequence[Claim]) -> list[str]:
    """The Diagnosis section: the γ scale, Fig. 4h under the tuned selection and its α sensitivity, the tables'
    level against scikit-learn on the same splits, and every claim that does not hold with what the checks say."""
    out = ["## Diagnosis", ""]
    # 1. γ scale
    g_lines = []
    if syn is not None:
        d = syn.get("fig4h")
        sh = ", ".join(f"{v:.2f}" for v in d["share"]) if d is not None else "–"
        g_lines.append(f"synthetic: selected {_selected(syn['tuned']['AMTFL'], ('alpha', 'gamma'))}, reconstruction "
                       f"share per split {sh}")
    if school is not None and school_x is not None:
        t = school["AMTFL"]
        sh = ", ".join("–" if v is None else f"{v:.2f}" for v in school_x["shares"])
        rk = _ranks(school)
        gc = school_x["gamma_check"]
        gsh = ", ".join("–" if v is None else f"{v:.2f}" for v in gc["share"])
        dm, dc = _paired(gc["rmse"], school["MT-NN"].per_split())
        state = ("active" if min(v or 0 for v in school_x["shares"]) >= FEEDBACK_ACTIVE else
                 "the feedback is off: this AMTFL is MT-NN with other settings")
        g_lines.append(f"School: selected {_selected(t, ('alpha', 'gamma'))}, reconstruction share per split {sh} "
                       f"({state}); "
                       f"AMTFL {_cell(t.per_split(), 3)} RMSE, rank {rk['AMTFL']} of 6 (Go-MTL "
                       f"{_cell(school['Go-MTL'].per_split(), 3)}, rank {rk['Go-MTL']}; MT-NN "
                       f"{_cell(school['MT-NN'].per_split(), 3)}, rank {rk['MT-NN']}; paper AMTFL 9.89, Go-MTL 9.87). "
                       f"Check: the selected AMTFL retrained on each split with γ = {SCHOOL_GAMMA_CHECK:g} (the "
                       f"value that switched the feedback on under the old grid) has shares {gsh} and RMSE "
                       f"{_cell(gc['rmse'], 3)}, {dm:+.3f} ± {fmt(dc, 3)} against the tuned MT-NN (paired) — a "
                       "configuration outside what the equal budget found, so not a result of the comparison")
    if mnist is not None:
        g_lines.append(f"MNIST: selected {_selected(mnist['AMTFL'], ('alpha', 'gamma'))}")
    out += ["**1. AMTFL's γ is on another scale than the paper's.** Ruled out: our objective was checked against "
            "Eq. 6/7 and the authors' code; nothing is transposed: row t of A is task t's outgoing transfer, scaled "
            "by (L_t + δ/√N_t), and (AS)ᵢⱼ is transfer from task i to task j; δ, μ, λ match; the deep version's "
            "transfer is feature-level as in the authors' code. Cause: Eq. 6 sums the reconstruction over the N raw "
            "rows, we average it over rows on standardised targets, so γ_ours ≈ N·γ_paper/y_std² (≈ 57× on School, "
            "≈ 7× on the synthetic data). The old grid γ ∈ {0.01, 0.1} left A in the ℓ1 dead zone (reconstruction "
            "share ≈ 0: AMTFL = MT-NN); the declared space is now log[1e-3, 1e3] ∪ {0} and the tuner searches it "
            "like every other method's space. Under the equal-budget tuning: " + "; ".join(g_lines) + ".", ""]
    # 2. Fig. 4h
    if syn is not None and syn.get("fig4h") is not None:
        d = syn["fig4h"]
        m, c, n = fig4h_effect(d)
        act = np.asarray(d["active"], dtype=bool)
        ratios = ", ".join(f"{r:.2f}" for r in np.asarray(d["ratio"])[act]) or "–"
        he_share = ", ".join(f"{100 * b['hard→easy'] / max(b['easy→hard'], 1e-12):.0f}%"
                             for b, a in zip(d["blocks"], act, strict=True) if a) or "–"
        text = ("**2. Fig. 4h (direction of transfer).** Judged as `fig4h_claim` does: only splits whose feedback "
                f"reconstructs the features (share ≥ {FEEDBACK_ACTIVE}) count; a dead feedback's AS is optimiser "
                "noise (the old selection α=1, γ=0.01 had shares 0.00-0.05 and a meaningless ratio 0.40). Under the "
                f"tuned selection {int(act.sum())} of {len(act)} splits are active")
        if n:
            text += (f"; their easy→hard / hard→easy ratios are {ratios}, hard→easy is {he_share} of easy→hard "
                     f"(effect 1 − h→e/e→h = {m:+.2f} ± {fmt(c)}; the paper's picture is +1). "
                     + ("Where the feedback works the direction matches the paper, but 'no hard→easy transfer' is "
                        "not reproduced: hard→easy stays substantial." if m > 0 else
                        "Where the feedback works, the transfer is not easy→hard-dominated here."))
        else:
            text += ": the tuned AMTFL does not use its feedback on this data, so Fig. 4h cannot be read off it."
        sens = syn.get("sensitivity")
        if sens is not None:
            sel_a = sens["selected"]["alpha"]
            parts = []
            for a in SENS_ALPHAS:
                em, ec, en = sens[a]["effect"]
                parts.append(f"α={a:g}: " + ("feedback off" if en == 0 else f"{em:+.2f} ± {fmt(ec)} on {en} active "
                                                                          f"split(s)")
                             + f", RMSE {_cell(sens[a]['rmse'], 2)}")
            sel_g = sens["selected"]["gamma"]
            if sel_g == 0:
                text += (" The tuning selected γ = 0: the reconstruction is switched off, A feels only its ℓ1 and "
                         "shrinks to optimiser noise; on this data the validation RMSE (the tuner's objective) is "
                         "no better with the feedback than without it.")
            elif sel_a is not None and float(sel_a) < 0.05:
                text += (f" The selected α = {_g(sel_a)} leaves the loss-weighted ℓ1 — the term meant to silence "
                         "the hard (high-loss) tasks' outgoing transfer — nearly inactive, so no asymmetry is "
                         "expected from it; validation RMSE, the tuner's objective, does not reward asymmetry.")
            text += (f" The deliberate α sweep at γ = {SENS_GAMMA:g} (table in Fig. 4: the feedback forced on) "
                     "gives for 1 − h→e/e→h: " + "; ".join(parts) + ".")
        out += [text, ""]
    # 3. levels
    lvl = []
    if syn is not None:
        g = syn["grp"]
        lvl.append(f"**Synthetic**: the noise floors are σ = 1 (easy) and σ = 2 (hard); the hard tasks have 25 "
                   f"training rows for d = 30 features, so a per-task ridge (STL) stays far above its floor "
                   f"(hard-task RMSE {_cell(g['STL']['hard'], 2)}), and any model that shares the six bases gains "
                   f"(Go-MTL {_cell(g['Go-MTL']['hard'], 2)}, AMTFL {_cell(g['AMTFL']['hard'], 2)}). The paper's "
                   "'Go-MTL above STL on the hard tasks' needs an STL that the hard tasks' own rows cannot give in "
                   "our reading of the generator (label noise ε ~ N(0, σ); the paper's words also allow noise on "
                   "w_t). Its baselines are networks with ℓ1 on L; ours are the library's solvers (Go-MTL's closed "
                   "form alternations are a strong baseline here).")
    if mnist is not None and mnist_x is not None:
        ours = {m: mnist[m].per_split()[0] for m in T1_METHODS}
        lv = mnist_x["level"]
        mlp = [v for k, v in lv.items() if k.startswith("MLP")]
        text = ("**MNIST, Kang split 1** (test error %): scikit-learn on the same 64 PCA scores: "
                + "; ".join(f"{k} {v:.1f}" for k, v in lv.items())
                + f". Ours on that split: STL {ours['STL']:.1f}, NN {ours['NN']:.1f}, MT-NN {ours['MT-NN']:.1f}, "
                f"AMTFL {ours['AMTFL']:.1f} (its tuning kept {_trial_of(mnist['AMTFL'])}); paper STL "
                f"{PAPER_TABLE1['STL']['mnist'][0]}, NN "
                f"{PAPER_TABLE1['NN']['mnist'][0]}, MT-NN {PAPER_TABLE1['MT-NN']['mnist'][0]}, AMTFL "
                f"{PAPER_TABLE1['AMTFL']['mnist'][0]} (their 5 splits).")
        if len(mlp) == 2:
            text += (f" Whitening the PCA scores (per-feature standardisation, what the library does to vector "
                     f"features) changes the scikit-learn MLP's error by {mlp[1] - mlp[0]:+.1f} points, which is why "
                     "this table feeds the scores with one pooled scale (see the protocol). The scikit-learn MLP "
                     f"with a small grid reaches {mlp[0]:.1f} on this split, our NN {ours['NN']:.1f}: "
                     + ("our networks are at the level this split allows a plain MLP." if ours["NN"] <= mlp[0] + 1.0
                        else "our NN stays above it (under-tuning with the equal budget)."))
        nn_l, mt_l = mnist["NN"].hparams[0].get("lam"), mnist["MT-NN"].hparams[0].get("lam")
        text += (" On these shared-input one-vs-all tasks every task has every row, so NN's pooled loss equals MT-NN's "
                 f"per-task means: the two differ only in their penalties (selected: NN λ = {_g(nn_l)}, MT-NN λ = "
                 f"{_g(mt_l)}, μ = {_g(mnist['MT-NN'].hparams[0].get('mu'))}), so the NN − MT-NN gap here is the "
                 "tuning's draw, not a difference of the models.")
        lvl.append(text)
    if school is not None and school_x is not None:
        lv = school_x["level"]
        ours = {m: float(np.mean(school[m].per_split())) for m in T1_METHODS}
        gap = {m: ours[m] - PAPER_TABLE1[m]["school"][0] for m in T1_METHODS}
        first = lv[next(iter(lv))]
        lvl.append("**School, Argyriou splits** (test RMSE, mean over our splits): scikit-learn ridge on raw features, "
                   "α chosen on the same validation rows: " + "; ".join(f"{k} {np.mean(v):.2f}" for k, v in lv.items())
                   + f". Ours: STL {ours['STL']:.2f}, Go-MTL {ours['Go-MTL']:.2f}, NN {ours['NN']:.2f}, MT-NN "
                   f"{ours['MT-NN']:.2f}, AMTFL {ours['AMTFL']:.2f}; ours − paper per model: "
                   + ", ".join(f"{m} {gap[m]:+.2f}" for m in T1_METHODS)
                   + f". scikit-learn's per-school ridge ({np.mean(first):.2f}) sits "
                   f"{np.mean(first) - PAPER_TABLE1['STL']['school'][0]:+.2f} from the paper's STL, ours "
                   f"{gap['STL']:+.2f}: the part of our level shift that a plain ridge shares is the data / split "
                   "handling (the paper does not say how it validates; we carve 20% of each school's training rows "
                   "out, the refitted rows show what that costs), the rest is our own solvers' and networks' "
                   "tuning and input scaling (our models standardise the features, scikit-learn's ridge here sees "
                   "them raw).")
        g = school_x.get("stl_grid")
        if g:
            sel = school["STL"]
            lvl.append(f"**School, the budget's reach**: our STL's {sel.tuning.get('budget')}-trial TPE chose "
                       f"{_selected(sel)} (validation "
                       f"RMSE {sel.tuning.get('best_value', math.nan):.3f} on split 0, test "
                       f"{sel.per_split()[0]:.3f}); a dense {g['points']}-point α grid over the same space picks α = "
                       f"{g['alpha']:.3g} (validation {g['val']:.3f}, test {g['test']:.3f}). So even in one "
                       "dimension the equal budget of this run leaves about "
                       f"{sel.per_split()[0] - g['test']:+.2f} RMSE to a dense search; every method has the same "
                       "budget, so the comparison stays fair, but the level is not the best each model can do.")
    if lvl:
        out += ["**3. Level checks** (is a gap to the paper's numbers the data, our training, or the measure?):", "",
                *(f"- {x}" for x in lvl), ""]
    # 4. claims that do not hold
    failed = [c for c in rows if c.verdict == "does not hold"]
    if failed:
        out += ["**4. Claims that do not hold here** (the checks above that bear on each):", ""]
        for c in failed:
            why = _failure_note(c, syn, deep)
            out.append(f"- {c.where}: {c.claim} — ours {_v(c)}." + (f" {why}" if why else ""))
        out.append("")
    if deep is not None:
        out += ["**5. Deep tables.** Our analogue is small (a 2-conv CNN on 14×14 digits, 60 epochs from scratch, "
                f"{len(next(iter(deep['deep'].values())))} splits), while the paper fine-tunes its MTL models from "
                "MT-CNN on large networks; differences of a point or less between the four deep models are within "
                "the split-to-split spread here, so this analogue can show a direction at best.", ""]
    return out


def _trial_of(t: Tuned) -> str:
    """Which trial the tuning selected (0 = the method's defaults)."""
    best = next((s.get("best") for s in t.tuning.get("tuned", [])), None)
    return "its defaults (trial 0)" if best == 0 else f"trial {best}"


def _failure_note(c: Claim, syn: Mapping[str, Any] | None, deep: Mapping[str, Any] | None) -> str:
    """What the diagnosis found for one claim that does not hold, by the part it belongs to."""
    hp = (syn or {}).get("amtfl_hparams") or {}
    off = ("The selected AMTFL has γ = 0 (no reconstruction): it is a rank-6 linear factorisation trained by SGD, "
           "so it can at most match Go-MTL's alternating solver; see 2." if hp.get("gamma") == 0 else
           "See 2 and 3 (synthetic).")
    if c.where.startswith("Fig. 5a") and "Go-MTL has a higher" in c.claim:
        return "See 3 (synthetic): on this generator the hard tasks' STL is far above its noise floor."
    if c.where.startswith("Fig. 5b") and "no task worse" in c.claim and syn is not None:
        worse = syn.get("worse", {}).get("AMTFL", [])
        names = "; ".join(f"{n} ({', '.join(b)}{', only the shared bases' if only else ''})" for n, b, only in worse)
        every = all(only for _, _, only in worse) and worse
        return (f"The task(s) AMTFL makes worse (split means): {names or '–'}."
                + (" They use only the bases l3, l4 that the noisy hard tasks share — the negative transfer the "
                   "paper describes — and Go-MTL and AMTL hurt them too. " if every else " ") + off)
    if c.where.startswith(("Fig. 5a", "Fig. 5b", "Fig. 4c", "Fig. 4d")):
        return off
    if c.where.startswith("Fig. 4h"):
        return "See 2."
    if c.where.startswith("Fig. 5c"):
        return "Wall-clock on a shared CPU at T ≤ 48; both models go through the same SGD loop."
    if c.where == "Table 1, School":
        return ("See 1 (whether the equal budget switched AMTFL's feedback on, and what the γ = 100 check gives) "
                "and 3 (School level).")
    if c.where.startswith("Table 1, MNIST"):
        return "See 3 (MNIST)."
    if c.where.startswith(("Table 2", "Fig. 6", "Table 3")) and deep is not None:
        t = deep["tuned"]
        notes = [f"{m}: {_trial_of(t[m])}" for m in DEEP_METHODS]
        lam_b = t["Deep-AMTL"].hparams[0].get("lam_b")
        return ("See 5. Selected configurations: " + ", ".join(notes) + "."
                + (" The tuner switched Deep-AMTL's task-to-task transfer off (λ_B = 0): it is MT-CNN with AMTL's "
                   "loss weights." if lam_b == 0 and "Deep-AMTL" in c.claim else ""))
    return ""


# ---------------------------------------------------------------------------------------------- entry point
def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the chosen parts and write ``amtfl.md``, ``amtfl.csv``, ``claims/amtfl.csv`` and the figures into
    ``ctx.out``."""
    from mtlkit.errors import MtlkitError

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad or not parts:
        raise MtlkitError(f"unknown part(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(PARTS)}")
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
