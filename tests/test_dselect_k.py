"""DSelect-k: the smooth-step against its formula, binary selectors picking the expert their bits encode, gates
that sum to 1 (also with a number of experts that is not a power of two), the entropy penalty, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods.base import ModelOutput
from mtlkit.methods.dselect_k import DSelectKNet, selector_entropy, smooth_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smooth_step_is_the_papers_cubic() -> None:
    g = 2.0
    t = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 4.0], dtype=torch.float64)
    ref = [0.0, 0.0, -2 / 8 * (-0.125) + 1.5 / 2 * (-0.5) + 0.5, 0.5, -2 / 8 * 0.25 ** 3 + 1.5 / 2 * 0.25 + 0.5, 1.0,
           1.0]
    torch.testing.assert_close(smooth_step(t, g), torch.tensor(ref, dtype=torch.float64))


def _net(E: int, k: int, static: bool) -> DSelectKNet:
    info = DataInfo(TaskSpec("regression", ("a", "b"), (1, 1)), (3,), True)
    torch.manual_seed(0)
    return DSelectKNet(info, [4], [], "relu", 0.0, E, 5, k, 1.0, static).double()


def test_binary_selectors_pick_the_encoded_experts() -> None:
    net = _net(E=4, k=2, static=True)
    with torch.no_grad():  # task 0: selector 0 reads bits (1, 0) -> expert 1, selector 1 bits (1, 1) -> expert 3
        net.sel_logits[0] = torch.tensor([[5.0, -5.0], [5.0, 5.0]])
        net.sel_weights[0] = torch.tensor([0.0, np.log(3.0)])  # softmax: 1/4, 3/4
    z = torch.randn(6, 4, dtype=torch.float64)
    g = net.gates(z)
    torch.testing.assert_close(g[0], torch.tensor([[0.0, 0.25, 0.0, 0.75]] * 6, dtype=torch.float64))
    r = net.selectors(z)[0]
    h = selector_entropy(1.0)(net, ModelOutput(torch.zeros(1), {"selectors": r[:1]}), None)  # type: ignore[arg-type]
    assert float(h.detach()) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("E", "static"), [(3, False), (4, False), (5, True)])
def test_gates_are_distributions(E: int, static: bool) -> None:
    net = _net(E=E, k=3, static=static)
    z = torch.randn(7, 4, dtype=torch.float64)
    g = net.gates(z)
    assert g.shape == (2, 7, E) and float(g.detach().min()) >= 0
    torch.testing.assert_close(g.sum(-1), torch.ones(2, 7, dtype=torch.float64))
    r = net.selectors(z)[0]
    h = selector_entropy(0.5)(net, ModelOutput(torch.zeros(1), {"selectors": r}), None)  # type: ignore[arg-type]
    ref = 0.5 * (-(r * r.clamp_min(1e-12).log()).sum(-1)).sum((0, 2)).mean()
    torch.testing.assert_close(h, ref)
    assert float(h.detach()) > 0


def test_dselect_k_trains_with_a_weighting() -> None:
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(30 + 5 * t, 4)) for t in range(3)]
    ys = [X @ rng.normal(size=4) for X in Xs]
    split = mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression").split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("dselect-k+uw", split, hparams={"epochs": 15, "lr": 1e-2, "patience": 0}, seed=0,
                       device="cpu")
    assert run.history.train_loss[-1].mean() < 0.5 * run.history.train_loss[0].mean()
