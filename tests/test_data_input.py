"""A new user's own data: the task kind is never guessed silently, bad tables give one `DataError` line that
names the column, row and value, and scipy.sparse features are accepted (densified under a memory cap)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.cli import main
from mtlkit.errors import DataError
from mtlkit.estimators import STLLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def _ratings_csv(path: Path, tasks: int = 30, rows: int = 40, seed: int = 0) -> Path:
    """30 people x 40 integer ratings 0-10 of items with 3 features."""
    rng = np.random.default_rng(seed)
    frames = []
    for p in range(tasks):
        X = rng.normal(size=(rows, 3))
        r = np.clip(np.round(5 + 2 * X[:, 0] - X[:, 1] + rng.normal(size=rows)), 0, 10).astype(int)
        r[:2] = [0, 10]  # every person uses the whole scale
        frames.append(pd.DataFrame({"person": f"p{p}", "rating": r, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _one_error(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlkit.cli", *args], capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------- task kind
def test_integer_ratings_0_to_10_are_regression_with_a_note(tmp_path, caplog):
    path = _ratings_csv(tmp_path / "ratings.csv")
    with caplog.at_level(logging.INFO, logger="mtlkit.data"):
        d = MultiTaskData.from_table(path, task="person", target="rating")
    assert d.kind == "regression" and d.n_tasks == 30 and d.task_sizes == (40,) * 30
    notes = [r for r in caplog.records if r.name == "mtlkit.data" and r.levelno == logging.WARNING]
    assert len(notes) == 1
    msg = notes[0].getMessage()
    assert "regression" in msg and "'rating'" in msg and "11 distinct integers" in msg and "--kind multiclass" in msg
    assert msg in d.notes  # recorded with the data (bench writes it to its results file)
    # asked for, the kind is taken as given, without a note
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mtlkit.data"):
        m = MultiTaskData.from_table(path, task="person", target="rating", kind="multiclass")
    assert m.kind == "multiclass" and max(m.spec.n_classes) == 11 and not caplog.records


def test_bench_on_integer_ratings_runs_as_regression_and_says_so(tmp_path, capsys):
    path = _ratings_csv(tmp_path / "ratings.csv")
    code = main(["bench", "--data", str(path), "--task", "person", "--target", "rating", "--splits", "1",
                 "--methods", "stl-linear", "--no-select", "--set", "alpha=1.0", "--device", "cpu",
                 "--out", str(tmp_path / "res")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "task kind" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("mtlkit: note: ") and "regression" in lines[0] and "--kind multiclass" in lines[0]
    assert "rmse" in out and "error" not in out.split("rmse")[0].lower()
    assert "regression" in (tmp_path / "res" / "bench-ratings.md").read_text()


@pytest.mark.parametrize("labels", [(1, 2), (-1, 1)])
def test_two_valued_labels_are_binary_classes_0_and_1_with_a_note(tmp_path, caplog, labels):
    lo, hi = labels
    rng = np.random.default_rng(1)
    y = np.where(np.arange(24) % 2 == 0, lo, hi)
    df = pd.DataFrame({"t": np.repeat(["a", "b"], 12), "y": y, "f": rng.normal(size=24)})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="mtlkit.data"):
        d = MultiTaskData.from_table(path, task="t", target="y")
    assert d.kind == "binary" and d.spec.n_classes == (2, 2)  # not 3 classes
    np.testing.assert_array_equal(d.task_arrays(0)[1], (y[:12] == hi).astype(float))
    (msg,) = [r.getMessage() for r in caplog.records]
    assert f"{lo:g} and {hi:g}" in msg and "classes 0 and 1" in msg and "--kind regression" in msg
    assert d.spec.labels == (float(lo), float(hi))


@pytest.mark.parametrize("labels", [(1, 2), (-1, 1)])
def test_a_model_of_mapped_binary_labels_predicts_the_original_labels(tmp_path, labels):
    """Labels {1, 2} train as classes 0/1; predictions come back as 1/2, also after save and load, and sparse
    rows are accepted by predict as by the data constructors."""
    lo, hi = labels
    rng = np.random.default_rng(2)
    f = rng.normal(size=80)
    df = pd.DataFrame({"t": np.repeat(["a", "b"], 40), "y": np.where(f > 0, hi, lo), "f": f})
    df.to_csv(tmp_path / "t.csv", index=False)
    d = MultiTaskData.from_table(tmp_path / "t.csv", task="t", target="y")
    run = mtlkit.train("stl-linear", d.split(test=0.25, val=0.2, seed=0), seed=0, device="cpu")
    X = np.array([[-2.0], [2.0]])
    np.testing.assert_array_equal(run.predict(X, task="a"), [lo, hi])
    run.save(tmp_path / "run")
    again = mtlkit.load(tmp_path / "run")
    np.testing.assert_array_equal(again.predict(sp.csr_matrix(X), task="b"), [lo, hi])


def test_array_constructors_infer_the_kind_with_the_same_rules(caplog):
    rng = np.random.default_rng(2)
    Xs = [rng.normal(size=(20, 2)) for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="mtlkit.data"):
        ratings = MultiTaskData.from_tasks(Xs, [rng.integers(1, 6, size=20).astype(float) for _ in Xs])
        three = MultiTaskData.from_tasks(Xs, [np.arange(20) % 3 for _ in Xs])
        shared = MultiTaskData.from_shared(rng.normal(size=(20, 2)), np.c_[np.arange(20) % 2, np.arange(20) // 10])
        real = MultiTaskData.from_tasks(Xs, [rng.normal(size=20) for _ in Xs])
    assert (ratings.kind, three.kind, shared.kind, real.kind) == ("regression", "multiclass", "binary", "regression")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # the integer labels: another kind was plausible
    assert "1, 2, 3, 4, 5" in warnings[0] and "kind='multiclass'" in warnings[0]
    assert "3 classes" in warnings[1] and "binary" in warnings[2]
    # non-integer labels can only be regression: recorded, logged at INFO, not printed by the CLI
    assert any("not all integers" in n for n in real.notes)


def test_a_task_with_one_class_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path / "t.csv", "shop,y,f\na,0,1\na,1,2\nlonely,1,3\nlonely,1,4\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="shop", target="y")
    _one_error(e, "'lonely'", "only one class", "binary")
    with pytest.raises(DataError) as e:  # a kind given for a table: the same
        MultiTaskData.from_table(path, task="shop", target="y", kind="binary")
    _one_error(e, "'lonely'", "only one class")
    with pytest.raises(DataError) as e:  # arrays whose kind is inferred: the same
        MultiTaskData.from_tasks([np.zeros((3, 2))] * 2, [np.array([0, 1, 2.0]), np.full(3, 2.0)],
                                 names=["ok", "flat"])
    _one_error(e, "'flat'", "only one class", "multiclass")
    # arrays with an explicit kind may hold a one-class task (tiny samples, one-vs-rest pieces)
    d = MultiTaskData.from_tasks([np.zeros((3, 2))] * 2, [np.array([0, 1, 0.0]), np.ones(3)], kind="binary")
    with pytest.raises(DataError):
        d.require_two_classes()


# ---------------------------------------------------------------------- bad tables: one line each
def test_duplicate_column_names_are_an_error(tmp_path):
    path = _write(tmp_path / "dup.csv", "t,y,f0,f0\na,1.5,2,3\nb,2.5,3,4\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="t", target="y")
    _one_error(e, "'f0'", "twice", "unique")


@pytest.mark.parametrize(("text", "fragment"), [("", "the file is empty"), ("\n\n", "the file is empty"),
                                                ("person,rating,a\n", "the CSV has a header but no rows")])
def test_empty_and_header_only_csv_are_one_line_exit_2(tmp_path, text, fragment):
    path = _write(tmp_path / "t.csv", text)
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="person", target="rating")
    _one_error(e, fragment)
    if text != "\n\n":  # the command line, as a user runs it
        p = _run_cli("bench", "--data", str(path), "--task", "person", "--target", "rating", "--out", str(tmp_path))
        err = p.stderr.strip()
        assert p.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert err.startswith("mtlkit: error: ") and fragment in err


def test_blank_task_cell_names_the_row(tmp_path):
    path = _write(tmp_path / "t.csv", "shop,y,f\na,1.5,1\n,2.5,2\nb,0.5,3\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="shop", target="y")
    msg = _one_error(e, "task column 'shop'", "blank cell in data row 2")
    assert "nan" not in msg


def test_task_and_target_the_same_column(tmp_path, capsys):
    path = _write(tmp_path / "t.csv", "y,f\n1,2\n2,3\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="y", target="y")
    _one_error(e, "same column 'y'")
    assert main(["bench", "--data", str(path), "--task", "y", "--target", "y", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mtlkit: error: --task and --target name the same column 'y'"


def test_nan_feature_names_the_column(tmp_path):
    path = _write(tmp_path / "t.csv", "shop,y,f0,income\na,1.5,2,3\na,2.5,1,\nb,1.2,1,1\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="shop", target="y")
    _one_error(e, "feature column 'income'", "data row 2")
    # arrays with feature names: the name, not only the index
    X = np.ones((4, 2))
    X[3, 1] = np.nan
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks([X], [np.arange(4.0) / 3], kind="regression", names=["a"],
                                 feature_names=["f0", "income"])
    _one_error(e, "'income'", "NaN", "row 3")


def test_non_numeric_feature_shows_the_offending_value(tmp_path):
    path = _write(tmp_path / "t.csv", "shop,y,f0,size\na,1.5,2,1.5\na,2.5,1,2.25\nb,1.2,1,large\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="shop", target="y")
    msg = _one_error(e, "feature column 'size'", "'large'", "data row 3", "categorical")
    assert "1.5" not in msg
    path = _write(tmp_path / "u.csv", "shop,y,f0\na,1.5,2\nb,high,1\n")
    with pytest.raises(DataError) as e:
        MultiTaskData.from_table(path, task="shop", target="y")
    _one_error(e, "target column 'y'", "'high'", "data row 2")


# ---------------------------------------------------------------------- sparse input
def _sparse_tasks(seed: int = 3, d: int = 200, density: float = 0.05):
    rng = np.random.default_rng(seed)
    Xs = [sp.random(n, d, density=density, format="csr", random_state=seed + t, dtype=np.float64)
          for t, n in enumerate((60, 50, 70))]
    w = rng.normal(size=d)
    ys = [X @ w + 0.1 * rng.normal(size=X.shape[0]) for X in Xs]
    return Xs, ys


def test_sparse_csr_trains_stl_linear_like_the_dense_input():
    Xs, ys = _sparse_tasks()
    sparse = MultiTaskData.from_tasks(Xs, ys, kind="regression")
    dense = MultiTaskData.from_tasks([X.toarray() for X in Xs], ys, kind="regression")
    assert sparse.xs[0].dtype == np.float32 and sparse.feature_shape == (200,)
    runs = [mtlkit.train("stl-linear", d.split(test=0.2, val=0.2, seed=0), seed=0, device="cpu")
            for d in (sparse, dense)]
    Xnew = sp.random(15, 200, density=0.05, random_state=9).toarray()
    np.testing.assert_allclose(runs[0].predict(Xnew), runs[1].predict(Xnew), rtol=1e-4, atol=1e-4)
    # the scikit-learn estimator takes the CSR matrix directly, for fit and predict
    X, y = sp.vstack(Xs, format="csr"), np.concatenate(ys)
    ids = np.repeat([0, 1, 2], [X_.shape[0] for X_ in Xs])
    est_sp, est_de = STLLinear().fit(X, y, task=ids), STLLinear().fit(X.toarray(), y, task=ids)
    np.testing.assert_allclose(est_sp.predict(X, task=ids), est_de.predict(X.toarray(), task=ids),
                               rtol=1e-4, atol=1e-4)
    shared = MultiTaskData.from_shared(X, np.c_[y, -y], kind="regression")
    np.testing.assert_array_equal(shared.x, X.toarray().astype(np.float32))


def test_sparse_input_over_the_memory_cap_says_how_big(monkeypatch):
    Xs, ys = _sparse_tasks()
    with pytest.raises(DataError) as e:
        MultiTaskData.from_tasks(Xs, ys, kind="regression", max_dense_bytes=10_000)
    _one_error(e, "scipy.sparse", "180 x 200", "float32", "MiB", "not supported")
    monkeypatch.setenv("MTLKIT_MAX_DENSE_BYTES", "1000")
    with pytest.raises(DataError):
        MultiTaskData.from_shared(sp.vstack(Xs), np.concatenate(ys), kind="regression")
