"""The sweep's definition: the search space as given on the command line (``--param``, ``--set``) or declared by
the method (`registry.search_space`), stored dimensions <-> `Space`, and `SweepSpec` (what a sweep is)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtlkit.data.multitask import MultiTaskData
from mtlkit.errors import MtlkitError
from mtlkit.experiments.tuning.result import Direction
from mtlkit.hparams import Space
from mtlkit.methods import registry
from mtlkit.train.metrics import LOWER_IS_BETTER, PRIMARY_METRIC

FORMAT = "mtlkit-sweep/1"
MAX_GRID = 10_000                     # larger grids should use a budget (--trials)
SAMPLERS = ("tpe", "random")
RANGE_KINDS = {"uniform": ("float", False), "loguniform": ("float", True), "int": ("int", False),
               "logint": ("int", True)}

SPACE_SYNTAX = ("--param NAME=V1,V2,... lists values (each parsed as JSON where it can be: 1e-3, true, [64,32], "
                "else a string); --param NAME=uniform:LO:HI | loguniform:LO:HI | int:LO:HI | logint:LO:HI is a "
                "range for budget mode (--trials N)")


# ---------------------------------------------------------------------- parsing the search space
def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so ``[64,32],[16]`` is two values."""
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out]


def parse_value(text: str) -> Any:
    """One command-line value: JSON where it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_range(text: str) -> dict[str, Any] | None:
    """``loguniform:1e-4:1e-1`` → ``{"float": [1e-4, 0.1], "log": True}``; ``None`` if not a range."""
    head, _, rest = text.partition(":")
    if head not in RANGE_KINDS or not rest:
        return None
    kind, log = RANGE_KINDS[head]
    parts = rest.split(":")
    if len(parts) != 2:
        raise MtlkitError(f"range {text!r} must be {head}:LOW:HIGH")
    try:
        lo, hi = (int(p) for p in parts) if kind == "int" else (float(p) for p in parts)
    except ValueError:
        what = "integers" if kind == "int" else "numbers"
        raise MtlkitError(f"range {text!r}: LOW and HIGH must be {what}") from None
    if not lo < hi:
        raise MtlkitError(f"range {text!r}: LOW must be below HIGH")
    if log and lo <= 0:
        raise MtlkitError(f"range {text!r}: a log range needs LOW > 0")
    return {kind: [lo, hi], "log": log}


def parse_param(item: str) -> tuple[str, list[Any] | dict[str, Any]]:
    """``NAME=V1,V2`` → (name, values) or ``NAME=loguniform:LO:HI`` → (name, range); see `SPACE_SYNTAX`."""
    name, eq, text = item.partition("=")
    name = name.strip()
    if not eq or not name or not text.strip():
        raise MtlkitError(f"--param expects NAME=VALUES, got {item!r} ({SPACE_SYNTAX})")
    rng = parse_range(text.strip())
    if rng is not None:
        return name, rng
    return name, [parse_value(v) for v in _split_top_level(text)]


def parse_assignment(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` (``--set``) → (name, value parsed as JSON where it can be)."""
    name, eq, text = item.partition("=")
    if not eq or not name.strip():
        raise MtlkitError(f"--set expects NAME=VALUE, got {item!r}")
    return name.strip(), parse_value(text.strip())


def space_to_dim(space: Space) -> dict[str, Any]:
    """A declared `Space` as a stored search dimension; an ``off`` value rides along as ``"off"`` (a range is then
    searched with a categorical on/off switch, `mtlkit.experiments.tuning.suggest`; a choice simply gains it)."""
    if space.kind == "choice":
        values = [list(c) if isinstance(c, tuple) else c for c in space.choices]
        if space.off is not None and space.off not in values:
            values.append(space.off)
        return {"choice": values}
    kind = "int" if space.kind == "int" else "float"
    lo, hi = (int(space.low), int(space.high)) if kind == "int" else (float(space.low), float(space.high))  # type: ignore[arg-type]
    dim: dict[str, Any] = {kind: [lo, hi], "log": space.kind == "log" or space.log}
    if space.off is not None:
        dim["off"] = space.off
    return dim


def dim_to_space(dim: Mapping[str, Any]) -> Space:
    """A stored search dimension as a `Space` (the inverse of `space_to_dim`)."""
    if "choice" in dim:
        return Space("choice", choices=tuple(tuple(c) if isinstance(c, list) else c for c in dim["choice"]))
    if "int" in dim:
        lo, hi = dim["int"]
        return Space("int", lo, hi, off=dim.get("off"), log=bool(dim.get("log")))
    lo, hi = dim["float"]
    return Space("log" if dim.get("log") else "uniform", lo, hi, off=dim.get("off"))


def _as_dimension(name: str, spec: Any) -> dict[str, Any]:
    """A search dimension as stored: ``{"choice": [...]}``, ``{"float": [lo, hi], "log": b}`` or ``{"int": ...}``
    (a range may carry an ``"off"`` value); a declared `Space` is converted."""
    if isinstance(spec, Space):
        return space_to_dim(spec)
    if isinstance(spec, str):
        rng = parse_range(spec)
        if rng is None:
            raise MtlkitError(f"{name}: {spec!r} is not a range ({SPACE_SYNTAX})")
        return rng
    if isinstance(spec, Mapping):
        if not ({"choice"} <= set(spec) or set(spec) & {"float", "int"}):
            raise MtlkitError(f"{name}: unknown search dimension {dict(spec)!r}")
        return dict(spec)
    values = list(spec)
    if not values:
        raise MtlkitError(f"{name}: no values to search")
    seen: list[str] = []
    for v in values:
        key = json.dumps(v, sort_keys=True)
        if key in seen:
            raise MtlkitError(f"{name}: value {v!r} is listed twice")
        seen.append(key)
    return {"choice": values}


# ---------------------------------------------------------------------- the sweep definition
@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is: method, data set (name + checksum), splits, seed, fixed hyper-parameters and the
    search space; stored in the study so that workers need only the storage URL and the study name."""

    method: str
    dataset: str
    checksum: str
    kind: str
    n_splits: int
    seed: int
    fixed: dict[str, Any]
    space: dict[str, dict[str, Any]]
    sampler: str            # "grid" (every point of `space` once), "tpe" or "random"
    n_trials: int
    metric: str
    direction: Direction

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid point (name -> value) in enqueue order: the product of the axes in the given order."""
        names = list(self.space)
        axes = [self.space[n]["choice"] for n in names]
        return [dict(zip(names, vals, strict=True)) for vals in itertools.product(*axes)]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "dataset": self.dataset, "checksum": self.checksum,
                "kind": self.kind, "n_splits": self.n_splits, "seed": self.seed, "fixed": self.fixed,
                "space": self.space, "sampler": self.sampler, "n_trials": self.n_trials, "metric": self.metric,
                "direction": self.direction}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SweepSpec:
        if d.get("format") != FORMAT:
            raise MtlkitError(f"this study was not made by `mtlkit sweep` (format {d.get('format')!r})")
        return cls(d["method"], d["dataset"], d["checksum"], d["kind"], int(d["n_splits"]), int(d["seed"]),
                   dict(d["fixed"]), {k: dict(v) for k, v in d["space"].items()}, d["sampler"],
                   int(d["n_trials"]), d["metric"], d["direction"])


def make_spec(method: str, data: MultiTaskData, *, n_splits: int = 3, seed: int = 0,
              space: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
              n_trials: int | None = None, sampler: str = "tpe") -> SweepSpec:
    """Validate a sweep's definition; without ``space`` the method's declared tuning space for the data's kind
    (`registry.search_space`), less the fixed names.

    ``space`` maps a hyper-parameter to a list of values, a range (string ``loguniform:1e-4:1e-1`` or a stored
    dimension) or a `Space`; without ``n_trials`` every dimension must be a list and the sweep is a grid.
    """
    entry = registry.get(method)
    if data.kind not in entry.kinds:
        raise MtlkitError(f"method {entry.name!r} does not handle {data.kind} tasks (it handles "
                          f"{', '.join(entry.kinds)})")
    fixed = dict(fixed or {})
    known = set(registry.describe(entry.name)["hyperparameters"])
    declared = space is None
    if space is None:
        space = {k: v for k, v in registry.search_space(entry.name, data.kind).items() if k not in fixed}
    dims = {name: _as_dimension(name, s) for name, s in space.items()}
    unknown = sorted((set(dims) | set(fixed)) - known)
    if unknown:
        raise MtlkitError(f"unknown hyper-parameter(s) {', '.join(unknown)} for method {entry.name!r}; "
                          f"known: {', '.join(sorted(known))}")
    both = sorted(set(dims) & set(fixed))
    if both:
        raise MtlkitError(f"{', '.join(both)} both searched (--param) and fixed (--set); choose one")
    if n_splits < 1:
        raise MtlkitError(f"--splits must be at least 1, got {n_splits}")
    metric = PRIMARY_METRIC[data.kind]
    direction: Direction = "minimize" if LOWER_IS_BETTER[metric] else "maximize"
    common: dict[str, Any] = dict(method=entry.name, dataset=data.name, checksum=data.checksum(), kind=data.kind,
                  n_splits=n_splits, seed=seed, fixed=fixed, space=dims, metric=metric, direction=direction)
    if n_trials is None:
        ranges = [n for n, d in dims.items() if "choice" not in d]
        if ranges and declared:
            raise MtlkitError(f"the declared search space of {entry.name!r} has ranges ("
                              + "; ".join(f"{n} {dim_to_space(dims[n]).text()}" for n in ranges)
                              + "): give a budget, --trials N, to search it by TPE, or --param lists for a grid")
        if ranges:
            raise MtlkitError(f"{', '.join(ranges)}: a range needs a budget of trials (--trials N); "
                              "a grid takes lists of values")
        size = math.prod(len(d["choice"]) for d in dims.values())
        if size > MAX_GRID:
            raise MtlkitError(f"the grid has {size} points (more than {MAX_GRID}); use a budget: --trials N")
        return SweepSpec(sampler="grid", n_trials=size, **common)
    if sampler not in SAMPLERS:
        raise MtlkitError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if n_trials < 1:
        raise MtlkitError(f"--trials must be at least 1, got {n_trials}")
    if not dims:
        raise MtlkitError(f"nothing to search: {entry.name!r} declares no tuning space; give --param NAME=...")
    return SweepSpec(sampler=sampler, n_trials=int(n_trials), **common)


def spaces(spec: SweepSpec) -> dict[str, Space]:
    """The sweep's dimensions as `Space`s."""
    return {name: dim_to_space(dim) for name, dim in spec.space.items()}
