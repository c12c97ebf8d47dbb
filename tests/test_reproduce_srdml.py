"""`mtlkit reproduce srdml`: the quick smoke run end to end (sections, provenance, the paper's numbers, figures),
the shared-image data builder against hand-built images, and the ω group means against a hand computation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mtlkit.cli import main
from mtlkit.datasets.mnist_shared import mnist_shared, pool_images
from mtlkit.experiments.reproduce.srdml import (
    PAPER_TABLE2,
    PAPER_TABLE3,
    contradicting_groups,
    pair_group_means,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _data_dir() -> Path | None:
    for d in (os.environ.get("MTLKIT_DATA"), "/work/shared/data"):
        if d and (Path(d) / "mnist" / "raw" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(d)
    return None


def test_quick_run_writes_every_section_with_paper_numbers(tmp_path):
    data_dir = _data_dir()
    args = ["reproduce", "srdml", "--quick", "--splits", "2", "--out", str(tmp_path / "out"),
            "--store", str(tmp_path / "s.db")]
    if data_dir is None:
        args += ["--parts", "synthetic"]
    else:
        args += ["--data-dir", str(data_dir)]
    assert main(args) == 0
    md = (tmp_path / "out" / "srdml.md").read_text()
    needles = ["Command: `mtlkit", "Machine:", "checksum `", "QUICK SMOKE RUN", "claims, checked here",
               "Fig. 4b", "twin pairs", "cross-base pairs", "Fig. 4c", "Fig. 4d", "Table 3",
               f"{PAPER_TABLE3[1.0][0]:.3f}", f"{PAPER_TABLE3[0.0][1]:.3f}", " ± "]
    if data_dir is not None:
        needles += ["Table 2 analogue", "Table 4 analogue", "a small CNN instead of VGG-16", "`stl-cnn` (STL)",
                    f"{PAPER_TABLE2['srdml'][0]:.2f}", f"{PAPER_TABLE2['srdml+pcgrad'][2]:.2f}", "94.92",
                    "`rmtl` (RMTL)", "`srdml+pcgrad`", "`mgda-ub`"]
    for needle in needles:
        assert needle in md, needle
    figs = [f"synthetic-{f}" for f in ("omega", "weights", "improvement", "lambda")]
    if data_dir is not None:
        figs += ["images-omega", "images-improvement"]
    for fig in figs:
        assert (tmp_path / "out" / f"srdml-{fig}.png").stat().st_size > 1000, fig
    csv = (tmp_path / "out" / "srdml.csv").read_text().splitlines()
    # synthetic (quick): 3 λ × 2 metrics + STL × 2 metrics + Table 3's 2 λ × 2 metrics, each on 2 splits
    n_rows = 2 * (3 * 2 + 2 + 2 * 2)
    if data_dir is not None:  # images: 12 methods × 4 metrics + the ω ≡ 1 ablation, on 2 splits
        n_rows += 2 * (12 * 4 + 1)
    assert len(csv) == 1 + n_rows


def test_unknown_part_is_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "srdml", "--parts", "cifar", "--out", str(tmp_path), "--store",
                 str(tmp_path / "s")]) == 2
    assert "cifar" in capsys.readouterr().err


def _fake_mnist(per_digit: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Images whose every pixel holds the image's own index (so a row can be traced back), 8×8, digits 0-9."""
    n = 10 * per_digit + 7
    labels = np.arange(n) % 10
    images = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], (n, 8, 8)).copy()
    return images, labels


def test_shared_image_tasks_are_one_vs_rest_on_the_same_rows():
    images, labels = _fake_mnist()
    data = mnist_shared(images, labels, n_per_digit=4, pool=2, pca=None, seed=3)
    assert data.shared and data.n_tasks == 10 and data.kind == "binary"
    assert data.x.shape == (40, 1, 4, 4) and data.y.shape == (40, 10)
    src = np.rint(data.x[:, 0, 0, 0] * 255.0).astype(int)  # pooling a constant image keeps the constant
    assert len(np.unique(src)) == 40  # drawn without replacement
    # each row is positive for exactly its own digit: the one-vs-rest construction, 4 positives per task
    np.testing.assert_array_equal(data.y, (labels[src][:, None] == np.arange(10)[None, :]).astype(float))
    np.testing.assert_array_equal(data.y.sum(0), np.full(10, 4.0))
    np.testing.assert_array_equal(data.y.sum(1), np.ones(40))
    again = mnist_shared(images, labels, n_per_digit=4, pool=2, pca=None, seed=3)
    assert again.checksum() == data.checksum() != mnist_shared(images, labels, 4, 2, None, seed=4).checksum()
    with pytest.raises(ValueError, match="fewer than"):
        mnist_shared(images, labels, n_per_digit=7, pca=None)


def test_pooling_is_the_block_mean():
    x = np.arange(2 * 5 * 5, dtype=np.float64).reshape(2, 5, 5)
    p = pool_images(x, 2)
    assert p.shape == (2, 2, 2)
    assert p[1, 0, 1] == np.mean([x[1, 0, 2], x[1, 0, 3], x[1, 1, 2], x[1, 1, 3]])
    np.testing.assert_array_equal(pool_images(x, 1), x)


def test_shared_images_with_pca_split_into_vectors():
    images, labels = _fake_mnist(12)
    rng = np.random.default_rng(0)
    images = images + rng.normal(size=images.shape)  # distinct rows for the PCA
    split = mnist_shared(images, labels, n_per_digit=10, pool=2, pca=5, seed=0).split(test=0.2, val=0.2, seed=0)
    assert split.train.x.shape == (64, 5) and split.test.x.shape == (20, 5)


def test_omega_group_means_match_a_hand_computation():
    # tasks 0,1 twins and 2,3 twins; all four in one base, except task 3 in another
    groups = np.array([[2, 2, 1, 0], [2, 2, 1, 0], [1, 1, 2, 0], [0, 0, 0, 2]])
    omega = np.array([[0, 6, 2, 1], [6, 0, 4, 1], [2, 4, 0, 1], [1, 1, 1, 0]], dtype=float)
    # pairs: (0,1)=6 twin; (0,2)=2, (1,2)=4 same base; (0,3)=(1,3)=(2,3)=1 cross; mean over 6 pairs = 15/6
    scale = 15 / 6
    got = pair_group_means(omega, groups)
    assert got == pytest.approx({2: 6 / scale, 1: 3 / scale, 0: 1 / scale})
    assert pair_group_means(7.0 * omega, groups) == pytest.approx(got)  # ω's scale does not matter
    with pytest.raises(ValueError):
        pair_group_means(np.zeros((4, 4)), groups)


def test_contradicting_pair_groups():
    base, sign = np.array([0, 0, 0, 1]), np.array([1.0, -1.0, 1.0, -1.0])
    g = contradicting_groups(base, sign)
    assert g[0, 2] == 2 and g[0, 1] == 1 and g[1, 2] == 1 and g[0, 3] == 0 and g[1, 3] == 0
    np.testing.assert_array_equal(g, g.T)
