"""The results store: every run's method, hyper-parameters, data + checksum, split, seed, per-task
metrics, training history (learning curves), time, versions and device, in one SQLite file (stdlib sqlite3).

Files written before a column existed are migrated in place when opened (``ALTER TABLE ... ADD COLUMN``)."""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtlkit.errors import MtlkitError
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
    device TEXT NOT NULL,
    history TEXT
)
"""

# Columns added after the first schema: name -> SQL type; older files get them (NULL) when opened.
ADDED_COLUMNS: dict[str, str] = {"history": "TEXT"}
JSON_COLUMNS = ("hparams", "task_names", "val_metrics", "test_metrics", "selection", "versions", "history")


class ResultsStore:
    """Append-only store of runs; ``rows()`` reads them back as dicts with the JSON fields decoded.

    ``create=False`` opens an existing file only (a missing one is a `MtlkitError`), for readers such as reports.
    """

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise MtlkitError(f"no results store at {self.path} (write one with `mtlkit bench --out DIR`, or pass "
                              "--store PATH)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as c:
                c.execute(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "readonly" in str(e):
                return  # a read-only file can still be read; missing columns read as NULL
            raise MtlkitError(f"{self.path} is not an mtlkit results store ({e})") from e

    def _migrate(self) -> None:
        """Add the columns newer versions write (NULL in old rows); safe when two processes race to do it."""
        with self._connect() as c:
            have = {r[1] for r in c.execute("PRAGMA table_info(runs)")}
            for name, sql_type in ADDED_COLUMNS.items():
                if name not in have:
                    try:
                        c.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
                    except sqlite3.OperationalError as e:
                        if "duplicate column" not in str(e):
                            raise

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, run: Run, experiment: str, split: str, val: Evaluation | None, test: Evaluation | None) -> int:
        """Record one trained run with its validation and test metrics (and its per-epoch losses when it was
        trained by SGD, for learning curves); returns the row id."""
        row = (datetime.now(timezone.utc).isoformat(timespec="seconds"), experiment, run.method,
               json.dumps(run.hparams, sort_keys=True), run.dataset, run.checksum, split, run.seed,
               run.info.spec.kind, json.dumps(list(run.info.spec.names)),
               json.dumps(val.to_json()) if val is not None else None,
               json.dumps(test.to_json()) if test is not None else None, run.train_seconds,
               json.dumps(run.selection), json.dumps(versions()), _device_name(run),
               json.dumps(_finite(run.history.to_json())) if run.history is not None else None)
        with self._connect() as c:
            cur = c.execute(
                "INSERT INTO runs (created, experiment, method, hparams, dataset, checksum, split, seed, kind, "
                "task_names, val_metrics, test_metrics, train_seconds, selection, versions, device, history) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid or 0)

    def columns(self) -> list[str]:
        """The ``runs`` table's column names, in order."""
        with self._connect() as c:
            return [r[1] for r in c.execute("PRAGMA table_info(runs)")]

    def distinct(self, column: str) -> list[str]:
        """The distinct values of one column, sorted (what a filter could ask for, for error messages)."""
        if column not in self.columns():
            raise MtlkitError(f"unknown results-store column {column!r}")
        with self._connect() as c:
            return sorted(str(r[0]) for r in c.execute(f"SELECT DISTINCT {column} FROM runs"))

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """All runs in insertion order, optionally filtered on columns: a value means equality
        (``experiment="bench"``), a list/tuple/set means any of them (``dataset=["digits", "school"]``)."""
        cols = self.columns()
        unknown = sorted(set(where) - set(cols))
        if unknown:
            raise MtlkitError(f"unknown results-store column(s) {', '.join(unknown)}; columns: {', '.join(cols)}")
        clauses, params = [], []
        for k, v in where.items():
            if isinstance(v, list | tuple | set | frozenset):
                vals = list(v)
                clauses.append(f"{k} IN ({', '.join('?' * len(vals))})" if vals else "0")
                params += vals
            else:
                clauses.append(f"{k} = ?")
                params.append(v)
        q = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._connect() as c:
            c.row_factory = sqlite3.Row
            out = [dict(r) for r in c.execute(q + " ORDER BY id", params)]
        for r in out:
            r.setdefault("history", None)  # a read-only file from before the column existed
            for k in JSON_COLUMNS:
                if r[k] is not None:
                    r[k] = json.loads(r[k])
        return out


def _finite(obj: Any) -> Any:
    """The same JSON value with NaN/inf floats (a diverged run's losses) as null, so the text is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _device_name(run: Run) -> str:
    import platform

    import torch

    if run.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(run.device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
