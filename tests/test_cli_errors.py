"""Issue 17: every CLI failure is one line on stderr with exit status 2 (no traceback); a damaged saved run is an
MtlkitError naming the file; a diverging run stops with an error instead of reporting a metric."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import toy_data
from safetensors.torch import load_file, save_file

import mtlkit
from mtlkit import cli
from mtlkit.cli import main
from mtlkit.commands.common import parse_hparams
from mtlkit.errors import MtlkitError
from mtlkit.train import checkpoint as ckpt_io

TINY = {"epochs": 1, "hidden": [8]}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlkit.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def assert_one_line(rc: int, stderr: str, *fragments: str) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mtlkit: error: "), stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def split(one_thread: None):
    return toy_data("toy", 3).split(seed=0)


@pytest.fixture(scope="module")
def saved(split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny saved hard-share run (1 epoch), copied by each test that damages it."""
    run = mtlkit.train("hard-share", split, hparams=TINY, device="cpu", progress=False)
    return run.save(tmp_path_factory.mktemp("saved") / "run")


@pytest.fixture
def broken(saved: Path, tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    shutil.copytree(saved, d)
    yield d


# ---------------------------------------------------------------------- the command line, as a subprocess
def test_bench_set_negative_lr(tmp_path: Path) -> None:
    p = run_cli("bench", "--methods", "stl", "--splits", "1", "--set", "lr=-1", "--out", str(tmp_path), cwd=tmp_path)
    assert_one_line(p.returncode, p.stderr, "lr", "must be > 0", "-1")


def test_train_set_hidden_as_broken_json(tmp_path: Path) -> None:
    p = run_cli("train", "hard-share", "--set", "hidden=[64", cwd=tmp_path)
    assert_one_line(p.returncode, p.stderr, "--set 'hidden=[64]'")


def test_unwritable_output_paths_are_refused_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    p = run_cli("train", "hard-share", "--set", "epochs=1", "--save", str(blocker / "run"), cwd=tmp_path)
    assert_one_line(p.returncode, p.stderr, "--save", str(blocker))
    assert "mean test" not in p.stdout  # refused before training


# ---------------------------------------------------------------------- the command line, in this process
def test_train_set_hidden_as_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "hard-share", "--set", "hidden=64"])
    assert_one_line(rc, capsys.readouterr().err, "hidden", "must be a list of positive integers")


def test_bench_out_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = main(["bench", "--methods", "stl", "--splits", "1", "--no-select", "--set", "epochs=1",
               "--out", str(blocker / "results")])
    assert_one_line(rc, capsys.readouterr().err, str(blocker))


def test_parse_hparams_values() -> None:
    assert parse_hparams(["hidden=[64, 32]", "lr=.5", "epochs=+3", "optimizer=adam", "x=1e-3"]) == \
        {"hidden": [64, 32], "lr": 0.5, "epochs": 3, "optimizer": "adam", "x": 1e-3}
    with pytest.raises(MtlkitError, match=r"--set 'hidden=\[64, 32\]'"):
        parse_hparams(["hidden=(64, 32"])
    with pytest.raises(MtlkitError, match="not a number"):
        parse_hparams(["lr=1e-3x"])
    with pytest.raises(MtlkitError, match="NAME=VALUE"):
        parse_hparams(["=3"])


def test_path_oserror_is_one_line_but_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def denied(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/somewhere/results")

    monkeypatch.setattr(cli, "cmd_datasets", denied)
    rc = main(["datasets"])
    assert_one_line(rc, capsys.readouterr().err, "/somewhere/results", "Permission denied")

    def bug(args: object) -> int:
        raise RuntimeError("a genuine bug")

    monkeypatch.setattr(cli, "cmd_datasets", bug)
    with pytest.raises(RuntimeError, match="a genuine bug"):
        main(["datasets"])


def _truncate(d: Path) -> None:
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _not_json(d: Path) -> None:
    f = d / "run.json"
    f.write_text(f.read_text()[:-40])


def _drop_key(d: Path) -> None:
    f = d / "run.json"
    meta = json.loads(f.read_text())
    del meta["info"]
    f.write_text(json.dumps(meta))


def _other_architecture(d: Path) -> None:
    f = d / "run.json"
    meta = json.loads(f.read_text())
    meta["hparams"]["hidden"] = [16]
    f.write_text(json.dumps(meta))


def _changed_weights(d: Path) -> None:
    f = d / "model.safetensors"
    tensors = load_file(str(f))
    name = next(k for k in tensors if k.startswith("model."))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(f))


def _not_safetensors(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"\x00" * 64)


def _no_model(d: Path) -> None:
    (d / "model.safetensors").unlink()


BROKEN = [
    (_truncate, "model.safetensors", "truncated"),
    (_not_safetensors, "model.safetensors", "not a readable safetensors file"),
    (_no_model, "model.safetensors", "is missing"),
    (_not_json, "run.json", "not valid JSON"),
    (_drop_key, "run.json", "'info'"),
    (_other_architecture, "model.safetensors", "is [8, 4], expected [16, 4]"),
    (_changed_weights, "model.safetensors", "sha256"),
]


@pytest.mark.parametrize(("damage", "file", "what"), BROKEN, ids=[b[0].__name__.strip("_") for b in BROKEN])
def test_load_names_the_damaged_file(broken: Path, damage, file: str, what: str) -> None:
    damage(broken)
    with pytest.raises(MtlkitError) as e:
        mtlkit.load(broken)
    assert file in str(e.value) and what in str(e.value), str(e.value)


@pytest.mark.parametrize("damage", [_truncate, _not_json, _drop_key], ids=["truncated", "edited", "key-deleted"])
def test_plot_relations_on_a_damaged_run(broken: Path, damage, capsys: pytest.CaptureFixture[str]) -> None:
    damage(broken)
    rc = main(["plot", "relations", "--run", str(broken)])
    assert_one_line(rc, capsys.readouterr().err, str(broken))


def test_a_run_saved_without_the_hash_still_loads(broken: Path) -> None:
    f = broken / "run.json"
    meta = json.loads(f.read_text())
    del meta["model_sha256"]
    f.write_text(json.dumps(meta))
    assert mtlkit.load(broken).method == "hard-share"


# ---------------------------------------------------------------------- divergence
DIVERGE = {"epochs": 3, "hidden": [8], "optimizer": "sgd", "lr": 1e6}


def test_a_diverging_run_stops_with_an_error(split, tmp_path: Path) -> None:
    ck = tmp_path / "ck.safetensors"
    with pytest.raises(MtlkitError, match=r"hard-share diverged in epoch \d+ .*loss became (nan|inf); lower lr "
                                          r"\(now 1e\+06\)"):
        mtlkit.train("hard-share", split, hparams=DIVERGE, device="cpu", progress=False, checkpoint=ck)
    assert "finished: diverged" in ckpt_io.describe(ck)
    with pytest.raises(MtlkitError, match="diverged"):  # resuming the finished checkpoint says so again
        mtlkit.train("hard-share", split, hparams=DIVERGE, device="cpu", progress=False, checkpoint=ck, resume=True)


def test_a_diverging_grid_point_is_recorded_and_skipped(split) -> None:
    hp = {k: v for k, v in DIVERGE.items() if k != "lr"}
    run = mtlkit.train("hard-share", split, hparams=hp, grid={"lr": [1e6, 1e-2]}, device="cpu", progress=False)
    assert run.hparams["lr"] == 1e-2
    failed = [t for t in run.selection if "failed" in t]
    assert len(failed) == 1 and failed[0]["hparams"]["lr"] == 1e6 and "diverged" in failed[0]["failed"]
    with pytest.raises(MtlkitError, match="every configuration of 'hard-share' failed: 2 diverged"):
        mtlkit.train("hard-share", split, hparams=hp, grid={"lr": [1e6, 1e7]}, device="cpu", progress=False)


def test_a_damaged_training_checkpoint_is_one_error(split, tmp_path: Path) -> None:
    ck = tmp_path / "ck.safetensors"
    mtlkit.train("hard-share", split, hparams=TINY, device="cpu", progress=False, checkpoint=ck)
    ck.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(MtlkitError, match="ck.safetensors"):
        ckpt_io.load_training_state(ck)
