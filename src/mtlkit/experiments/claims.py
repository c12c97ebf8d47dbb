"""The claims ledger: one row per claim of the five papers (and of the issues' own comparisons, e.g. the
weightings and aggregators against EW) that a reproduction tests, with the paper's number,
ours (mean ± 95% CI over splits), and a verdict computed from them by one rule.

Each reproduction writes its rows to ``<out>/claims/<reproduction>.csv`` when it runs; `build_ledger` gathers
every such file into ``claims.md`` and ``claims.csv`` and the README's summary block is generated from it, so
the ledger changes only when a reproduction is re-run.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mtlkit.experiments.tables import escape_markdown, markdown_table, mean_ci_text

VERDICTS = ("holds", "holds in direction only", "does not hold", "not testable here")

VERDICT_RULE = (
    "Verdict rule: the claim is stated as an effect in one direction (e.g. method − baseline < 0 in error). "
    "**holds**: our 95% CI over splits lies entirely on the claimed side of 0 and reaches the paper's size "
    "(mean + CI ≥ the paper's effect, where the paper gives one); **holds in direction only**: our mean is on "
    "the claimed side but the CI includes 0 or stays short of the paper's size; **does not hold**: our mean is "
    "0 or on the other side; **not testable here**: the data or setting the claim needs is not available.")

COLUMNS = ("paper", "where", "claim", "paper_value", "ours", "ci95", "unit", "verdict", "why", "source")


@dataclass
class Claim:
    """One tested claim. ``ours``/``ci95``: our measured effect in the claim's direction-free units (``unit``),
    mean and 95% CI half-width over splits; None when not measured."""

    paper: str
    where: str
    claim: str
    paper_value: str
    ours: float | None
    ci95: float | None
    unit: str
    verdict: str
    why: str
    source: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def verdict(effect: float, ci: float, direction: int, paper_effect: float | None = None) -> tuple[str, str]:
    """The verdict of a claimed effect and a short reason, by `VERDICT_RULE`.

    ``effect``/``ci``: our mean and 95% half-width; ``direction``: +1 if the claim says the effect is positive,
    −1 if negative; ``paper_effect``: the paper's own effect (same units and sign convention), if it gives one."""
    if direction not in (1, -1):
        raise ValueError("direction must be +1 or -1")
    if not math.isfinite(effect):
        return "not testable here", "no finite measurement"
    x = direction * effect
    half = ci if math.isfinite(ci) else math.inf
    size = None if paper_effect is None else direction * paper_effect
    if x <= 0:
        return "does not hold", f"our mean {effect:+.3g} is not on the claimed side"
    if x - half <= 0:
        return "holds in direction only", f"mean {effect:+.3g} on the claimed side, but its CI (±{ci:.2g}) includes 0"
    if size is not None and size > 0 and x + half < size:
        return "holds in direction only", (f"significant ({mean_ci_text(effect, ci, '+.3g', '.2g')}) but smaller "
                                           f"than the paper's {paper_effect:+.3g}")
    return "holds", mean_ci_text(effect, ci, "+.3g", ".2g") + ("" if size is None else f" (paper {paper_effect:+.3g})")


def write_claims(claims: Sequence[Claim], path: str | Path) -> Path:
    """One reproduction's claims as CSV (the columns of `COLUMNS`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in claims:
        row = asdict(c)
        row["ours"] = "" if c.ours is None or not math.isfinite(c.ours) else f"{c.ours:.6g}"
        row["ci95"] = "" if c.ci95 is None or not math.isfinite(c.ci95) else f"{c.ci95:.6g}"
        w.writerow(row)
    p.write_text(buf.getvalue())
    return p


def read_claims(path: str | Path) -> list[Claim]:
    """Claims written by `write_claims`."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            vals = {k.name: row.get(k.name, "") for k in fields(Claim)}
            vals["ours"] = float(row["ours"]) if row.get("ours") else None  # type: ignore[assignment]
            vals["ci95"] = float(row["ci95"]) if row.get("ci95") else None  # type: ignore[assignment]
            out.append(Claim(**vals))  # type: ignore[arg-type]
    return out


def ours_text(c: Claim) -> str:
    """Our effect as a table cell: ``+0.123 ± 0.045`` (the CI left out when none), – when not measured."""
    return mean_ci_text(c.ours, c.ci95, "+.3g", ".2g")


CLAIM_HEADERS = {"where": "where", "claim": "claim", "paper": "paper", "ours": "ours", "unit": "unit",
                 "verdict": "verdict", "why": "why", "source": "results file"}
"""The claims table's columns (keys for `claims_markdown`) and their default headers."""


def _claim_cell(c: Claim, col: str) -> str:
    if col == "ours":
        return ours_text(c)
    if col == "verdict":
        return f"**{c.verdict}**"
    if col == "source":
        return f"[{escape_markdown(c.source)}]({escape_markdown(c.source)})"
    return escape_markdown({"paper": c.paper_value}.get(col, getattr(c, col, "")))


def claims_markdown(rows: Iterable[Claim], columns: Sequence[str] = ("where", "claim", "paper", "ours", "unit",
                                                                     "verdict", "why"),
                    headers: Mapping[str, str] | None = None) -> list[str]:
    """The "claims checked" table every reproduction's results file and the ledger show, as Markdown lines: one
    row per claim, the chosen ``columns`` (keys of `CLAIM_HEADERS`) under their headers (``headers`` overrides
    some), text escaped, the verdict in bold."""
    bad = [c for c in columns if c not in CLAIM_HEADERS]
    if bad:
        raise ValueError(f"unknown claims column(s) {bad}; columns: {', '.join(CLAIM_HEADERS)}")
    names = {**CLAIM_HEADERS, **(headers or {})}
    return markdown_table([names[c] for c in columns], [[_claim_cell(c, col) for col in columns] for c in rows])


def ledger_markdown(claims: Iterable[Claim], sources: Sequence[str] = ()) -> str:
    """``claims.md``: a count of verdicts per paper, then every claim grouped by paper."""
    rows = list(claims)
    papers = list(dict.fromkeys(c.paper for c in rows))
    out = ["# Claims ledger", "",
           "Every claim of the five papers, and of the comparisons the project adds (the loss weightings and "
           "gradient aggregators against EW), that a reproduction here tests, with the paper's number beside ours "
           "(mean ± 95% CI over splits) and a verdict. Generated by `mtlkit reproduce claims` from the claim files "
           "each reproduction writes (`docs/results/claims/*.csv`); a reproduction that has not been re-run keeps "
           "its previous rows.", "", VERDICT_RULE, ""]
    if sources:
        out += ["Claim files: " + ", ".join(f"`{s}`" for s in sources), ""]
    out += markdown_table(["paper", *VERDICTS], [[p, *(str(sum(1 for c in rows if c.paper == p and c.verdict == v))
                                                        for v in VERDICTS)] for p in papers])
    for p in papers:
        out += ["", f"## {p}", "", *claims_markdown([c for c in rows if c.paper == p], tuple(CLAIM_HEADERS))]
    return "\n".join(out) + "\n"


def readme_summary(claims: Iterable[Claim]) -> str:
    """The README's summary block: per paper, how many claims hold, hold in direction only, or do not."""
    rows = list(claims)
    body = []
    for p in dict.fromkeys(c.paper for c in rows):
        mine = [c for c in rows if c.paper == p]
        body.append([p, str(len(mine)), *(str(sum(1 for c in mine if c.verdict == v)) for v in VERDICTS)])
    return "\n".join(markdown_table(["paper", "claims tested", "holds", "direction only", "does not hold",
                                      "not testable"], body))


README_BEGIN = "<!-- claims-summary:begin (generated by `mtlkit reproduce claims`; do not edit) -->"
README_END = "<!-- claims-summary:end -->"


def build_ledger(results_dir: str | Path, readme: str | Path | None = None) -> list[Path]:
    """Gather ``<results_dir>/claims/*.csv`` into ``claims.md`` and ``claims.csv``; rewrite the README's summary
    block (between `README_BEGIN` and `README_END`) when ``readme`` is given and has the markers."""
    d = Path(results_dir)
    files = sorted((d / "claims").glob("*.csv"))
    claims = [c for f in files for c in read_claims(f)]
    md = d / "claims.md"
    md.write_text(ledger_markdown(claims, [f"claims/{f.name}" for f in files]))
    out = [md, write_claims(claims, d / "claims.csv")]
    if readme is not None and Path(readme).exists():
        text = Path(readme).read_text()
        if README_BEGIN in text and README_END in text:
            head, rest = text.split(README_BEGIN, 1)
            _, tail = rest.split(README_END, 1)
            Path(readme).write_text(f"{head}{README_BEGIN}\n{readme_summary(claims)}\n{README_END}{tail}")
            out.append(Path(readme))
    return out
