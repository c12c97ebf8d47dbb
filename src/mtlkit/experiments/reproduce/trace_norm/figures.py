"""Fig. 1's four panels: accuracy bars, training-loss curves, sharing strength by layer, norms over training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.experiments.reproduce.trace_norm.claims import _own_kind, _task_mean, _total_norm
from mtlkit.experiments.reproduce.trace_norm.experiment import Results
from mtlkit.experiments.reproduce.trace_norm.report import _fmt_value
from mtlkit.experiments.reproduce.trace_norm.settings import KIND_NAMES, NAMES
from mtlkit.experiments.stats import mean_ci
from mtlkit.methods.trace_norm import KINDS

COLORS = {"stl-cnn": "#555555", "trace-norm-laf": "#1b9e77", "trace-norm-tucker": "#d95f02",
          "trace-norm-tt": "#7570b3"}
KIND_COLORS = {"laf": "#1b9e77", "tucker": "#d95f02", "tt": "#7570b3"}


def _fig(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _band(ax: Any, x: np.ndarray, v: np.ndarray, color: str, label: str, style: str = "-") -> None:
    """Mean over repeats (rows of ``v``) as a line, the 95% CI as a band."""
    mean, ci = mean_ci(v, axis=0)
    mean, ci = np.asarray(mean), np.nan_to_num(np.asarray(ci))
    ax.plot(x, mean, style, color=color, label=label, lw=1.6)
    ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=0.18, lw=0)


def _figures(res: Results, out: Path) -> list[Path]:
    """The four figures of Fig. 1: accuracy bars, training-loss curves, sharing strength, norms over training."""
    from mtlkit.analysis.plots import save_figure

    paths: list[Path] = []
    names = [NAMES[m] for m in res.methods]
    R = res.accuracy[res.methods[0]].shape[0]

    fig = _fig(8.6, 3.4)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[4, 3])
    accs = [_task_mean(res.accuracy[m]) for m in res.methods]
    jitter = np.linspace(-0.2, 0.2, R) if R > 1 else np.zeros(1)
    for i, (m, a) in enumerate(zip(res.methods, accs, strict=True)):
        mean, ci = mean_ci(a)
        ax.bar(i, float(mean), yerr=np.nan_to_num(float(ci)), color=COLORS[m], alpha=0.85, capsize=4)
        ax.plot(i + jitter, a, "k.", ms=3)
    lo, hi = min(float(np.min(a)) for a in accs), max(float(np.max(a)) for a in accs)
    pad = max(1.0, 0.5 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"test accuracy % (mean over {len(res.task_names)} alphabets)")
    ax.set_title(f"Test accuracy, {R} repeats, kept epoch (bars: mean ± 95% CI; dots: repeats)", fontsize=9)
    for i, m in enumerate(res.methods[1:]):
        d = accs[i + 1] - accs[0]  # paired with STL (the first method), kept epoch
        mean, ci = mean_ci(d)
        ax2.errorbar(i, float(mean), yerr=np.nan_to_num(float(ci)), fmt="o", color=COLORS[m], capsize=4, ms=6)
        ax2.plot(i + jitter, d, "k.", ms=3)
    ax2.axhline(0, color="black", lw=0.6)
    ax2.set_xticks(range(len(names) - 1), names[1:])
    ax2.set_xlim(-0.6, len(names) - 1.4)
    ax2.set_ylabel("accuracy − STL's, same repeat (points)")
    ax2.set_title("Paired difference vs STL (mean ± 95% CI)", fontsize=9)
    paths += save_figure(fig, out / "trace-norm-accuracy")

    fig = _fig(9.6, 3.6)
    axes = fig.subplots(1, 2)
    for ax, curves, what in ((axes[0], res.curves, "training"), (axes[1], res.val_curves, "validation")):
        for m in res.methods:
            c = curves[m]
            _band(ax, np.arange(1, c.shape[1] + 1), c, COLORS[m], NAMES[m])
            if what == "validation":
                ax.plot(float(np.mean(res.best_epoch[m])) + 1, float(np.nanmin(np.nanmean(c, axis=0))), "v",
                        color=COLORS[m], ms=6)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} cross-entropy (task mean, log scale)")
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_title("Training loss (penalty excluded; epoch's mini-batch mean)", fontsize=9)
    axes[1].set_title("Validation loss (▼: mean kept epoch)", fontsize=9)
    paths += save_figure(fig, out / "trace-norm-train-loss")

    fig = _fig(9.0, 3.4)
    axes = fig.subplots(1, 2)
    x = np.arange(len(res.layers))
    mtl = [m for m in res.methods if m != "stl-cnn"]
    w = 0.8 / len(mtl)
    for i, m in enumerate(mtl):
        k = _own_kind(m)
        mean, ci = mean_ci(res.sharing[m][k], axis=0)
        ab = res.ablation.get(m, {}).get(f"sharing/{k}")
        stl_mean = np.asarray(mean_ci(ab if ab is not None else res.sharing["stl-cnn"][k], axis=0)[0])
        pos = x - 0.4 + w * (i + 0.5)
        axes[0].bar(pos, mean, w, yerr=np.nan_to_num(ci), color=COLORS[m], capsize=3,
                    label=f"{NAMES[m]} ({KIND_NAMES[k]} norm)")
        axes[0].plot(pos, stl_mean, "_", color="black", ms=12, mew=2,
                     label=("the same configuration with γ = 0, same norm" if res.ablation else "STL, same norm")
                     if i == 0 else None)
    axes[0].set_title("Sharing strength 1 − ‖θ_opt‖/‖θ_init‖, own norm", fontsize=9)
    w = 0.8 / len(res.methods)
    for i, m in enumerate(res.methods):
        mean, ci = mean_ci(res.sharing[m]["fro"], axis=0)
        axes[1].bar(x - 0.4 + w * (i + 0.5), mean, w, yerr=np.nan_to_num(ci), color=COLORS[m], capsize=3,
                    label=NAMES[m])
    axes[1].set_title("The same with the Frobenius norm (plain shrinkage)", fontsize=9)
    for ax in axes:
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, res.layers)
        ax.set_xlabel("layer (bottom → top)")
        ax.legend(frameon=False, fontsize=7, loc="lower left")
    axes[0].set_ylabel("sharing strength")
    paths += save_figure(fig, out / "trace-norm-sharing")

    fig = _fig(11.0, 3.4)
    axes = fig.subplots(1, len(mtl), sharey=True)
    for ax, m in zip(axes, mtl, strict=True):
        for k in KINDS:
            tot = _total_norm(res, m, k)
            ep = np.arange(tot.shape[1])
            _band(ax, ep, tot / tot[:, :1], KIND_COLORS[k], f"{KIND_NAMES[k]} norm")
            off = res.ablation.get(m, {})
            if all(f"norm/{layer}/{k}" in off for layer in res.layers):  # the same configuration with γ = 0
                stl, ref = np.sum([off[f"norm/{layer}/{k}"] for layer in res.layers], axis=0), "γ = 0"
            else:
                stl, ref = _total_norm(res, "stl-cnn", k), "STL"
            ax.plot(ep, np.nanmean(stl / stl[:, :1], axis=0), ":", color=KIND_COLORS[k], lw=1.2,
                    label=f"{KIND_NAMES[k]} norm, {ref}")
        ax.axhline(1, color="black", lw=0.6)
        g = res.hparams.get(m, {}).get("gamma")
        ax.set_title(f"Optimising {NAMES[m]} (tuned γ = {_fmt_value(g) if g is not None else '?'})", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("norm / its value at initialisation\n(summed over conv1-3, fc1)")
    axes[0].legend(frameon=False, fontsize=7, loc="best")
    paths += save_figure(fig, out / "trace-norm-norms")
    return paths
