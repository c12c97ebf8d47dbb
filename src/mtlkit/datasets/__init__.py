"""Data sets by name: embedded ones (``digits``) and real ones read from a data directory
(``--data-dir`` or ``$MTLKIT_DATA``), never downloaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlkit.data.multitask import MultiTaskData
from mtlkit.datasets._paths import ENV_VAR
from mtlkit.errors import UnknownNameError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    summary: str
    needs_data_dir: bool
    loader: Callable[..., MultiTaskData]


def _digits(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.digits import load_digits

    return load_digits(**kw)


def _mnist(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.mnist import load_mnist_mtl

    return load_mnist_mtl(data_dir, **kw)


def _school(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.school import load_school

    return load_school(data_dir, **kw)


def _school3(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.school import load_school_3class

    return load_school_3class(data_dir, **kw)


def _tomato_synthetic(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.synthetic import load_tomato_synthetic

    return load_tomato_synthetic(**kw)


def _amtfl_synthetic(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.amtfl_synthetic import load_amtfl_synthetic

    return load_amtfl_synthetic(**kw)


def _srdml_synthetic(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.srdml_synthetic import load_srdml_synthetic

    return load_srdml_synthetic(**kw)


def _omniglot(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.omniglot import load_omniglot

    return load_omniglot(data_dir, **kw)


def _sentiment(data_dir: Any = None, **kw: Any) -> MultiTaskData:
    from mtlkit.datasets.sentiment import load_sentiment

    return load_sentiment(data_dir, **kw)


_DATASETS = {d.name: d for d in (
    DatasetInfo("digits", "embedded: scikit-learn 8x8 digits, 10 one-vs-rest binary tasks (~360 rows each)",
                False, _digits),
    DatasetInfo("mnist-mtl", "TOMATO's MNIST-MTL: 10 one-vs-rest tasks, 900 pos + 9x100 neg from the MNIST "
                "test images, PCA-64 fitted on training rows", True, _mnist),
    DatasetInfo("school", "ILEA School: 139 regression tasks (exam score), 28 features, Argyriou's 10 splits",
                True, _school),
    DatasetInfo("school-3class", "TOMATO's School: 139 tasks, score binned into 3 classes", True, _school3),
    DatasetInfo("tomato-synthetic", "embedded: TOMATO's synthetic within-topic task-sparsity data, 12 tasks x 2000 "
                "rows, d=64, soft labels over 5 classes (generated; truth via datasets.synthetic.tomato_synthetic)",
                False, _tomato_synthetic),
    DatasetInfo("amtfl-synthetic", "embedded: Deep-AMTFL's synthetic regression data, 6 easy (sigma=1) + 6 hard "
                "(sigma=2) tasks, d=30, w_t from 2 of 6 bases, 5 splits 50/50/100 easy and 25/25/100 hard "
                "(generated; truth via datasets.amtfl_synthetic.amtfl_synthetic)", False, _amtfl_synthetic),
    DatasetInfo("srdml-synthetic", "embedded: SRDML's synthetic regression data, 12 tasks x 100 rows, d=20, two "
                "orthogonal half-vector bases, magnitudes 1/2/3 as twin pairs, sign-flip noise, N(0, 0.1) labels "
                "(generated; truth via datasets.srdml_synthetic.srdml_synthetic)", False, _srdml_synthetic),
    DatasetInfo("omniglot", "Omniglot background small1+small2: 8 alphabets as multiclass tasks (17-47 characters "
                "x 20 drawers), images [1, size, size] (size=105 as the paper; size=35 for CPU)", True, _omniglot),
    DatasetInfo("sentiment", "Wu et al.'s six sentence sets (MR, SUBJ, CR, TREC largest-class-vs-rest, MPQA, SST) as "
                "binary tasks, bag-of-words over a shared top-V vocabulary", True, _sentiment),
)}


def names() -> list[str]:
    """All data set names."""
    return list(_DATASETS)


def info(name: str) -> DatasetInfo:
    if name not in _DATASETS:
        raise UnknownNameError(f"unknown data set {name!r}; known data sets: {', '.join(names())}")
    return _DATASETS[name]


def load(name: str, data_dir: str | Path | None = None, **kwargs: Any) -> MultiTaskData:
    """Load a data set by name; real ones read from ``data_dir`` or ``$MTLKIT_DATA``."""
    return info(name).loader(data_dir, **kwargs)


__all__ = ["ENV_VAR", "DatasetInfo", "info", "load", "names"]
