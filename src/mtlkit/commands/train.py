"""`mtlkit train`: train one method on one split of one data set, print its per-task test metrics, and
optionally save it, checkpoint it (and resume a killed run) and log it to TensorBoard."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from mtlkit.errors import MtlkitError
from mtlkit.progress import QuietFlag

DESCRIPTION = """\
Train METHOD on one split: the data set's first predefined split when it has them (School: Argyriou's),
else a random per-task split (--test, --val, --split-seed). Hyper-parameters are the method's defaults,
changed with --set; --grid tries the method's default grid (see `mtlkit methods METHOD`) and keeps the
best validation score. Prints the per-task test metrics and their mean.

Checkpoints: --checkpoint FILE writes the full training state (model, optimizer, schedule, RNG states,
position, history, best model so far) to one safetensors file every --checkpoint-every N steps (default:
at every epoch's end), atomically. After a crash or kill, run the same command with --resume: training
continues at the step the checkpoint records and ends with the same model and metrics as a run that was
never interrupted (bitwise on the CPU). With --grid each grid point checkpoints to cfg-<i>/FILE.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit train` on the CLI's sub-command parsers."""
    from mtlkit.commands.common import add_data_arguments

    p = sub.add_parser("train", help="train one method on one split; checkpoints, resume, TensorBoard",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", help="the method (see `mtlkit methods`)")
    add_data_arguments(p, p.add_mutually_exclusive_group())
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random split (and of the validation "
                   "rows carved from a predefined split); default 0")
    p.add_argument("--test", type=float, default=0.2, help="test fraction of each task's rows (default 0.2)")
    p.add_argument("--val", type=float, default=0.2, help="validation fraction of the rest (default 0.2)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter (repeatable), e.g. --set epochs=50 --set hidden=[64]")
    p.add_argument("--grid", action="store_true", help="select hyper-parameters on validation over the "
                   "method's default grid (values fixed by --set are not searched)")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batches, dropout)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--save", type=Path, metavar="DIR", help="save the trained run (model.safetensors + run.json)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE", help="training checkpoint file (safetensors)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write the checkpoint every N optimisation steps (default 0: at every epoch's end)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --checkpoint")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training under torchrun (DistributedDataParallel; gloo on CPU, nccl on GPU): "
                   "torchrun --nproc_per_node=N -m mtlkit.cli train ... --distributed; batch_size is the global "
                   "batch per task; rank 0 prints and saves")
    p.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="log per-epoch losses (mean and per task) and the learning rate to DIR for TensorBoard")
    p.add_argument("--compile", action="store_true",
                   help="run the training step's forward pass (and its backward) under torch.compile; a one-line "
                   "warning and eager steps where it cannot (no torch.compile or C++ compiler, per-task-gradient "
                   "combiners)")
    p.add_argument("--quiet", action=QuietFlag)
    p.set_defaults(func=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    """Load the data, make the split, train (or resume), print the test metrics, save if asked."""
    import mtlkit
    from mtlkit.commands.common import check_output_path, parse_hparams

    if args.checkpoint_every < 0:
        raise MtlkitError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if (args.resume or args.checkpoint_every) and args.checkpoint is None:
        raise MtlkitError(f"{'--resume' if args.resume else '--checkpoint-every'} needs --checkpoint FILE")
    for option, path, kind in (("--save", args.save, "dir"), ("--checkpoint", args.checkpoint, "file"),
                               ("--tensorboard", args.tensorboard, "dir")):
        if path is not None:  # before any training: a run is not lost to an output path that cannot be written
            check_output_path(path, option, kind)
    entry = mtlkit.methods.get(args.method)
    hparams = parse_hparams(args.set)
    ctx = None
    if args.distributed:  # before the data: the ranks read a streamed (Parquet folder) table together
        from mtlkit.train.distributed import init_distributed, shutdown_distributed

        ctx = init_distributed(args.device)
    try:
        return _train_and_report(args, entry, hparams, ctx)
    finally:
        if ctx is not None:
            shutdown_distributed()


def _train_and_report(args: argparse.Namespace, entry: Any, hparams: dict[str, Any], ctx: Any) -> int:
    """The body of `cmd_train` once the process group (if any) is up: data, split, training, report."""
    import mtlkit
    from mtlkit.commands.common import load_data_from_args
    from mtlkit.experiments.splits import make_splits
    from mtlkit.train import checkpoint as ckpt_io
    from mtlkit.train.run import grid_point_path

    data = load_data_from_args(args, distributed=ctx is not None)
    grid = None
    if args.grid:
        grid = {k: v for k, v in entry.grid_for(data.kind).items() if k not in hparams} or None
    resumed_from = ""
    n_configs = math.prod(len(v) for v in grid.values()) if grid else 1
    if args.resume:
        first = grid_point_path(args.checkpoint, 0, n_configs, is_dir=False)
        if not first.is_file():
            raise MtlkitError(f"--resume: no checkpoint at {first} (a run started with --checkpoint writes it)")
        resumed_from = f"resumed from {first}: {ckpt_io.describe(first)}"  # read now, told once it worked
    label, split = make_splits(data, 1, seed=args.split_seed, test=args.test, val=args.val)[0]
    run = mtlkit.train(entry.name, split, hparams=hparams, seed=args.seed, device=args.device, grid=grid,
                       checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
                       tensorboard=args.tensorboard, distributed=ctx, compile=args.compile)
    if ctx is not None and not ctx.is_main:
        return 0
    if args.resume:
        print(resumed_from, file=sys.stderr)
    ev = run.evaluate("test")
    print(f"{entry.name} on {data.name} (split {label}, seed {args.seed}): test metrics per task")
    print(ev)
    print(f"mean test {ev.primary} over {data.n_tasks} tasks: {ev.mean[ev.primary]:.4f}")
    if run.selection:
        print("selected: " + ", ".join(f"{k}={run.hparams[k]}" for k in (grid or {})))
    if args.save is not None:
        print(f"saved: {run.save(args.save)}")
    return 0
