"""`mtlkit train`: one method on one split of a user's CSV; the printed test table is the library's own
evaluation of the same training; --save, --checkpoint/--resume, --tensorboard; one-line errors, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mtlkit
from mtlkit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(3):
        X = rng.normal(size=(60, 3))
        y = X @ rng.normal(size=3) + 0.1 * rng.normal(size=60)
        frames.append(pd.DataFrame({"shop": f"shop{t}", "sales": y, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}))
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


BASE = ["train", "hard-share", "--set", "epochs=4", "--set", "batch_size=16", "--set", "lr=0.01", "--device", "cpu"]


def _cmd(csv: Path, *extra: str) -> list[str]:
    return [*BASE, "--data", str(csv), "--task", "shop", "--target", "sales", *extra]


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mtlkit: error: ")
    for f in fragments:
        assert f in err, err
    return err


def test_train_prints_the_runs_test_metrics_and_saves(csv, tmp_path, capsys):
    assert main(_cmd(csv, "--seed", "2", "--split-seed", "1", "--save", str(tmp_path / "run"))) == 0
    out = capsys.readouterr().out
    # the same training through the library: same split, hyper-parameters and seed
    split = mtlkit.MultiTaskData.from_table(csv, task="shop", target="sales").split(test=0.2, val=0.2, seed=1)
    run = mtlkit.train("hard-share", split, hparams={"epochs": 4, "batch_size": 16, "lr": 0.01}, seed=2,
                       device="cpu")
    ev = run.evaluate("test")
    assert str(ev) in out
    assert f"mean test rmse over 3 tasks: {ev.mean['rmse']:.4f}" in out
    for t in ("shop0", "shop1", "shop2"):
        assert t in out
    saved = mtlkit.load(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["method"] == "hard-share" and meta["seed"] == 2 and meta["hparams"]["epochs"] == 4
    X = np.random.default_rng(5).normal(size=(7, 3))
    np.testing.assert_array_equal(saved.predict(X), run.predict(X))


def test_resume_without_a_checkpoint_file_is_a_one_line_error(csv, tmp_path, capsys):
    missing = tmp_path / "none.ckpt"
    assert main(_cmd(csv, "--checkpoint", str(missing), "--resume")) == 2
    _one_line_error(capsys, "--resume", "no checkpoint", str(missing))
    assert main(_cmd(csv, "--resume")) == 2
    _one_line_error(capsys, "--resume needs --checkpoint")


def test_checkpoint_resume_and_tensorboard_from_the_command_line(csv, tmp_path, capsys):
    ck, tb = tmp_path / "ck" / "train.ckpt", tmp_path / "tb"
    assert main(_cmd(csv, "--checkpoint", str(ck), "--checkpoint-every", "3", "--tensorboard", str(tb))) == 0
    first = capsys.readouterr().out
    assert ck.is_file() and any(p.name.startswith("events.out.tfevents") for p in tb.iterdir())
    # resuming a finished run says where it stands and prints the same result
    assert main(_cmd(csv, "--checkpoint", str(ck), "--resume")) == 0
    again = capsys.readouterr()
    assert again.out == first
    assert "resumed from" in again.err and "epoch 4, step 0" in again.err
    # another run's checkpoint is refused in one line, naming what differs
    assert main([*_cmd(csv, "--checkpoint", str(ck), "--resume"), "--set", "lr=0.02"]) == 2
    _one_line_error(capsys, "different run", "lr")


def test_grid_checkpoints_per_grid_point(csv, tmp_path, capsys):
    ck = tmp_path / "g.ckpt"
    assert main(_cmd(csv, "--grid", "--checkpoint", str(ck))) == 0  # hard-share's grid is lr, fixed by --set
    assert ck.is_file() and not (tmp_path / "cfg-0").exists()
    capsys.readouterr()
    grid_cmd = ["train", "hard-share", "--set", "epochs=2", "--device", "cpu", "--data", str(csv), "--task", "shop",
                "--target", "sales", "--grid", "--checkpoint", str(ck)]
    assert main(grid_cmd) == 0
    out = capsys.readouterr().out
    assert "selected: lr=" in out
    assert (tmp_path / "cfg-0" / "g.ckpt").is_file() and (tmp_path / "cfg-1" / "g.ckpt").is_file()
    assert main([*grid_cmd, "--resume"]) == 0
    assert capsys.readouterr().out == out


def test_bad_options_are_one_line_errors(csv, tmp_path, capsys):
    assert main(_cmd(csv, "--checkpoint-every", "5")) == 2
    _one_line_error(capsys, "--checkpoint-every needs --checkpoint")
    assert main(["train", "no-such-method", "--data", str(csv), "--task", "shop", "--target", "sales"]) == 2
    _one_line_error(capsys, "'no-such-method'", "hard-share")
    assert main(["train", "hard-share", "--data", str(csv), "--task", "shop"]) == 2
    _one_line_error(capsys, "--data needs --task COLUMN and --target COLUMN")
    assert main([*_cmd(csv), "--set", "epochz=3"]) == 2
    _one_line_error(capsys, "epochz")
