"""Hyper-parameter sweeps through Optuna: a grid (each point exactly once) or a budget of sampled trials
(TPE, random) for one method on one data set, scored on validation averaged over splits; the best
configuration is retrained on every split and tested.

The study lives in an Optuna RDB storage (an SQLite file by default, PostgreSQL for many machines), so
any number of workers (`run_worker`) can share it. Exactly-once: the creator (`create_sweep`) enqueues
every trial up front as a WAITING trial (grid points with their values; budget trials as empty
placeholders that the sampler fills in), and a worker only ever claims a WAITING trial through the
storage's WAITING→RUNNING transition (a ``SELECT ... FOR UPDATE`` row lock in PostgreSQL; an exclusive
file lock around the claim for SQLite, which has no row locks). A worker never creates a trial, so
when the queue is empty it stops; it cannot add an extra one under a race.

Trials that raise are recorded FAIL with the error (user attribute ``error``) and never retried; a
worker that dies mid-trial stops sending heartbeats and its trial is failed the same way by the next
worker or by `finish_sweep`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.bench import make_splits
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.store import ResultsStore
from mtlkit.experiments.tuning import decode_params, encode, encode_params, suggest
from mtlkit.hparams import Space
from mtlkit.methods import registry
from mtlkit.progress import progress_bar
from mtlkit.train.metrics import LOWER_IS_BETTER, PRIMARY_METRIC

FORMAT = "mtlkit-sweep/1"
DEFINITION_ATTR = "mtlkit_sweep"      # study user attribute: the sweep definition (JSON object)
READY_ATTR = "mtlkit_ready"           # study user attribute: every trial has been enqueued
HEARTBEAT_INTERVAL = 30               # seconds between a running trial's heartbeats
GRACE_PERIOD = 300                    # seconds without a heartbeat before a RUNNING trial is failed
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
    out, cur, depth, quote = [], [], 0, ""
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
        return Space("int", *dim["int"], off=dim.get("off"), log=bool(dim.get("log")))
    return Space("log" if dim.get("log") else "uniform", *dim["float"], off=dim.get("off"))


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


_encode = encode  # Optuna categorical choices must be scalars: lists and dicts travel as their JSON text


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
    direction: str          # "minimize" | "maximize"

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
        space = {k: v for k, v in _declared_space(entry.name, data.kind).items() if k not in fixed}
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
    direction = "minimize" if LOWER_IS_BETTER[metric] else "maximize"
    common = dict(method=entry.name, dataset=data.name, checksum=data.checksum(), kind=data.kind,
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


# ---------------------------------------------------------------------- storage
def default_storage(out: str | Path = "results") -> str:
    """``sqlite:///<out>/sweeps.sqlite`` (absolute, so that other processes on this machine find it)."""
    return f"sqlite:///{(Path(out) / 'sweeps.sqlite').resolve()}"


def mask_url(url: str) -> str:
    """The storage URL with any password replaced by ``***`` (for reports and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported as given, minus anything like a password
        import re

        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy's default (psycopg 3) or psycopg2."""
    import importlib.util

    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        raise MtlkitError(f"storage {mask_url(url)} needs a PostgreSQL driver: pip install 'mtlkit[postgres]'")
    return u.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def open_storage(url: str, heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
                 grace_period: int | None = GRACE_PERIOD) -> Any:
    """An Optuna RDB storage (in Optuna's caching wrapper) with heartbeats, so dead workers' trials get failed;
    retried briefly, because several processes creating the tables of a fresh database at once can collide."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        path = _sqlite_path(url)
    except Exception as e:  # sqlalchemy raises several kinds for a malformed URL
        raise MtlkitError(f"storage {mask_url(url)!r} is not a database URL (sqlite:///FILE, "
                          f"postgresql://USER:PASSWORD@HOST:PORT/DB): {e}") from e
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    driver_url = _with_driver(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if path is not None else {"pool_pre_ping": True}
    last: Exception | None = None
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(driver_url, engine_kwargs=kwargs,
                                                 heartbeat_interval=heartbeat_interval, grace_period=grace_period)
            # The same cached wrapper `optuna.load_study` would make: trials a worker claims through it are
            # known to the `Trial` objects built on it.
            return optuna.storages.get_storage(rdb)
        except ImportError as e:
            raise MtlkitError(f"storage {mask_url(url)} needs a database driver that is not installed ({e}); "
                              "for PostgreSQL: pip install 'mtlkit[postgres]'") from e
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
            last = e
            time.sleep(0.5 * (attempt + 1))
    msg = str(last).strip().splitlines()[0] if last is not None and str(last).strip() else repr(last)
    raise MtlkitError(f"cannot open the sweep storage {mask_url(url)}: {msg}")


@contextlib.contextmanager
def _claim_lock(url: str) -> Iterator[None]:
    """SQLite has no row locks: serialise claims on this machine with an exclusive lock on ``<db>.lock``."""
    path = _sqlite_path(url)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one worker per SQLite file
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    with open(f"{path}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim_trial(storage: Any, study_id: int, url: str) -> int | None:
    """Atomically move one WAITING trial to RUNNING and return its id; ``None`` when none is left.

    The transition is the storage's ``set_trial_state_values(RUNNING)``, which returns False when another
    worker got there first (RDB storages read the row ``FOR UPDATE`` before checking it is WAITING). Unlike
    ``Study.ask()``, this never creates a new trial when the queue is empty.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    with _claim_lock(url):
        for ft in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, ft.number)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return int(trial_id)
            except UpdateFinishedTrialError:
                continue
    return None


def fail_stale_trials(storage: Any, study_id: int) -> list[int]:
    """Fail RUNNING trials whose worker stopped sending heartbeats, recording why; returns their ids."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    stale = getattr(storage, "_get_stale_trial_ids", None)
    if stale is None or not storage.get_heartbeat_interval():
        return []
    failed = []
    for trial_id in stale(study_id):
        try:
            storage.set_trial_user_attr(trial_id, "error", "the worker running this trial stopped sending "
                                        "heartbeats (killed, crashed or disconnected); not retried")
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except UpdateFinishedTrialError:
            continue
    return failed


class _Heartbeat:
    """Records a running trial's heartbeat every ``interval`` seconds from a background thread."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._interval = storage.get_heartbeat_interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        with contextlib.suppress(Exception):  # a missed beat is retried at the next tick
            self._storage.record_heartbeat(self._trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        if self._interval:
            self._beat()
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{self._trial_id}")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------------- creating and loading a sweep
@dataclass(frozen=True)
class SweepHandle:
    """Where a sweep lives (storage URL, study name) and what it is; ``created`` is False on a resume."""

    storage: str
    study: str
    spec: SweepSpec
    created: bool


def _load_data(data: str | MultiTaskData | None, name: str, data_dir: str | Path | None) -> MultiTaskData:
    from mtlkit import datasets

    if isinstance(data, MultiTaskData):
        return data
    name = data or name
    if name not in datasets.names():
        raise MtlkitError(f"this sweep's data set {name!r} is not a named data set (see `mtlkit datasets`): "
                          "run its workers from Python, passing the data (run_worker(..., data=...))")
    return datasets.load(name, data_dir=data_dir)


def _check_data(spec: SweepSpec, data: MultiTaskData) -> None:
    if data.checksum() != spec.checksum:
        raise MtlkitError(f"the data differ from the sweep's: checksum {data.checksum()} here, {spec.checksum} "
                          f"in the study ({spec.dataset}); every worker must read the same data set")


def _definition_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {json.dumps(a.get(k))} in the study, {json.dumps(b.get(k))} asked" for k in keys)


def _study_id(storage: Any, name: str) -> int | None:
    try:
        return int(storage.get_study_id_from_name(name))
    except KeyError:
        return None


def _wait_ready(storage: Any, study_name: str, url: str, wait: float) -> tuple[int, SweepSpec]:
    """Poll until the study exists and every trial is enqueued (workers may start before the creator)."""
    deadline = time.monotonic() + wait
    while True:
        study_id = _study_id(storage, study_name)
        attrs = storage.get_study_user_attrs(study_id) if study_id is not None else {}
        if attrs.get(READY_ATTR) and DEFINITION_ATTR in attrs:
            return study_id, SweepSpec.from_json(attrs[DEFINITION_ATTR])  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            if study_id is None:
                raise MtlkitError(f"study {study_name!r} does not exist in {mask_url(url)}"
                                  + (f" (waited {wait:g} s)" if wait else "")
                                  + "; create it with `mtlkit sweep --method M --dataset D --study NAME`")
            if DEFINITION_ATTR not in attrs:
                raise MtlkitError(f"study {study_name!r} in {mask_url(url)} was not made by `mtlkit sweep`")
            raise MtlkitError(f"study {study_name!r} in {mask_url(url)} was never fully set up (its creator "
                              "stopped while enqueueing trials); delete it and create it again")
        time.sleep(min(0.25, max(0.05, deadline - time.monotonic())))


def _existing_definition(storage: Any, study_id: int, wait: float = 5.0) -> dict[str, Any] | None:
    """The definition of a study another creator may have made a moment ago (it is written just after)."""
    deadline = time.monotonic() + wait
    while True:
        attrs = storage.get_study_user_attrs(study_id)
        if DEFINITION_ATTR in attrs or time.monotonic() >= deadline:
            return attrs.get(DEFINITION_ATTR)
        time.sleep(0.2)


def create_sweep(method: str, data: str | MultiTaskData = "digits", *, storage: str | None = None,
                 study: str | None = None, n_splits: int = 3, seed: int = 0,
                 space: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                 n_trials: int | None = None, sampler: str = "tpe", out: str | Path = "results",
                 data_dir: str | Path | None = None, wait: float = 600.0) -> SweepHandle:
    """Create the study and enqueue every trial once (or resume a study with the same definition).

    A study of that name with a different definition is an error. ``storage`` defaults to
    ``sqlite:///<out>/sweeps.sqlite``; ``study`` to ``<method>-<dataset>``.
    """
    import optuna

    d = _load_data(data, "", data_dir)
    spec = make_spec(method, d, n_splits=n_splits, seed=seed, space=space, fixed=fixed, n_trials=n_trials,
                     sampler=sampler)
    url = storage or default_storage(out)
    name = study or f"{spec.method}-{spec.dataset}"
    st = open_storage(url)
    definition = json.loads(json.dumps(spec.to_json()))  # as it reads back from the storage
    try:
        s = optuna.create_study(storage=st, study_name=name, direction=spec.direction, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        s = None
    if s is None:
        existing = _existing_definition(st, st.get_study_id_from_name(name))
        if existing is None:
            raise MtlkitError(f"study {name!r} already exists in {mask_url(url)} and was not made by "
                              "`mtlkit sweep`; choose another --study name")
        if existing != definition:
            raise MtlkitError(f"study {name!r} already exists in {mask_url(url)} with a different definition "
                              f"({_definition_diff(existing, definition)}); choose another --study name or "
                              "delete the study")
        _wait_ready(st, name, url, wait)
        return SweepHandle(url, name, spec, created=False)
    s.set_user_attr(DEFINITION_ATTR, definition)
    if spec.is_grid:
        for i, point in enumerate(spec.grid_points()):
            s.enqueue_trial({k: _encode(v) for k, v in point.items()}, user_attrs={"grid_point": i})
    else:  # trial 0: the method's defaults (where the space holds them); the rest drawn by the sampler
        from mtlkit.train.config import method_defaults

        first = encode_params({**method_defaults(registry.get(spec.method)), **spec.fixed}, spaces(spec))
        for i in range(spec.n_trials):
            s.enqueue_trial(first if i == 0 else {}, user_attrs={"defaults": True} if i == 0 else None)
    s.set_user_attr(READY_ATTR, True)
    return SweepHandle(url, name, spec, created=True)


def load_sweep(storage: str, study: str, wait: float = 0.0) -> SweepHandle:
    """The sweep stored under ``study`` (waiting up to ``wait`` seconds for it to be created)."""
    st = open_storage(storage)
    _, spec = _wait_ready(st, study, storage, wait)
    return SweepHandle(storage, study, spec, created=False)


# ---------------------------------------------------------------------- workers
@dataclass
class WorkerSummary:
    """What one worker did: trial numbers it completed and the ones that failed (with their error)."""

    completed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def ran(self) -> int:
        return len(self.completed) + len(self.failed)


def _declared_space(method: str, kind: str) -> dict[str, Space]:
    try:
        return dict(registry.search_space(method, kind))  # type: ignore[call-arg]
    except TypeError:  # a registry whose search_space takes no task kind
        return dict(registry.search_space(method))


def spaces(spec: SweepSpec) -> dict[str, Space]:
    """The sweep's dimensions as `Space`s."""
    return {name: dim_to_space(dim) for name, dim in spec.space.items()}


def _suggest(trial: Any, spec: SweepSpec) -> dict[str, Any]:
    """The trial's hyper-parameters: grid values fixed at enqueue time, or drawn by the sampler (a range with an
    ``off`` value through its on/off switch, `mtlkit.experiments.tuning.suggest`)."""
    return suggest(trial, spaces(spec))


def _score(spec: SweepSpec, splits: Sequence[tuple[str, Split]], params: Mapping[str, Any],
           device: str | None) -> list[float]:
    """Validation primary metric (task mean) of ``params`` on every split, seed ``seed + i`` on split i."""
    from mtlkit.train.run import train

    out = []
    for i, (_, split) in enumerate(splits):
        run = train(spec.method, split, hparams={**spec.fixed, **params}, seed=spec.seed + i, device=device,
                    progress=False)
        ev = run.evaluate("val")
        out.append(float(ev.mean[spec.metric]))
    return out


def _sampler(spec: SweepSpec, number: int) -> Any:
    """A sampler seeded per trial number: workers never draw the same stream, and a serial run repeats."""
    import optuna

    seed = (spec.seed * 1_000_003 + number) % 2**32
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _record_failure(storage: Any, trial_id: int, error: str, tb: str = "") -> None:
    """Record the error on the trial and mark it FAIL (a no-op if another worker already finished it)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    with contextlib.suppress(UpdateFinishedTrialError):  # already failed as stale by another worker
        storage.set_trial_user_attr(trial_id, "error", error[:4000])
        if tb:
            storage.set_trial_user_attr(trial_id, "traceback", tb[-8000:])
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def run_trial(study: Any, storage: Any, trial_id: int, spec: SweepSpec, splits: Sequence[tuple[str, Split]],
              device: str | None = None) -> tuple[bool, str]:
    """Evaluate one claimed trial and record it COMPLETE (mean validation metric) or FAIL (with the error);
    returns (completed, error)."""
    import optuna

    number = storage.get_trial_number_from_id(trial_id)
    if not spec.is_grid:
        study.sampler = _sampler(spec, number)
    with _Heartbeat(storage, trial_id):
        try:
            trial = optuna.Trial(study, trial_id)
            params = _suggest(trial, spec)
            per_split = _score(spec, splits, params, device)
            trial.set_user_attr("splits", [label for label, _ in splits])
            trial.set_user_attr(f"val_{spec.metric}", [v if math.isfinite(v) else None for v in per_split])
            value = float(np.mean(per_split))
            if not math.isfinite(value):
                bad = [label for (label, _), v in zip(splits, per_split, strict=True) if not math.isfinite(v)]
                raise MtlkitError(f"validation {spec.metric} is not finite on {', '.join(bad)} (training diverged)")
        except KeyboardInterrupt:
            _record_failure(storage, trial_id, "interrupted (KeyboardInterrupt)")
            raise
        except Exception as e:  # any crash of a trial is recorded, and the worker goes on
            error = f"{type(e).__name__}: {e}"
            _record_failure(storage, trial_id, error, traceback.format_exc())
            return False, error
        try:
            study.tell(trial, value)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as e:
            return False, f"could not record the result: {e}"
    return True, ""


def run_worker(storage: str, study: str, *, data: MultiTaskData | None = None, data_dir: str | Path | None = None,
               device: str | None = None, wait: float = 600.0, max_trials: int | None = None,
               progress: bool | None = None) -> WorkerSummary:
    """Claim and run WAITING trials of the study until none is left (or ``max_trials`` ran).

    The worker reads the sweep's definition from the study; ``data`` is needed only for a data set that is
    not a named one. It waits up to ``wait`` seconds for the study to be created.
    """
    import optuna
    from optuna.trial import TrialState

    st = open_storage(storage)
    study_id, spec = _wait_ready(st, study, storage, wait)
    d = _load_data(data, spec.dataset, data_dir)
    _check_data(spec, d)
    splits = make_splits(d, spec.n_splits, spec.seed)
    s = optuna.load_study(study_name=study, storage=st, sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    summary = WorkerSummary()
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    shown = 0
    with progress_bar(spec.n_trials, f"sweep {study}", progress) as bar:
        while max_trials is None or summary.ran < max_trials:
            fail_stale_trials(st, study_id)
            trial_id = claim_trial(st, study_id, storage)
            if trial_id is None:
                break
            number = st.get_trial_number_from_id(trial_id)
            ok, error = run_trial(s, st, trial_id, spec, splits, device)
            if ok:
                summary.completed.append(number)
            else:
                summary.failed[number] = error
            done = len(st.get_all_trials(study_id, deepcopy=False, states=finished))  # by every worker
            bar.advance(max(0, done - shown), status=f"trial {number}: {'done' if ok else 'failed'}")
            shown = max(shown, done)
    return summary


# ---------------------------------------------------------------------- finishing: retrain, test, report
@dataclass
class TrialRecord:
    """One trial as the report shows it."""

    number: int
    params: dict[str, Any]
    value: float | None
    state: str
    error: str | None
    per_split: list[float | None]


@dataclass
class SweepResult:
    """The finished sweep: every trial, the best one, and the best configuration retrained and tested."""

    storage: str
    study: str
    spec: SweepSpec
    trials: list[TrialRecord]
    best: TrialRecord
    hparams: dict[str, Any]
    splits: list[str]
    val: list[float]
    test: list[float]
    test_mean: float
    test_ci: float
    report: Path | None = None


def _decode(spec: SweepSpec, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's stored parameters back as hyper-parameter values (lists travel as JSON text; an on/off switch
    ``NAME:off`` folds into NAME)."""
    return decode_params(raw, spaces(spec))


def trial_records(storage: Any, study_id: int, spec: SweepSpec) -> list[TrialRecord]:
    """Every trial of the study in number order, with decoded parameters and any error."""
    out = []
    for t in storage.get_all_trials(study_id, deepcopy=False):
        raw = t.params or t.system_attrs.get("fixed_params", {})  # a trial that failed before suggesting
        params = _decode(spec, raw)
        out.append(TrialRecord(t.number, params, t.value, t.state.name, t.user_attrs.get("error"),
                               list(t.user_attrs.get(f"val_{spec.metric}", []))))
    return sorted(out, key=lambda r: r.number)


def best_trial(records: Sequence[TrialRecord], direction: str) -> TrialRecord:
    """The best COMPLETE trial; ties go to the lowest trial number, so the choice is deterministic."""
    done = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    if not done:
        first = next((f"trial {r.number}: {r.error}" for r in records if r.error), "no trial completed")
        raise MtlkitError(f"no trial of the sweep completed ({first})")
    sign = 1.0 if direction == "minimize" else -1.0
    return min(done, key=lambda r: (sign * float(r.value or 0.0), r.number))


def _wait_done(storage: Any, study_id: int, name: str, wait: bool, poll: float) -> None:
    """Wait until no trial is RUNNING (failing stale ones); a WAITING trial left means workers are missing."""
    from optuna.trial import TrialState

    while True:
        fail_stale_trials(storage, study_id)
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        if waiting:
            raise MtlkitError(f"{len(waiting)} trial(s) of study {name!r} have not run yet: start workers "
                              f"(`mtlkit sweep --worker --storage URL --study {name}`) before finishing")
        if not running:
            return
        if not wait:
            raise MtlkitError(f"{len(running)} trial(s) of study {name!r} are still running")
        time.sleep(poll)


def finish_sweep(storage: str, study: str, *, data: MultiTaskData | None = None, data_dir: str | Path | None = None,
                 device: str | None = None, out: str | Path | None = "results", store: ResultsStore | None = None,
                 wait: bool = True, poll: float = 2.0, command: str = "", progress: bool | None = None) -> SweepResult:
    """Pick the best trial, retrain it on every split, test it, record the runs and write the report.

    Waits for running trials (``wait``); the runs go to ``store`` (default ``<out>/results.sqlite``,
    experiment "sweep") and the report to ``<out>/sweep-<method>-<dataset>.md`` (``out=None``: neither).
    """
    from mtlkit.train.run import train

    st = open_storage(storage)
    study_id, spec = _wait_ready(st, study, storage, 0.0)
    _wait_done(st, study_id, study, wait, poll)
    records = trial_records(st, study_id, spec)
    best = best_trial(records, spec.direction)
    d = _load_data(data, spec.dataset, data_dir)
    _check_data(spec, d)
    splits = make_splits(d, spec.n_splits, spec.seed)
    if store is None and out is not None:
        store = ResultsStore(Path(out) / "results.sqlite")
    hp = {**spec.fixed, **best.params}
    selection = [{"hparams": r.params, f"val_{spec.metric}": r.value, "trial": r.number, "state": r.state}
                 for r in records]
    val, test, per_task = [], [], []
    with progress_bar(len(splits), f"retrain best of {study}", progress) as bar:
        for i, (label, split) in enumerate(splits):
            run = train(spec.method, split, hparams=hp, seed=spec.seed + i, device=device, progress=False)
            run.selection = selection
            val_ev, test_ev = run.evaluate("val"), run.evaluate("test")
            val.append(float(val_ev.mean[spec.metric]))
            test.append(float(test_ev.mean[spec.metric]))
            per_task.append(test_ev.per_task[spec.metric])
            if store is not None:
                store.add(run, "sweep", label, val_ev, test_ev)
            bar.advance(status=f"{label}: test {spec.metric} {test[-1]:.4g}")
    mean, ci = mean_ci(np.asarray(test))
    res = SweepResult(storage, study, spec, records, best, best.params, [s for s, _ in splits], val, test,
                      float(mean), float(ci))
    if out is not None:
        res.report = write_report(res, out, command=command, task_names=d.task_names,
                                  per_task=np.asarray(per_task))
    return res


def sweep(method: str, data: str | MultiTaskData = "digits", *, storage: str | None = None, study: str | None = None,
          n_splits: int = 3, seed: int = 0, space: Mapping[str, Any] | None = None,
          fixed: Mapping[str, Any] | None = None, n_trials: int | None = None, sampler: str = "tpe",
          out: str | Path = "results", data_dir: str | Path | None = None, device: str | None = None,
          progress: bool | None = None) -> SweepResult:
    """Create (or resume) a sweep, work through it in this process, then retrain, test and report the best."""
    h = create_sweep(method, data, storage=storage, study=study, n_splits=n_splits, seed=seed, space=space,
                     fixed=fixed, n_trials=n_trials, sampler=sampler, out=out, data_dir=data_dir)
    given = data if isinstance(data, MultiTaskData) else None
    run_worker(h.storage, h.study, data=given, data_dir=data_dir, device=device, progress=progress)
    return finish_sweep(h.storage, h.study, data=given, data_dir=data_dir, device=device, out=out, progress=progress)


# ---------------------------------------------------------------------- the report
def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _dim_text(dim: Mapping[str, Any]) -> str:
    if "choice" in dim:
        return ", ".join(_fmt(v) for v in dim["choice"])
    kind = "float" if "float" in dim else "int"
    lo, hi = dim[kind]
    return (f"{kind} in [{_fmt(lo)}, {_fmt(hi)}]" + (", log scale" if dim.get("log") else "")
            + (f", or {_fmt(dim['off'])} (off)" if dim.get("off") is not None else ""))


def report_markdown(res: SweepResult, command: str = "", task_names: Sequence[str] = (),
                    per_task: np.ndarray | None = None) -> str:
    """The sweep's definition, every trial, the best configuration and its test metric (mean ± 95% CI)."""
    spec = res.spec
    arrow = "lower is better" if spec.direction == "minimize" else "higher is better"
    mode = (f"grid, every point once ({spec.n_trials} trials)" if spec.is_grid
            else f"{spec.sampler.upper() if spec.sampler == 'tpe' else spec.sampler} sampler, budget of "
                 f"{spec.n_trials} trials")
    out = [f"# mtlkit sweep: {spec.method} on {spec.dataset}", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += ["## Definition", "",
            f"- study: `{res.study}` in `{mask_url(res.storage)}`",
            f"- method: {spec.method}; data: {spec.dataset} ({spec.kind}), checksum `{spec.checksum}`",
            f"- splits: {spec.n_splits} ({', '.join(res.splits)}), seed {spec.seed} (split i trains with seed "
            f"{spec.seed} + i)",
            f"- search: {mode}",
            f"- objective: validation {spec.metric} ({arrow}), mean over tasks then over splits",
            "- fixed: " + (", ".join(f"{k}={_fmt(v)}" for k, v in spec.fixed.items()) or "none"), ""]
    out += ["| hyper-parameter | searched over |", "|---|---|"]
    out += [f"| {k} | {_dim_text(d)} |" for k, d in spec.space.items()]
    done = sum(r.state == "COMPLETE" for r in res.trials)
    failed = sum(r.state == "FAIL" for r in res.trials)
    out += ["", f"## Trials ({len(res.trials)}: {done} complete, {failed} failed)", "",
            f"| trial | params | val {spec.metric} | per split | state | error |", "|---|---|---|---|---|---|"]
    for r in res.trials:
        mark = " **best**" if r.number == res.best.number else ""
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()) or "–"
        err = (r.error or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {r.number}{mark} | {params} | {_fmt(r.value)} | "
                   f"{', '.join(_fmt(v) for v in r.per_split) or '–'} | {r.state} | {err} |")
    out += ["", "## Best configuration, retrained on every split and tested", "",
            f"Trial {res.best.number} (ties go to the lowest trial number): "
            + (", ".join(f"{k}={_fmt(v)}" for k, v in res.hparams.items()) or "the defaults"),
            "", f"**test {spec.metric}: {res.test_mean:.4f} ± "
            f"{'n/a' if math.isnan(res.test_ci) else f'{res.test_ci:.4f}'}** (mean ± 95% CI over "
            f"{len(res.test)} splits)", "", f"| split | val {spec.metric} | test {spec.metric} |", "|---|---|---|"]
    out += [f"| {s} | {v:.4f} | {t:.4f} |" for s, v, t in zip(res.splits, res.val, res.test, strict=True)]
    if per_task is not None and len(task_names):
        m, ci = mean_ci(per_task, axis=0)
        out += ["", f"Per task, test {spec.metric} (mean ± 95% CI over splits):", "", "| task | mean | ± |",
                "|---|---|---|"]
        out += [f"| {n} | {_fmt(float(a))} | {_fmt(float(b))} |" for n, a, b in zip(task_names, m, ci, strict=True)]
    return "\n".join(out) + "\n"


def write_report(res: SweepResult, out: str | Path, command: str = "", task_names: Sequence[str] = (),
                 per_task: np.ndarray | None = None) -> Path:
    """Write ``<out>/sweep-<method>-<dataset>.md``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"sweep-{res.spec.method}-{res.spec.dataset}.md"
    path.write_text(report_markdown(res, command, task_names, per_task))
    return path
