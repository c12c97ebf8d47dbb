"""`mtlkit reproduce trace-norm`: the quick smoke run end to end (equal-budget tuning, sections, provenance, figures,
claims file, store, resume), the per-epoch norm recorder against `layer_norms` and an independent numpy nuclear norm,
the recording run against the Trainer's own `train_one` (bitwise: the tuned configuration's model), and the claims'
verdicts on a constructed result."""

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
from mtlkit.experiments.claims import VERDICTS, read_claims, verdict
from mtlkit.experiments.reproduce.trace_norm import (
    KINDS,
    METHODS,
    QUICK_ALPHABETS,
    NormRecorder,
    Results,
    _paired,
    bottom_minus_top,
    claim_rows,
    fixed_hparams,
    norm_reduction,
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
def test_quick_run_writes_sections_figures_claims_store_and_resumes(tmp_path, one_thread):
    out, store = tmp_path / "out", tmp_path / "s.db"
    assert main(["reproduce", "trace-norm", "--quick", "--out", str(out), "--store", str(store)]) == 0
    md = (out / "trace-norm.md").read_text()
    for needle in ("Command: `mtlkit", "Machine:", "Seeds:", "checksum `", "QUICK SMOKE RUN", "Protocol:",
                   "## Tuning budget", "Every method was tuned with the same budget: 2 trials", "| stl-cnn | 2 trials",
                   "gamma log[0.0001, 1] ∪ {0}", "## Test accuracy", "## Training loss",
                   "## The three norms over training", "## Sharing strength by layer",
                   "## The paper's claims, checked here", "STL ends with a lower training loss",
                   "the bottom layers share more", "## Diagnosis", "scikit-learn", "no validation set",
                   "γ = 0 ablation", "At the paper's setting"):
        assert needle in md, needle
    for fig in ("accuracy", "train-loss", "norms", "sharing"):
        png = out / f"trace-norm-{fig}.png"
        assert png.stat().st_size > 5000, fig
        assert f"]({png.name})" in md
    csv = (out / "trace-norm.csv").read_text().splitlines()
    assert len(csv) == 1 + len(METHODS) * 2 * len(QUICK_ALPHABETS)  # methods x 2 quick repeats x alphabets
    accs = np.array([float(line.split(",")[3]) for line in csv[1:]])
    assert np.all((accs >= 0) & (accs <= 100))
    claims = read_claims(out / "claims" / "trace-norm.csv")
    # 24 claims, and against the γ = 0 ablation for each trace norm: accuracy, training loss, the 2 other norms
    assert len(claims) == 36 and all(c.verdict in VERDICTS and c.source == "trace-norm.md" for c in claims)
    from mtlkit.experiments.store import ResultsStore

    rows = ResultsStore(store).rows(experiment="reproduce-trace-norm")
    assert sorted({r["method"] for r in rows}) == sorted(m for m, _ in METHODS)
    assert len(rows) == len(METHODS) * 2
    assert all(len(r["selection"]) == 2 for r in rows)  # the tuning's 2 trials behind the choice
    before = len(ResultsStore(store).rows())  # the table's runs and the diagnostics' (their own experiments)
    assert {r["experiment"] for r in ResultsStore(store).rows()} >= {"reproduce-trace-norm-paper-setting"}
    # a second call reuses every tuning and every run: no new training, the same numbers
    assert main(["reproduce", "trace-norm", "--quick", "--out", str(out), "--store", str(store)]) == 0
    assert len(ResultsStore(store).rows()) == before
    assert (out / "trace-norm.csv").read_text().splitlines() == csv
    md = (out / "trace-norm.md").read_text()
    # 4 methods x 2 repeats, the γ = 0 ablation (3 x 2) and the paper's setting (3, repeat 0)
    assert "17 of 17 final runs (the table's and the diagnostics') were read back" in md


def test_norm_recorder_matches_layer_norms_and_numpy_nuclear_norm(one_thread):
    data = tiny_images()
    split = data.split(test=0.3, val=0.0, seed=0)
    rec = train_recording("trace-norm-tt", split, {"epochs": 2, "batch_size": 8, "patience": 0}, seed=3)
    r = NormRecorder()
    r.record(rec.init_model)
    r.record(rec.last.model)
    arr = r.arrays()
    final, init = layer_norms(rec.last.model), layer_norms(rec.init_model)
    assert set(arr) == {"conv1", "conv2", "conv3", "fc1"}
    for layer, kinds in arr.items():
        for k, v in kinds.items():
            assert v.shape == (2,)
            np.testing.assert_allclose(v, [init[layer][k], final[layer][k]], rtol=1e-12)
            # train_recording's own trace: 3 records (initialisation + 2 epochs), ending at the last model
            assert rec.norms[layer][k].shape == (3,)
            np.testing.assert_allclose(rec.norms[layer][k][[0, -1]], v, rtol=1e-9)
    # independent truth for LAF: numpy's nuclear norm of the (kh·kw·cin·cout) × T matrix of conv1's stack
    w = rec.last.model.convs[0].weight.detach().double().numpy()  # [T, cout, cin, kh, kw]
    mat = np.transpose(w, (3, 4, 2, 1, 0)).reshape(-1, w.shape[0])
    np.testing.assert_allclose(arr["conv1"]["laf"][1], np.linalg.norm(mat, "nuc"), rtol=1e-6)  # float32 result
    # ... and the training moved the weights, so the two records differ
    assert abs(arr["fc1"]["tucker"][1] - arr["fc1"]["tucker"][0]) > 1e-6


def test_recording_is_the_trainers_run_bitwise(one_thread):
    """Same seed, data and configuration: the recorded run's kept model is `train_one`'s model exactly (what a tuning
    trial scored), its losses are the Trainer's history, and the last epoch's model is kept beside it."""
    data = tiny_images(1)
    split = data.split(test=0.3, val=0.3, seed=1)
    hp = {"epochs": 6, "batch_size": 8, "patience": 0, "gamma": 0.5, "lr": 3e-2}
    rec = train_recording("trace-norm-laf", split, hp, seed=5)
    ref = train_one("trace-norm-laf", split, hp, seed=5, progress=False)
    for (k, a), b in zip(rec.run.model.state_dict().items(), ref.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(rec.train_loss, np.array(ref.history.train_loss))
    np.testing.assert_array_equal(rec.val_loss, np.array(ref.history.val_loss))
    assert rec.best_epoch == ref.history.best_epoch and rec.train_loss.shape == (6, 3)
    assert rec.run.evaluate("test").mean["accuracy"] == ref.evaluate("test").mean["accuracy"]
    # the recorder's last norms are the last epoch's model's; the kept model differs when an earlier epoch won
    assert rec.norms["fc1"]["laf"][-1] == pytest.approx(layer_norms(rec.last.model)["fc1"]["laf"], rel=1e-12)
    if rec.best_epoch < 5:
        assert not torch.equal(rec.last.model.fcs[0].weight, rec.run.model.fcs[0].weight)


def test_methods_start_from_identical_weights_and_sharing_is_zero_there(one_thread):
    """θ_init is shared by all four methods of a repeat (same torch seed, same architecture)."""
    split = tiny_images(2).split(test=0.3, val=0.0, seed=0)
    inits = [train_recording(m, split, {"epochs": 1, "batch_size": 8}, seed=7).init_model for m, _ in METHODS]
    for other in inits[1:]:
        for a, b in zip(inits[0].state_dict().values(), other.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert all(abs(v) < 1e-12 for v in sharing_strength(inits[0], inits[1], norm="tucker").values())


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    for bad in (["--size", "20"], ["--repeats", "0"], ["--trials", "0"], ["--epochs", "0"]):
        assert main(["reproduce", "trace-norm", *bad, "--out", str(tmp_path), "--store", str(tmp_path / "s")]) == 2
        assert bad[0] in capsys.readouterr().err


def test_fixed_hparams_leave_the_declared_space_to_tuning():
    from mtlkit.methods import registry

    for m, _ in METHODS:
        fx = fixed_hparams(m, 7)
        assert fx["epochs"] == 7 and fx["patience"] == 0 and fx["fc"] == [64] and "gamma" not in fx
        tuned = set(registry.search_space(m, "multiclass")) - set(fx)
        assert {"lr", "optimizer"} <= tuned
        assert ("gamma" in tuned) == (m != "stl-cnn")  # every trace norm tunes γ (0 = off among its choices)
    sp = registry.search_space("trace-norm-tt", "multiclass")["gamma"]
    assert sp.off == 0.0 and sp.low <= 0.01 <= sp.high  # the paper's γ and "off" are both candidates


def constructed(R: int = 5, E: int = 4) -> Results:
    """A result with known effects: LAF +2 points over STL (clearly), Tucker ±noise around STL, TT −1; STL's training
    loss lowest against LAF and TT only; LAF shares more at the bottom, Tucker at the top; the norms: LAF's own falls,
    Tucker's grows."""
    rng = np.random.default_rng(0)
    T, layers = 3, ["conv1", "conv2", "conv3", "fc1"]
    methods = [m for m, _ in METHODS]
    base = 30 + rng.normal(0, 3, (R, 1)) + rng.normal(0, 1, (R, T))
    noise = np.array([0.3, -0.2, 0.1, -0.1, 0.05])[:R, None]  # mean +0.03, CI wide
    acc = {"stl-cnn": base, "trace-norm-laf": base + 2 + 0.1 * rng.normal(size=(R, T)),
           "trace-norm-tucker": base + noise, "trace-norm-tt": base - 1}
    train = {"stl-cnn": np.full((R, T), 0.1), "trace-norm-laf": np.full((R, T), 0.2) + 0.1 * noise,
             "trace-norm-tucker": np.full((R, T), 0.05), "trace-norm-tt": np.full((R, T), 0.3)}
    ramp = np.linspace(1.0, 0.5, E + 1)  # a norm that halves over training
    grow = np.linspace(1.0, 1.5, E + 1)

    def norms(m: str) -> dict[str, dict[str, np.ndarray]]:
        own = m.rsplit("-", 1)[-1]
        return {layer: {k: np.tile(ramp if (k == own and m == "trace-norm-laf") else grow, (R, 1)) for k in KINDS}
                for layer in layers}

    bottom = np.tile([0.4, 0.3, 0.1, 0.0], (R, 1)) + 0.01 * rng.normal(size=(R, 4))
    sharing = {m: {k: (bottom if m == "trace-norm-laf" else bottom[:, ::-1] if m == "trace-norm-tucker"
                       else np.zeros((R, 4))) for k in (*KINDS, "fro")} for m in methods}
    return Results(methods, ["a", "b", "c"], layers, acc, {m: np.ones((R, T)) for m in methods}, train,
                   acc, {m: np.ones((R, T)) for m in methods}, train,
                   {m: np.ones((R, E)) for m in methods}, {m: np.ones((R, E)) for m in methods},
                   {m: np.full(R, E - 1) for m in methods}, {m: norms(m) for m in methods}, sharing, sharing,
                   {m: 1.0 for m in methods}, epochs=E)


def _find(rows, where, claim):
    hits = [c for c in rows if c.where.startswith(where) and c.claim == claim]
    assert len(hits) == 1, (where, claim)
    return hits[0]


def test_claim_rows_follow_the_one_verdict_rule():
    res = constructed()
    rows = claim_rows(res)
    assert len(rows) == 24
    # every verdict is claims.verdict of the row's own numbers, direction +1, no paper size
    for c in rows:
        assert c.ours is not None and c.ci95 is not None
        assert c.verdict == verdict(c.ours, c.ci95, 1)[0], c.claim
    # the effects are the paired differences over repeats
    d, ci, _ = _paired(res.accuracy["trace-norm-laf"].mean(1), res.accuracy["stl-cnn"].mean(1))
    acc = "Fig. 1 top left;"
    laf = _find(rows, acc, "LAF has a higher test accuracy than STL")
    assert laf.ours == pytest.approx(d) and laf.ci95 == pytest.approx(ci) and laf.verdict == "holds"
    assert _find(rows, acc, "Tucker has a higher test accuracy than STL").verdict == "holds in direction only"
    assert _find(rows, acc, "TT has a higher test accuracy than STL").verdict == "does not hold"
    assert _find(rows, "Fig. 1 top left, the paper's", "TT has a higher test accuracy than STL").verdict == \
        "does not hold"
    tl = "Fig. 1 top middle"
    assert _find(rows, tl, "STL ends with a lower training loss than LAF").verdict == "holds"
    assert _find(rows, tl, "STL ends with a lower training loss than Tucker").verdict == "does not hold"
    sh = "Fig. 1 top right;"
    assert _find(rows, sh, "LAF: the bottom layers share more than the top ones").verdict == "holds"
    assert _find(rows, sh, "Tucker: the bottom layers share more than the top ones").verdict == "does not hold"
    assert _find(rows, "Fig. 1 top right, the penalty's", "LAF: the bottom layers share more than the top ones "
                 "beyond what plain training does").verdict == "holds"
    own = _find(rows, "Fig. 1 bottom (", "optimising LAF, the LAF norm decreases over training")
    assert own.ours == pytest.approx(0.5) and own.verdict == "holds"  # 1 → 0.5 in every repeat
    assert _find(rows, "Fig. 1 bottom (", "optimising Tucker, the Tucker norm decreases over training").verdict == \
        "does not hold"
    assert _find(rows, "Fig. 1 bottom;", "optimising LAF, the TT norm decreases over training").ours == \
        pytest.approx(-0.5)


def test_the_penalty_part_subtracts_the_gamma_zero_ablation_when_there_is_one():
    res = constructed()
    laf = "trace-norm-laf"
    res.ablation = {laf: {"sharing/laf": res.sharing[laf]["laf"].copy(), "accuracy": res.accuracy[laf] - 0.5,
                          "train_ce_last": res.train_ce_last[laf] - 0.01}}
    rows = claim_rows(res)
    assert len(rows) == 26  # + the penalty alone for LAF: accuracy and training loss
    acc = _find(rows, "Fig. 1 top left, the penalty alone", "LAF has a higher test accuracy than its configuration "
                "without the penalty")
    assert acc.ours == pytest.approx(0.5) and acc.verdict == "holds"
    tl = _find(rows, "Fig. 1 top middle, the penalty alone", "without the penalty the network ends with a lower "
               "training loss than LAF")
    assert tl.ours == pytest.approx(0.01) and tl.verdict == "holds"
    # with the γ = 0 run's norms: the other norms against their values without the penalty (1.5x growth there)
    res.ablation[laf].update({f"norm/{layer}/{k}": np.tile(np.linspace(1.0, 2.0, 5), (5, 1))
                              for layer in res.layers for k in KINDS})
    rows = claim_rows(res)
    assert len(rows) == 28
    tt = _find(rows, "Fig. 1 bottom, against", "optimising LAF keeps the TT norm below its value without the penalty")
    assert tt.ours == pytest.approx(0.5) and tt.verdict == "holds"  # γ = 0: ×2.0, LAF: ×1.5
    where, claim = "Fig. 1 top right, the penalty's", "{} share more than the top ones beyond what plain training does"
    laf = _find(rows, where, claim.format("LAF: the bottom layers"))
    assert laf.ours == pytest.approx(0.0) and laf.verdict == "does not hold" and "γ = 0" in laf.unit
    tt = _find(rows, where, claim.format("TT: the bottom layers"))  # no ablation for TT: the tuned STL subtracted
    assert "TT − STL" in tt.unit


def test_one_repeat_is_direction_only_and_nan_padding_is_skipped():
    rows = claim_rows(constructed(R=1))
    assert _find(rows, "Fig. 1 top left;", "LAF has a higher test accuracy than STL").verdict == \
        "holds in direction only"  # one repeat: no interval
    # a run that stopped early is NaN-padded: the reduction uses each repeat's last finite value
    res = constructed(R=2, E=4)
    res.norms["trace-norm-laf"]["fc1"]["laf"][0, -2:] = np.nan
    red = norm_reduction(res, "trace-norm-laf", "laf")
    assert red[0] == pytest.approx(1 - 0.75) and red[1] == pytest.approx(0.5)  # epoch 2 of the ramp 1 → 0.5
    assert bottom_minus_top(np.array([[0.4, 0.3, 0.1, 0.0]]))[0] == pytest.approx(0.3)
