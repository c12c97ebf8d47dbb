"""The task kind of labels when it is not given (`infer_kind`, `resolve_kind`): fixed rules, always with a
note logged on the ``mtlkit.data`` logger (`collect_notes` gathers them for the CLI)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("mtlkit.data")

#: Most distinct integer labels `infer_kind` takes as classes (``0..k-1``); more are read as regression.
MAX_INFERRED_CLASSES = 10


# ---------------------------------------------------------------------- task kind inference
@dataclass(frozen=True)
class KindInference:
    """What `infer_kind` decided: the ``kind``, a one-line ``note`` saying why and how to override it, the
    logging ``level`` of the note (WARNING when another kind was plausible), and for two-valued labels
    that are not 0/1 the ``mapping`` (low, high) -> (0, 1)."""

    kind: str
    note: str
    level: int = logging.WARNING
    mapping: tuple[float, float] | None = None


def _override(*kinds: str) -> str:
    alts = " or ".join(f"kind={k!r} (CLI: --kind {k})" for k in kinds)
    return f"; pass {alts} to override"


def _values(vals: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(f"{v:g}" for v in vals[:limit])
    return "{" + shown + (", ..." if len(vals) > limit else "") + "}"


def infer_kind(ys: Sequence[Any], what: str = "the labels") -> KindInference:
    """The task kind of label arrays (all tasks pooled, NaN = missing), always with a note saying why:

    - labels that are not all integers: ``regression``;
    - exactly the values {0, 1} (or only one of them): ``binary``;
    - exactly two other integer values, e.g. {1, 2} or {-1, 1}: ``binary``, the lower mapped to 0 and the
      higher to 1 (``mapping``);
    - the integers ``0..k-1`` with 3 <= k <= `MAX_INFERRED_CLASSES`: ``multiclass``;
    - any other integers (more levels, negative, gaps, not starting at 0: ratings, counts): ``regression``;
    - 2-D label arrays per task (3-D shared): ``distribution``.

    Every outcome comes with a note naming it and how to override it; it is a WARNING whenever the labels
    are integers (another kind was plausible), INFO for non-integer labels and soft labels.
    """
    arrays = [np.asarray(y, dtype=np.float64) for y in ys]

    def out(kind: str, why: str, alt: str | None, level: int = logging.WARNING,
            mapping: tuple[float, float] | None = None) -> KindInference:
        return KindInference(kind, f"task kind inferred from {what}: {kind} ({why})"
                             + (_override(alt) if alt else ""), level, mapping)

    if any(a.ndim >= 2 for a in arrays):
        return out("distribution", "one row of class probabilities per example", None, logging.INFO)
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = np.unique(flat[np.isfinite(flat)])
    if vals.size == 0:
        return out("regression", "every value is missing", None, logging.INFO)
    if not np.all(vals == np.round(vals)):
        return out("regression", "the values are not all integers", None, logging.INFO)
    k = len(vals)
    if set(vals.tolist()) <= {0.0, 1.0}:
        return out("binary", "the values are 0/1", "regression")
    if k == 2:
        lo, hi = float(vals[0]), float(vals[1])
        return out("binary", f"two values, {lo:g} and {hi:g}, read as classes 0 and 1", "regression",
                   mapping=(lo, hi))
    if vals[0] == 0 and vals[-1] == k - 1 and k <= MAX_INFERRED_CLASSES:
        return out("multiclass", f"{k} classes: the values are the integers 0..{k - 1}", "regression")
    if k == 1:
        why = f"a single value, {vals[0]:g}"
    elif k > MAX_INFERRED_CLASSES:
        why = f"{k} distinct integers from {vals[0]:g} to {vals[-1]:g}, more than {MAX_INFERRED_CLASSES} levels"
    else:
        why = f"the integers {_values(vals)} are not the classes 0..{k - 1}"
    return out("regression", why, "multiclass")


def _map_binary(y: np.ndarray, mapping: tuple[float, float]) -> np.ndarray:
    lo, hi = mapping
    return np.where(y == lo, 0.0, np.where(y == hi, 1.0, y))


def resolve_kind(kind: str | None, ys: Sequence[np.ndarray], what: str = "the labels"
                 ) -> tuple[str, list[np.ndarray], str | None, tuple[float, float] | None]:
    """``kind`` (inferred by `infer_kind` when None), the labels (two-valued binary labels mapped to 0/1), the
    note to record, already logged on ``mtlkit.data`` (None when nothing was inferred or mapped), and the
    original values of classes 0 and 1 when binary labels were mapped (`TaskSpec.labels`), else None."""
    ys = list(ys)
    if kind is None:
        inf = infer_kind(ys, what)
    elif kind == "binary":  # binary labels may be any two values, like a scikit-learn classifier's
        flat = np.concatenate([np.ravel(y) for y in ys]) if ys else np.zeros(0)
        vals = np.unique(flat[np.isfinite(flat)])
        if len(vals) != 2 or set(vals.tolist()) <= {0.0, 1.0}:
            return kind, ys, None, None
        lo, hi = float(vals[0]), float(vals[1])
        inf = KindInference("binary", f"binary labels: {what} has two values, {lo:g} and {hi:g}, read as classes "
                            "0 and 1", mapping=(lo, hi))
    else:
        return kind, ys, None, None
    if inf.mapping is not None:
        ys = [_map_binary(y, inf.mapping) for y in ys]
    log.log(inf.level, inf.note)
    return inf.kind, ys, inf.note, inf.mapping


@contextlib.contextmanager
def collect_notes(level: int = logging.WARNING) -> Iterator[list[str]]:
    """Within the block, notes logged on ``mtlkit.data`` at ``level`` or above are collected into the
    yielded list instead of being printed (the CLI prints them once the data have loaded)."""
    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    handler = _Collect(level)
    old = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False
    if log.level == logging.NOTSET or log.level > level:
        log.setLevel(level)
    try:
        yield notes
    finally:
        log.removeHandler(handler)
        log.propagate, _ = old
        log.setLevel(old[1])
