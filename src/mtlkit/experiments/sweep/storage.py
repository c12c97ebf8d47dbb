"""Where a sweep lives: the Optuna RDB storage (SQLite file or PostgreSQL), the atomic WAITING→RUNNING claim (a
row lock on PostgreSQL, a file lock beside an SQLite file), heartbeats and the failing of dead workers' trials,
and finding a study's definition (waiting for its creator)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mtlkit.errors import MtlkitError
from mtlkit.experiments.sweep.space import SweepSpec

DEFINITION_ATTR = "mtlkit_sweep"      # study user attribute: the sweep definition (JSON object)
READY_ATTR = "mtlkit_ready"           # study user attribute: every trial has been enqueued
HEARTBEAT_INTERVAL = 30               # seconds between a running trial's heartbeats
GRACE_PERIOD = 300                    # seconds without a heartbeat before a RUNNING trial is failed


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
    from mtlkit._optional import require

    optuna = require("optuna", "an Optuna sweep")
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
