"""Trains `pcgrad`, `mgda-ub`, `srdml+pcgrad` and three of issue 16's combiners (`hard-share+upgrad`, `+moco`,
`+famo`) on a small shared-input problem with conflicting tasks, as one rank under torchrun (writes the final
parameters, rank 0) or in-process (`train_all`). Used by test_combiners.py; not a test module itself."""

from __future__ import annotations

import sys

import numpy as np
import torch
from ddp_worker import worker
from safetensors.torch import save_file

import mtlkit
from mtlkit.train.distributed import DistContext

METHODS = ("pcgrad", "mgda-ub", "srdml+pcgrad", "hard-share+upgrad", "hard-share+moco", "hard-share+famo")


def make_data() -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(0)
    T, d, n = 3, 5, 120
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, T))
    W[:, 1] = -W[:, 0] + 0.3 * rng.normal(size=d)  # two conflicting tasks
    Y = X @ W + 0.1 * rng.normal(size=(n, T))
    Y[rng.random(Y.shape) < 0.2] = np.nan  # missing labels: ranks see different counts per task
    return mtlkit.MultiTaskData.from_shared(X, Y, kind="regression")


def train_all(ctx: DistContext | None = None) -> dict[str, torch.Tensor]:
    """Every method's final parameters, ``method.name`` -> tensor (alone when ``ctx`` is None)."""
    split = make_data().split(test=0.2, val=0.2, seed=0)
    hp = {"epochs": 3, "batch_size": 16, "patience": 0, "lr": 1e-2, "hidden": [8], "head_hidden": [4]}
    tensors: dict[str, torch.Tensor] = {}
    for m in METHODS:
        run = mtlkit.train(m, split, hparams=hp, seed=0, device="cpu", distributed=ctx)
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
