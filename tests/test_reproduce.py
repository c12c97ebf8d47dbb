"""`mtlkit reproduce`: the TOMATO reproduction end to end in its quick smoke form (small synthetic data,
3 epochs, 2 tuning trials per method), its provenance, the paper's numbers beside ours, the equal budget, the
claims file, resuming from the store, and bad input."""

from __future__ import annotations

import numpy as np

from mtlkit.cli import main
from mtlkit.experiments.reproduce.tomato import PAPER_TABLE3, _match_topics


def test_tomato_quick_writes_tables_with_paper_numbers_and_resumes(tmp_path, capsys):
    args = ["reproduce", "tomato", "--quick", "--splits", "2", "--datasets", "tomato-synthetic",
            "--methods", "stl,hard-share,tomato-el", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "s.db")]
    assert main(args) == 0
    md = (tmp_path / "out" / "tomato.md").read_text()
    for needle in ("Command: `mtlkit", "Machine:", "checksum `", "QUICK SMOKE RUN", "Table 3", "Table 4",
                   "Spearman", str(PAPER_TABLE3["tomato-synthetic"][0]), str(PAPER_TABLE3["tomato-synthetic"][8])):
        assert needle in md, needle
    assert (tmp_path / "out" / "tomato-synthetic-tomato-el.png").stat().st_size > 1000
    csv = (tmp_path / "out" / "tomato.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 * 2
    from mtlkit.experiments.store import ResultsStore

    n_runs = len(ResultsStore(tmp_path / "s.db").rows())
    # split 0 (the tuned choice) and split 1 per method, plus TOMATO-el's two ablations (λ = 0, K = 1) on both
    # splits unless tuning selected one of them already
    assert n_runs in (3 * 2 + 2 * 2, 3 * 2 + 1 * 2)
    assert "same budget: 2 trials" in md and "## Fig. 5 ablations" in md
    claims = (tmp_path / "out" / "claims" / "tomato.csv").read_text()
    assert "Table 3, Synthetic" in claims and "Fig. 4, synthetic" in claims
    assert main(args) == 0  # a second call reuses every recorded run
    assert len(ResultsStore(tmp_path / "s.db").rows()) == n_runs
    assert (tmp_path / "out" / "tomato.csv").read_text().splitlines() == csv


def test_unknown_dataset_is_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "tomato", "--datasets", "cifar", "--out", str(tmp_path), "--store",
                 str(tmp_path / "s")]) == 2
    assert "cifar" in capsys.readouterr().err


def test_topic_matching_recovers_a_permutation():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 12))
    perm = np.array([2, 0, 3, 1])
    learned = np.empty_like(truth)
    learned[perm] = 3.0 * truth  # learned topic perm[k] is true topic k
    assert list(_match_topics(learned, truth)) == list(perm)
