"""Data sets by name: the embedded digits, the data-directory errors, and (when staged) School and MNIST-MTL
checked against their raw files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

import mtlkit
from mtlkit.errors import DataDirError, MtlkitError, UnknownNameError


def test_names():
    names = mtlkit.datasets.names()
    assert {"digits", "mnist-mtl", "school", "school-3class"} <= set(names)
    assert not mtlkit.datasets.info("digits").needs_data_dir
    assert mtlkit.datasets.info("school").needs_data_dir


def test_unknown_dataset_lists_known():
    with pytest.raises(UnknownNameError) as e:
        mtlkit.datasets.load("imagenet")
    msg = str(e.value)
    assert "'imagenet'" in msg and "digits" in msg and "school" in msg


def test_digits_one_vs_rest_tasks():
    from sklearn.datasets import load_digits

    sk = load_digits()
    label_of = {row.tobytes(): int(lab) for row, lab in zip(sk.data, sk.target, strict=True)}
    data = mtlkit.datasets.load("digits")
    assert data.n_tasks == 10 and data.kind == "binary" and not data.shared
    assert data.feature_shape == (64,)
    assert data.task_names == tuple(f"digit{d}" for d in range(10))
    for d in range(10):
        X, y = data.task_arrays(d)
        digits = np.array([label_of[row.tobytes()] for row in X])  # every row is a real digits image
        pos, neg = digits[y == 1], digits[y == 0]
        assert len(pos) == len(neg) == int((sk.target == d).sum())
        assert (pos == d).all()
        assert len(np.unique(X, axis=0)) == len(X)  # drawn without replacement
        per_other = np.bincount(neg, minlength=10)
        assert per_other[d] == 0
        others = np.delete(per_other, d)
        assert others.min() >= 1 and others.max() - others.min() <= 1  # spread evenly over the 9 others


def test_digits_seed():
    a, b, c = (mtlkit.datasets.load("digits", seed=s) for s in (0, 0, 1))
    assert a.checksum() == b.checksum() != c.checksum()


@pytest.mark.parametrize("name,relative", [("school", "school/argyriou_splits/school_b.mat"),
                                           ("school-3class", "school/argyriou_splits/school_b.mat"),
                                           ("mnist-mtl", "mnist/raw/t10k-images-idx3-ubyte.gz")])
def test_missing_data_dir(name, relative, monkeypatch, tmp_path):
    monkeypatch.delenv("MTLKIT_DATA", raising=False)
    with pytest.raises(DataDirError) as e:
        mtlkit.datasets.load(name)
    msg = str(e.value)
    assert "MTLKIT_DATA" in msg and relative in msg
    # a data directory without the file: the message names the file and where it looked
    monkeypatch.setenv("MTLKIT_DATA", str(tmp_path))
    with pytest.raises(DataDirError) as e:
        mtlkit.datasets.load(name)
    msg = str(e.value)
    assert "MTLKIT_DATA" in msg and relative in msg and str(tmp_path) in msg
    with pytest.raises(DataDirError) as e:
        mtlkit.datasets.load(name, data_dir=tmp_path / "elsewhere")
    assert "elsewhere" in str(e.value)
    assert isinstance(e.value, MtlkitError) and isinstance(e.value, FileNotFoundError)


# ---------------------------------------------------------------------- real data (when staged)
def _data_dir() -> Path:
    root = os.environ.get("MTLKIT_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("MTLKIT_DATA is not set to a data directory")
    return Path(root)


def _raw_school(root: Path):
    from scipy.io import loadmat

    path = root / "school/argyriou_splits/school_b.mat"
    if not path.is_file():
        pytest.skip("School is not staged")
    m = loadmat(str(path))
    starts = m["task_indexes"].ravel().astype(int) - 1
    return m["x"].T.astype(float), m["y"].ravel().astype(float), starts


@pytest.fixture(scope="module")
def school():
    root = _data_dir()
    _raw_school(root)
    return mtlkit.datasets.load("school", data_dir=root)


def test_school_shape_and_values(school):
    root = _data_dir()
    x, y, starts = _raw_school(root)
    assert school.n_tasks == 139 and school.kind == "regression"
    assert sum(school.task_sizes) == 15362
    assert school.feature_shape == (28,)
    np.testing.assert_array_equal(np.concatenate(school.xs), x)
    np.testing.assert_array_equal(np.concatenate(school.ys), y)
    np.testing.assert_array_equal(np.cumsum((0,) + school.task_sizes[:-1]), starts)
    assert (np.concatenate(school.xs)[:, 27] == 1).all()  # the bias column


def test_school_predefined_splits_disjoint_and_cover(school):
    splits = school.predefined_splits
    assert len(splits) == 10
    tr_total = 0
    for train, test in splits:
        assert len(train) == len(test) == 139
        for t, n in enumerate(school.task_sizes):
            tr, te = np.asarray(train[t]), np.asarray(test[t])
            assert len(np.intersect1d(tr, te)) == 0
            np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(n))
            tr_total += len(tr)
    assert tr_total == 10 * 11472  # Argyriou's splits: 11,472 train / 3,890 test students
    s = school.split_indices(*splits[0], val_fraction=0.2, seed=0)
    total = sum(len(s.train.ys[t]) + len(s.val.ys[t]) + len(s.test.ys[t]) for t in range(139))
    assert total == 15362


def test_school_3class_bins():
    root = _data_dir()
    _, y, _ = _raw_school(root)
    data = mtlkit.datasets.load("school-3class", data_dir=root)
    assert data.n_tasks == 139 and data.kind == "multiclass" and data.spec.n_classes == (3,) * 139
    labels = np.concatenate(data.ys)
    assert set(np.unique(labels).tolist()) <= {0.0, 1.0, 2.0}
    assert y.min() >= 0 and y.max() < 71
    expected = np.where(y < 10, 0, np.where(y < 20, 1, 2))
    np.testing.assert_array_equal(labels, expected)
    assert all((labels == k).any() for k in range(3))


def _raw_mnist(root: Path):
    img = root / "mnist/raw/t10k-images-idx3-ubyte.gz"
    lab = root / "mnist/raw/t10k-labels-idx1-ubyte.gz"
    if not (img.is_file() and lab.is_file()):
        pytest.skip("MNIST test images are not staged")
    images = np.frombuffer(gzip.decompress(img.read_bytes())[16:], dtype=np.uint8).reshape(10000, 784)
    labels = np.frombuffer(gzip.decompress(lab.read_bytes())[8:], dtype=np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def mnist():
    root = _data_dir()
    images, labels = _raw_mnist(root)
    return mtlkit.datasets.load("mnist-mtl", data_dir=root), images, labels


def test_mnist_mtl_tasks(mnist):
    data, images, labels = mnist
    assert data.n_tasks == 10 and data.kind == "binary"
    assert data.feature_shape == (784,)
    assert data.task_sizes == tuple(1792 if d == 5 else 1800 for d in range(10))
    digit_of = {row.tobytes(): int(lab) for row, lab in zip(images, labels, strict=True)}
    for d in range(10):
        X, y = data.task_arrays(d)
        assert X.min() >= 0 and X.max() <= 1
        digits = np.array([digit_of[np.round(row * 255).astype(np.uint8).tobytes()] for row in X])
        assert int(y.sum()) == (892 if d == 5 else 900)
        assert (digits[y == 1] == d).all()
        per_other = np.bincount(digits[y == 0], minlength=10)
        assert per_other[d] == 0 and (np.delete(per_other, d) == 100).all()
        assert len(np.unique(X, axis=0)) == len(X)


def test_mnist_mtl_split_is_pca64(mnist):
    data, _, _ = mnist
    s = data.split(test=0.2, val=0.2, seed=0)
    assert s.train.feature_shape == (64,) and s.val.feature_shape == (64,) and s.test.feature_shape == (64,)
    assert s.transform.components.shape == (64, 784)
    np.testing.assert_allclose(s.transform.components @ s.transform.components.T, np.eye(64), atol=1e-8)
    X0 = data.xs[0][s.indices["test"][0]]
    np.testing.assert_allclose(s.test.xs[0], (X0 - s.transform.mean) @ s.transform.components.T, atol=1e-10)
