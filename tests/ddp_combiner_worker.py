"""Trains per-task-gradient combiners as one rank under torchrun (writes the final parameters, rank 0) or in-process
(`train_all`), on one of two small problems; `two_ranks_and_one` runs both and returns the two sets of parameters.
Used by test_combiners.py and test_task_gradients.py; not a test module itself.

* ``shared``: shared input with conflicting tasks and missing labels — `pcgrad`, `mgda-ub`, `srdml+pcgrad` and three
  of issue 16's combiners (`hard-share+upgrad`, `+moco`, `+famo`);
* ``per-task``: each task its own rows, so the combiners take their per-task gradients in one backward pass —
  `pcgrad`, `mgda-ub`, `tomato-el+pcgrad`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from ddp_worker import worker
from safetensors.torch import load_file, save_file

import mtlkit
from mtlkit.train.distributed import DistContext

METHODS = {"shared": ("pcgrad", "mgda-ub", "srdml+pcgrad", "hard-share+upgrad", "hard-share+moco", "hard-share+famo"),
           "per-task": ("pcgrad", "mgda-ub", "tomato-el+pcgrad")}


def make_data(case: str) -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(0)
    T, d = 3, 5
    if case == "per-task":
        W = rng.normal(size=(d, T))
        W[:, 1] = -W[:, 0] + 0.3 * rng.normal(size=d)  # two conflicting tasks
        Xs = [rng.normal(size=(50 + 10 * t, d)) for t in range(T)]
        ys = [X @ W[:, t] + 0.1 * rng.normal(size=len(X)) for t, X in enumerate(Xs)]
        return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression")
    n = 120
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, T))
    W[:, 1] = -W[:, 0] + 0.3 * rng.normal(size=d)  # two conflicting tasks
    Y = X @ W + 0.1 * rng.normal(size=(n, T))
    Y[rng.random(Y.shape) < 0.2] = np.nan  # missing labels: ranks see different counts per task
    return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression")


def train_all(case: str, ctx: DistContext | None = None) -> dict[str, torch.Tensor]:
    """Every method's final parameters, ``method.name`` -> tensor (alone when ``ctx`` is None)."""
    split = make_data(case).split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 3, "batch_size": 16, "patience": 0, "lr": 1e-2, "hidden": [8]}
    tensors: dict[str, torch.Tensor] = {}
    for m in METHODS[case]:
        extra = {"lr": 1e-2, "optimizer": "adam"} if m.startswith("tomato") else {"head_hidden": [4]}
        run = mtlkit.train(m, split, hparams={**hp, **extra}, seed=0, device="cpu", distributed=ctx)
        tensors.update({f"{m}.{k}": v.detach().contiguous() for k, v in run.model.state_dict().items()})
    return tensors


def two_ranks_and_one(case: str, tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(one process here, with one thread; two torchrun ranks of this script) final parameters of ``case``."""
    path = Path(__file__)
    two = str(tmp_path / "two")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(path), case, two]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return train_all(case, None), load_file(two + ".safetensors")


def main() -> None:
    case, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    with worker() as ctx:
        tensors = train_all(case, ctx)
        if ctx is None or ctx.is_main:
            save_file(tensors, out + ".safetensors")


if __name__ == "__main__":
    main()
