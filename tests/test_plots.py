"""Plots: each writes a PNG and an SVG that decode to the figure's size; bars come sorted; the task-relation
hook reads a model's matrices; `mtlkit plot` works end to end and answers bad input with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import toy_data
from matplotlib.colors import to_hex
from matplotlib.image import imread

import mtlkit
from mtlkit.analysis import task_relations
from mtlkit.analysis.plots import (
    DPI,
    NEGATIVE,
    POSITIVE,
    improvement_bars_figure,
    learning_curves_figure,
    plot_improvement_bars,
    plot_learning_curves,
    plot_relation_matrix,
    relation_matrix_figure,
    value_scale,
)
from mtlkit.cli import main
from mtlkit.errors import MtlkitError
from mtlkit.experiments.bench import run_bench
from mtlkit.experiments.store import ResultsStore
from mtlkit.train.trainer import History


def check_files(paths: list[Path], fig_size: tuple[float, float]) -> None:
    png, svg = paths
    assert png.suffix == ".png" and svg.suffix == ".svg" and png.stem == svg.stem
    assert png.stat().st_size > 1000 and svg.stat().st_size > 1000
    assert svg.read_text().lstrip().startswith("<?xml")
    img = imread(png)
    h, w = img.shape[:2]  # matplotlib truncates size × dpi to whole pixels
    assert abs(h - fig_size[1] * DPI) <= 1 and abs(w - fig_size[0] * DPI) <= 1 and img.shape[2] in (3, 4)


def test_relation_matrix_heatmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f"task{i}" for i in range(10)]
    fig = relation_matrix_figure(rng.random((10, 10)), names, names, "ω")
    check_files(plot_relation_matrix(rng.random((10, 10)), names, names, "ω", tmp_path / "omega.png"),
                tuple(fig.get_size_inches()))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert len(ax.texts) == 100  # values annotated on a small matrix
    wide = relation_matrix_figure(rng.normal(size=(4, 12)), list("1234"), names + ["a", "b"], "θ")
    assert len(wide.axes[0].get_yticklabels()) == 4
    big_names = [f"s{i}" for i in range(139)]
    big = relation_matrix_figure(rng.normal(size=(139, 139)), big_names, big_names, "big")
    assert 10 <= len(big.axes[0].get_xticklabels()) <= 20 and not big.axes[0].texts  # thinned, not annotated
    with pytest.raises(MtlkitError, match="2-D"):
        relation_matrix_figure(np.zeros(3), ["a"], ["b"], "x")


def test_small_values_are_annotated_on_a_common_scale() -> None:
    """Entries ~1e-3 (TOMATO's ‖θˢ_kt‖) used to print "0.00" in every cell: now v / 10^k with ×10^k on the bar."""
    rng = np.random.default_rng(1)
    m = rng.random((4, 12)) * 3e-3
    fig = relation_matrix_figure(m, [f"topic {i}" for i in range(4)], [f"task{i}" for i in range(12)], "θ", "norm")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 48 and len(set(texts)) > 10  # readable, not all equal
    k = value_scale(float(m.max()))
    assert k == -3
    assert texts[int(np.argmax(m))] == f"{m.max() / 1e-3:.1f}"  # the largest value with 2 significant digits
    bar = fig.axes[0].child_axes[0]  # the colour bar (an inset of the heatmap)
    assert "10$^{-3}$" in bar.get_title()
    # the colour bar's ticks are on the same scale as the cells
    fig.canvas.draw()
    ticks = [float(t.get_text()) for t in bar.get_yticklabels() if t.get_text()]
    assert ticks and max(ticks) < 10
    # a symbol label shares the title with the factor; values in [0.1, 1000) keep their plain format
    sym = relation_matrix_figure(m, [f"r{i}" for i in range(4)], [f"c{i}" for i in range(12)], "AS", "AS")
    assert sym.axes[0].child_axes[0].get_title() == "AS ×10$^{-3}$"
    plain = relation_matrix_figure(np.array([[0.5, 0.25]]), ["a"], ["b", "c"], "ω")
    assert [t.get_text() for t in plain.axes[0].texts] == ["0.50", "0.25"]
    assert not plain.axes[0].child_axes[0].get_title()
    assert value_scale(2500.0) == 3 and value_scale(0.0) == 0
    # readable for large matrices: no values on more than 20×20 cells, even when asked
    big = relation_matrix_figure(rng.random((25, 25)) * 1e-3, [str(i) for i in range(25)],
                                 [str(i) for i in range(25)], "big", annotate=True)
    assert not big.axes[0].texts


def test_improvement_bars_are_sorted_and_coloured(tmp_path: Path) -> None:
    vals = np.array([3.0, -10.0, np.nan, 25.0, 0.5, -1.0])
    names = [f"t{i}" for i in range(6)]
    fig = improvement_bars_figure(vals, names, "title")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [25.0, 3.0, 0.5, -1.0, -10.0]  # NaN task left out, best first
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t3", "t0", "t4", "t5", "t1"]
    colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == [POSITIVE] * 3 + [NEGATIVE] * 2
    assert ax.get_ylabel() == "improvement over STL (%)"
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(np.nanmean(vals))
    assert "1 task(s) left out" in fig.get_supxlabel().replace("\n", " ")
    check_files(plot_improvement_bars(vals, names, "title", tmp_path / "bars"), tuple(fig.get_size_inches()))
    many = improvement_bars_figure(np.linspace(-5, 5, 139), [f"s{i}" for i in range(139)], "school")
    h = [p.get_height() for p in many.axes[0].patches]
    assert h == sorted(h, reverse=True) and len(h) == 139


def test_learning_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hist = History([rng.random(3) + 1 / (e + 1) for e in range(6)], [rng.random(3) + 1 for _ in range(6)],
                   best_epoch=2)
    fig = learning_curves_figure(hist, ["a", "b", "c"], "curves")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["mean over 3 tasks", "selected epoch (3)", "a", "b", "c"]
    train_ax = fig.axes[0]
    assert any(list(ln.get_xdata()) == [3, 3] for ln in train_ax.get_lines())  # the selected epoch marked
    check_files(plot_learning_curves(hist, ["a", "b", "c"], tmp_path / "curves"), tuple(fig.get_size_inches()))

    as_stored = {"train_loss": [[1.0] * 139, [0.5] * 139], "val_loss": [[1.2] * 139, [None] * 139], "best_epoch": 0}
    many = learning_curves_figure(as_stored, [f"s{i}" for i in range(139)], max_tasks=12)
    labels = [t.get_text() for t in many.legends[0].get_texts()]
    assert labels == ["mean over 139 tasks", "selected epoch (1)", "10–90% of tasks", "one task"]
    with pytest.raises(MtlkitError, match="no training history"):
        learning_curves_figure(None, ["a"])


class WithRelations(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.omega = torch.nn.Parameter(torch.eye(3) + 0.1)

    def task_relations(self) -> dict[str, torch.Tensor]:
        return {"ω": self.omega / self.omega.sum(), "topics": np.ones((2, 3))}


def test_task_relations_hook() -> None:
    model = WithRelations()
    rel = task_relations(model)
    assert list(rel) == ["ω", "topics"] and rel["ω"].dtype == np.float64 and rel["ω"].shape == (3, 3)
    np.testing.assert_allclose(rel["ω"].sum(), 1.0, rtol=1e-6)  # float32 parameters

    class Holder:  # a Run-like object: the hook is read from its model
        def __init__(self, m: torch.nn.Module) -> None:
            self.model = m

    assert task_relations(Holder(model)).keys() == rel.keys()
    assert task_relations(torch.nn.Linear(2, 2)) == {}

    class Bad(torch.nn.Module):
        def task_relations(self) -> dict[str, torch.Tensor]:
            return {"v": torch.ones(3)}

    with pytest.raises(MtlkitError, match="2-D"):
        task_relations(Bad())


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory: pytest.TempPathFactory) -> ResultsStore:
    st = ResultsStore(tmp_path_factory.mktemp("bench") / "results.sqlite")
    run_bench(toy_data("toy", 4), ["stl", "hard-share", "stl-linear"], n_splits=2, store=st, select=False,
              hparams={"epochs": 3}, progress=False)
    return st


def one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def test_plot_commands_end_to_end(bench_store: ResultsStore, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    s = str(bench_store.path)
    assert main(["plot", "improvement", "--store", s, "--dataset", "toy", "--out", str(tmp_path)]) == 0
    assert main(["plot", "curves", "--store", s, "--dataset", "toy", "--method", "hard-share", "--split", "seed-1",
                 "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["curves-toy-hard-share-seed-1.png", "curves-toy-hard-share-seed-1.svg",
                     "improvement-toy-hard-share.png", "improvement-toy-hard-share.svg",
                     "improvement-toy-stl-linear.png", "improvement-toy-stl-linear.svg"]
    assert all(imread(p).shape[0] > 100 for p in tmp_path.glob("*.png"))
    printed = capsys.readouterr().out.split()
    assert len(printed) == 6

    assert main(["plot", "curves", "--store", s, "--dataset", "toy", "--method", "stl-linear"]) == 2
    one_line_error(capsys, "no training history")
    assert main(["plot", "curves", "--store", s, "--dataset", "toy", "--method", "mmoe"]) == 2
    one_line_error(capsys, "no runs of 'mmoe'", "hard-share")
    assert main(["plot", "improvement", "--store", s, "--dataset", "toy", "--method", "stl"]) == 2
    one_line_error(capsys, "is the reference")
    assert main(["plot", "improvement", "--store", str(tmp_path / "none.sqlite"), "--dataset", "toy"]) == 2
    one_line_error(capsys, "no results store")
    assert main(["plot", "improvement", "--store", s, "--dataset", "school"]) == 2
    one_line_error(capsys, "no runs", "toy")


def test_plot_relations_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_data("toy", 3)
    run = mtlkit.train("hard-share", data.split(seed=0), hparams={"epochs": 1}, device="cpu", progress=False)
    run.save(tmp_path / "run")
    assert main(["plot", "relations", "--run", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "'hard-share' exposes no task-relation matrix")
    assert main(["plot", "relations", "--run", str(tmp_path / "nothing")]) == 2
    one_line_error(capsys, "not a saved run")

    from mtlkit.train import run as run_module

    real_load = run_module.load

    def load_with_relations(path: Path, device: str = "cpu") -> mtlkit.Run:
        loaded = real_load(path, device)
        loaded.model = WithRelations()
        return loaded

    monkeypatch.setattr(run_module, "load", load_with_relations)
    assert main(["plot", "relations", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "fig")]) == 0
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "relations-hard-share-omega.png", "relations-hard-share-omega.svg",
        "relations-hard-share-topics.png", "relations-hard-share-topics.svg"]
