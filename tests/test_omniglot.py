"""The Omniglot loader (8 staged alphabets as multiclass tasks) against the raw npz files, its area downsampling
against block means, and the paper's 10% / 90% split protocol. Skipped when the data directory is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mtlkit.datasets._paths import ENV_VAR
from mtlkit.datasets.omniglot import FILES, _area_resize, load_omniglot, paper_splits
from mtlkit.errors import DataError

ROOT = os.environ.get(ENV_VAR, "")
HAVE_DATA = bool(ROOT) and all((Path(ROOT) / f).is_file() for f in FILES)
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"Omniglot npz files not found: set {ENV_VAR} to a data "
                                                      f"directory holding {' and '.join(FILES)}")
CLASSES = {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Japanese_(katakana)": 47, "Korean": 40,
           "Latin": 26, "Sanskrit": 42, "Tagalog": 17}  # the omniglot README's character counts


def test_area_resize_block_means_and_mean_preserved() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((2, 12, 12))
    got = _area_resize(img, 4)
    blocks = img.reshape(2, 4, 3, 4, 3).mean(axis=(2, 4))  # exact 3×3 block means
    np.testing.assert_allclose(got, blocks, rtol=1e-5)
    odd = _area_resize(img, 5)  # fractional overlaps: every input pixel still counts equally overall
    np.testing.assert_allclose(odd.mean(axis=(1, 2)), img.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(_area_resize(img, 12), img, rtol=1e-6)


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="size"):
        load_omniglot(data_dir="/nonexistent", size=0)


@pytest.fixture(scope="module")
def small() -> object:
    return load_omniglot(size=35)


@needs_data
def test_eight_alphabets_as_tasks(small: object) -> None:
    d = small
    assert d.n_tasks == 8 and d.kind == "multiclass"  # type: ignore[attr-defined]
    assert d.task_names == tuple(sorted(CLASSES))  # type: ignore[attr-defined]
    assert d.spec.n_classes == tuple(CLASSES[a] for a in sorted(CLASSES))  # type: ignore[attr-defined]
    assert d.feature_shape == (1, 35, 35)  # type: ignore[attr-defined]
    for t, name in enumerate(d.task_names):  # type: ignore[attr-defined]
        X, y = d.task_arrays(t)  # type: ignore[attr-defined]
        assert X.shape == (20 * CLASSES[name], 1, 35, 35)
        assert np.array_equal(np.bincount(y.astype(int)), np.full(CLASSES[name], 20))  # 20 drawers per character
        assert X.min() >= 0.0 and X.max() <= 1.0
        assert 0.02 < X.mean() < 0.3  # ink (=1 after inversion) is the minority of the pixels


@needs_data
def test_pixels_match_the_raw_file(small: object) -> None:
    with np.load(Path(ROOT) / FILES[1]) as z:  # small2 holds Tagalog
        a = list(z["alphabets"]).index("Tagalog")
        rows = np.flatnonzero(z["alphabet"] == a)
        raw, char = z["images"][rows], z["character"][rows]
    first = raw[char == 3][0].astype(float)  # the first image of character index 3
    X, y = small.task_arrays(small.task_names.index("Tagalog"))  # type: ignore[attr-defined]
    got = X[y == 3][0, 0]
    np.testing.assert_allclose(got, 1.0 - first.reshape(35, 3, 35, 3).mean(axis=(1, 3)), atol=1e-6)
    full = load_omniglot(alphabets=["Tagalog"], invert=False)  # default size = the paper's 105
    assert full.feature_shape == (1, 105, 105) and full.task_names == ("Tagalog",)
    Xf, yf = full.task_arrays(0)
    np.testing.assert_array_equal(Xf[yf == 3][0, 0], first)


@needs_data
def test_paper_splits(small: object) -> None:
    splits = paper_splits(small, repeats=2)  # type: ignore[arg-type]
    assert len(splits) == 2
    for s in splits:
        for t in range(8):
            _, ytr = s.train.task_arrays(t)
            _, yte = s.test.task_arrays(t)
            assert np.array_equal(np.bincount(ytr.astype(int)), np.full(small.spec.n_classes[t], 2))  # 10%
            assert len(yte) == 9 * len(ytr)
    a = splits[0].train.task_arrays(0)[0]
    b = splits[1].train.task_arrays(0)[0]
    assert not np.array_equal(a, b)  # different repeats draw different images
    with pytest.raises(DataError, match="unknown alphabet"):
        load_omniglot(size=7, alphabets=["Klingon"])
