"""`mtlkit.datasets.sentiment`: six binary tasks over one shared bag-of-words vocabulary. Checked on a tiny fake
data directory (always) and on the staged files (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mtlkit.datasets.sentiment import (
    TASK_FILES,
    TASKS,
    bag_of_words,
    build_vocabulary,
    load_sentiment,
    read_labelled_sentences,
)

REAL = Path(os.environ.get("MTLKIT_DATA", "/work/shared/data"))
HAVE_REAL = all((REAL / "sentiment" / f).is_file() for fs in TASK_FILES.values() for f in fs)
WORDS = ["good", "bad", "movie", "plot", "what", "is", "the", "a", "great", "dull"]


def _fake_dir(root: Path, seed: int, permute_labels: bool = False) -> Path:
    """Every source file with 12 sentences; TREC labels in 0..5; optionally the same text with labels permuted."""
    rng = np.random.default_rng(seed)
    (root / "sentiment").mkdir(parents=True)
    for task, files in TASK_FILES.items():
        for f in files:
            lines = []
            labels = np.arange(12) % (6 if task == "TREC" else 2)
            if permute_labels:
                labels = np.random.default_rng(99).permutation(labels)
            for i in range(12):
                words = rng.choice(WORDS, size=3 + i % 4)
                lines.append(f"{labels[i]} " + " ".join(words).upper())
            (root / "sentiment" / f).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return root


def test_fake_dir_gives_six_binary_tasks_with_shared_vocabulary(tmp_path):
    data = load_sentiment(_fake_dir(tmp_path, 0), vocab_size=6)
    assert data.task_names == TASKS and data.n_tasks == 6 and data.kind == "binary"
    sizes = dict(zip(TASKS, data.task_sizes, strict=True))
    assert sizes == {"MR": 12, "SUBJ": 12, "CR": 12, "TREC": 24, "MPQA": 12, "SST": 36}
    for X, y in zip(data.xs, data.ys, strict=True):
        assert X.shape[1] == 6
        assert set(np.unique(y)) <= {0.0, 1.0}
        assert (X >= 0).all() and (X.sum(1) <= 1 + 1e-12).all()  # "mean" weighting: fractions of the tokens
    trec = data.ys[TASKS.index("TREC")]
    assert trec.sum() == 4  # label 1 of 0..5 in each 12-line file: 2 per file, vs the rest


def test_features_do_not_depend_on_labels(tmp_path):
    a = load_sentiment(_fake_dir(tmp_path / "a", 0), vocab_size=8)
    b = load_sentiment(_fake_dir(tmp_path / "b", 0, permute_labels=True), vocab_size=8)
    for Xa, Xb in zip(a.xs, b.xs, strict=True):
        np.testing.assert_array_equal(Xa, Xb)
    assert any(not np.array_equal(ya, yb) for ya, yb in zip(a.ys, b.ys, strict=True))


def test_bag_of_words_by_hand():
    docs = [["good", "good", "movie", "zzz"], ["bad"], []]
    vocab = build_vocabulary([["good", "good", "movie"], ["bad", "movie"]], 2)
    assert vocab == {"good": 0, "movie": 1}  # counts 2, 2 → alphabetical tie-break; "bad" (1) left out
    np.testing.assert_allclose(bag_of_words(docs, vocab, "count"), [[2, 1], [0, 0], [0, 0]])
    np.testing.assert_allclose(bag_of_words(docs, vocab, "mean"), [[0.5, 0.25], [0, 0], [0, 0]])
    np.testing.assert_allclose(bag_of_words(docs, vocab, "binary"), [[1, 1], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="weighting"):
        bag_of_words(docs, vocab, "tfidf")
    with pytest.raises(ValueError, match="vocab_size"):
        build_vocabulary(docs, 0)


def test_lines_split_on_newline_only(tmp_path):
    p = tmp_path / "x.all"
    p.write_bytes(b"1 caf\xe9 \x85 nice\n0 plain\n")
    labels, docs = read_labelled_sentences(p)
    assert labels == [1, 0] and docs[0] == ["café", "nice"]  # U+0085 is whitespace inside a line, not a break


def test_bad_line_is_a_clear_error(tmp_path):
    from mtlkit.errors import DataError

    p = tmp_path / "x.all"
    p.write_text("positive great\n")
    with pytest.raises(DataError, match="line 1"):
        read_labelled_sentences(p)


@pytest.mark.skipif(not HAVE_REAL, reason=f"the staged sentiment files are not in {REAL}/sentiment")
def test_real_files_row_counts_and_subsampling():
    counts = {t: sum(len(read_labelled_sentences(REAL / "sentiment" / f)[0]) for f in fs)
              for t, fs in TASK_FILES.items()}
    assert counts == {"MR": 10662, "SUBJ": 10000, "CR": 3775, "TREC": 5952, "MPQA": 10606, "SST": 9613}
    trec = [y for f in TASK_FILES["TREC"] for y in read_labelled_sentences(REAL / "sentiment" / f)[0]]
    assert np.bincount(trec).argmax() == 1 and np.bincount(trec)[1] == 1344  # label 1 is TREC's largest class
    small = load_sentiment(REAL, vocab_size=50, max_per_task=100, seed=1)
    assert small.task_sizes == (100,) * 6 and small.xs[0].shape == (100, 50)
    assert all(set(np.unique(y)) == {0.0, 1.0} for y in small.ys)
