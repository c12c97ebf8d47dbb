"""Plots a person would rather look at than read: a learned task-relation matrix as a heatmap, the per-task
improvement over STL as a sorted bar chart (AMTFL Fig. 5b / 6 style) and per-task learning curves.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so nothing
opens a window and the caller's matplotlib backend is left alone. Each ``plot_*`` writes a PNG and an
SVG side by side and returns their paths; each ``*_figure`` returns the figure for inspection.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit._optional import require

require("matplotlib", "plots (mtlkit.analysis.plots)")  # a missing extra is one line, not a traceback

from matplotlib import colormaps  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from mtlkit.errors import MtlkitError  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import ColorType  # matplotlib >= 3.8; the [plot] extra allows 3.7

DPI = 150
MAX_TICK_LABELS = 20          # beyond this many rows/columns, label every k-th one
MAX_ANNOTATED_CELLS = 150     # annotate heatmap cells with their values up to this many cells
MAX_ANNOTATED_CELLS_FORCED = 400  # annotate=True still writes no values on more cells than this (20×20)
POSITIVE, NEGATIVE, NEUTRAL = "#2c7bb6", "#d7191c", "#9e9e9e"
IMPROVEMENT_CAPTION = ("Improvement over STL per task (TOMATO Table 4): 100·(m_STL − m)/m_STL for error-like "
                       "metrics, sign flipped for accuracy-like; each task's metric averaged over the splits both "
                       "methods were run on. Positive = better than STL.")


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas with constrained layout (labels, colorbars and captions kept inside)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> list[Path]:
    """Write ``<path>.png`` and ``<path>.svg`` (a given .png/.svg suffix is replaced); returns both paths."""
    p = Path(path)
    if p.suffix.lower() in (".png", ".svg"):
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    png, svg = p.parent / f"{p.name}.png", p.parent / f"{p.name}.svg"
    fig.savefig(png, dpi=dpi, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


def _thin(n: int, max_labels: int = MAX_TICK_LABELS) -> list[int]:
    """Tick positions: every index up to ``max_labels``, else every k-th so about ``max_labels`` remain."""
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Wrap text to a figure width in inches (about 0.55·fontsize points per character), keeping its line breaks."""
    chars = max(30, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join("\n".join(textwrap.wrap(line, chars)) or line for line in text.split("\n"))


# ---------------------------------------------------------------------------------------------------- relations
def value_scale(big: float) -> int:
    """The power of ten k to print a heatmap's values as ``v / 10^k`` (with ``×10^k`` on the colour bar): 0 while
    the largest magnitude ``big`` lies in [0.1, 1000) (plain ``.2f`` / ``.3g`` print 2+ significant digits there),
    else its decade, so the largest value prints as ``d.d`` (2 significant digits) and the others on its scale."""
    if not math.isfinite(big) or big <= 0 or 0.1 <= big < 1000:
        return 0
    return math.floor(math.log10(big))


def relation_matrix_figure(matrix: Any, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
                           value_label: str = "", annotate: bool | None = None) -> Figure:
    """A heatmap of one relation matrix with a colour bar; diverging colours centred on 0 when it has both signs.

    Cell values are written when the matrix is small (``annotate=None``: up to `MAX_ANNOTATED_CELLS` cells;
    ``True``: up to `MAX_ANNOTATED_CELLS_FORCED`). Matrices whose largest magnitude is below 0.1 or at least 1000
    are printed on a common scale ``v / 10^k`` (`value_scale`) with ``×10^k`` above the colour bar, which uses the
    same scale, so small entries (e.g. ~1e-3) stay readable instead of all reading "0.00"."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise MtlkitError(f"a relation matrix must be a non-empty 2-D array; got shape {m.shape}")
    n_r, n_c = m.shape
    if len(row_labels) != n_r or len(col_labels) != n_c:
        raise MtlkitError(f"{len(row_labels)} row and {len(col_labels)} column labels for a {n_r}×{n_c} matrix")
    cell = float(np.clip(7.0 / max(n_r, n_c), 0.06, 0.55))
    long_r = max(len(str(s)) for s in row_labels)
    long_c = max(len(str(s)) for s in col_labels)
    width = float(np.clip(n_c * cell + 2.4 + 0.07 * long_r, 4.5, 15))
    height = float(np.clip(n_r * cell + 0.9 + 0.05 * long_c, 2.6, 15))
    fig = _figure(width, height)
    ax = fig.add_subplot()
    finite = m[np.isfinite(m)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo < 0 < hi:
        a = max(-lo, hi)
        cmap, norm = colormaps["RdBu_r"], TwoSlopeNorm(0.0, -a, a)
    else:
        cmap, norm = colormaps["viridis"], None
    img = ax.imshow(np.ma.masked_invalid(m), cmap=cmap.with_extremes(bad="#dddddd"), norm=norm,
                    aspect="equal" if max(n_r, n_c) <= 60 else "auto", interpolation="nearest")
    # the colour bar as an inset beside the image: exactly the image's height, whatever the matrix's shape
    cax = ax.inset_axes((1.03, 0.0, 0.2 / (n_c * cell), 1.0))
    cb = fig.colorbar(img, cax=cax)
    cb.ax.tick_params(labelsize=8)
    k = value_scale(float(np.abs(finite).max())) if finite.size else 0
    factor = f"×10$^{{{k}}}$" if k else ""
    if k:
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x / 10.0 ** k:g}"))
        cb.ax.yaxis.get_offset_text().set_visible(False)
    if value_label and len(value_label) <= 3:  # a symbol (ω, AS) reads better upright above the bar
        cb.ax.set_title(f"{value_label} {factor}".strip(), fontsize=10)
    else:
        if value_label:
            cb.set_label(value_label)
        if factor:
            cb.ax.set_title(factor, fontsize=9)
    rows, cols = _thin(n_r), _thin(n_c)
    ax.set_yticks(rows, [str(row_labels[i]) for i in rows])
    rotate = n_c > 8 or long_c > 3
    ax.set_xticks(cols, [str(col_labels[i]) for i in cols], rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor")
    tick_size = 9 if max(n_r, n_c) <= 20 else 7
    ax.tick_params(labelsize=tick_size, length=2)
    if annotate is None:
        annotate = n_r * n_c <= MAX_ANNOTATED_CELLS
    annotate = annotate and n_r * n_c <= MAX_ANNOTATED_CELLS_FORCED
    if annotate and finite.size:
        big = float(np.abs(finite).max()) / 10.0 ** k
        fmt = ".1f" if k else ".2f" if big < 10 else ".3g"
        size = float(np.clip(cell * 16, 6, 9))
        for i in range(n_r):
            for j in range(n_c):
                v = m[i, j]
                if not math.isfinite(v):
                    continue
                r, g, b, _ = img.cmap(img.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                text = format(v / 10.0 ** k, fmt)
                text = text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")
    ax.set_title(title, fontsize=11)
    return fig


def plot_relation_matrix(matrix: Any, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
                         path: str | Path, value_label: str = "", annotate: bool | None = None) -> list[Path]:
    """Heatmap of a task-relation matrix (ω, AS, ‖θˢ_kt‖, ...) written as PNG and SVG; returns the paths."""
    return save_figure(relation_matrix_figure(matrix, row_labels, col_labels, title, value_label, annotate), path)


# ---------------------------------------------------------------------------------------------------- improvement
def improvement_bars_figure(improvement_per_task: Any, task_names: Sequence[str], title: str,
                            caption: str = IMPROVEMENT_CAPTION) -> Figure:
    """Per-task improvement over STL (%) as bars sorted from best to worst, better/worse coloured apart,
    with the zero line and the mean over tasks dashed. Tasks without a defined value are left out (said so)."""
    v = np.asarray(improvement_per_task, dtype=np.float64)
    if v.ndim != 1 or len(task_names) != v.size:
        raise MtlkitError(f"{v.size} improvements for {len(task_names)} task names; give one per task")
    ok = np.isfinite(v)
    order = np.argsort(-v[ok], kind="stable")
    vals, names = v[ok][order], [str(task_names[i]) for i in np.flatnonzero(ok)[order]]
    n = vals.size
    width = float(np.clip(0.32 * n + 2.5, 6.5, 14))
    fig = _figure(width, 5.0 if n <= 40 else 4.6)
    ax = fig.add_subplot()
    colours = [POSITIVE if x > 0 else NEGATIVE if x < 0 else NEUTRAL for x in vals]
    ax.bar(np.arange(n), vals, color=colours, width=0.8 if n <= 40 else 1.0, linewidth=0)
    ax.axhline(0.0, color="black", linewidth=0.8)
    handles: list[Any] = [Patch(color=POSITIVE, label=f"better than STL ({int((vals > 0).sum())})"),
                          Patch(color=NEGATIVE, label=f"worse than STL ({int((vals < 0).sum())})")]
    if n:
        mean = float(vals.mean())
        ax.axhline(mean, color="#333333", linestyle="--", linewidth=1.2)
        handles.append(Line2D([], [], color="#333333", linestyle="--", label=f"mean over tasks {mean:+.2f} %"))
        if (vals == 0).any():
            handles.insert(2, Patch(color=NEUTRAL, label=f"equal ({int((vals == 0).sum())})"))
        # bars stick to 0, so pad the limits by hand: room for the value labels on both sides of the zero line
        lo, hi = min(float(vals.min()), 0.0), max(float(vals.max()), 0.0)
        pad = 0.12 * (hi - lo) if hi > lo else 1.0
        ax.set_ylim(lo - pad, hi + pad)
    if n <= 15:
        for i, x in enumerate(vals):
            ax.annotate(f"{x:+.1f}", (i, x), xytext=(0, 2 if x >= 0 else -2), textcoords="offset points",
                        ha="center", va="bottom" if x >= 0 else "top", fontsize=8,
                        bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.75})  # legible where the dashed mean line crosses
    if n <= 40:
        ax.set_xticks(np.arange(n), names, rotation=90 if n > 12 or max(map(len, names), default=0) > 8 else 45,
                      ha="center" if n > 12 else "right", rotation_mode="default" if n > 12 else "anchor",
                      fontsize=8 if n > 20 else 9)
        ax.set_xlabel("task (sorted by improvement)")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} tasks, sorted by improvement (per-task values in the report's CSV)")
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylabel("improvement over STL (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.suptitle(_wrap(title, width - 0.3, 11), fontsize=11)
    # above the axes (part of the axes' layout box, so constrained layout keeps it clear of the title)
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(handles), fontsize=8,
              frameon=False)
    left_out = int((~ok).sum())
    note = f" {left_out} task(s) left out: STL's metric is 0 there, so the ratio is undefined." if left_out else ""
    fig.supxlabel(_wrap(caption + note, width - 0.4, 7.5), fontsize=7.5, color="#444444", x=0.01, ha="left")
    return fig


def plot_improvement_bars(improvement_per_task: Any, task_names: Sequence[str], title: str,
                          path: str | Path, caption: str = IMPROVEMENT_CAPTION) -> list[Path]:
    """Sorted bar chart of each task's improvement over STL, written as PNG and SVG; returns the paths."""
    return save_figure(improvement_bars_figure(improvement_per_task, task_names, title, caption), path)


# ---------------------------------------------------------------------------------------------------- curves
def _curves(history: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Train and validation loss ``[epochs, T]`` (non-finite as NaN) and the selected epoch, from a
    `History` or its JSON form (as stored in the results store)."""
    h = history.to_json() if hasattr(history, "to_json") else history
    if not isinstance(h, dict) or "train_loss" not in h:
        raise MtlkitError("no training history: the method was not trained by SGD, so it has no learning curve")

    def arr(key: str) -> np.ndarray:
        rows = [[np.nan if x is None else x for x in r] for r in h.get(key) or []]
        a = np.asarray(rows, dtype=np.float64)
        return np.where(np.isfinite(a), a, np.nan)

    tr, va = arr("train_loss"), arr("val_loss")
    if tr.ndim != 2 or tr.shape[0] == 0:
        raise MtlkitError("the training history is empty (no epoch finished)")
    if va.shape != tr.shape:
        va = np.full_like(tr, np.nan)
    return tr, va, int(h.get("best_epoch", -1))


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean over tasks per epoch, NaN-aware, without warnings for an all-NaN epoch (a diverged one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=1)


def learning_curves_figure(history: Any, task_names: Sequence[str], title: str = "", max_tasks: int = 12) -> Figure:
    """Per-task training and validation loss by epoch (two panels, shared y), the task mean in bold and the
    selected epoch marked. Beyond ``max_tasks`` tasks: thin grey lines and the 10–90% band instead of a legend."""
    tr, va, best = _curves(history)
    epochs, n_tasks = tr.shape
    if len(task_names) != n_tasks:
        raise MtlkitError(f"the history has {n_tasks} tasks but {len(task_names)} task names were given")
    x = np.arange(1, epochs + 1)
    many = n_tasks > max_tasks
    fig = _figure(11.5 if not many else 10.5, 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    colours: list[ColorType] | None = [f"C{i % 10}" for i in range(n_tasks)] if n_tasks <= 10 else None
    if colours is None and not many:
        colours = [colormaps["tab20"](i % 20) for i in range(n_tasks)]
    marker = "o" if epochs <= 3 else None
    finite = np.concatenate([tr[np.isfinite(tr)], va[np.isfinite(va)]])
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 20
    for ax, data, label in ((axes[0], tr, "training loss"), (axes[1], va, "validation loss")):
        mean = _nanmean_rows(data) if np.isfinite(data).any() else None
        if many:
            ax.plot(x, data, color="#7f7f7f", linewidth=0.4, alpha=0.25)
            if np.isfinite(data).any():
                with warnings.catch_warnings():  # an all-NaN epoch (diverged) has no band
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi = np.nanpercentile(data, [10, 90], axis=1)
                ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.18, linewidth=0)
        else:
            for t in range(n_tasks):
                ax.plot(x, data[:, t], color=colours[t] if colours else None, linewidth=1.1, alpha=0.85,
                        marker=marker, markersize=3)
        if mean is not None:
            ax.plot(x, mean, color="black", linewidth=2.6, marker=marker)
        if 0 <= best < epochs:
            ax.axvline(best + 1, color="#555555", linestyle=":", linewidth=1.3)
            if mean is not None and math.isfinite(mean[best]):
                ax.plot([best + 1], [mean[best]], marker="*", markersize=12, color="#ff7f0e",
                        markeredgecolor="black", zorder=5)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
        ax.set_xlim(0.5, epochs + 0.5)
    axes[0].set_ylabel("loss per task" + (" (log scale)" if log else ""))
    sel = f"selected epoch ({best + 1})" if 0 <= best < epochs else "selected epoch"
    handles: list[Any] = [Line2D([], [], color="black", linewidth=2.6, label=f"mean over {n_tasks} tasks"),
                          Line2D([], [], color="#555555", linestyle=":", marker="*", markerfacecolor="#ff7f0e",
                                 markeredgecolor="black", markersize=10, label=sel)]
    if many:
        handles += [Patch(color="#1f77b4", alpha=0.3, label="10–90% of tasks"),
                    Line2D([], [], color="#7f7f7f", linewidth=0.6, label="one task")]
        fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    else:
        handles += [Line2D([], [], color=colours[t] if colours else None, linewidth=1.1, label=str(task_names[t]))
                    for t in range(n_tasks)]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_learning_curves(history: Any, task_names: Sequence[str], path: str | Path, title: str = "",
                         max_tasks: int = 12) -> list[Path]:
    """Per-task learning curves (train and validation loss by epoch), written as PNG and SVG; returns the paths."""
    return save_figure(learning_curves_figure(history, task_names, title, max_tasks), path)
