"""Issue 17: progress whatever the output (plain lines off a terminal, `--quiet`, the timed epoch line),
a light `import mtlkit` (no torch / pandas / matplotlib / optuna until used), and `reproduce --quick` writing
to a scratch folder instead of the committed docs/results/."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mtlkit
from mtlkit import progress
from mtlkit.cli import main

BENCH = ["bench", "--methods", "stl,hard-share", "--splits", "2", "--no-select", "--set", "epochs=2"]
LINE = re.compile(r"^bench digits: (stl|hard-share) (seed-[01]) done in [\d.]+ s \(error [\d.]+\)$")


def _progress_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("bench digits:")]


def test_bench_off_a_terminal_prints_one_line_per_method_and_split(tmp_path, capsys, one_thread):
    assert not sys.stderr.isatty()  # captured: a pipe, as in a log or CI
    assert main([*BENCH, "--out", str(tmp_path)]) == 0
    lines = _progress_lines(capsys.readouterr().err)
    assert len(lines) == 4, lines
    assert all(LINE.match(ln) for ln in lines), lines
    assert {LINE.match(ln).groups() for ln in lines} == {(m, s) for m in ("stl", "hard-share")
                                                         for s in ("seed-0", "seed-1")}


def test_quiet_prints_no_progress(tmp_path, capsys, one_thread):
    assert main([*BENCH, "--quiet", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert _progress_lines(captured.err) == [] and "training" not in captured.err
    assert "hard-share" in captured.out  # the leaderboard itself is still printed
    assert main([*BENCH, "--out", str(tmp_path / "again")]) == 0  # a new command is not quiet any more
    assert len(_progress_lines(capsys.readouterr().err)) == 4


def test_quiet_flag_on_every_long_command():
    from mtlkit.cli import build_parser

    p = build_parser()
    for argv in (["bench"], ["train", "stl"], ["sweep"], ["reproduce", "tomato"]):
        assert p.parse_args([*argv, "--quiet"]).quiet is True
        assert progress.is_quiet()
        build_parser()  # building a parser starts the next command loud
        assert not progress.is_quiet()


class _Clock:
    """A clock that advances ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_training_line_appears_only_once_the_run_is_long(monkeypatch, capsys, one_thread):
    split = mtlkit.datasets.load("digits").split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 6, "patience": 0, "hidden": [8]}
    mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu")
    assert "epoch" not in capsys.readouterr().err  # a short run stays quiet

    monkeypatch.setattr(progress, "_clock", _Clock(20.0))  # every epoch "takes" 20 s; lines from 30 s on
    with progress.scope("bench digits: hard-share seed-0"):
        mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "epoch" in ln]
    # the bar reads the clock at its start and at each of the 6 epochs (20, 40, ..., 140 s): lines at 40, 80, 120 s
    assert len(lines) == 3, lines
    assert re.match(r"^bench digits: hard-share seed-0: training epoch 2/6 after 40 s, val loss [\d.]+ "
                    r"\(best [\d.]+ @ \d\)$", lines[0]), lines

    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 1e-9)  # the threshold instead of the clock: every epoch
    mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu")
    assert len([ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("training epoch")]) == 6

    progress.set_quiet(True)
    try:
        mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu")
    finally:
        progress.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_rich_bars_nest_in_one_display(capsys):
    with progress.progress_bar(2, "outer", enabled=True) as outer:
        with progress.progress_bar(3, "inner", enabled=True) as inner:  # no rich LiveError
            inner.advance(status="x")
        outer.advance(2)
    with progress.progress_bar(2, "off", enabled=False) as off:
        off.advance()
    assert "off" not in capsys.readouterr().err


def test_import_mtlkit_imports_no_heavy_module():
    heavy = ["torch", "pandas", "matplotlib", "optuna", "scipy"]
    code = ("import sys, mtlkit; from mtlkit.cli import build_parser; build_parser().format_help(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys, mtlkit; from mtlkit import train; "
            "print(callable(train), callable(mtlkit.train), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]


def test_lazy_names_and_dir():
    assert set(mtlkit.__all__) <= set(dir(mtlkit))
    for name in mtlkit.__all__:
        assert getattr(mtlkit, name) is not None
    importlib.import_module("mtlkit.train.checkpoint")  # importing the sub-package does not replace the function
    assert mtlkit.train is sys.modules["mtlkit.train.run"].train
    with pytest.raises(AttributeError):
        mtlkit.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", ["tomato", "trace-norm", "transfer", "amtfl", "srdml"])
def test_quick_writes_outside_docs_results(name, tmp_path, monkeypatch):
    from mtlkit.commands.reproduce import DEFAULT_OUT, output_paths
    from mtlkit.experiments.reproduce import get

    out, store = output_paths(name, quick=True)
    assert not out.resolve().is_relative_to(DEFAULT_OUT.resolve()) and out.parts[:2] == ("results", "quick")
    assert store.parent == out
    assert output_paths(name, quick=True, out=DEFAULT_OUT)[0] == DEFAULT_OUT  # only when asked explicitly
    assert output_paths(name, quick=False)[0] == DEFAULT_OUT

    seen: dict[str, object] = {}

    def fake_run(args: argparse.Namespace, ctx: object) -> list[Path]:
        seen["out"], seen["store"] = ctx.out, ctx.store.path  # type: ignore[attr-defined]
        return []

    monkeypatch.setattr(get(name), "run", fake_run)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", name, "--quick"]) == 0
    assert seen["out"] == Path("results") / "quick" / name
    assert Path(seen["store"]).parent == seen["out"]
    assert not (tmp_path / "docs").exists()
