"""Typed hyper-parameters, declared once per method: name, type, default, valid range or choices, a one-line
doc and the tuning search space. Validation (`check`), `describe`, the CLI's ``--set`` and equal-budget tuning
all read this one declaration.

A `Space` is what tuning searches: a log- or linear range, an integer range, or a list of choices, optionally
with an ``off`` value (λ = 0: the regulariser switched off) tried besides the range. `Space.edge` says whether
a selected value sits on the edge of the space, where the search may have stopped too early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtlkit.errors import MtlkitError

TYPES = ("int", "float", "bool", "str", "ints")
"""``ints`` is a list of non-negative integers (layer widths, channels)."""

EDGE_BAND = 0.05
"""A continuous value within this fraction of its (log-)range from a bound counts as 'at the edge'."""


@dataclass(frozen=True)
class Space:
    """One hyper-parameter's tuning search space.

    ``kind``: ``"log"`` (log-uniform on [low, high]), ``"uniform"`` (on [low, high]), ``"int"`` (integers in
    [low, high], log-spaced if ``log``) or ``"choice"`` (one of ``choices``). ``off``: a value tried besides the
    range that switches the term off (e.g. 0.0 for a penalty weight); None when there is none.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    off: Any = None
    log: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("log", "uniform", "int", "choice"):
            raise ValueError(f"unknown space kind {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("a choice space needs at least one choice")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.kind} space needs low < high, got {self.low}, {self.high}")
        elif (self.kind == "log" or self.log) and self.low <= 0:
            raise ValueError(f"a log space needs low > 0, got {self.low}")

    @property
    def ordered(self) -> bool:
        """Whether the values have an order (ranges, or choices that are all numbers): edges make sense."""
        if self.kind != "choice":
            return True
        return all(isinstance(c, int | float) and not isinstance(c, bool) for c in self.choices) and \
            len(self.choices) > 2

    def edge(self, value: Any) -> str | None:
        """``"low"`` or ``"high"`` when ``value`` lies on that edge of the space (the search may belong past it),
        else None. The ``off`` value is a choice of its own, never an edge."""
        if self.off is not None and value == self.off:
            return None
        if self.kind == "choice":
            if not self.ordered or value not in self.choices:
                return None
            s = sorted(self.choices)
            return "low" if value == s[0] else "high" if value == s[-1] else None
        v, lo, hi = float(value), float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.kind == "log" or self.log:
            if v <= 0:
                return None
            v, lo, hi = math.log(v), math.log(lo), math.log(hi)
        band = EDGE_BAND * (hi - lo)
        return "low" if v <= lo + band else "high" if v >= hi - band else None

    def widened(self, side: str, factor: float = 10.0, bounds: tuple[float | None, float | None] = (None, None)
                ) -> Space:
        """This space pushed past its ``side`` edge: a log range by ``factor``, a linear or integer range by its
        width, an ordered choice by one more step of the same ratio (or difference). ``bounds`` are the
        hyper-parameter's valid limits, never crossed."""
        lo_b, hi_b = bounds
        if self.kind == "choice":
            s = sorted(self.choices)
            if len(s) < 2:
                return self
            if side == "low":
                a, b = s[0], s[1]
                new = a * a / b if a > 0 and b > 0 and a * a / b != a else a - (b - a)
            else:
                a, b = s[-2], s[-1]
                new = b * b / a if a > 0 and b > 0 else b + (b - a)
            if all(isinstance(c, int) for c in s):
                new = int(round(new))
            if (lo_b is not None and new < lo_b) or (hi_b is not None and new > hi_b) or new in s:
                return self
            return Space("choice", choices=tuple(sorted([*s, new])), off=self.off)
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.kind == "log" or self.log:
            lo, hi = (lo / factor, hi) if side == "low" else (lo, hi * factor)
        else:
            w = hi - lo
            lo, hi = (lo - w, hi) if side == "low" else (lo, hi + w)
        if lo_b is not None:
            lo = max(lo, lo_b if not (self.kind == "log" or self.log) or lo_b > 0 else lo)
        if hi_b is not None:
            hi = min(hi, hi_b)
        if self.kind == "int":
            lo, hi = math.floor(lo), math.ceil(hi)
        return Space(self.kind, lo, hi, off=self.off, log=self.log)

    def text(self) -> str:
        """The space in a line: ``log[1e-05, 0.1] ∪ {0}``, ``{1, 2, 4, 8, 16}``."""
        if self.kind == "choice":
            body = "{" + ", ".join(_fmt(c) for c in self.choices) + "}"
        else:
            scale = "log" if self.kind == "log" or self.log else ("int" if self.kind == "int" else "")
            body = f"{scale}[{_fmt(self.low)}, {_fmt(self.high)}]"
        return body + (f" ∪ {{{_fmt(self.off)}}}" if self.off is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "choices": list(self.choices),
                "off": self.off, "log": self.log}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Space:
        return cls(d["kind"], d.get("low"), d.get("high"), tuple(_tuple(c) for c in d.get("choices", ())),
                   d.get("off"), bool(d.get("log", False)))


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def log_range(low: float, high: float, off: Any = None) -> Space:
    """Log-uniform on [low, high] (plus ``off``, e.g. 0.0, tried as its own value)."""
    return Space("log", low, high, off=off)


def uniform(low: float, high: float, off: Any = None) -> Space:
    return Space("uniform", low, high, off=off)


def int_range(low: int, high: int, log: bool = False) -> Space:
    return Space("int", low, high, log=log)


def choice(*values: Any) -> Space:
    """One of ``values`` (lists, e.g. layer widths, are given as lists and kept as tuples)."""
    return Space("choice", choices=tuple(_tuple(v) for v in values))


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter of a method: what it is, what values are valid, and what tuning searches.

    ``low``/``high`` bound valid numbers (inclusive; ``low_open``/``high_open`` make a bound strict, e.g. a
    learning rate > 0); ``choices`` lists the valid values of a ``str`` (or any) parameter. ``space`` is the
    tuning search space; None means the value stays fixed at its default when tuning. ``kinds``: the task kinds
    the parameter is tuned for (None: all); tuning for another kind leaves it at its default (``stl-linear``'s
    ``alpha`` matters for regression only, ``C`` for classification only).
    """

    name: str
    type: str
    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    space: Space | None = None
    declared: bool = field(default=True, compare=False)
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"hyper-parameter {self.name!r}: unknown type {self.type!r}; one of {TYPES}")

    def tuned_for(self, kind: str | None) -> bool:
        """Whether tuning for tasks of ``kind`` searches this parameter: it has a space, and ``kind`` is None or
        one of its ``kinds``."""
        return self.space is not None and (kind is None or self.kinds is None or kind in self.kinds)

    def search_text(self) -> str | None:
        """The tuning space in a line, with the task kinds it is limited to: ``log[0.01, 1000] (regression only)``."""
        if self.space is None:
            return None
        return self.space.text() + (f" ({', '.join(self.kinds)} only)" if self.kinds is not None else "")

    def check(self, value: Any, method: str = "") -> Any:
        """``value`` validated (and an int given for a float made a float); a one-line `MtlkitError` naming the
        method, the hyper-parameter and what is valid otherwise."""
        where = f" of method {method!r}" if method else ""

        def bad(why: str) -> MtlkitError:
            return MtlkitError(f"hyper-parameter {self.name}{where} {why}, got {value!r} ({self.doc or self.type})")

        t = self.type
        if t == "bool":
            if not isinstance(value, bool):
                raise bad("must be true or false")
        elif t == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad("must be an integer")
        elif t == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad("must be a number")
            value = float(value)
            if not math.isfinite(value):
                raise bad("must be finite")
        elif t == "str":
            if not isinstance(value, str):
                raise bad("must be a string")
        elif t == "ints":
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                      for v in value):
                raise bad("must be a list of positive integers, e.g. [64, 32] (or [] for none)")
        if self.choices is not None and value not in self.choices:
            raise bad("must be one of " + ", ".join(repr(c) for c in self.choices))
        if t in ("int", "float"):
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                raise bad(f"must be {'>' if self.low_open else '≥'} {_fmt(self.low)}")
            if self.high is not None and (value >= self.high if self.high_open else value > self.high):
                raise bad(f"must be {'<' if self.high_open else '≤'} {_fmt(self.high)}")
        return value

    def valid_text(self) -> str:
        """What values are valid, in a few words: ``float > 0``, ``int in [1, 16]``, ``adam | sgd``."""
        if self.choices is not None:
            return " | ".join(_fmt(c) for c in self.choices)
        lo = None if self.low is None else ((">" if self.low_open else "≥") + f" {_fmt(self.low)}")
        hi = None if self.high is None else (("<" if self.high_open else "≤") + f" {_fmt(self.high)}")
        bounds = ", ".join(b for b in (lo, hi) if b)
        return self.type + (f" {bounds}" if bounds else "")

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: type, default, valid values, doc and tuning space."""
        return {"type": self.type, "default": self.default, "valid": self.valid_text(), "doc": self.doc,
                "search": self.search_text()}


def infer(name: str, default: Any) -> HParam:
    """An undeclared hyper-parameter (a method that gives only ``defaults``): its type read off the default,
    no range, no doc, not tuned."""
    if isinstance(default, bool):
        t = "bool"
    elif isinstance(default, int):
        t = "int"
    elif isinstance(default, float):
        t = "float"
    elif isinstance(default, list | tuple):
        t = "ints"
    else:
        t = "str"
    return HParam(name, t, default, declared=False)


def as_params(params: Sequence[HParam] | None, defaults: Mapping[str, Any]) -> dict[str, HParam]:
    """Declared parameters by name, plus an inferred one for each default not declared."""
    out = {p.name: p for p in params or ()}
    for k, v in defaults.items():
        if k not in out:
            out[k] = infer(k, v)
    return out


def check_all(params: Mapping[str, HParam], hp: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Every value of ``hp`` checked against its declaration (names without one are passed through)."""
    return {k: (params[k].check(v, method) if k in params else v) for k, v in hp.items()}
