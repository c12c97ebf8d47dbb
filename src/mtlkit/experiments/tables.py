"""Every table the project writes — Markdown, CSV, LaTeX — and every ``mean ± CI`` cell, rendered in one place, so
`mtlkit report`, the bench leaderboard, the claims ledger and the reproductions' results files share one format.

Plain Python on purpose: pandas' ``to_markdown`` needs ``tabulate`` (not a dependency), and the renderers must not
pull pandas into ``import mtlkit``; CSV goes through the standard ``csv`` module (quoting when a cell needs it).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

MISSING = "–"
"""The cell shown for a value that was not measured (None, NaN, ±inf)."""


# ---------------------------------------------------------------------------------------------------- cells
def _finite(x: Any) -> bool:
    if x is None:
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def number(x: Any, spec: str = ".2f", missing: str = MISSING) -> str:
    """``x`` formatted with ``spec`` (``format`` mini-language); ``missing`` for None or a non-finite value."""
    return format(x, spec) if _finite(x) else missing


def fmt(x: float | None, decimals: int = 2) -> str:
    """A number for a table at ``decimals`` fixed decimals; – for missing."""
    return number(x, f".{decimals}f")


def decimals_for(x: float) -> int:
    """Decimals that show a value of this size to about 4 significant digits (3 at least from 1 to 100)."""
    a = abs(x)
    if not math.isfinite(a) or a >= 1000:
        return 1
    if a >= 100:
        return 2
    if a >= 1 or a == 0:
        return 3
    return min(6, 3 - math.floor(math.log10(a)))


def mean_ci_text(mean: float | None, ci: float | None, spec: str | int | None = 2, ci_spec: str | None = None,
                 missing: str = MISSING) -> str:
    """``mean ± ci``: ``spec`` a format spec (``"+.3g"``) or a number of fixed decimals (None: `decimals_for` the
    mean); ``ci_spec`` defaults to ``spec`` without its sign. The mean alone when the CI is missing or non-finite
    (one split), ``missing`` when the mean is."""
    if not _finite(mean):
        return missing
    assert mean is not None
    if spec is None:
        spec = decimals_for(float(mean))
    s = f".{spec}f" if isinstance(spec, int) else spec
    c = s.replace("+", "").replace("-", "").replace(" ", "") if ci_spec is None else ci_spec
    return format(mean, s) + (f" ± {format(ci, c)}" if _finite(ci) else "")


def mean_ci_cell(scores: ArrayLike, decimals: int = 2) -> str:
    """``mean ± CI`` over splits of the task-averaged score (``scores`` [splits, T]; NaN tasks ignored)."""
    from mtlkit.experiments.stats import summarize

    return mean_ci_text(*summarize(np.asarray(scores, dtype=np.float64)), decimals)


# ---------------------------------------------------------------------------------------------------- markdown
def escape_markdown(s: str) -> str:
    """A cell's text safe inside a Markdown table row: ``|`` escaped, line breaks as spaces."""
    return s.replace("|", "\\|").replace("\n", " ")


def bold_markdown(s: str) -> str:
    """``**s**``."""
    return f"**{s}**"


def _check(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None) -> None:
    n = len(header)
    if align is not None and (len(align) != n or set(align) - {"l", "r", "c"}):
        raise ValueError(f"align must give one of l/r/c per column ({n}); got {align!r}")
    for i, r in enumerate(rows):
        if len(r) != n:
            raise ValueError(f"table row {i} has {len(r)} cells; the header has {n}")


_RULE = {"l": "---", "r": "---:", "c": ":---:"}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None,
                   bold: Collection[tuple[int, int]] = (), escape: bool = False) -> list[str]:
    """A GitHub Markdown table as lines: ``align`` one of l/r/c per column (None: unmarked ``---``); ``bold``:
    (row, column) cells set in bold; ``escape``: `escape_markdown` every cell (header included)."""
    _check(header, rows, align)

    def cell(s: str) -> str:
        return escape_markdown(s) if escape else s

    rule = "|" + "|".join(_RULE[a] for a in align) + "|" if align else "|" + "---|" * len(header)
    out = ["| " + " | ".join(cell(h) for h in header) + " |", rule]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(bold_markdown(cell(c)) if (i, j) in bold else cell(c)
                                     for j, c in enumerate(r)) + " |")
    return out


# ---------------------------------------------------------------------------------------------------- CSV
def csv_text(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV document (``\\n`` line ends, a cell quoted only when it holds a comma, quote or line break)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | Path, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Path:
    """Write `csv_text` to ``path`` (its folder created) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(csv_text(header, rows))
    return p


# ---------------------------------------------------------------------------------------------------- LaTeX
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "Δ": r"$\Delta$", "−": "-",
                  "·": r"$\cdot$", "–": "--", "‖": r"$\|$", "ω": r"$\omega$", "θ": r"$\theta$"}


def latex_escape(s: str) -> str:
    """Text safe inside a LaTeX document: special characters escaped, the reports' symbols as math."""
    return "".join(_LATEX_SPECIAL.get(ch, _LATEX_SYMBOLS.get(ch, ch)) for ch in s)


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "", label: str = "",
                align: str | None = None, bold: Collection[tuple[int, int]] = (),
                midrule_before: Collection[int] = ()) -> list[str]:
    """A LaTeX ``table`` environment with booktabs rules (needs ``\\usepackage{booktabs}``) as lines; every text
    escaped (`latex_escape`) but ``label``. ``align``: l/r/c per column (default: first l, the rest r);
    ``midrule_before``: row indices that get a rule above them (e.g. a summary row)."""
    align = align or "l" + "r" * (len(header) - 1)
    _check(header, rows, align)
    out = ["\\begin{table}[t]", "\\centering"]
    if caption:
        out.append(f"\\caption{{{latex_escape(caption)}}}")
    if label:
        out.append(f"\\label{{{label}}}")
    out += [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(latex_escape(h) for h in header) + " \\\\",
            "\\midrule"]
    for i, row in enumerate(rows):
        if i in midrule_before:
            out.append("\\midrule")
        out.append(" & ".join(f"\\textbf{{{latex_escape(c)}}}" if (i, j) in bold else latex_escape(c)
                              for j, c in enumerate(row)) + " \\\\")
    return out + ["\\bottomrule", "\\end{tabular}", "\\end{table}"]


# ---------------------------------------------------------------------------------------------------- a table
@dataclass
class Table:
    """A table independent of its rendering: header, rows of text cells, cells to emphasise (best), notes under
    it; ``key`` names it (a LaTeX label, a CSV part)."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def markdown(self, align: str | None = None, escape: bool = True) -> list[str]:
        """The table's Markdown lines (`markdown_table`), without title or notes."""
        return markdown_table(self.header, self.rows, align, self.bold, escape)

    def latex(self, caption: str | None = None, label: str | None = None, align: str | None = None,
              midrule_before: Collection[int] = ()) -> list[str]:
        """The table as a LaTeX environment (`latex_table`); caption defaults to the title and notes, label to
        ``tab:mtlkit-<key>`` with every non-alphanumeric character as ``-``."""
        cap = self.title + ". " + " ".join(self.notes) if caption is None else caption
        lab = f"tab:mtlkit-{''.join(ch if ch.isalnum() else '-' for ch in self.key)}" if label is None else label
        return latex_table(self.header, self.rows, cap, lab, align, self.bold, midrule_before)
