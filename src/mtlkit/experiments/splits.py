"""The evaluation splits of a data set: its own predefined ones when it has them (School: Argyriou's), else seeded
random ones. One function that `mtlkit bench`, `mtlkit train`, `mtlkit sweep` and the reproductions share."""

from __future__ import annotations

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError

__all__ = ["make_splits"]


def make_splits(data: MultiTaskData, n_splits: int, seed: int = 0, test: float = 0.2,
                val: float = 0.2) -> list[tuple[str, Split]]:
    """The data set's own predefined splits when it has them (School: Argyriou's), else random ones."""
    if n_splits < 1:
        raise MtlkitError(f"--splits must be at least 1, got {n_splits}")
    out = []
    if data.predefined_splits:
        if n_splits > len(data.predefined_splits):
            raise MtlkitError(f"{data.name} has {len(data.predefined_splits)} predefined splits; asked for {n_splits}")
        for i in range(n_splits):
            tr, te = data.predefined_splits[i]
            out.append((f"given-{i + 1}", data.split_indices(tr, te, val_fraction=val, seed=seed + i)))
    else:
        for i in range(n_splits):
            out.append((f"seed-{seed + i}", data.split(test=test, val=val, seed=seed + i)))
    return out
