"""Creating a sweep (every trial enqueued once), and the workers that claim and run its trials."""

from __future__ import annotations

import contextlib
import json
import math
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.sweep.space import SweepSpec, make_spec, spaces
from mtlkit.experiments.sweep.storage import (
    DEFINITION_ATTR,
    READY_ATTR,
    _definition_diff,
    _existing_definition,
    _Heartbeat,
    _wait_ready,
    claim_trial,
    default_storage,
    fail_stale_trials,
    mask_url,
    open_storage,
)
from mtlkit.experiments.tuning import encode, encode_params, suggest
from mtlkit.methods import registry
from mtlkit.progress import progress_bar

_encode = encode  # Optuna categorical choices must be scalars: lists and dicts travel as their JSON text


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
