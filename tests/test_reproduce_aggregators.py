"""`mtlkit reproduce aggregators`: the quick smoke run end to end (every combiner of the registry in the table and the
claims, the claims' numbers re-derived from the per-split CSV with scipy's t-interval), the paired difference
against a hand computation, and the method list derived from `COMBINERS`."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mtlkit.cli import main
from mtlkit.commands.reproduce import output_paths
from mtlkit.experiments.claims import VERDICTS, read_claims, verdict
from mtlkit.experiments.reproduce.aggregators import EW, STL, better_than, kind_of, methods
from mtlkit.methods import registry
from mtlkit.optim.combiners import COMBINERS

pytestmark = pytest.mark.usefixtures("one_thread")


def _staged() -> Path | None:
    for d in (os.environ.get("MTLKIT_DATA"), "/work/shared/data"):
        if d and (Path(d) / "mnist" / "raw" / "t10k-images-idx3-ubyte.gz").is_file() and (Path(d) / "school").is_dir():
            return Path(d)
    return None


def _t_interval(d: np.ndarray) -> tuple[float, float]:
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    return float(d.mean()), float((hi - lo) / 2)


def test_methods_are_every_combiner_on_hard_share_plus_the_references():
    ms = methods()
    assert ms[:2] == [STL, EW]
    assert sorted(ms[2:]) == sorted(f"hard-share+{n}" for n in COMBINERS if n != "ew")
    for m in ms[2:]:
        assert registry.get(m).name == m  # composes through the registry
        assert kind_of(m) in ("aggregator", "weighting")


def test_better_than_is_the_paired_split_difference_with_a_t_interval():
    rng = np.random.default_rng(0)
    ref = rng.normal(10.0, 1.0, size=(4, 5))
    m = ref - 0.3 + rng.normal(0.0, 0.05, size=(4, 5))
    d, ci = better_than(m, ref, lower_is_better=True)
    want = _t_interval(ref.mean(1) - m.mean(1))
    assert d == pytest.approx(want[0]) and ci == pytest.approx(want[1])
    assert d > 0  # lower RMSE than the reference: better
    d2, ci2 = better_than(m, ref, lower_is_better=False)  # accuracy-like: the same numbers are worse
    assert d2 == pytest.approx(-d) and ci2 == pytest.approx(ci)


def test_quick_run_tables_and_claims_for_every_combiner(tmp_path):
    staged = _staged()
    # staged data: School (a subset) and the shared-input MNIST set; without it the embedded digits
    datasets = ["school", "mnist-shared"] if staged is not None else ["digits"]
    out = tmp_path / "out"
    args = ["reproduce", "aggregators", "--quick", "--out", str(out), "--store", str(tmp_path / "s.db"), "--quiet",
            "--datasets", ",".join(datasets)]
    if staged is not None:
        args += ["--data-dir", str(staged)]
    assert main(args) == 0
    md = (out / "aggregators.md").read_text()
    for needle in ["Command: `mtlkit", "Machine:", "checksum `", "QUICK SMOKE RUN", "Reduced protocol",
                   "## Summary", "Verdict rule", "1 trials of Optuna TPE", "Δ vs STL", "tasks hurt",
                   *(f"## {ds}:" for ds in datasets), *(f"`{m}`" for m in methods())]:
        assert needle in md, needle
    # the per-split CSV: every method on every data set and split
    with open(out / "aggregators.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["dataset"], r["method"]) for r in rows} == {(d, m) for d in datasets for m in methods()}
    claims = read_claims(out / "claims" / "aggregators.csv")
    assert len(claims) == len(datasets) * (len(methods()) - 2)
    for c in claims:
        ds = c.where.split(":")[0]
        method = c.claim.split(" ")[0]
        per = {r["method"]: {} for r in rows if r["dataset"] == ds}
        for r in rows:
            if r["dataset"] == ds:
                per[r["method"]][r["split"]] = float(r["value"])
        splits = sorted(per[EW])
        d = np.array([per[EW][s] - per[method][s] for s in splits])  # lower-is-better primary metrics: EW − method
        mean, ci = _t_interval(d) if np.ptp(d) > 0 else (float(d.mean()), 0.0)
        assert c.ours == pytest.approx(mean, abs=1e-4)
        assert c.ci95 == pytest.approx(ci, abs=1e-4)
        assert c.verdict in VERDICTS and c.verdict == verdict(c.ours, c.ci95 or 0.0, +1)[0]


def test_quick_results_never_go_to_docs_results():
    out, store = output_paths("aggregators", quick=True)
    assert out == Path("results") / "quick" / "aggregators" and store.parent == out
