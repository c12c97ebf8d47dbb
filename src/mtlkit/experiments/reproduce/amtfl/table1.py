"""Table 1: the six shallow models on School (Argyriou's splits, `tune_then_evaluate`) and MNIST (Kang et al.'s split),
with the level checks against scikit-learn."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mtlkit.data.splits import Split
from mtlkit.experiments.reproduce.amtfl.settings import PAPER_TABLE1, SEED, ScoreFn, Spec
from mtlkit.experiments.reproduce.amtfl.synthetic import amtfl_feedback
from mtlkit.experiments.reproduce.amtfl.tuned import (
    Tuned,
    _budget_section,
    _cached,
    _cell,
    _selected,
    rmse_scores,
    tuned_table,
)
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.protocol import (
    tune_then_evaluate,
)
from mtlkit.experiments.tables import markdown_table, mean_ci_text

T1_METHODS = ("STL", "Go-MTL", "AMTL", "NN", "MT-NN", "AMTFL")
SCHOOL_GAMMA_CHECK = 100.0  # the diagnosis' check: the selected AMTFL with the γ that switched its feedback on
T1_REGISTRY = {"STL": "stl-linear", "Go-MTL": "go-mtl", "AMTL": "amtl", "NN": "nn", "MT-NN": "mt-nn",
               "AMTFL": "amtfl"}


def _school(ctx: Context, args: argparse.Namespace, st: dict[str, Any], trials: int
            ) -> tuple[dict[str, Tuned], list[str], dict[str, Any]]:
    """Table 1's School column: the six models on Argyriou's splits, `tune_then_evaluate`; AMTFL's feedback
    reconstruction share per split from its selected configuration retrained on each split."""
    import mtlkit
    from mtlkit.datasets import load
    from mtlkit.experiments.splits import make_splits

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
        assert tr.ys is not None and va.ys is not None and te.ys is not None
        for name, pooled in (("ridge per school (STL)", False), ("one ridge pooled over all schools", True)):
            a = min(grid, key=lambda a: rmse(fit(a, tr.xs, tr.ys, pooled), va))  # type: ignore[arg-type]
            out.setdefault(f"{name}, trained on the training rows", []).append(rmse(fit(a, tr.xs, tr.ys, pooled), te))
            both_x = [np.concatenate([x, v]) for x, v in zip(tr.xs, va.xs, strict=True)]
            both_y = [np.concatenate([y, v]) for y, v in zip(tr.ys, va.ys, strict=True)]
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
            row += [mean_ci_text(p, c, 2), _cell(mnist[m].per_split(), 2), f"{mnist[m].per_split()[0]:.2f}",
                    str(rk_m[m])]
        if school:
            p, c = PAPER_TABLE1[m]["school"]
            row += [mean_ci_text(p, c, 3), _cell(school[m].per_split(), 3), str(rk_s[m])]
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
