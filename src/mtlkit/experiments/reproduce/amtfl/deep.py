"""The deep analogues on imbalanced MNIST: Table 2 (per-class error of four small CNNs), Fig. 6 (per-digit gain over
the CNN) and Table 3 (transfer of frozen features to held-out digits)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit import progress
from mtlkit.data.splits import Split
from mtlkit.experiments.reproduce.amtfl.settings import (
    CNN_ARCH,
    PAPER_FIG6,
    PAPER_TABLE2,
    PAPER_TABLE2_DATA,
    PAPER_TABLE3,
    SEED,
    SOURCE_DIGITS,
    TARGET_DIGITS,
    ScoreFn,
    Spec,
)
from mtlkit.experiments.reproduce.amtfl.tuned import Tuned, _budget_section, _cached, _cell, _selected, tuned_table
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.tables import fmt, markdown_table

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


def _deep_specs(st: dict[str, Any], pos: Sequence[int] | np.ndarray) -> tuple[dict[str, Spec], dict[str, Spec]]:
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
    legend = ax.get_legend()
    for text in legend.get_texts() if legend is not None else []:
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
