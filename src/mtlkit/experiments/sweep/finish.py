"""Finishing a sweep: every trial read back, the best one picked, retrained on every split and tested, recorded
in the results store and reported; and `sweep`, which creates, works through and finishes one in this process."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.errors import MtlkitError
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.store import ResultsStore
from mtlkit.experiments.sweep.report import write_report
from mtlkit.experiments.sweep.space import SweepSpec, spaces
from mtlkit.experiments.sweep.storage import _wait_ready, fail_stale_trials, open_storage
from mtlkit.experiments.sweep.worker import _check_data, _load_data, create_sweep, run_worker
from mtlkit.experiments.tuning import decode_params
from mtlkit.progress import progress_bar


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
