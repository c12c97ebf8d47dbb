"""Trains hard-share on a small synthetic problem, alone or as one rank under torchrun, and writes the
final parameters and test metrics (rank 0). Used by test_distributed.py; not a test module itself."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from safetensors.torch import save_file

import mtlkit
from mtlkit.train.distributed import DistContext, init_distributed, launched_by_torchrun, shutdown_distributed


def make_data(layout: str) -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(0)
    T, d = 4, 6
    w0 = rng.normal(size=d)
    ws = [w0 + 0.3 * rng.normal(size=d) for _ in range(T)]
    if layout == "shared":
        X = rng.normal(size=(150, d))
        Y = np.stack([X @ w + 0.1 * rng.normal(size=150) for w in ws], axis=1)
        Y[rng.random(Y.shape) < 0.3] = np.nan  # missing labels: ranks see different counts per task
        return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression")
    Xs = [rng.normal(size=(40 + 15 * t, d)) for t in range(T)]
    ys = [X @ w + 0.1 * rng.normal(size=len(X)) for X, w in zip(Xs, ws, strict=True)]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression")


def exit_without_teardown() -> None:
    """Flush and leave at once: on a shared CPU a gloo rank occasionally aborted in the interpreter's teardown
    ("terminate called without an active exception") after all its work was done, failing the launch."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextmanager
def worker() -> Iterator[DistContext | None]:
    """A worker's life: the rank's context under torchrun (None alone); after the body, a barrier (no rank leaves
    while another still works), the process group shut down, and `exit_without_teardown`. An error in the body
    still shuts the group down and then propagates."""
    ctx = init_distributed("cpu") if launched_by_torchrun() else None
    try:
        yield ctx
        if ctx is not None:
            torch.distributed.barrier()
    finally:
        if ctx is not None:
            shutdown_distributed()
    exit_without_teardown()


def main() -> None:
    layout, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    split = make_data(layout).split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 6, "batch_size": 16, "patience": 0, "lr": 1e-2}
    with worker() as ctx:
        run = mtlkit.train("hard-share", split, hparams=hp, seed=0, device="cpu", distributed=ctx)
        if ctx is None or ctx.is_main:
            save_file({k: v.contiguous() for k, v in run.model.state_dict().items()}, out + ".safetensors")
            ev = run.evaluate("test")
            hist = [v.tolist() for v in run.history.train_loss]
            with open(out + ".json", "w") as f:
                json.dump({"rmse": ev.per_task["rmse"].tolist(), "train_loss": hist}, f)


if __name__ == "__main__":
    main()
