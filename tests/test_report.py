"""Report tables against hand computations: mean ± CI over splits, Δ vs STL on matched splits, tasks hurt,
mean rank across data sets, the latest-re-run rule; the three renderings parse; old stores are migrated."""

from __future__ import annotations

import io
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import toy_data
from scipy import stats

import mtlkit
from mtlkit.cli import main
from mtlkit.errors import MtlkitError
from mtlkit.experiments.bench import leaderboard, run_bench
from mtlkit.experiments.report import (
    IMPROVEMENT_DEFINITION,
    build_report,
    latex_escape,
    load_results,
    report_from_store,
    to_csv,
    to_latex,
    to_markdown,
    write_report,
)
from mtlkit.experiments.store import ResultsStore
from mtlkit.train.run import Evaluation


def fake_eval(rmse: list[float]) -> Evaluation:
    """A test evaluation with chosen per-task RMSEs (MAE = RMSE / 2, to tell them apart)."""
    per = {"rmse": np.array(rmse, dtype=float), "mae": np.array(rmse, dtype=float) / 2}
    return Evaluation("regression", tuple(f"t{i}" for i in range(len(rmse))), per,
                      {k: float(v.mean()) for k, v in per.items()})


# Known per-task test RMSEs. toy_a: STL has split s3, the others do not; hard-share's s1 is recorded twice
# (the first, all-99 run must be replaced by the later one).
TOY_A = {
    "stl": {"s1": [10, 20, 30], "s2": [12, 18, 30], "s3": [50, 50, 50]},
    "hard-share": {"s1": [9, 21, 27], "s2": [9, 19, 33]},
    "single": {"s1": [25, 25, 25], "s2": [25, 25, 25]},
}
TOY_B = {"stl": {"s1": [5, 5], "s2": [5, 5]}, "hard-share": {"s1": [6, 6], "s2": [6, 6]}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ResultsStore:
    """A store filled through the real API: small real runs (2 epochs) recorded with known test metrics."""
    st = ResultsStore(tmp_path_factory.mktemp("store") / "results.sqlite")
    for data, table in ((toy_data("toy_a", 3), TOY_A), (toy_data("toy_b", 2, seed=1), TOY_B)):
        split = data.split(test=0.2, val=0.2, seed=0)
        for method, by_split in table.items():
            run = mtlkit.train(method, split, hparams={"epochs": 2, "hidden": [8], "head_hidden": []}, seed=0,
                               device="cpu", progress=False)
            if data.name == "toy_a" and method == "hard-share":
                st.add(run, "bench", "s1", None, fake_eval([99, 99, 99]))
            for label, rmse in by_split.items():
                st.add(run, "bench", label, fake_eval(rmse), fake_eval(rmse))
    st.add(run, "other-experiment", "s1", None, fake_eval([1, 1]))
    return st


def hand_ci(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, dtype=float)
    lo, hi = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    return float(a.mean()), float((hi - lo) / 2)


def test_mean_and_ci_over_splits_match_hand_computation(store: ResultsStore) -> None:
    rep = report_from_store(store)
    # hard-share on toy_a: task averages per split 19 (s1, latest run) and 20.333 (s2)
    m, ci = rep.summaries["toy_a"]["hard-share"]
    hm, hci = hand_ci([19.0, 61 / 3])
    assert m == pytest.approx(hm) and ci == pytest.approx(hci)
    m, ci = rep.summaries["toy_a"]["stl"]  # all three of its splits: 20, 20, 50
    assert (m, ci) == pytest.approx(hand_ci([20.0, 20.0, 50.0]))


def test_delta_and_tasks_hurt_use_matched_splits_and_latest_rerun(store: ResultsStore) -> None:
    rep = report_from_store(store)
    c = rep.comparisons["toy_a"]["hard-share"]
    assert c is not None and c.reference == "stl" and c.splits == ["s1", "s2"]  # s3: STL only
    stl = np.array([11.0, 19.0, 30.0])   # STL per task over s1, s2
    hs = np.array([9.0, 20.0, 30.0])     # hard-share per task over s1 (latest), s2
    per = 100 * (stl - hs) / stl         # lower is better
    np.testing.assert_allclose(c.per_task, per)
    assert c.improvement == pytest.approx(per.mean()) and c.improvement == pytest.approx(4.30622, abs=1e-4)
    assert c.hurt == 1  # t1 worse; t2 equal is not hurt
    assert rep.comparisons["toy_a"]["stl"] is None
    assert rep.comparisons["toy_b"]["hard-share"].improvement == pytest.approx(-20.0)
    assert rep.comparisons["toy_b"]["hard-share"].hurt == 2
    assert any("Re-runs" in n and "hard-share on toy_a, split s1 (2 runs)" in n for n in rep.notes)
    assert any("hard-share on toy_a" in n and "s1, s2" in n for n in rep.notes)


def test_mean_rank_across_datasets(store: ResultsStore) -> None:
    rep = report_from_store(store)
    # toy_a means: hard-share 19.67 < single 25 < stl 30; toy_b: stl 5 < hard-share 6
    assert rep.ranks == {"hard-share": (1.5, 2), "stl": (2.0, 2), "single": (2.0, 1)}
    assert rep.methods[0] == "hard-share"


def test_filters_and_accuracy_like_metric(store: ResultsStore) -> None:
    results, _ = load_results(store, datasets=["toy_b"], methods=["stl", "hard-share"])
    assert {(r.dataset, r.method) for r in results} == {("toy_b", "stl"), ("toy_b", "hard-share")}
    mae = report_from_store(store, datasets=["toy_a"], metric="mae")
    assert mae.summaries["toy_a"]["single"][0] == pytest.approx(12.5)
    assert mae.comparisons["toy_a"]["hard-share"].improvement == pytest.approx(4.30622, abs=1e-4)
    other = report_from_store(store, experiment="other-experiment")
    assert list(other.results) == ["toy_b"]


def test_bad_filters_raise_clear_errors(store: ResultsStore) -> None:
    with pytest.raises(MtlkitError, match="no runs .* 'cifar'.*data sets: toy_a, toy_b"):
        report_from_store(store, datasets=["cifar"])
    with pytest.raises(MtlkitError, match="no runs .*'nope'"):
        report_from_store(store, methods=["nope"])
    with pytest.raises(MtlkitError, match="unknown metric 'accuracy' .*rmse"):
        report_from_store(store, metric="accuracy")
    with pytest.raises(MtlkitError, match="reference method 'mmoe'"):
        report_from_store(store, reference="mmoe")


def test_markdown_csv_latex_outputs(store: ResultsStore, tmp_path: Path) -> None:
    rep = report_from_store(store)
    md = to_markdown(rep)
    assert "| hard-share | **19.667 ± " in md                # best on toy_a in bold
    assert "+4.31" in md and "1/3" in md and "1.50 (2)" in md
    assert md.count(IMPROVEMENT_DEFINITION) == 1 and "Tasks hurt:" in md
    assert "## toy_a: test rmse per task" in md and "| t0 |" in md

    frame = pd.read_csv(io.StringIO(to_csv(rep)), keep_default_na=False)
    assert list(frame.columns) == ["dataset", "method", "task", "split", "metric", "lower_is_better", "statistic",
                                   "value", "reference"]

    def cell(**kw: str) -> float:
        sel = frame
        for k, v in kw.items():
            sel = sel[sel[k] == v]
        assert len(sel) == 1, kw
        return float(sel["value"].iloc[0])

    assert cell(dataset="toy_a", method="hard-share", task="", statistic="delta_pct") == pytest.approx(4.30622,
                                                                                                       abs=1e-4)
    assert cell(dataset="toy_a", method="hard-share", task="", statistic="tasks_hurt") == 1
    assert cell(dataset="toy_a", method="hard-share", task="", statistic="mean") == pytest.approx(59 / 3)
    assert cell(dataset="toy_a", method="hard-share", task="t0", split="s1", statistic="value") == 9  # latest
    assert cell(dataset="", method="single", statistic="mean_rank") == 2.0
    assert len(frame[(frame.statistic == "value") & (frame.dataset == "toy_a")]) == 3 * (3 + 2 + 2)

    tex = to_latex(rep)
    assert tex.count("\\begin{tabular}") == 5 and "\\toprule" in tex and "\\bottomrule" in tex
    assert "toy\\_a" in tex and "toy_a" not in tex.replace("toy\\_a", "")
    assert "$\\pm$" in tex and "$\\Delta$" in tex
    assert latex_escape("a_b & 50% #1 {x}") == "a\\_b \\& 50\\% \\#1 \\{x\\}"

    paths = write_report(rep, tmp_path, stem="r")
    assert [p.name for p in paths] == ["r.md", "r.csv", "r.tex"] and all(p.stat().st_size > 0 for p in paths)


def test_bench_leaderboard_and_report_agree(tmp_path: Path) -> None:
    st = ResultsStore(tmp_path / "results.sqlite")
    res = run_bench(toy_data("toy_c", 3, seed=2), ["stl", "hard-share"], n_splits=2, store=st, select=False,
                    hparams={"epochs": 2}, progress=False)
    rep = report_from_store(st)
    rows = {r.method: r for r in leaderboard(res)}
    for m in ("stl", "hard-share"):
        assert rep.summaries["toy_c"][m] == pytest.approx((rows[m].mean, rows[m].ci))
    assert rep.comparisons["toy_c"]["hard-share"].improvement == pytest.approx(rows["hard-share"].improvement)
    assert rep.comparisons["toy_c"]["hard-share"].hurt == rows["hard-share"].hurt
    same = build_report(res.result_sets())
    assert same.comparisons["toy_c"]["hard-share"].improvement == pytest.approx(rows["hard-share"].improvement)
    hist = st.rows(method="hard-share")[0]["history"]
    assert len(hist["train_loss"]) == 2 and len(hist["val_loss"][0]) == 3 and hist["best_epoch"] in (0, 1)
    assert st.rows(method="stl")[0]["history"] is not None


OLD_SCHEMA = """CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
    experiment TEXT NOT NULL, method TEXT NOT NULL, hparams TEXT NOT NULL, dataset TEXT NOT NULL,
    checksum TEXT NOT NULL, split TEXT NOT NULL, seed INTEGER NOT NULL, kind TEXT NOT NULL, task_names TEXT NOT NULL,
    val_metrics TEXT, test_metrics TEXT, train_seconds REAL, selection TEXT, versions TEXT NOT NULL,
    device TEXT NOT NULL)"""


def test_old_store_without_history_is_migrated(tmp_path: Path) -> None:
    data = toy_data("toy_d", 2)
    path = tmp_path / "old.sqlite"
    insert = ("INSERT INTO runs (created, experiment, method, hparams, dataset, checksum, split, seed, kind, "
              "task_names, val_metrics, test_metrics, train_seconds, selection, versions, device) VALUES "
              "('2024', 'bench', ?, '{}', 'toy_d', ?, 's1', 0, 'regression', '[\"t0\", \"t1\"]', NULL, ?, 1.0, "
              "'[]', '{}', 'cpu')")
    metrics = json.dumps(fake_eval([3.0, 4.0]).to_json())
    with sqlite3.connect(path) as c:
        c.execute(OLD_SCHEMA)
        c.execute(insert, ("stl", data.checksum(), metrics))
        c.execute(insert, ("single", "an-older-version", metrics))
    c.close()
    st = ResultsStore(path)
    assert "history" in st.columns()
    old = st.rows()[0]
    assert old["history"] is None and old["test_metrics"]["per_task"]["rmse"] == [3.0, 4.0]
    ResultsStore(path)  # opening again is harmless
    run = mtlkit.train("hard-share", data.split(seed=0), hparams={"epochs": 3}, device="cpu", progress=False)
    st.add(run, "bench", "s2", None, run.evaluate("test"))
    new = st.rows(split="s2")[0]
    assert len(new["history"]["train_loss"]) == 3
    rep = report_from_store(st)
    assert rep.summaries["toy_d"]["stl"][0] == pytest.approx(3.5)
    assert "single" not in rep.results["toy_d"]  # recorded on another version of the data (checksum)
    assert any("another version of the data" in n for n in rep.notes)


def test_store_rejects_unknown_columns_and_non_stores(tmp_path: Path) -> None:
    st = ResultsStore(tmp_path / "s.sqlite")
    with pytest.raises(MtlkitError, match="unknown results-store column"):
        st.rows(bogus=1)
    bad = tmp_path / "not.sqlite"
    bad.write_text("hello, I am not a database" * 100)
    with pytest.raises(MtlkitError, match="not an mtlkit results store"):
        ResultsStore(bad, create=False)
    with pytest.raises(MtlkitError, match="no results store"):
        ResultsStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def test_report_command(store: ResultsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--store", str(store.path), "--out", str(tmp_path), "--dataset", "toy_a"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# mtlkit report") and "toy_b" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report-bench.csv", "report-bench.md", "report-bench.tex"]
    assert main(["report", "--store", str(store.path), "--out", str(tmp_path / "md"), "--format", "md",
                 "--experiment", "all", "--method", "stl,hard-share"]) == 0
    assert [p.name for p in (tmp_path / "md").iterdir()] == ["report-all.md"]
    capsys.readouterr()

    assert main(["report", "--store", str(tmp_path / "nowhere.sqlite")]) == 2
    one_line_error(capsys, "no results store", "nowhere.sqlite")
    assert main(["report", "--store", str(store.path), "--dataset", "cifar"]) == 2
    one_line_error(capsys, "no runs", "cifar", "toy_a")
    assert main(["report", "--store", str(store.path), "--metric", "bogus"]) == 2
    one_line_error(capsys, "unknown metric 'bogus'", "rmse")
    assert main(["report", "--store", str(store.path), "--experiment", "sweep"]) == 2
    one_line_error(capsys, "no runs", "experiments: bench, other-experiment")


def test_rank_ignores_nan_and_ties_share_rank() -> None:
    from mtlkit.experiments.report import mean_ranks

    r = mean_ranks({"a": {"x": 1.0, "y": 1.0, "z": 2.0, "w": math.nan}, "b": {"x": 0.9, "y": 0.1}},
                   {"a": True, "b": False})
    assert r == {"x": (1.25, 2), "y": (1.75, 2), "z": (3.0, 1)}  # b: higher is better


def test_bench_reuses_only_runs_recorded_under_the_same_settings(tmp_path) -> None:
    """``reuse=True`` takes a recorded (method, split) only when its hyper-parameters agree with the call's: a
    changed fixed value or grid retrains; going back to the first settings reuses the first runs again."""
    from mtlkit.experiments.bench import run_bench
    from mtlkit.experiments.store import ResultsStore

    data = toy_data("toy_reuse", 2)
    store = ResultsStore(tmp_path / "s.db")

    def bench(epochs: int, lrs: list[float]) -> np.ndarray:
        res = run_bench(data, ["hard-share"], n_splits=2, store=store, hparams={"epochs": epochs, "patience": 0},
                        grids={"hard-share": {"lr": lrs}}, reuse=True, progress=False, device="cpu")
        return res.scores["hard-share"]

    first = bench(2, [1e-2])
    assert len(store.rows()) == 2
    np.testing.assert_array_equal(bench(2, [1e-2]), first)  # same settings: nothing retrained
    assert len(store.rows()) == 2
    bench(3, [1e-2])  # another fixed value: retrained
    assert len(store.rows()) == 4
    bench(3, [1e-3])  # the recorded lr is off this grid: retrained
    assert len(store.rows()) == 6
    np.testing.assert_array_equal(bench(2, [1e-2, 1e-3]), first)  # the first runs agree again (lr on the grid)
    assert len(store.rows()) == 6
