"""The one table module against independent truths: Markdown rows parse back to their cells, CSV round-trips
through the csv module and pandas, mean ± CI cells match scipy's t interval, and the claims table renders the
committed results files' tables byte for byte from the committed claim files."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mtlkit.experiments.claims import Claim, claims_markdown, ledger_markdown, read_claims
from mtlkit.experiments.tables import (
    Table,
    csv_text,
    decimals_for,
    fmt,
    latex_escape,
    latex_table,
    markdown_table,
    mean_ci_cell,
    mean_ci_text,
    number,
    write_csv,
)

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def parse_row(line: str) -> list[str]:
    """A Markdown table row's cells: split on the unescaped pipes, then unescape (GitHub's reading)."""
    assert line.startswith("| ") and line.endswith(" |")
    return [c.replace("\\|", "|") for c in re.split(r"(?<!\\) \| ", line[2:-2])]


cells = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and not s.endswith("\\") and "\\|" not in s)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(st.lists(cells, min_size=n, max_size=n),
                                                     st.lists(st.lists(cells, min_size=n, max_size=n), max_size=4))))
def test_markdown_rows_parse_back(table: tuple[list[str], list[list[str]]]) -> None:
    header, rows = table
    lines = markdown_table(header, rows, escape=True)
    assert len(lines) == 2 + len(rows)
    assert parse_row(lines[0]) == header
    assert [parse_row(x) for x in lines[2:]] == rows


def test_markdown_rule_bold_and_shape() -> None:
    lines = markdown_table(["a", "b", "c"], [["1", "2", "3"], ["4", "5", "6"]], align="lrc", bold={(1, 2)})
    assert lines == ["| a | b | c |", "|---|---:|:---:|", "| 1 | 2 | 3 |", "| 4 | 5 | **6** |"]
    assert markdown_table(["x", "y"], [])[1] == "|---|---|"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="l")


def test_csv_round_trips() -> None:
    header = ["name", "value"]
    rows = [["plain", "1.5"], ["comma, inside", "2"], ['quote "q"', ""], ["line\nbreak", "-3e-07"]]
    text = csv_text(header, rows)
    assert list(csv.reader(io.StringIO(text))) == [header, *rows]
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    assert frame.columns.tolist() == header and frame.values.tolist() == rows
    assert csv_text(["a"], [["x"]]) == "a\nx\n"  # unquoted when nothing needs quoting, \n line ends


def test_write_csv(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "sub" / "t.csv", ["a", "b"], [[1, 0.25]])
    assert p.read_text() == "a,b\n1,0.25\n"


def test_mean_ci_cell_matches_scipy_interval() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(3.0, 1.0, size=(5, 4))
    scores[1, 2] = np.nan  # a task without a value on one split is left out of that split's mean
    per_split = np.array([np.mean(r[~np.isnan(r)]) for r in scores])
    lo, hi = stats.t.interval(0.95, len(per_split) - 1, loc=per_split.mean(), scale=stats.sem(per_split))
    assert mean_ci_cell(scores, 3) == f"{per_split.mean():.3f} ± {(hi - lo) / 2:.3f}"
    assert mean_ci_cell(scores[:1]) == f"{per_split[0]:.2f}"  # one split: no CI


def test_mean_ci_text_and_numbers() -> None:
    assert mean_ci_text(1.23456, 0.5, 2) == "1.23 ± 0.50"
    assert mean_ci_text(0.0123, 0.004, "+.3g", ".2g") == "+0.0123 ± 0.004"
    assert mean_ci_text(-1.5, 0.25, "+.1f") == "-1.5 ± 0.2"  # the CI takes the spec without its sign
    assert mean_ci_text(2.0, float("nan")) == "2.00"
    assert mean_ci_text(None, 1.0) == mean_ci_text(float("inf"), 1.0) == "–"
    assert mean_ci_text(123.456, 1.0, None) == "123.46 ± 1.00"  # None: decimals_for the mean
    assert [decimals_for(x) for x in (0.0, 5.0, 250.0, 5000.0, 0.01234, float("nan"))] == [3, 3, 2, 1, 5, 1]
    assert fmt(1 / 3) == "0.33" and fmt(None) == "–" and fmt(float("nan"), 3) == "–"
    assert number(np.float32(0.5), ".1%") == "50.0%" and number("x") == "–"


def test_latex_table() -> None:
    assert latex_escape("a_b & 50% #1 {x}") == "a\\_b \\& 50\\% \\#1 \\{x\\}"
    assert latex_escape("1 ± 2 –") == "1 $\\pm$ 2 --"
    lines = latex_table(["m", "x_1"], [["a", "1"], ["mean", "2"]], "C & D", "tab:t", bold={(0, 1)},
                        midrule_before={1})
    assert lines == ["\\begin{table}[t]", "\\centering", "\\caption{C \\& D}", "\\label{tab:t}",
                     "\\begin{tabular}{lr}", "\\toprule", "m & x\\_1 \\\\", "\\midrule", "a & \\textbf{1} \\\\",
                     "\\midrule", "mean & 2 \\\\", "\\bottomrule", "\\end{tabular}", "\\end{table}"]
    tb = Table("per-task:a b", "T", ["h"], [["v"]], notes=["n1", "n2"])
    assert tb.latex()[2:4] == ["\\caption{T. n1 n2}", "\\label{tab:mtlkit-per-task-a-b}"]
    assert tb.markdown() == ["| h |", "|---|", "| v |"]


# The committed results files were written by each reproduction's own claims table; the one renderer must
# give the same bytes from the committed claim files (the trace-norm file's table has its own headers).
COMMITTED = [("srdml", "srdml.md", {}), ("transfer", "information-transfer.md", {}), ("tomato", "tomato.md", {}),
             ("amtfl", "amtfl.md", {}),
             ("trace-norm", "trace-norm.md", {"columns": ("where", "claim", "paper", "ours", "unit", "verdict"),
                                              "headers": {"ours": "ours (mean ± 95% CI)", "unit": "measure"}})]


@pytest.mark.parametrize(("claims", "md", "kw"), COMMITTED, ids=[c[0] for c in COMMITTED])
def test_claims_markdown_renders_committed_tables(claims: str, md: str, kw: dict) -> None:
    lines = claims_markdown(read_claims(RESULTS / "claims" / f"{claims}.csv"), **kw)
    assert len(lines) > 2 and "\n".join(lines) in (RESULTS / md).read_text()


def test_ledger_renders_committed_ledger() -> None:
    files = sorted((RESULTS / "claims").glob("*.csv"))
    rows = [c for f in files for c in read_claims(f)]
    assert ledger_markdown(rows, [f"claims/{f.name}" for f in files]) == (RESULTS / "claims.md").read_text()


def test_claims_markdown_escapes_and_checks_columns() -> None:
    c = Claim("P", "Fig. 1", "a | b", "x", None, None, "u", "holds", "line\nbreak", "s.md")
    lines = claims_markdown([c], ("claim", "ours", "why", "source"))
    assert parse_row(lines[2]) == ["a | b", "–", "line break", "[s.md](s.md)"]
    with pytest.raises(ValueError, match="unknown claims column"):
        claims_markdown([c], ("nope",))
