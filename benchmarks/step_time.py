"""Step time of mtlkit's task-batched models vs a per-task Python loop of the same math.

What is measured: one full training step (``zero_grad`` + forward + per-task mean squared error + mean over
tasks + backward + ``torch.optim.Adam`` step, lr 1e-3) on a regression problem with T tasks, B rows per task
and 28 features, for two methods:

* ``hard-share``: shared MLP 28→256→256 (ReLU) + one linear head 256→1 per task.
* ``stl``: an independent MLP 28→256→256→1 per task.

Each method is timed twice:

* **batched**: the library's own model (``HardShareNet`` / ``STLNet``), whose task-specific layers are
  ``TaskLinear`` parameters ``[T, in, out]`` applied by one ``baddbmm``; the loss is ``TaskLoss`` (masked
  per-task means, ``[T]``), the total is their mean.
* **loop**: a LibMTL-style reference with T separate ``nn.Module``s in an ``nn.ModuleList``; the step runs
  ``for t in range(T)``: each task's forward on its ``[B, 28]`` rows and its ``F.mse_loss``, then the mean of
  the T losses, one backward and one Adam step (over one small tensor per task and layer, not one stack).

Before timing, the batched model's weights are copied into the loop model (``TaskLinear`` keeps ``[in, out]``
per task, ``nn.Linear`` ``[out, in]``: transposed) and the two are checked to give the same loss and the same
gradients (1e-4 relative) on one batch. Every label is present (mask all True), so the masked mean equals
the plain mean the loop computes. Each timed step (after warm-up steps) is clocked with ``time.perf_counter``
(``torch.cuda.synchronize()`` before each clock read on CUDA) and the median over the timed steps is reported.

Run::

    python benchmarks/step_time.py                      # T in 10,139,500 on cpu (+ cuda when available)
    python benchmarks/step_time.py --tasks 10,139 --steps 50 --devices cuda --batch 64
    python benchmarks/step_time.py --threads 1          # pin torch's thread count (e.g. on a busy machine)
    python benchmarks/step_time.py --adam default       # Adam implementation: fused (the Trainer's), foreach, default
    python benchmarks/step_time.py --tasks 10,139 --gradient-methods   # + srdml, pcgrad, mgda-ub (below)
    python benchmarks/step_time.py --tasks 10,139 --compile on  # + the batched step under torch.compile (default:
                                                                # on CUDA only; the GPU targets: T = 500 step <= 1.5x
                                                                # the T = 10 step, hard-share T = 139 <= 0.3 ms)

``--gradient-methods`` then times srdml, pcgrad and mgda-ub at the same T, B and devices with
``benchmarks/method_steps.py --loop --shared`` (SRDML's image setting: one input shared by the tasks): each
method's Trainer step beside hard-share's, and beside the same method with its per-task gradients taken by a
loop of T ``autograd.grad`` calls instead of one batched vector-Jacobian product.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.methods.base import as_output
from mtlkit.methods.baselines import HardShareNet, STLNet
from mtlkit.nn import TaskLinear
from mtlkit.train.losses import TaskLoss

N_FEATURES = 28
HIDDEN = [256, 256]
LR = 1e-3
METHODS = ("hard-share", "stl")


def make_info(n_tasks: int) -> DataInfo:
    spec = TaskSpec(kind="regression", names=tuple(f"t{i}" for i in range(n_tasks)), n_classes=(1,) * n_tasks)
    return DataInfo(spec=spec, feature_shape=(N_FEATURES,), shared=False)


def make_batch(n_tasks: int, batch: int, device: torch.device, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tasks, batch, N_FEATURES, generator=g)
    y = torch.randn(n_tasks, batch, generator=g)
    mask = torch.ones(n_tasks, batch, dtype=torch.bool)
    return Batch(x=x.to(device), y=y.to(device), mask=mask.to(device), shared=False)


def mlp_sequential(sizes: list[int]) -> nn.Sequential:
    """``nn.Sequential`` of Linear/ReLU with the same layer indices as ``TaskMLP.layers`` / ``MLP``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LoopHardShare(nn.Module):
    """Reference hard sharing: one shared bottom, a ModuleList of T ``nn.Linear`` heads."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        bottom = mlp_sequential([N_FEATURES, *HIDDEN])
        self.bottom = nn.Sequential(*bottom, nn.ReLU())  # last_activation=True, as HardShareNet's bottom
        self.heads = nn.ModuleList([nn.Linear(HIDDEN[-1], 1) for _ in range(n_tasks)])

    def task_forward(self, t: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[t](self.bottom(x))


class LoopSTL(nn.Module):
    """Reference single-task learning: a ModuleList of T separate MLPs."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList([mlp_sequential([N_FEATURES, *HIDDEN, 1]) for _ in range(n_tasks)])

    def task_forward(self, t: int, x: torch.Tensor) -> torch.Tensor:
        return self.nets[t](x)


def linear_pairs(batched: nn.Module, loop: nn.Module) -> list[tuple[nn.Module, nn.Linear, int | None]]:
    """Matching layers (batched layer, loop nn.Linear, task index or None for a shared nn.Linear)."""
    pairs: list[tuple[nn.Module, nn.Linear, int | None]] = []
    if isinstance(batched, HardShareNet) and isinstance(loop, LoopHardShare):
        bottom_b = [m for m in batched.bottom if isinstance(m, nn.Linear)]
        bottom_l = [m for m in loop.bottom if isinstance(m, nn.Linear)]
        pairs += [(b, lo, None) for b, lo in zip(bottom_b, bottom_l, strict=True)]
        (head,) = batched.heads.linear_layers()
        pairs += [(head, loop.heads[t], t) for t in range(batched.n_tasks)]
    elif isinstance(batched, STLNet) and isinstance(loop, LoopSTL):
        for t, net in enumerate(loop.nets):
            loop_layers = [m for m in net if isinstance(m, nn.Linear)]
            pairs += [(b, lo, t) for b, lo in zip(batched.net.linear_layers(), loop_layers, strict=True)]
    else:
        raise TypeError(f"no layer mapping for {type(batched).__name__} / {type(loop).__name__}")
    return pairs


def copy_weights(batched: nn.Module, loop: nn.Module) -> None:
    with torch.no_grad():
        for b, lo, t in linear_pairs(batched, loop):
            if t is None:
                assert isinstance(b, nn.Linear)
                lo.weight.copy_(b.weight)
                lo.bias.copy_(b.bias)
            else:
                assert isinstance(b, TaskLinear) and b.bias is not None
                lo.weight.copy_(b.weight[t].T)
                lo.bias.copy_(b.bias[t])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def batched_loss_fn(model: nn.Module, loss: TaskLoss, batch: Batch) -> Callable[[], torch.Tensor]:
    def fn() -> torch.Tensor:
        return loss(as_output(model(batch.x)).pred, batch).mean()

    return fn


def loop_loss_fn(model: LoopHardShare | LoopSTL, batch: Batch) -> Callable[[], torch.Tensor]:
    n_tasks = batch.x.shape[0]

    def fn() -> torch.Tensor:
        total = torch.zeros((), device=batch.x.device)
        for t in range(n_tasks):
            pred = model.task_forward(t, batch.x[t])  # [B, 1]
            total = total + F.mse_loss(pred[:, 0], batch.y[t])
        return total / n_tasks

    return fn


def math_check(batched: nn.Module, loop: nn.Module, f_batched: Callable[[], torch.Tensor],
               f_loop: Callable[[], torch.Tensor], tol: float = 1e-4) -> None:
    """Same loss and same gradients (relative norm error <= tol) for the copied weights."""
    batched.zero_grad(set_to_none=True)
    loop.zero_grad(set_to_none=True)
    lb, ll = f_batched(), f_loop()
    lb.backward()
    ll.backward()
    err = rel_err(ll.detach(), lb.detach())
    assert err <= tol, f"loss mismatch: batched {lb.item():.6g} loop {ll.item():.6g} (rel {err:.2e})"
    # Gather the loop's gradients into the batched layout, then compare whole tensors.
    grads_w: dict[int, list[torch.Tensor | None]] = {}
    grads_b: dict[int, list[torch.Tensor | None]] = {}
    for b, lo, t in linear_pairs(batched, loop):
        assert lo.weight.grad is not None and lo.bias.grad is not None
        if t is None:
            assert b.weight.grad is not None and b.bias.grad is not None
            for name, gb, gl in (("weight", b.weight.grad, lo.weight.grad), ("bias", b.bias.grad, lo.bias.grad)):
                e = rel_err(gl, gb)
                assert e <= tol, f"shared {name} grad mismatch (rel {e:.2e})"
            continue
        assert isinstance(b, TaskLinear)
        grads_w.setdefault(id(b), [None] * b.n_tasks)[t] = lo.weight.grad.T
        grads_b.setdefault(id(b), [None] * b.n_tasks)[t] = lo.bias.grad
    layers = {id(m): m for m in batched.modules() if isinstance(m, TaskLinear)}
    for key, layer in layers.items():
        assert layer.weight.grad is not None and layer.bias is not None and layer.bias.grad is not None
        gw, gb = grads_w[key], grads_b[key]
        assert all(g is not None for g in gw) and all(g is not None for g in gb)
        e_w = rel_err(torch.stack(gw), layer.weight.grad)  # type: ignore[arg-type]
        e_b = rel_err(torch.stack(gb), layer.bias.grad)  # type: ignore[arg-type]
        assert e_w <= tol and e_b <= tol, f"task-layer grad mismatch (weight rel {e_w:.2e}, bias rel {e_b:.2e})"
    batched.zero_grad(set_to_none=True)
    loop.zero_grad(set_to_none=True)


def time_steps(model: nn.Module, loss_fn: Callable[[], torch.Tensor], device: torch.device, warmup: int,
               steps: int, adam: str = "default") -> float:
    """Median ms per training step (zero_grad + forward + loss + backward + Adam step).

    Each timed step is clocked on its own and the median is reported, so that a step slowed down by another
    process on a small machine (OpenMP threads stall when one of them is descheduled) does not skew the result.
    """
    kwargs = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adam]
    opt = torch.optim.Adam(model.parameters(), lr=LR, **kwargs)
    cuda = device.type == "cuda"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    for _ in range(warmup):
        step()
    times: list[float] = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def compiled_row(model: nn.Module, f_eager: Callable[[], torch.Tensor], batch: Batch, device: torch.device,
                 warmup: int, steps: int, adam: str, eager_ms: float) -> str:
    """The batched step with the model's forward under ``torch.compile`` (as ``mtlkit train --compile``): checked
    against the eager loss first, then timed; a failed compile is reported, not raised."""
    loss = TaskLoss(make_info(batch.x.shape[0]).spec, device)
    try:
        f_comp = batched_loss_fn(torch.compile(model), loss, batch)
        with torch.no_grad():
            a, b = float(f_comp()), float(f_eager())
        if abs(a - b) > 1e-4 * max(abs(b), 1e-12):
            return f"loss differs from eager ({a:.6g} vs {b:.6g}), not timed"
        ms = time_steps(model, f_comp, device, max(warmup, 3), steps, adam)
    except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for inductor on this machine
        return f"failed ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return f"{ms:.3f} ms/step ({eager_ms / ms:.2f}x eager)"


def build(method: str, n_tasks: int, device: torch.device) -> tuple[nn.Module, LoopHardShare | LoopSTL]:
    info = make_info(n_tasks)
    arch = {"hidden": HIDDEN, "head_hidden": [], "activation": "relu", "dropout": 0.0}
    if method == "hard-share":
        return HardShareNet(info, **arch).to(device), LoopHardShare(n_tasks).to(device)
    if method == "stl":
        return STLNet(info, **arch).to(device), LoopSTL(n_tasks).to(device)
    raise ValueError(f"unknown method {method!r}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tasks", default="10,139,500", help="comma-separated task counts T")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 cpu, 100 cuda)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5 cpu, 10 cuda)")
    p.add_argument("--devices", default=None, help="comma-separated devices (default cpu, plus cuda if available)")
    p.add_argument("--batch", type=int, default=32, help="rows per task B")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--adam", choices=["default", "foreach", "fused"], default="fused",
                   help="torch.optim.Adam implementation for both models (default fused, as mtlkit's Trainer uses)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="also time the batched model under torch.compile (auto: on CUDA devices only)")
    p.add_argument("--gradient-methods", action="store_true",
                   help="also time srdml, pcgrad, mgda-ub vs hard-share and vs per-task loops (method_steps.py)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tasks = [int(s) for s in args.tasks.split(",") if s.strip()]
    if args.devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [s.strip() for s in args.devices.split(",") if s.strip()]
    print(f"torch {torch.__version__}  threads {torch.get_num_threads()}  B={args.batch}  features={N_FEATURES}  "
          f"hidden={HIDDEN}  Adam lr={LR} ({args.adam})")
    header = (f"{'device':<7} {'method':<11} {'T':>4}  {'loop ms/step':>12}  {'batched ms/step':>15}  "
              f"{'loop/batched':>12}")
    for dev_str in devices:
        if dev_str.startswith("cuda") and not torch.cuda.is_available():
            print(f"{dev_str}: not available, skipped")
            continue
        device = torch.device(dev_str)
        cuda = device.type == "cuda"
        steps = args.steps if args.steps is not None else (100 if cuda else 20)
        warmup = args.warmup if args.warmup is not None else (10 if cuda else 5)
        print(f"\ndevice {dev_str}: {device_name(device)}  (warm-up {warmup}, timed {steps} steps)")
        print(header)
        batched_ms: dict[str, dict[int, float]] = {m: {} for m in METHODS}
        for method in METHODS:
            for n_tasks in tasks:
                torch.manual_seed(args.seed)
                batched, loop = build(method, n_tasks, device)
                copy_weights(batched, loop)
                batch = make_batch(n_tasks, args.batch, device, args.seed)
                f_batched = batched_loss_fn(batched, TaskLoss(make_info(n_tasks).spec, device), batch)
                f_loop = loop_loss_fn(loop, batch)
                math_check(batched, loop, f_batched, f_loop)
                print(f"{dev_str:<7} {method:<11} {n_tasks:>4}  math check: ok", flush=True)
                loop_ms = time_steps(loop, f_loop, device, warmup, steps, args.adam)
                b_ms = time_steps(batched, f_batched, device, warmup, steps, args.adam)
                batched_ms[method][n_tasks] = b_ms
                compiled = ""
                if args.compile == "on" or (args.compile == "auto" and cuda):
                    compiled = "  compiled: " + compiled_row(batched, f_batched, batch, device, warmup, steps,
                                                             args.adam, b_ms)
                print(f"{dev_str:<7} {method:<11} {n_tasks:>4}  {loop_ms:>12.2f}  {b_ms:>15.2f}  "
                      f"{loop_ms / b_ms:>11.1f}x{compiled}", flush=True)
                del batched, loop, batch, f_batched, f_loop
                if cuda:
                    torch.cuda.empty_cache()
        lo_t, hi_t = min(tasks), max(tasks)
        parts = [f"{m} {batched_ms[m][hi_t] / batched_ms[m][lo_t]:.1f}x" for m in METHODS]
        print(f"{dev_str}: batched ms/step at T={hi_t} / T={lo_t} (x{hi_t / lo_t:.0f} tasks): {', '.join(parts)}")
    if args.gradient_methods:
        cmd = [sys.executable, str(Path(__file__).with_name("method_steps.py")), "--methods", "srdml,pcgrad,mgda-ub",
               "--loop", "--shared", "--tasks", args.tasks, "--batch", str(args.batch)]
        cmd += ["--devices", args.devices] if args.devices else []
        cmd += ["--threads", str(args.threads)] if args.threads is not None else []
        print("\nsrdml, pcgrad, mgda-ub: " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    if hasattr(os, "getloadavg"):  # other processes competing for the cores make CPU timings unreliable
        print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
