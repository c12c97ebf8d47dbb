"""Data-parallel training under `torchrun` (DistributedDataParallel), CPU (gloo) or GPU (nccl).

Every rank holds the whole (small) data set and draws the same global batch indices from the same
seed; rank r trains on its slice of each task's B rows. Per-task losses are normalised by the
*global* number of labelled rows of that task in the step, so DDP's gradient average equals the
single-process gradient of the same global batch exactly (up to floating-point summation order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mtlkit.errors import MtlkitError


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks (in place, returned); a collective, not a host synchronisation."""
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group set up by ``torchrun`` (env:// rendezvous) and pick this rank's device:
    ``cuda`` with ``LOCAL_RANK`` as the current device when CUDA is present (never a hard-coded index),
    else the CPU with gloo."""
    if not launched_by_torchrun():
        raise MtlkitError("--distributed needs to be launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK unset); "
                          "e.g. torchrun --nproc_per_node=2 -m mtlkit.cli train ...")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    use_cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    if use_cuda:
        if not torch.cuda.is_available():
            raise MtlkitError("device 'cuda' was asked for but torch sees no CUDA device")
        torch.cuda.set_device(local % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if dev.type == "cuda" else "gloo"))
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
