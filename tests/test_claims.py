"""The claims ledger: the verdict rule on constructed effects, the CSV round trip, and the ledger and README
summary built from several reproductions' claim files."""

from __future__ import annotations

import math
import os

import pytest

from mtlkit.experiments.claims import (
    README_BEGIN,
    README_END,
    Claim,
    build_ledger,
    read_claims,
    verdict,
    write_claims,
)


@pytest.mark.parametrize("effect,ci,direction,paper,expected", [
    (-3.0, 1.0, -1, -2.5, "holds"),                    # significant, at least the paper's size
    (-3.0, 1.0, -1, -6.0, "holds in direction only"),  # significant but short of the paper's −6
    (-0.5, 1.0, -1, -2.0, "holds in direction only"),  # right side, CI includes 0
    (0.4, 0.1, -1, -2.0, "does not hold"),             # wrong side
    (0.0, 0.1, 1, None, "does not hold"),
    (0.6, 0.2, 1, None, "holds"),
    (math.nan, 0.2, 1, None, "not testable here"),
])
def test_verdict_rule(effect, ci, direction, paper, expected):
    assert verdict(effect, ci, direction, paper)[0] == expected


def test_verdict_rejects_bad_direction():
    with pytest.raises(ValueError):
        verdict(1.0, 0.1, 0)


def _claim(paper: str, v: str, ours: float | None = -1.0) -> Claim:
    return Claim(paper, "Table 3", "A beats B", "1.0 vs 2.0", ours, 0.5 if ours is not None else None,
                 "points", v, "because", "x.md")


def test_csv_round_trip_keeps_every_field(tmp_path):
    rows = [_claim("P1", "holds"), _claim("P1", "not testable here", None)]
    back = read_claims(write_claims(rows, tmp_path / "claims" / "p1.csv"))
    assert back == rows


def test_ledger_and_readme_summary(tmp_path):
    write_claims([_claim("P1", "holds"), _claim("P1", "does not hold")], tmp_path / "claims" / "a.csv")
    write_claims([_claim("P2", "holds in direction only")], tmp_path / "claims" / "b.csv")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\nrest\n")
    paths = build_ledger(tmp_path, readme)
    md = (tmp_path / "claims.md").read_text()
    assert "| P1 | 1 | 0 | 1 | 0 |" in md and "| P2 | 0 | 1 | 0 | 0 |" in md
    assert len(read_claims(tmp_path / "claims.csv")) == 3
    text = readme.read_text()
    assert "\nold\n" not in text and "| P1 | 2 | 1 | 0 | 1 | 0 |" in text and text.endswith("rest\n")
    assert readme in paths


def test_bad_verdict_is_refused():
    with pytest.raises(ValueError):
        _claim("P", "maybe")


def test_reproduce_claims_command_rebuilds_the_ledger(tmp_path):
    from mtlkit.cli import main

    write_claims([_claim("P1", "holds")], tmp_path / "claims" / "p1.csv")
    readme = tmp_path / "R.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    assert main(["reproduce", "claims", "--out", str(tmp_path), "--store", str(tmp_path / "s.sqlite"),
                 "--readme", str(readme)]) == 0
    assert "| P1 | 1 |" in readme.read_text() and (tmp_path / "claims.md").exists()


@pytest.mark.skipif(not os.environ.get("MTLKIT_DATA"), reason="needs the staged data sets (MTLKIT_DATA)")
def test_reproduce_all_quick_leaves_the_readme_alone(tmp_path):
    from mtlkit.cli import main

    readme = tmp_path / "R.md"
    readme.write_text(f"{README_BEGIN}\nkept\n{README_END}\n")
    assert main(["reproduce", "all", "--quick", "--only", "tomato", "--out", str(tmp_path / "q"), "--store",
                 str(tmp_path / "q" / "s.sqlite"), "--readme", str(readme)]) == 0
    assert "kept" in readme.read_text()  # a smoke run's claims never reach the README
    assert (tmp_path / "q" / "claims" / "tomato.csv").exists() and (tmp_path / "q" / "claims.md").exists()
