"""Trains `pcgrad`, `mgda-ub` and `tomato-el+pcgrad` on a small problem with per-task input (each task its own rows,
so the combiners take their per-task gradients in one backward pass), as one rank under torchrun (writes the final
parameters, rank 0) or in-process (`train_all`). Used by test_task_gradients.py; not a test module itself."""

from __future__ import annotations

import sys

import numpy as np
import torch
from ddp_worker import worker
from safetensors.torch import save_file

import mtlkit
from mtlkit.train.distributed import DistContext

METHODS = ("pcgrad", "mgda-ub", "tomato-el+pcgrad")


def make_data() -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(0)
    T, d = 3, 5
    W = rng.normal(size=(d, T))
    W[:, 1] = -W[:, 0] + 0.3 * rng.normal(size=d)  # two conflicting tasks
    Xs = [rng.normal(size=(50 + 10 * t, d)) for t in range(T)]
    ys = [X @ W[:, t] + 0.1 * rng.normal(size=len(X)) for t, X in enumerate(Xs)]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression")


def train_all(ctx: DistContext | None = None) -> dict[str, torch.Tensor]:
    """Every method's final parameters, ``method.name`` -> tensor (alone when ``ctx`` is None)."""
    split = make_data().split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 3, "batch_size": 16, "patience": 0, "lr": 1e-2, "hidden": [8]}
    tensors: dict[str, torch.Tensor] = {}
    for m in METHODS:
        extra = {"head_hidden": [4]} if not m.startswith("tomato") else {"lr": 1e-2, "optimizer": "adam"}
        run = mtlkit.train(m, split, hparams={**hp, **extra}, seed=0, device="cpu", distributed=ctx)
        tensors.update({f"{m}.{k}": v.detach().contiguous() for k, v in run.model.state_dict().items()})
    return tensors


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    with worker() as ctx:
        tensors = train_all(ctx)
        if ctx is None or ctx.is_main:
            save_file(tensors, out + ".safetensors")


if __name__ == "__main__":
    main()
