"""The processes that read one streamed data set together (issue 18): the ranks of a ``torch.distributed`` group,
grouped by machine, with the one collective reading needs (every rank's Python object, on every rank), and the
feature file the ranks of a machine share.

Data-parallel training keeps every rank able to gather any row (each step's global batch is drawn on every rank
from one seed and split between them, so DDP's averaged gradient is the single-process one). So the ranks of a
machine map one feature file, each writing only its share of the rows into it: reading and memory are divided by
the machine's ranks, and the file's pages, the kernel's cache, are held once per machine, not once per rank.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlkit.errors import DataError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``size`` processes reading together, and ``gather(obj)``: the list of every
    rank's ``obj`` (a collective: every rank calls it, in the same order)."""

    rank: int
    hosts: tuple[str, ...]  #: the machine of each rank
    gather: Callable[[Any], list[Any]]

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def local(self) -> list[int]:
        """The ranks on this machine, in rank order (the first creates the shared file)."""
        return [r for r, h in enumerate(self.hosts) if h == self.hosts[self.rank]]

    @property
    def local_index(self) -> int:
        return self.local.index(self.rank)


def machine_id() -> str:
    """What tells machines apart: the host name and the kernel's boot id (two containers may share a name)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def torch_ranks() -> Ranks:
    """The ranks of the initialised default ``torch.distributed`` group (gloo or nccl), by machine."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise DataError("reading a data set in shares (distributed=True) needs torch.distributed initialised: "
                        "launch with torchrun and call init_process_group first (`mtlkit train --distributed` "
                        "does both)")

    def gather(obj: Any) -> list[Any]:
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    return Ranks(rank=dist.get_rank(), hosts=tuple(gather(machine_id())), gather=gather)


def resolve_ranks(distributed: bool | Ranks) -> Ranks | None:
    """The `Ranks` a ``distributed`` argument names: itself, or the torch.distributed group's for True (a
    collective); None for a single process."""
    if not distributed:
        return None
    ranks = distributed if isinstance(distributed, Ranks) else torch_ranks()
    return ranks if ranks.size > 1 else None


def agree_on_path(ranks: Ranks, path: Any) -> None:
    """A collective: every rank must see ``path``, and as the same kind (a folder or a file), or every rank raises,
    naming the first rank that does not (so none goes on to read while another has stopped)."""
    from pathlib import Path

    p = Path(path)
    told = ranks.gather(("missing" if not p.exists() else "folder" if p.is_dir() else "file", str(p)))
    seen = [k for k, _ in told]
    if "missing" in seen:
        r = seen.index("missing")
        raise DataError(f"no such file or folder: {told[r][1]} (on rank {r})")
    if len(set(seen)) > 1:
        raise DataError(f"{p} is a folder on rank {seen.index('folder')} but a file on rank {seen.index('file')}")


def raise_any(ranks: Ranks, problem: str | None) -> None:
    """A collective: every rank tells its problem (None: none); if any rank has one, every rank raises the first
    (by rank) as a `DataError`, so no rank goes on to wait for one that stopped."""
    found = [p for p in ranks.gather(problem) if p]
    if found:
        raise DataError(found[0])


def shared_spill_array(shape: tuple[int, ...], dtype: Any, directory: str, ranks: Ranks) -> np.ndarray:
    """A zero-filled writable memory map of ``shape`` that all ranks of a machine map from one file in
    ``directory``: the machine's first rank creates it, every rank opens it, then its name is unlinked (the disk
    space returns when the last rank drops it). A `DataError` on every rank when a rank cannot open it (the
    directory must be one file system for the ranks of a machine: ``$MTLKIT_SPILL_DIR``)."""
    lead = ranks.local[0]
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    made: tuple[str | None, str | None] = (None, None)
    if ranks.rank == lead:
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix="mtlkit-shared-", suffix=".bin")
            try:
                os.ftruncate(fd, nbytes)
            finally:
                os.close(fd)
            made = (name, None)
        except OSError as e:
            made = (None, f"rank {ranks.rank} cannot create a {nbytes / 2**20:.0f} MiB file in {directory}: {e}")
    names = ranks.gather(made)  # one collective for the name and any rank's failure to make it
    failed = [e for _, e in names if e]
    if failed:
        raise DataError(failed[0])
    path = names[lead][0]
    assert path is not None
    arr: np.ndarray | None = None
    problem = None
    try:
        arr = np.memmap(path, dtype=dtype, mode="r+", shape=shape)
    except (OSError, ValueError) as e:
        problem = (f"rank {ranks.rank} cannot open {path}, which rank {lead} on the same machine made ({e}): the "
                   "spill directory must be one the ranks of a machine share ($MTLKIT_SPILL_DIR)")
    try:
        raise_any(ranks, problem)  # every rank has it mapped (or has failed): the name can go
    finally:
        if ranks.rank == lead:
            os.unlink(path)
    assert arr is not None
    return arr
