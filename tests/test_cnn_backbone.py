"""``backbone="cnn"`` of the hard-share family: `ConvBottom` keeps the MLP bottom's flattened-row contract, every
method of the family trains on image rows, and hard-share's CNN is SRDML's network without the regulariser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods import registry
from mtlkit.methods.baselines import HardShareNet
from mtlkit.methods.srdml import SRDMLNet
from mtlkit.nn.conv import ConvBottom

FAMILY = ("hard-share", "inter-task-l2", "mrn", "cross-stitch", "mmoe", "ple", "pcgrad", "mgda-ub")


def _info(shape: tuple[int, ...], shared: bool = True, n_tasks: int = 3) -> DataInfo:
    return DataInfo(TaskSpec("binary", tuple(f"t{i}" for i in range(n_tasks)), (2,) * n_tasks), shape, shared)


def test_conv_bottom_on_flattened_rows_equals_the_convolutions_on_images() -> None:
    torch.manual_seed(0)
    net = ConvBottom((2, 6, 6), channels=[3, 4], hidden=[5]).double()
    img = torch.randn(3, 4, 2, 6, 6, dtype=torch.float64)  # [T, B, C, H, W]
    got = net(img.reshape(3, 4, -1))
    # the same layers applied by hand, image by image
    c1, _, p, c2, _ = net.map
    fc = net.fc[0]
    for t in range(3):
        for b in range(4):
            a = torch.relu(torch.nn.functional.conv2d(img[t, b][None], c1.weight, c1.bias, padding=1))
            a = torch.nn.functional.max_pool2d(a, 2)
            a = torch.relu(torch.nn.functional.conv2d(a, c2.weight, c2.bias, padding=1))
            ref = torch.relu(a.flatten() @ fc.weight.T + fc.bias)
            torch.testing.assert_close(got[t, b], ref, rtol=1e-12, atol=1e-12)
    assert net.out_features == 5
    assert ConvBottom((6, 6), channels=[3, 4]).out_features == 4 * 3 * 3  # no fc layers: the flattened map


@pytest.mark.parametrize("shared", [True, False])
def test_hard_share_cnn_is_srdml_without_its_regulariser(shared: bool) -> None:
    """With ``hidden=[]`` the CNN hard-share network is SRDML's CNN network: same parameters, same function."""
    info = _info((1, 8, 8), shared)
    torch.manual_seed(0)
    hs = HardShareNet(info, [], [6], "relu", 0.0, backbone="cnn", channels=[3, 4]).double()
    sr = SRDMLNet(info, backbone="cnn", channels=[3, 4], head_hidden=[6]).double()
    sr.bottom.load_state_dict(hs.bottom.map.state_dict())
    sr.heads.load_state_dict(hs.heads.state_dict())
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64) if shared else torch.randn(3, 5, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(hs(x).pred, sr(x).pred, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hs(x).features["shared"], sr(x).features["shared"].flatten(-3), rtol=1e-12, atol=1e-12)


def _bars(n: int = 240, seed: int = 0) -> MultiTaskData:
    """Two tasks on 8×8 images holding one bar at a random place: task 0 'is it vertical?', task 1 'is it in the
    left half?'. A translation-invariant conv feature solves task 0; pixels alone need every position."""
    rng = np.random.default_rng(seed)
    X = 0.1 * rng.normal(size=(n, 1, 8, 8))
    vertical = rng.random(n) < 0.5
    pos = rng.integers(0, 8, size=n)
    start = rng.integers(0, 4, size=n)
    left = np.empty(n, dtype=bool)
    for i in range(n):
        if vertical[i]:
            X[i, 0, start[i]:start[i] + 4, pos[i]] += 1.0
            left[i] = pos[i] < 4
        else:
            X[i, 0, pos[i], start[i]:start[i] + 4] += 1.0
            left[i] = start[i] + 2 <= 4
    Y = np.stack([vertical, left], 1).astype(float)
    return MultiTaskData.from_shared(X, Y, kind="binary")


@pytest.mark.parametrize("method", FAMILY)
def test_every_family_method_trains_with_the_cnn_backbone(method: str, tmp_path) -> None:
    split = _bars(120).split(test=0.25, val=0.25, seed=0)
    hp = {"backbone": "cnn", "channels": [4, 6], "hidden": [], "head_hidden": [8], "epochs": 6, "lr": 1e-2,
          "patience": 0}
    if method == "cross-stitch":
        hp["hidden"] = [8]
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    loss = run.history.train_loss
    assert loss[-1].mean() < loss[0].mean()
    assert any(isinstance(m, ConvBottom) for m in run.model.modules())
    run.save(tmp_path / "r")
    np.testing.assert_allclose(mtlkit.load(tmp_path / "r").predict(split.test.x), run.predict(split.test.x),
                               rtol=1e-6)


def test_cnn_hard_share_learns_the_bar_orientation() -> None:
    split = _bars(400).split(test=0.25, val=0.2, seed=0)
    hp = {"backbone": "cnn", "channels": [6, 8], "hidden": [], "head_hidden": [16], "epochs": 40, "lr": 1e-2,
          "patience": 10}
    acc = mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu").evaluate("test").per_task["accuracy"]
    assert acc[0] > 95  # per cent; chance is 50


def test_bad_backbone_choices_are_clear_errors() -> None:
    vec = _info((10,))
    with pytest.raises(ValueError, match="image rows"):
        HardShareNet(vec, [], [4], "relu", 0.0, backbone="cnn", channels=[2])
    with pytest.raises(ValueError, match="backbone must be one of mlp, cnn"):
        HardShareNet(vec, [4], [4], "relu", 0.0, backbone="vit")
    with pytest.raises(ValueError, match="channels"):
        HardShareNet(_info((1, 6, 6)), [], [4], "relu", 0.0, backbone="cnn", channels=[])
    with pytest.raises(ValueError, match="hidden layer"):
        HardShareNet(vec, [], [4], "relu", 0.0)  # the MLP bottom still needs a layer


def test_family_declares_the_backbone() -> None:
    for m in FAMILY:
        d = registry.get(m).defaults
        assert d["backbone"] == "mlp" and d["channels"] == [16, 32], m


def test_cli_reports_a_backbone_the_data_cannot_take_in_one_line(capsys) -> None:
    from mtlkit.cli import main

    assert main(["bench", "--methods", "hard-share", "--set", "backbone=cnn", "--splits", "2", "--no-select"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method 'hard-share' cannot be built" in err[0] and "image rows" in err[0]
