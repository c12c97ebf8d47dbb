"""One training step of LibMTL beside mtlkit's, on the same network, data and optimiser, side by side in one run.

What is timed, per method (EW = hard parameter sharing with the plain sum, PCGrad, MGDA):
* LibMTL (its ``Trainer`` built with ``multi_input=True``, architecture HPS, the weighting named): the body of
  ``Trainer.train``'s inner loop for one batch — per task ``model(x_t, task)`` and ``_compute_loss``, then
  ``optimizer.zero_grad()``, ``model.backward(losses, **weight_args)`` (for PCGrad / MGDA: T backward passes, one per
  task, through ``_compute_grad``) and ``optimizer.step()``. Its data loading and metric bookkeeping
  (``meter.update``) are left out, as mtlkit's step also takes a ready batch.
* mtlkit: `mtlkit.train.trainer.training_step` of ``hard-share`` / ``pcgrad`` / ``mgda-ub`` (the Trainer's step).
Both: a shared MLP 28 → 64 (ReLU), per-task heads 64 → 32 → 1 (ReLU), squared error, Adam (lr 1e-3); T tasks with
their own B rows each (School's shape at T = 139). Rounds interleave the two libraries; the ratio is LibMTL's
median step over mtlkit's.

LibMTL is optional and not a dependency: ``pip install --no-deps libmtl`` (its wheel requires torchvision, which
would replace the CPU torch build; LibMTL's package import reaches ``torchvision.models.utils`` for its ResNet
encoder only, so the script puts a stub of that one function in ``sys.modules`` — nothing timed uses it). LibMTL's
``Trainer`` puts the model on ``cuda:0`` unconditionally; the script's subclass sets the device it is run on
before LibMTL builds the model. mtlkit's MGDA-UB takes the representation's gradients (its upper bound); LibMTL's
MGDA is run as its default (``rep_grad=False``: gradients of the shared parameters, ``mgda_gn='none'``), which is
the more expensive exact variant — the rows say which. LibMTL was written for torch < 2.0, whose
``zero_grad()`` kept zero ``.grad`` tensors that its PCGrad / MGDA overwrite; the step and LibMTL's
``zero_grad_share_params`` call ``zero_grad(set_to_none=False)`` to keep that behaviour.

Run::

    pip install --no-deps libmtl
    python benchmarks/vs_libmtl.py --threads 1 --tasks 139 --markdown
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import types
from typing import Any

import torch
from torch import nn

N_FEATURES, HIDDEN, HEAD = 28, 64, 32
PAIRS = {"ew": ("EW", "hard-share"), "pcgrad": ("PCGrad", "pcgrad"), "mgda": ("MGDA", "mgda-ub")}


def import_libmtl() -> Any:
    """Import LibMTL with the one torchvision function its package import needs stubbed (unused here)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        utils = types.ModuleType("torchvision.models.utils")

        def load_state_dict_from_url(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("torchvision stub: LibMTL's pretrained ResNet is not available in this benchmark")

        utils.load_state_dict_from_url = load_state_dict_from_url  # type: ignore[attr-defined]
        tv.models = models  # type: ignore[attr-defined]
        models.utils = utils  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.utils": utils})
    try:
        import LibMTL
    except ImportError as e:
        raise SystemExit(f"LibMTL is not installed ({e}); install it with: pip install --no-deps libmtl") from e
    return LibMTL


def libmtl_stepper(lib: Any, weighting: str, T: int, x: torch.Tensor, y: torch.Tensor,
                   device: torch.device) -> Any:
    """A LibMTL Trainer (HPS + ``weighting``, multi_input) and a function running one of its training steps."""
    from LibMTL.loss import AbsLoss
    from LibMTL.metrics import AbsMetric
    from LibMTL.trainer import Trainer

    class MSELoss(AbsLoss):
        def compute_loss(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            return ((pred - gt) ** 2).mean()

    class NoMetric(AbsMetric):
        def update_fun(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
            pass

        def score_fun(self) -> list[float]:
            return [0.0]

    class OnDevice(Trainer):  # type: ignore[misc]
        def _prepare_model(self, *args: Any) -> None:
            self.device = device  # LibMTL hard-codes cuda:0
            super()._prepare_model(*args)

    names = [f"t{i}" for i in range(T)]
    task_dict = {n: {"metrics": ["none"], "metrics_fn": NoMetric(), "loss_fn": MSELoss(), "weight": [0]}
                 for n in names}

    def encoder() -> nn.Module:
        return nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU())

    decoders = nn.ModuleDict({n: nn.Sequential(nn.Linear(HIDDEN, HEAD), nn.ReLU(), nn.Linear(HEAD, 1))
                              for n in names})
    weight_args = {"mgda_gn": "none"} if weighting == "MGDA" else {}
    trainer = OnDevice(task_dict=task_dict, weighting=getattr(lib.weighting, weighting),
                       architecture=lib.architecture.HPS, encoder_class=encoder, decoders=decoders, rep_grad=False,
                       multi_input=True, optim_param={"optim": "adam", "lr": 1e-3}, scheduler_param=None,
                       weight_args=weight_args, arch_args={})
    trainer.model.train()
    # torch < 2.0 semantics for LibMTL's own zeroing of the shared gradients (see the module docstring)
    trainer.model.zero_grad_share_params = lambda: trainer.model.encoder.zero_grad(set_to_none=False)
    xs = [x[t] for t in range(T)]
    ys = [y[t][:, None] for t in range(T)]

    def step() -> None:  # Trainer.train's inner loop for one batch (multi_input), without loading and metrics
        losses = torch.zeros(T).to(device)
        for tn, task in enumerate(names):
            pred = trainer.model(xs[tn], task)[task]
            pred = trainer.process_preds(pred, task)
            losses[tn] = trainer._compute_loss(pred, ys[tn], task)
        trainer.optimizer.zero_grad(set_to_none=False)  # LibMTL's _reset_grad needs .grad tensors (torch < 2.0)
        trainer.model.backward(losses, **weight_args)
        trainer.optimizer.step()

    return step


def mtlkit_stepper(method: str, T: int, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> Any:
    """mtlkit's training step of ``method`` on the same network and batch."""
    from mtlkit.data.spec import DataInfo, TaskSpec
    from mtlkit.data.tensors import Batch
    from mtlkit.methods import registry
    from mtlkit.train.config import merge_hparams, method_defaults
    from mtlkit.train.losses import TaskLoss
    from mtlkit.train.trainer import make_optimizer, training_step

    spec = TaskSpec(kind="regression", names=tuple(f"t{i}" for i in range(T)), n_classes=(1,) * T)
    info = DataInfo(spec=spec, feature_shape=(N_FEATURES,), shared=False)
    entry = registry.get(method)
    hp = merge_hparams(method_defaults(entry), {"hidden": [HIDDEN], "head_hidden": [HEAD], "activation": "relu",
                                                "dropout": 0.0, "optimizer": "adam", "lr": 1e-3,
                                                "weight_decay": 0.0}, method)
    torch.manual_seed(0)
    parts = entry.build(info, hp)
    model = parts.model.to(device).train()
    loss = TaskLoss(spec, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    w = torch.full((T,), 1.0 / T, device=device)
    batch = Batch(x=x, y=y, mask=torch.ones(T, x.shape[1], dtype=torch.bool, device=device), shared=False)

    def step() -> None:
        training_step(parts, model, loss, batch, w, opt, shared)

    return step


def timed(step: Any, n: int, device: torch.device) -> list[float]:
    out = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tasks", default="139", help="comma-separated task counts T")
    p.add_argument("--batch", type=int, default=32, help="rows per task B")
    p.add_argument("--methods", default="ew,pcgrad,mgda", help=f"comma-separated, of {', '.join(PAIRS)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=10.0, help="a side's timed steps per round take about this")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lib = import_libmtl()
    device = torch.device(args.device)
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    print(f"torch {torch.__version__}, LibMTL {getattr(lib, '__version__', '?')}, threads {torch.get_num_threads()}, "
          f"device {device} ({platform.machine()}), B={args.batch}; 1-min load average {load}")
    rows = []
    for T in (int(t) for t in args.tasks.split(",")):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(T, args.batch, N_FEATURES, generator=g).to(device)
        y = torch.randn(T, args.batch, generator=g).to(device)
        for name in args.methods.split(","):
            lib_name, ours = PAIRS[name]
            sides = {"LibMTL": libmtl_stepper(lib, lib_name, T, x, y, device),
                     "mtlkit": mtlkit_stepper(ours, T, x, y, device)}
            est = {}
            for side, step in sides.items():  # warm-up, and a step count that fits --max-seconds
                timed(step, 2, device)
                est[side] = max(statistics.median(timed(step, 2, device)), 1e-6)
            times: dict[str, list[float]] = {s: [] for s in sides}
            for _ in range(args.rounds):
                for side, step in sides.items():
                    n = max(3, min(50, int(args.max_seconds / est[side])))
                    times[side].append(statistics.median(timed(step, n, device)))
            lib_ms, our_ms = (1e3 * statistics.median(times[s]) for s in ("LibMTL", "mtlkit"))
            rows.append((T, f"{lib_name} / {ours}", lib_ms, our_ms, lib_ms / our_ms))
            print(f"T={T:4d} {lib_name:>7s} vs {ours:<10s} LibMTL {lib_ms:10.2f} ms  mtlkit {our_ms:8.2f} ms  "
                  f"mtlkit {lib_ms / our_ms:7.1f}x faster", flush=True)
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    print(f"1-min load average at the end: {load}")
    if args.markdown:
        print("\n| T | LibMTL / mtlkit | LibMTL ms/step | mtlkit ms/step | mtlkit faster by |")
        print("| --- | --- | --- | --- | --- |")
        for T, pair, a, b, r in rows:
            print(f"| {T} | {pair} | {a:.2f} | {b:.2f} | {r:.1f}× |")


if __name__ == "__main__":
    main()
