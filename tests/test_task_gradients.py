"""Per-task gradients in one backward pass (`TaskTape`, issue 13): on every SGD-trained registered method composed
with a combiner, the one-pass result equals the batched vector-Jacobian product (per-task and shared input, with
missing labels, vector and image rows); PCGrad and MGDA-UB training steps end where the batched path ends; the
host-side PCGrad and min-norm solvers equal the device loops; a wrong ``row_separable`` declaration is caught; under
DDP (2 processes, per-task input) the combiners still match one process."""

from __future__ import annotations

import contextlib
import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mtlkit.optim.combiners as combiners
import mtlkit.optim.mgda as mgda
import mtlkit.optim.pcgrad as pcgrad
import mtlkit.optim.per_task as per_task
from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.methods import registry
from mtlkit.methods.base import MethodParts, as_output, row_separable
from mtlkit.optim.combiners import (
    TaskGradients,
    _min_norm_pairwise,
    _pcgrad_coefficients_device,
    min_norm_weights,
    pcgrad_coefficients,
    pcgrad_orders,
    task_gradient_parts,
    task_gradients,
    task_tape,
)
from mtlkit.train.config import merge_hparams, method_defaults
from mtlkit.train.losses import TaskLoss
from mtlkit.train.trainer import make_optimizer, training_step

trainer = importlib.import_module("mtlkit.train.trainer")  # `mtlkit.train` is also the function

pytestmark = pytest.mark.usefixtures("one_thread")

T, B = 4, 6
SGD_METHODS = [n for n in registry.names() if registry.get(n).fit is None]
SMALL = {"hidden": [7], "head_hidden": [5]}  # small widths where a method takes them (faster, same rules)
# image rows (1×6×6) for the methods whose shared part can be convolutional: nn.Conv2d (ConvBottom, SmallCNN) and
# TaskConv2d (the trace-norm networks)
IMAGE_METHODS = {
    "hard-share": {"backbone": "cnn", "channels": [3, 4], "hidden": [6]},
    "pcgrad": {"backbone": "cnn", "channels": [3, 4], "hidden": [6]},
    "mgda-ub": {"backbone": "cnn", "channels": [3], "hidden": []},
    "deep-amtfl": {},
    "trace-norm-tucker": {"channels": [3, 4], "kernels": [3, 3], "pool": 1},
    "stl-cnn": {"channels": [3], "kernels": [3], "pool": 2},
}


def _composed(name: str) -> str:
    return name if name in combiners.COMBINERS else f"{name}+pcgrad"


def _setup(name: str, shared: bool, image: bool = False, seed: int = 0, over: dict | None = None
           ) -> tuple[MethodParts, TaskLoss, Batch, list[torch.nn.Parameter]]:
    """A float64 build of ``name`` (registry defaults, small widths) and one batch with missing labels."""
    spec = TaskSpec("regression", tuple(f"t{i}" for i in range(T)), (1,) * T)
    shape = (1, 6, 6) if image else (5,)
    info = DataInfo(spec, shape, shared)
    entry = registry.get(name)
    defaults = method_defaults(entry)
    given = {k: v for k, v in SMALL.items() if isinstance(defaults.get(k), list) and not image}
    if image:
        given.update(IMAGE_METHODS[name.split("+")[0]])
    given.update(over or {})
    hp = merge_hparams(defaults, given, name)
    torch.manual_seed(seed)
    parts = entry.build(info, hp)
    parts.model.double().train()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(*((B,) if shared else (T, B)), *shape, generator=g, dtype=torch.float64)
    y = torch.randn(T, B, generator=g, dtype=torch.float64)
    mask = torch.rand(T, B, generator=g) > 0.3
    mask[:, 0] = True
    mask[1, 1:] = False  # a task with a single labelled row
    batch = Batch(x=x, y=y, mask=mask, shared=shared)
    m = parts.model
    params = parts.shared_parameters(m) if parts.shared_parameters is not None else list(m.parameters())
    return parts, TaskLoss(spec), batch, [p for p in params if p.requires_grad]


def _both(parts: MethodParts, loss: TaskLoss, batch: Batch, params: list[torch.nn.Parameter]
          ) -> tuple[TaskGradients, TaskGradients, dict[str, torch.Tensor], torch.Tensor]:
    """(batched VJP, tape path) for the same forward graph, and the representation's pair if the model has one."""
    tape = task_tape(parts.model, params, T) if row_separable(parts) and not batch.shared else None
    with tape if tape is not None else contextlib.nullcontext():
        out = as_output(parts.model(batch.x))
    losses = loss(out.pred, batch)
    w = torch.tensor([0.7, 1.3, 0.2, 2.0], dtype=torch.float64)
    ref = task_gradient_parts(losses, params, weights=w)
    new = task_gradient_parts(losses, params, weights=w, tape=tape)
    extra = {}
    z = out.features.get("shared")
    if z is not None and z.requires_grad:
        extra["z_ref"] = task_gradients(losses, z)
        extra["z_new"] = task_gradients(losses, z, tape=tape)
    return ref, new, extra, losses


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> None:
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    assert float((a - b).abs().max()) <= tol * scale, (float((a - b).abs().max()), scale)


# ---------------------------------------------------------------------- one pass == batched VJP, every method
@pytest.mark.parametrize("shared", [False, True], ids=["per-task", "shared"])
@pytest.mark.parametrize("name", SGD_METHODS)
def test_one_pass_equals_batched_vjp_on_every_method(name: str, shared: bool) -> None:
    composed = _composed(name)
    try:
        parts, loss, batch, params = _setup(composed, shared)
    except ValueError as e:  # a method that does not take this layout
        pytest.skip(f"{composed}: {e}")
    ref, new, extra, _ = _both(parts, loss, batch, params)
    _close(ref.dense(), new.dense())
    _close(ref.gram(), new.gram())
    c = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    for a, b in zip(ref.combine(c), new.combine(c), strict=True):
        _close(a, b)
    if extra:
        _close(extra["z_ref"], extra["z_new"])
    if row_separable(parts) and not shared:
        assert combiners._ONE_PASS_STATUS[parts.model], "the one-pass check did not run"
        assert all(combiners._ONE_PASS_STATUS[parts.model].values()), "a declared method failed the one-pass check"
        assert "layer" in new.rules or "diag" in new.rules, new.rules
    else:
        assert set(new.rules) == {"vjp"}


@pytest.mark.parametrize("shared", [False, True], ids=["per-task", "shared"])
@pytest.mark.parametrize("name", sorted(IMAGE_METHODS))
def test_one_pass_equals_batched_vjp_on_image_rows(name: str, shared: bool) -> None:
    """nn.Conv2d (ConvBottom, SmallCNN: per-task weight gradients by one grouped weight gradient) and TaskConv2d."""
    parts, loss, batch, params = _setup(_composed(name), shared, image=True)
    ref, new, extra, _ = _both(parts, loss, batch, params)
    _close(ref.dense(), new.dense())
    if extra:
        _close(extra["z_ref"], extra["z_new"])
    if not shared:
        assert "vjp" not in new.rules, new.rules


def test_the_hard_share_family_needs_no_batched_product() -> None:
    """Shared bottom layers by the layer rule, task-stacked parameters and the representation by the diagonal rule."""
    for name, rules in (("pcgrad", {"layer"}), ("stl+pcgrad", {"layer"}), ("mmoe+pcgrad", {"layer"}),
                        ("tomato-ex+pcgrad", {"layer", "view"}), ("cross-stitch+pcgrad", {"layer"})):
        parts, loss, batch, params = _setup(name, False)
        _, new, extra, _ = _both(parts, loss, batch, params)
        assert set(new.rules) == rules, (name, new.rules)
    parts, loss, batch, params = _setup("mgda-ub", False)
    tape = task_tape(parts.model, params, T)
    with tape:
        out = as_output(parts.model(batch.x))
    Gz = task_gradient_parts(loss(out.pred, batch), out.features["shared"], tape=tape)
    assert Gz.rules == ["diag"] and Gz.blocks[0][1].shape == (T, B * 7)


class _MixingNet(torch.nn.Module):
    """Wrongly declared row-separable: every prediction reads the mean representation of all tasks' rows."""

    row_separable = True

    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Linear(5, 3).double()
        self.h = torch.nn.Linear(3, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.f(x))
        return self.h(z + z.mean(dim=(0, 1)))


def test_a_wrong_declaration_is_caught_and_falls_back() -> None:
    """A model that mixes tasks' rows but declares row_separable: the first step's check warns and the batched
    product is used (the result stays right); later steps go straight to it."""
    net = _MixingNet()
    params = list(net.f.parameters())
    x = torch.randn(T, B, 5, dtype=torch.float64)
    for first in (True, False):
        tape = task_tape(net, params, T)
        with tape:
            pred = net(x)
        losses = (pred[..., 0] ** 2).mean(1)
        ref = task_gradients(losses, params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            G = task_gradient_parts(losses, params, tape=tape)
        assert any("row-separable" in str(w.message) for w in caught) == first
        assert G.rules == ["vjp", "vjp"]
        _close(ref, G.dense())
    assert combiners._ONE_PASS_STATUS[net] and not any(combiners._ONE_PASS_STATUS[net].values())


def test_a_layer_called_on_foreign_rows_falls_back() -> None:
    """A shared layer whose input's leading axis is not a multiple of T takes the batched product."""
    from torch import nn

    class Net(nn.Module):
        row_separable = True

        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Linear(5, 3).double()
            self.h = nn.Linear(3, 1).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.f(x)  # [T, B, 3]
            pooled = self.f(x.mean((0, 1))[None, None].expand(1, 3, 5))  # leading axis 1: not task rows
            return self.h(z + pooled.mean())

    net = Net()
    params = list(net.f.parameters())
    x = torch.randn(T, B, 5, dtype=torch.float64)
    tape = task_tape(net, params, T)
    with tape:
        pred = net(x)
    losses = (pred[..., 0] ** 2).mean(1)
    ref = task_gradients(losses, params)
    G = task_gradient_parts(losses, params, tape=tape)
    assert G.rules == ["vjp", "vjp"]
    _close(ref, G.dense())


# ---------------------------------------------------------------------- training steps: same parameters as before
def _old_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code before issue 13: batched VJP always, the device PCGrad loop, the dense Frank-Wolfe loop."""
    monkeypatch.setattr(trainer, "row_separable", lambda parts: False)
    monkeypatch.setattr(pcgrad, "pcgrad_coefficients", _pcgrad_coefficients_device)
    monkeypatch.setattr(mgda, "min_norm_weights",
                        lambda gram, iters=250, tol=1e-10: _min_norm_pairwise(gram.double(), iters, tol, 1)
                        .to(gram.dtype))


def _train(name: str, steps: int = 4, image: bool = False, over: dict | None = None) -> dict[str, torch.Tensor]:
    parts, loss, batch, params = _setup(name, False, image=image, over=over)
    hp = merge_hparams(method_defaults(registry.get(name)), {"lr": 1e-2}, name)
    opt = make_optimizer([p for p in parts.model.parameters() if p.requires_grad], hp)
    w = torch.full((T,), 1.0 / T, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):  # new targets each step, same rows: the combiners see changing conflicts
        batch = Batch(batch.x, torch.randn(batch.y.shape, generator=g, dtype=torch.float64), batch.mask, False)
        training_step(parts, parts.model, loss, batch, w, opt, params)
    return {k: v.detach().clone() for k, v in parts.model.state_dict().items()}


@pytest.mark.parametrize("name,image,over", [
    ("pcgrad", False, {}), ("mgda-ub", False, {}), ("mgda-ub", False, {"mgda_norm": "loss+"}),
    ("pcgrad", True, {}), ("mgda-ub", True, {}), ("tomato-ex+pcgrad", False, {}), ("deep-amtfl+mgda-ub", False, {}),
    ("stl+pcgrad", False, {}), ("cross-stitch+pcgrad", False, {}),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_training_steps_end_where_the_batched_path_ends(name: str, image: bool, over: dict,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    new = _train(name, image=image, over=over)
    _old_path(monkeypatch)
    old = _train(name, image=image, over=over)
    for k in old:  # Frank-Wolfe / PCGrad decisions on Gram matrices summed in another order, then Adam: 1e-6
        _close(old[k], new[k], 1e-6)


# ---------------------------------------------------------------------- host solvers == device loops
@pytest.mark.parametrize("n", [2, 3, 7, 40, 139])
def test_pcgrad_host_coefficients_equal_the_device_loop(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    G = torch.randn(n, 30, generator=g, dtype=torch.float64)
    G[: n // 2] *= -1  # conflicts
    orders = pcgrad_orders(n, g)
    torch.testing.assert_close(pcgrad_coefficients(G @ G.T, orders), _pcgrad_coefficients_device(G @ G.T, orders, 1e-8),
                               rtol=1e-12, atol=1e-12)
    G32 = G.float()
    torch.testing.assert_close(pcgrad_coefficients(G32 @ G32.T, orders),
                               _pcgrad_coefficients_device(G32 @ G32.T, orders, 1e-8), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [2, 3, 10, 139])
@pytest.mark.parametrize("check_every", [1, 25])
def test_min_norm_on_a_diagonal_gram_is_bitwise_the_loop(n: int, check_every: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(3):
        d = rng.uniform(0.05, 3.0, size=n)
        if trial == 1:
            d[rng.integers(n)] = 0.0  # a task with a zero gradient: the min norm is 0
        if trial == 2:
            d[: n // 2] = d[0]  # ties
        M = torch.diag(torch.tensor(d))
        for iters in (0, 1, 250, 2000):
            ref = _min_norm_pairwise(M, iters, 1e-10, check_every)
            got = torch.tensor(combiners._min_norm_diagonal(d.tolist(), iters, 1e-10, check_every),
                               dtype=torch.float64)
            assert torch.equal(ref, got), (trial, iters, (ref - got).abs().max())
    M32 = M.float()
    assert torch.equal(min_norm_weights(M32), _min_norm_pairwise(M32.double(), 250, 1e-10, 1).float())


# ---------------------------------------------------------------------- distributed data parallel, per-task input
def test_torchrun_two_processes_match_one_with_one_pass_gradients(tmp_path: Path) -> None:
    """Under DDP (gloo, 2 CPU processes) with per-task input, the one-pass per-task gradients are all-reduced before
    combining as the batched ones were: pcgrad, mgda-ub and tomato-el+pcgrad end at one process's parameters."""
    from ddp_combiner_worker import two_ranks_and_one

    a, b = two_ranks_and_one("per-task", tmp_path)
    assert a.keys() == b.keys() and any(k.startswith("mgda-ub.") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=0), (k, (a[k] - b[k]).abs().max())


# ---------------------------------------------------------------------- shared input: batched product or loop
def test_shared_input_routes_agree_and_the_measured_choice_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a tape the T per-task gradients come from the batched product or a loop of T backward calls, whichever
    was measured faster for these shapes; both equal per-task autograd, and the choice is kept per shape."""
    parts, loss, batch, params = _setup("pcgrad", True)

    def grads() -> torch.Tensor:
        out = as_output(parts.model(batch.x))
        return task_gradient_parts(loss(out.pred, batch), params, weights=torch.full((T,), 0.5,
                                   dtype=torch.float64)).dense()

    out = as_output(parts.model(batch.x))
    losses = loss(out.pred, batch)
    ref = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(0.5 * losses[t], params,
                                                                             retain_graph=True)]) for t in range(T)])
    for route in ("batched", "loop"):
        monkeypatch.setenv("MTLKIT_TASK_GRADIENTS", route)
        torch.testing.assert_close(grads(), ref, rtol=1e-10, atol=1e-12)
    monkeypatch.setenv("MTLKIT_TASK_GRADIENTS", "auto")
    monkeypatch.setattr(per_task, "_ROUTE", {})
    torch.testing.assert_close(grads(), ref, rtol=1e-10, atol=1e-12)
    assert list(per_task._ROUTE.values()) in (["batched"], ["loop"])
    torch.testing.assert_close(grads(), ref, rtol=1e-10, atol=1e-12)
    assert len(per_task._ROUTE) == 1
    monkeypatch.setenv("MTLKIT_TASK_GRADIENTS", "fast")
    with pytest.raises(ValueError, match="MTLKIT_TASK_GRADIENTS"):
        grads()
