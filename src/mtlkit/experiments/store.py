"""The results store: every run's method, hyper-parameters, data + checksum, split, seed, per-task
metrics, time, versions and device, in one SQLite file (stdlib sqlite3)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtlkit.train.run import Evaluation, Run, versions

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    experiment TEXT NOT NULL,
    method TEXT NOT NULL,
    hparams TEXT NOT NULL,
    dataset TEXT NOT NULL,
    checksum TEXT NOT NULL,
    split TEXT NOT NULL,
    seed INTEGER NOT NULL,
    kind TEXT NOT NULL,
    task_names TEXT NOT NULL,
    val_metrics TEXT,
    test_metrics TEXT,
    train_seconds REAL,
    selection TEXT,
    versions TEXT NOT NULL,
    device TEXT NOT NULL
)
"""


class ResultsStore:
    """Append-only store of runs; ``rows()`` reads them back as dicts with the JSON fields decoded."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as c:
            c.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, run: Run, experiment: str, split: str, val: Evaluation | None, test: Evaluation | None) -> int:
        """Record one trained run with its validation and test metrics; returns the row id."""
        row = (datetime.now(timezone.utc).isoformat(timespec="seconds"), experiment, run.method,
               json.dumps(run.hparams, sort_keys=True), run.dataset, run.checksum, split, run.seed,
               run.info.spec.kind, json.dumps(list(run.info.spec.names)),
               json.dumps(val.to_json()) if val is not None else None,
               json.dumps(test.to_json()) if test is not None else None, run.train_seconds,
               json.dumps(run.selection), json.dumps(versions()), _device_name(run))
        with self._connect() as c:
            cur = c.execute(
                "INSERT INTO runs (created, experiment, method, hparams, dataset, checksum, split, seed, kind, "
                "task_names, val_metrics, test_metrics, train_seconds, selection, versions, device) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid or 0)

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """All runs, optionally filtered by equality on columns (``experiment=..., dataset=...``)."""
        q = "SELECT * FROM runs"
        if where:
            q += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        with self._connect() as c:
            c.row_factory = sqlite3.Row
            out = [dict(r) for r in c.execute(q + " ORDER BY id", tuple(where.values()))]
        for r in out:
            for k in ("hparams", "task_names", "val_metrics", "test_metrics", "selection", "versions"):
                if r[k] is not None:
                    r[k] = json.loads(r[k])
        return out


def _device_name(run: Run) -> str:
    import platform

    import torch

    if run.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(run.device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
