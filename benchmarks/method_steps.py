"""Training-step time of every registered method, side by side with hard-share in one run.

What is measured: one full training step exactly as the Trainer runs it (`mtlkit.train.trainer.training_step`:
forward, masked per-task losses, penalties, the method's gradient combiner, the optimizer step, the proximal
steps) for each method's own default architecture and optimizer, on a regression problem with T tasks of B rows
and 28 features (School's shape at T = 139, the default). Each method is timed in turn, several rounds interleaved
with hard-share, and the reported ratio is the median step time of the method over that of hard-share, so a
machine's load drifting during the run affects both sides alike. A slow method times fewer steps per round
(``--max-seconds``), never fewer than 3. The 1-minute load average is printed before and after.

Per-task gradients (pcgrad, mgda-ub, any ``+pcgrad`` / ``+mgda-ub`` composition) of a row-separable method on
per-task input come from one backward pass (`mtlkit.optim.combiners.TaskTape`). ``--batched-vjp`` adds, for those
methods, a row with that path turned off (the batched vector-Jacobian product over all T·B rows, as before issue
13). ``--loop`` adds a row with the per-task gradients taken by a loop of T ``autograd.grad`` calls instead of the
batched product (shared input: what batching buys).

srdml is not in the default list: on per-task input its saliency penalty compares every pair of tasks on all T·B
pooled rows (O(T³·B)), seconds per step at T = 139 (``--methods srdml`` times it).

``--combiners`` times instead ``hard-share+NAME`` for every named loss weighting and gradient aggregator
(`mtlkit.optim.combiners.COMBINERS`, pcgrad first) and adds each one's ratio to the ``hard-share+pcgrad`` step of
the same run (issue 16's target: ≤ 3×), taken as the ratio of the two rows' ratios to hard-share (each measured
interleaved with hard-share, so load drifting between rows cancels).

Run::

    python benchmarks/method_steps.py --threads 1 --markdown  # every method at T = 139, per-task input, cpu
    python benchmarks/method_steps.py --methods pcgrad,mgda-ub --batched-vjp --tasks 10,139
    python benchmarks/method_steps.py --methods tomato-ex:K=16,mrn --tasks 139 --devices cuda
    python benchmarks/method_steps.py --shared                # one input shared by all tasks
    python benchmarks/method_steps.py --methods srdml,pcgrad,mgda-ub --loop --shared
    python benchmarks/method_steps.py --combiners --threads 1 --markdown   # every weighting / aggregator
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.data.tensors import Batch
from mtlkit.methods import registry
from mtlkit.train.config import merge_hparams, method_defaults
from mtlkit.train.losses import TaskLoss
from mtlkit.train.trainer import make_optimizer, training_step

N_FEATURES = 28
DEFAULT_METHODS = ("stl,single,hard-share-align,inter-task-l2,dmtrl-tucker,mrn:update_every=1,cross-stitch,mmoe,"
                   "tomato-el,tomato-ex:K=16,amtfl,deep-amtfl,nn,mt-nn,amtl,deep-amtl,trace-norm-laf,"
                   "trace-norm-tucker,trace-norm-tt,stl-cnn,ple,pcgrad,mgda-ub,tomato-el+pcgrad,mmoe+mgda-ub")


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value:key=value`` → the method name and its hyper-parameter overrides (JSON values)."""
    import json

    name, *items = spec.split(":")
    hp: dict[str, Any] = {}
    for it in items:
        k, v = it.split("=", 1)
        try:
            hp[k] = json.loads(v)
        except json.JSONDecodeError:
            hp[k] = v
    return name, hp


def loop_task_gradients(losses: torch.Tensor, xs: Sequence[torch.Tensor], c: torch.Tensor | None,
                        retain_graph: bool = True, create_graph: bool = False) -> list[torch.Tensor]:
    """`mtlkit.optim.per_task._batched_vjp` by a per-task loop: one ``autograd.grad`` call per task."""
    rows: list[list[torch.Tensor]] = [[] for _ in xs]
    for t in range(losses.shape[0]):
        lt = losses[t] if c is None else losses[t] * c[t]
        gs = torch.autograd.grad(lt, list(xs), retain_graph=True, create_graph=create_graph, allow_unused=True)
        for r, g, x in zip(rows, gs, xs, strict=True):
            r.append((g if g is not None else torch.zeros_like(x)).reshape(-1))
    return [torch.stack(r) for r in rows]


def loop_saliency(model: Any, a: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """`mtlkit.methods.srdml.saliency` by a per-task loop: each head's input gradient by its own backward call."""
    k = model.map_dims
    rows = a.reshape(-1, *a.shape[a.dim() - k:])
    f = model.head(rows)[..., 0]  # [T, M]: every head on the shared rows
    gs = [torch.autograd.grad(f[t].sum(), rows, retain_graph=True, create_graph=create_graph)[0]
          for t in range(f.shape[0])]
    g = torch.stack(gs)
    return g.sum(dim=(-2, -1)) if k == 3 else g


@contextmanager
def per_task_loops() -> Iterator[None]:
    """Swap the batched per-task gradient routines for the loop versions while building and timing a method."""
    import mtlkit.methods.srdml as srdml
    import mtlkit.optim.per_task as per_task  # where `_batched_vjp` is looked up

    saved = per_task._batched_vjp, srdml.saliency
    per_task._batched_vjp, srdml.saliency = loop_task_gradients, loop_saliency
    try:
        yield
    finally:
        per_task._batched_vjp, srdml.saliency = saved


def needs_task_gradients(spec: str) -> bool:
    from mtlkit.optim.combiners import COMBINERS

    name = spec.split(":")[0]
    per_task = tuple(f"+{n}" for n, c in COMBINERS.items() if c.needs)
    return name in ("srdml", "pcgrad", "mgda-ub") or name.endswith(per_task)


def combiner_specs() -> str:
    """``hard-share+NAME`` for every named combiner, pcgrad first (the reference of the ratios)."""
    from mtlkit.optim.combiners import COMBINERS

    return ",".join(["hard-share+pcgrad", *(f"hard-share+{n}" for n in COMBINERS if n != "pcgrad")])


def make_batch(n_tasks: int, batch: int, shared: bool, device: torch.device) -> tuple[DataInfo, Batch]:
    spec = TaskSpec(kind="regression", names=tuple(f"t{i}" for i in range(n_tasks)), n_classes=(1,) * n_tasks)
    info = DataInfo(spec=spec, feature_shape=(N_FEATURES,), shared=shared)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, N_FEATURES, generator=g) if shared else torch.randn(n_tasks, batch, N_FEATURES, generator=g)
    y = torch.randn(n_tasks, batch, generator=g)
    mask = torch.ones(n_tasks, batch, dtype=torch.bool)
    return info, Batch(x=x.to(device), y=y.to(device), mask=mask.to(device), shared=shared)


class Stepper:
    """One method built once, with its optimizer, ready to run timed steps on a fixed batch."""

    def __init__(self, spec: str, info: DataInfo, batch: Batch, device: torch.device) -> None:
        name, over = parse_method(spec)
        entry = registry.get(name)
        hp = merge_hparams(method_defaults(entry), over, name)
        torch.manual_seed(0)
        self.parts = entry.build(info, hp)
        self.parts.model.to(device).train()
        self.loss = TaskLoss(info.spec, device)
        params = [p for p in self.parts.model.parameters() if p.requires_grad]
        self.opt = make_optimizer(params, hp)
        m = self.parts.model
        self.shared = self.parts.shared_parameters(m) if self.parts.shared_parameters is not None else params
        self.w = torch.full((info.n_tasks,), 1.0 / info.n_tasks, device=device)
        self.batch, self.device = batch, device

    def step(self) -> None:
        training_step(self.parts, self.parts.model, self.loss, self.batch, self.w, self.opt, self.shared)

    def time(self, steps: int) -> list[float]:
        cuda = self.device.type == "cuda"
        out = []
        for _ in range(steps):
            if cuda:
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            self.step()
            if cuda:
                torch.cuda.synchronize(self.device)
            out.append(time.perf_counter() - t0)
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def batched_vjp() -> Iterator[None]:
    """Turn the one-pass per-task gradients off (every method counts as not row-separable) while building and
    timing a method: the combiners take the batched vector-Jacobian product over all T·B rows."""
    import importlib

    trainer = importlib.import_module("mtlkit.train.trainer")  # `mtlkit.train` is also the function
    saved = getattr(trainer, "row_separable", None)
    if saved is None:  # a version without the one-pass path
        yield
        return
    trainer.row_separable = lambda parts: False
    try:
        yield
    finally:
        trainer.row_separable = saved


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated name[:key=value...] specs")
    p.add_argument("--tasks", default="139", help="comma-separated task counts T (default 139)")
    p.add_argument("--batch", type=int, default=32, help="rows per task B")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round at most (default 10 cpu, 50 cuda)")
    p.add_argument("--rounds", type=int, default=3, help="rounds interleaving hard-share and each method")
    p.add_argument("--max-seconds", type=float, default=20.0,
                   help="a method's timed steps take about this long in all (fewer steps per round, at least 3)")
    p.add_argument("--devices", default=None, help="comma-separated devices (default cpu, plus cuda if available)")
    p.add_argument("--shared", action="store_true", help="one input shared by all tasks (default: per-task rows)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--batched-vjp", action="store_true",
                   help="also time the per-task-gradient methods with the one-pass path off (batched VJP)")
    p.add_argument("--loop", action="store_true",
                   help="also time srdml / pcgrad / mgda-ub with per-task gradients by a loop of T backward calls")
    p.add_argument("--markdown", action="store_true", help="end with the results as a Markdown table")
    p.add_argument("--combiners", action="store_true",
                   help="time hard-share+NAME for every loss weighting and gradient aggregator (instead of --methods), "
                        "with the ratio to hard-share+pcgrad")
    args = p.parse_args()
    if args.combiners:
        args.methods = combiner_specs()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    specs = [s.strip() for s in args.methods.split(",") if s.strip()]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={args.batch}, features={N_FEATURES}, "
          f"{'shared' if args.shared else 'per-task'} input; each method with its registry defaults; 1-min load "
          f"average at the start: {_load()} on {os.cpu_count()} cores")
    table: list[tuple[str, int, float, float]] = []
    for dev_str in devices:
        device = torch.device(dev_str)
        steps = args.steps or (50 if device.type == "cuda" else 10)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                                 platform.machine())
        print(f"\ndevice {dev_str}: {name}; median of {args.rounds} rounds of up to {steps} steps after 3 warm-up "
              "steps")
        print(f"{'method':<30} {'T':>4} {'ms/step':>9} {'hard-share ms':>14} {'ratio':>8}")
        for T in [int(t) for t in args.tasks.split(",")]:
            info, batch = make_batch(T, args.batch, args.shared, device)
            ref = Stepper("hard-share", info, batch, device)
            for _ in range(3):
                ref.step()
            runs = []
            for spec in specs:
                runs.append((spec, ""))
                if needs_task_gradients(spec):
                    runs += [(spec, mode) for mode, on in (("batched VJP", args.batched_vjp),
                                                           ("per-task loop", args.loop)) if on]
            for spec, mode in runs:
                label = f"{spec} ({mode})" if mode else spec
                ctx = {"per-task loop": per_task_loops, "batched VJP": batched_vjp}.get(mode, _nothing)
                with ctx():
                    try:
                        s = Stepper(spec, info, batch, device)
                        for _ in range(3):
                            s.step()
                        one = statistics.median(s.time(1 if device.type == "cpu" else 3))
                    except Exception as e:  # a method that cannot run this problem: say so, go on
                        print(f"{label:<30} {T:>4}  skipped: {type(e).__name__}: {e}")
                        continue
                    n = max(3, min(steps, int(args.max_seconds / (args.rounds * max(one, 1e-9)))))
                    mine: list[float] = []
                    base: list[float] = []
                    for _ in range(args.rounds):
                        base += ref.time(n)
                        mine += s.time(n)
                m_ms, b_ms = statistics.median(mine) * 1e3, statistics.median(base) * 1e3
                table.append((f"{label} [{dev_str}]" if len(devices) > 1 else label, T, m_ms, b_ms))
                print(f"{label:<30} {T:>4} {m_ms:>9.2f} {b_ms:>14.2f} {m_ms / b_ms:>7.2f}x", flush=True)
                del s
    print(f"\n1-min load average at the end: {_load()} on {os.cpu_count()} cores")
    if args.markdown and args.combiners:  # each row also against the pcgrad row of the same T (and device)
        def device_of(label: str) -> str:
            return label[label.rfind(" ["):] if len(devices) > 1 else ""

        # × pcgrad as the ratio of the two × hard-share ratios: each is measured interleaved with hard-share, so a
        # load that drifts between the pcgrad row and a later row cancels out
        ref = {(device_of(label), T): m_ms / b_ms for label, T, m_ms, b_ms in table
               if label.startswith("hard-share+pcgrad")}
        print("\n| method | T | ms/step | × hard-share (same rounds) | × hard-share+pcgrad (ratio of the ratios) |\n"
              "| --- | --- | --- | --- | --- |")
        for label, T, m_ms, b_ms in table:
            pc = ref.get((device_of(label), T))
            print(f"| {label} | {T} | {m_ms:.2f} | {m_ms / b_ms:.2f}× | " +
                  (f"{m_ms / b_ms / pc:.2f}× |" if pc else "– |"))
    elif args.markdown:
        print("\n| method | T | ms/step | hard-share ms/step (same run) | ratio |\n| --- | --- | --- | --- | --- |")
        for label, T, m_ms, b_ms in table:
            print(f"| {label} | {T} | {m_ms:.2f} | {b_ms:.2f} | {m_ms / b_ms:.2f}× |")


if __name__ == "__main__":
    main()
