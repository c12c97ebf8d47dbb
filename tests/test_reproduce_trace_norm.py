"""`mtlkit reproduce trace-norm`: the quick smoke run end to end (sections, provenance, figures, store), the
per-epoch norm recorder against `layer_norms` and an independent numpy nuclear norm, the recording loop against
the Trainer's own history, and the claim verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlkit.cli import main
from mtlkit.data.multitask import MultiTaskData
from mtlkit.datasets._paths import ENV_VAR
from mtlkit.datasets.omniglot import FILES
from mtlkit.experiments.reproduce.trace_norm import (
    METHODS,
    QUICK_ALPHABETS,
    NormRecorder,
    _overall,
    _paired,
    _verdict,
    method_hparams,
    train_recording,
)
from mtlkit.methods.trace_norm_mtl import layer_norms, sharing_strength
from mtlkit.train.run import train_one

ROOT = os.environ.get(ENV_VAR, "")
HAVE_DATA = bool(ROOT) and all((Path(ROOT) / f).is_file() for f in FILES)


def tiny_images(seed: int = 0) -> MultiTaskData:
    """3 multiclass tasks of random 24x24 one-channel images (24 is the smallest size the paper's CNN takes)."""
    rng = np.random.default_rng(seed)
    Xs = [rng.random((n, 1, 24, 24)).astype(np.float32) for n in (20, 14, 16)]
    ys = [rng.integers(0, k, size=len(X)).astype(np.float64) for X, k in zip(Xs, (3, 2, 4), strict=True)]
    return MultiTaskData.from_tasks(Xs, ys, kind="multiclass", names=["a", "b", "c"], n_classes=[3, 2, 4],
                                    name="tiny-images")


@pytest.mark.skipif(not HAVE_DATA, reason=f"Omniglot npz files not found: set {ENV_VAR} to a data directory "
                                          f"holding {' and '.join(FILES)}")
def test_quick_run_writes_sections_figures_store_and_resumes(tmp_path, one_thread):
    out, store = tmp_path / "out", tmp_path / "s.db"
    assert main(["reproduce", "trace-norm", "--quick", "--out", str(out), "--store", str(store)]) == 0
    md = (out / "trace-norm.md").read_text()
    for needle in ("Command: `mtlkit", "Machine:", "Seeds:", "checksum `", "QUICK SMOKE RUN", "Protocol:",
                   "## Test accuracy", "## Training loss", "## The three norms over training",
                   "## Sharing strength by layer", "## The paper's claims, checked here",
                   "STL has the lowest training loss", "Bottom layers share more", "no validation set"):
        assert needle in md, needle
    for fig in ("accuracy", "train-loss", "norms", "sharing"):
        png = out / f"trace-norm-{fig}.png"
        assert png.stat().st_size > 5000, fig
        assert f"]({png.name})" in md
    csv = (out / "trace-norm.csv").read_text().splitlines()
    assert len(csv) == 1 + len(METHODS) * 2 * len(QUICK_ALPHABETS)  # methods x 2 quick repeats x alphabets
    accs = np.array([float(line.split(",")[3]) for line in csv[1:]])
    assert np.all((accs >= 0) & (accs <= 100))
    from mtlkit.experiments.store import ResultsStore

    rows = ResultsStore(store).rows(experiment="reproduce-trace-norm")
    assert sorted({r["method"] for r in rows}) == sorted(m for m, _ in METHODS)
    assert len(rows) == len(METHODS) * 2
    # a second call reuses every cached run: no new training, the same numbers
    assert main(["reproduce", "trace-norm", "--quick", "--out", str(out), "--store", str(store)]) == 0
    assert len(ResultsStore(store).rows()) == len(rows)
    assert (out / "trace-norm.csv").read_text().splitlines() == csv


def test_norm_recorder_matches_layer_norms_and_numpy_nuclear_norm(one_thread):
    data = tiny_images()
    split = data.split(test=0.3, val=0.0, seed=0)
    rec = train_recording("trace-norm-tt", split, {"epochs": 2, "batch_size": 8}, seed=3)
    r = NormRecorder()
    r.record(rec.init_model)
    r.record(rec.run.model)
    arr = r.arrays()
    final, init = layer_norms(rec.run.model), layer_norms(rec.init_model)
    assert set(arr) == {"conv1", "conv2", "conv3", "fc1"}
    for layer, kinds in arr.items():
        for k, v in kinds.items():
            assert v.shape == (2,)
            np.testing.assert_allclose(v, [init[layer][k], final[layer][k]], rtol=1e-12)
            # train_recording's own trace: 3 records (initialisation + 2 epochs), ending at the final model
            assert rec.norms[layer][k].shape == (3,)
            np.testing.assert_allclose(rec.norms[layer][k][[0, -1]], v, rtol=1e-9)
    # independent truth for LAF: numpy's nuclear norm of the (kh·kw·cin·cout) × T matrix of conv1's stack
    w = rec.run.model.convs[0].weight.detach().double().numpy()  # [T, cout, cin, kh, kw]
    mat = np.transpose(w, (3, 4, 2, 1, 0)).reshape(-1, w.shape[0])
    np.testing.assert_allclose(arr["conv1"]["laf"][1], np.linalg.norm(mat, "nuc"), rtol=1e-6)  # float32 result
    # ... and the training moved the weights, so the two records differ
    assert abs(arr["fc1"]["tucker"][1] - arr["fc1"]["tucker"][0]) > 1e-6


def test_recording_loop_is_the_trainers_step(one_thread):
    """Same seed, same batches, same optimiser: the per-epoch training losses equal the Trainer's history."""
    data = tiny_images(1)
    split = data.split(test=0.3, val=0.0, seed=1)
    hp = {"epochs": 3, "batch_size": 8, "patience": 0, "gamma": 0.5, "lr": 1e-2}
    rec = train_recording("trace-norm-laf", split, hp, seed=5)
    ref = train_one("trace-norm-laf", split, hp, seed=5, progress=False)
    np.testing.assert_allclose(rec.train_loss, np.array(ref.history.train_loss), rtol=1e-5, atol=1e-6)
    assert rec.train_loss.shape == (3, 3)
    # the final model is the last epoch's; the recorder's last norms are its norms
    assert rec.norms["fc1"]["laf"][-1] == pytest.approx(layer_norms(rec.run.model)["fc1"]["laf"], rel=1e-12)


def test_methods_start_from_identical_weights_and_sharing_is_zero_there(one_thread):
    """θ_init is shared by all four methods of a repeat (same torch seed, same architecture)."""
    split = tiny_images(2).split(test=0.3, val=0.0, seed=0)
    inits = [train_recording(m, split, {"epochs": 1, "batch_size": 8}, seed=7).init_model for m, _ in METHODS]
    for other in inits[1:]:
        for a, b in zip(inits[0].state_dict().values(), other.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert all(abs(v) < 1e-12 for v in sharing_strength(inits[0], inits[1], norm="tucker").values())


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    for bad in (["--size", "20"], ["--repeats", "0"], ["--lr", "-1"], ["--gamma", "-0.1"]):
        assert main(["reproduce", "trace-norm", *bad, "--out", str(tmp_path), "--store", str(tmp_path / "s")]) == 2
        assert bad[0] in capsys.readouterr().err


def test_method_hparams_and_verdicts():
    assert method_hparams("stl-cnn", 5, 1e-3, 0.01).get("gamma") is None
    hp = method_hparams("trace-norm-tt", 5, 1e-3, 0.01)
    assert hp["gamma"] == 0.01 and hp["epochs"] == 5 and hp["patience"] == 0
    d, ci, n = _paired(np.array([2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0]))
    assert d == pytest.approx(2.0) and n == 3
    assert ci == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)  # t_{0.975, 2} · sd / √n
    assert _verdict(2.0, 1.0) == "holds"
    assert _verdict(0.5, 1.0).startswith("direction only")
    assert _verdict(-0.5, 1.0) == "does not hold"
    assert _verdict(-2.0, 1.0, positive=False) == "holds"
    assert _verdict(0.5, float("nan")).startswith("holds in direction")  # one repeat: no interval
    assert _overall(["holds", "holds"]) == "HOLDS"
    assert _overall(["holds", "direction only (CI includes 0)"]).startswith("DIRECTION ONLY")
    assert _overall(["holds", "does not hold"]).startswith("DOES NOT HOLD")
