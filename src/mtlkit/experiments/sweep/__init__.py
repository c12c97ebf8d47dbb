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

The package's modules, along the seams: `space` (search-space parsing, `SweepSpec`, `make_spec`), `storage`
(the Optuna storage, the atomic claim, heartbeats), `worker` (`create_sweep`, `run_worker`), `finish`
(`finish_sweep`, `sweep`) and `report` (the Markdown report). Every name is re-exported here.
"""

from mtlkit.experiments.sweep.finish import (
    SweepResult,
    TrialRecord,
    best_trial,
    finish_sweep,
    sweep,
    trial_records,
)
from mtlkit.experiments.sweep.report import report_markdown, write_report
from mtlkit.experiments.sweep.space import (
    FORMAT,
    MAX_GRID,
    RANGE_KINDS,
    SAMPLERS,
    SPACE_SYNTAX,
    SweepSpec,
    dim_to_space,
    make_spec,
    parse_assignment,
    parse_param,
    parse_range,
    parse_value,
    space_to_dim,
    spaces,
)
from mtlkit.experiments.sweep.storage import (
    DEFINITION_ATTR,
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    READY_ATTR,
    claim_trial,
    default_storage,
    fail_stale_trials,
    mask_url,
    open_storage,
)
from mtlkit.experiments.sweep.storage import (
    _Heartbeat as _Heartbeat,
)
from mtlkit.experiments.sweep.worker import (
    SweepHandle,
    WorkerSummary,
    create_sweep,
    load_sweep,
    run_trial,
    run_worker,
)

__all__ = [
    "DEFINITION_ATTR", "FORMAT", "GRACE_PERIOD", "HEARTBEAT_INTERVAL", "MAX_GRID", "RANGE_KINDS", "READY_ATTR",
    "SAMPLERS", "SPACE_SYNTAX", "SweepHandle", "SweepResult", "SweepSpec", "TrialRecord", "WorkerSummary",
    "best_trial", "claim_trial", "create_sweep", "default_storage", "dim_to_space", "fail_stale_trials",
    "finish_sweep", "load_sweep", "make_spec", "mask_url", "open_storage", "parse_assignment", "parse_param",
    "parse_range", "parse_value", "report_markdown", "run_trial", "run_worker", "space_to_dim", "spaces", "sweep",
    "trial_records", "write_report",
]
