"""The CLI as a user meets it: commands that work, and bad input that gets one line and a non-zero exit."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtlkit.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlkit.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def assert_one_line_error(p: subprocess.CompletedProcess, *fragments: str) -> None:
    assert p.returncode != 0
    err = p.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


def test_unknown_method_lists_known_ones(tmp_path: Path) -> None:
    p = run_cli("bench", "--methods", "stl,nope", "--out", str(tmp_path))
    assert_one_line_error(p, "unknown method 'nope'", "hard-share", "stl-linear")


def test_unknown_dataset_lists_known_ones(tmp_path: Path) -> None:
    p = run_cli("bench", "--dataset", "cifar", "--out", str(tmp_path))
    assert_one_line_error(p, "unknown data set 'cifar'", "digits", "school")


def test_missing_data_dir_names_variable_and_file(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "MTLKIT_DATA"}
    p = run_cli("bench", "--dataset", "school", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path),
                env=env)
    assert_one_line_error(p, "MTLKIT_DATA", "school_b.mat")


def test_csv_without_named_columns(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    pd.DataFrame({"grp": ["a", "b"], "y": [1.0, 2.0], "x": [0.1, 0.2]}).to_csv(f, index=False)
    p = run_cli("bench", "--data", str(f), "--task", "school", "--target", "y", "--out", str(tmp_path))
    assert_one_line_error(p, "'school'", "grp")


def test_non_numeric_feature_column(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    frame = pd.DataFrame({"grp": ["a"] * 4, "y": [1.0, 2.0, 3, 4], "colour": ["red", "blue", "red", "g"]})
    frame.to_csv(f, index=False)
    p = run_cli("bench", "--data", str(f), "--task", "grp", "--target", "y", "--out", str(tmp_path))
    assert_one_line_error(p, "'colour'", "not numeric", "--categorical")


def test_hyperparameter_no_method_knows_is_an_error(tmp_path: Path, capsys) -> None:
    # --set applies a value to every method that has the hyper-parameter; a name no method knows is an error
    code = main(["bench", "--methods", "stl", "--splits", "1", "--set", "bogus=3", "--out", str(tmp_path)])
    assert code == 2
    assert "bogus" in capsys.readouterr().err


def test_bench_on_a_csv_table_writes_results(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    w0 = rng.normal(size=4)
    for t in range(4):
        w = w0 + 0.3 * rng.normal(size=4)
        X = rng.normal(size=(40, 4))
        y = X @ w + 0.1 * rng.normal(size=40)
        rows += [{"site": f"s{t}", "score": float(v), **{f"f{j}": float(x[j]) for j in range(4)}}
                 for x, v in zip(X, y, strict=True)]
    f = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(f, index=False)
    out = tmp_path / "res"
    code = main(["bench", "--data", str(f), "--task", "site", "--target", "score", "--methods",
                 "stl-linear,hard-share", "--splits", "2", "--set", "epochs=20", "--out", str(out)])
    assert code == 0
    md = (out / "bench-table.md").read_text()
    assert "stl-linear" in md and "hard-share" in md and "rmse" in md
    with sqlite3.connect(out / "results.sqlite") as c:
        n, = c.execute("SELECT COUNT(*) FROM runs").fetchone()
        cols = [r[1] for r in c.execute("PRAGMA table_info(runs)")]
    assert n == 4  # 2 methods x 2 splits
    for col in ("method", "hparams", "dataset", "checksum", "split", "seed", "test_metrics", "train_seconds",
                "versions", "device"):
        assert col in cols
    csv = pd.read_csv(out / "bench-table.csv")
    assert set(csv["task"]) == {"s0", "s1", "s2", "s3"} and len(csv) == 2 * 2 * 4


def test_datasets_and_methods_commands(capsys) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for n in ("digits", "mnist-mtl", "school", "school-3class"):
        assert n in out
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for n in ("stl", "single", "hard-share", "stl-linear"):
        assert f"\n{n}" in "\n" + out
    assert "paper:" in out and "hyper-parameters:" in out


@pytest.mark.parametrize("argv", [["methods", "nope"]])
def test_methods_unknown_name(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "unknown method" in capsys.readouterr().err
