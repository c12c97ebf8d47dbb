"""What every reproduction shares: the provenance a results file starts with, the select-then-evaluate
protocol over splits. Tables and ``mean ± CI`` cells come from `mtlkit.experiments.tables` (``fmt``,
``markdown_table`` and ``mean_ci_cell`` are re-exported here for the reproductions that import them from here)."""

from __future__ import annotations

import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.errors import MtlkitError
from mtlkit.experiments.bench import BenchResult, run_bench
from mtlkit.experiments.store import ResultsStore
from mtlkit.experiments.tables import fmt, markdown_table, mean_ci_cell  # noqa: F401 (re-exported for the reproductions)
from mtlkit.train.run import versions


@dataclass
class Context:
    """Where a reproduction writes (``out``: the results folder; ``store``: every run, for resuming and
    `mtlkit report`), on what device, and the provenance it collects along the way."""

    out: Path
    store: ResultsStore
    device: str | None = None
    progress: bool | None = None
    command: str = ""
    started: float = field(default_factory=time.perf_counter)
    datasets: dict[str, str] = field(default_factory=dict)  # name -> checksum

    def record(self, data: MultiTaskData) -> None:
        """Note a data set used (its checksum goes into the provenance)."""
        self.datasets[data.name] = data.checksum()


def command_line() -> str:
    """The command as the user typed it (``mtlkit ...``)."""
    return "mtlkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def parse_parts(text: str, known: Sequence[str]) -> list[str]:
    """``--parts a,b`` → ``["a", "b"]``; an unknown or empty choice is a one-line `MtlkitError` naming the known."""
    parts = [x.strip() for x in text.split(",") if x.strip()]
    bad = sorted(set(parts) - set(known))
    if bad or not parts:
        raise MtlkitError(f"unknown part(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(known)}")
    return parts


def machine() -> str:
    """CPU/GPU, core count, Python and torch versions."""
    import os

    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{gpu}; "
            + ", ".join(f"{k} {v}" for k, v in versions().items()))


def provenance(ctx: Context, seeds: str, protocol: Sequence[str], train_seconds: float | None = None) -> list[str]:
    """The header lines of a results file: command, date, machine, seeds, data checksums, protocol.
    ``train_seconds``: the recorded runs' summed training time (runs reused from the store included)."""
    spent = f"{(time.perf_counter() - ctx.started) / 60:.1f} min in this call"
    if train_seconds is not None:
        spent += f"; the runs' recorded training time sums to {train_seconds / 60:.1f} min"
    lines = [f"- Command: `{ctx.command}`",
             f"- Written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}, {spent}",
             f"- Machine: {machine()}", f"- Seeds: {seeds}"]
    lines += [f"- Data `{n}`: checksum `{c}`" for n, c in ctx.datasets.items()]
    lines += ["", "Protocol:", ""] + [f"- {p}" for p in protocol]
    return lines


def select_then_evaluate(ctx: Context, data: MultiTaskData, methods: Sequence[str], n_splits: int,
                         grids: dict[str, dict[str, list[Any]]], experiment: str, metric: str | None = None,
                         hparams: dict[str, Any] | None = None, seed: int = 0) -> BenchResult:
    """Choose each method's hyper-parameters on split 0's validation part (its grid in ``grids``, else its
    registry default), then train that configuration on every split and collect the test metric.

    Runs are recorded in ``ctx.store`` under ``experiment`` and reused when present, so a stopped
    reproduction continues where it stopped."""
    ctx.record(data)
    chosen = run_bench(data, methods, n_splits=1, seed=seed, device=ctx.device, store=ctx.store, select=True,
                       hparams=hparams, progress=ctx.progress, experiment=experiment, metric=metric, grids=grids,
                       reuse=True)
    fixed = {m: {k: [v] for k, v in chosen.hparams[m][0].items()} for m in methods}
    return run_bench(data, methods, n_splits=n_splits, seed=seed, device=ctx.device, store=ctx.store,
                     select=True, progress=ctx.progress, experiment=experiment, metric=metric, grids=fixed,
                     reuse=True)


def quick_subset(data: MultiTaskData, tasks: int = 6, rows: int = 100, seed: int = 0) -> MultiTaskData:
    """A ``--quick`` smoke run's stand-in for a real data set: its first ``tasks`` tasks with at most ``rows``
    random rows each (shared-input data: ``tasks · rows`` random rows, the first ``tasks`` targets). The feature
    transform (e.g. PCA) is kept, predefined splits are not; the data's notes say it is a subset."""
    from mtlkit.data.spec import TaskSpec

    rng = np.random.default_rng(seed)
    spec = TaskSpec(data.spec.kind, tuple(data.spec.names[:tasks]), tuple(data.spec.n_classes[:tasks]))
    note = f"--quick smoke subset: the first {spec.n_tasks} tasks, at most {rows} random rows each"
    common: dict[str, Any] = dict(name=data.name, feature_names=data.feature_names, transform=data.transform,
                                  notes=[*data.notes, note])
    if data.xs is not None:
        assert data.ys is not None
        pick = [np.sort(rng.permutation(len(x))[:rows]) for x in data.xs[:tasks]]
        return MultiTaskData(spec, xs=[x[i] for x, i in zip(data.xs, pick, strict=False)],
                             ys=[y[i] for y, i in zip(data.ys, pick, strict=False)], **common)
    assert data.x is not None and data.y is not None
    idx = np.sort(rng.permutation(len(data.x))[:rows * spec.n_tasks])
    return MultiTaskData(spec, x=data.x[idx], y=data.y[idx][:, :spec.n_tasks], **common)


def quick_grids(data: MultiTaskData, methods: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """A ``--quick`` smoke run's selection grids: each method's default grid cut to its first value per
    hyper-parameter (one configuration to train)."""
    from mtlkit.methods import registry

    return {m: {k: list(v)[:1] for k, v in registry.get(m).grid_for(data.kind).items()} for m in methods}
