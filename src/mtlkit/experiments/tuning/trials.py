"""Running one tuning round's trials: the round's Optuna study (created with the earlier rounds' trials copied in,
or joined when another process made it), the atomic claim, training one trial with pruning, and recording it."""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.tuning.result import FORMAT, PRUNE_STARTUP_TRIALS, PRUNE_WARMUP_EPOCHS, Direction
from mtlkit.experiments.tuning.space import distributions, suggest
from mtlkit.hparams import HParam, Space

DEFINITION_ATTR = "mtlkit_tune"
READY_ATTR = "mtlkit_ready"


@dataclass
class _Context:
    method: str
    params: dict[str, HParam]
    fixed: dict[str, Any]
    metric: str
    direction: Direction
    seed: int
    trials: int
    widen_trials: int
    pruner: str | None
    device: Any
    storage: Any
    url: str | None
    prefix: str
    deadline: float | None
    checksum: str
    bar: Any
    task_weights: Any = None


class _Pruning:
    """The Trainer's epoch callback: report the epoch's validation loss to the trial, raise TrialPruned when the
    pruner says so. Optuna compares in the study's direction, so a maximised metric gets the negated loss."""

    def __init__(self, trial: Any, sign: float) -> None:
        self.trial, self.sign, self.epochs = trial, sign, 0

    def __call__(self, epoch: int, val_loss: float) -> None:
        import optuna

        self.epochs = epoch + 1
        self.trial.report(self.sign * val_loss, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def _sampler(seed: int, split: int, rnd: int, number: int, startup: int) -> Any:
    """TPE seeded per (seed, split, round, trial number): a serial run repeats exactly, and parallel workers
    never draw the same stream."""
    import optuna

    s = int(np.random.SeedSequence([seed, split, rnd, number]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=s, multivariate=True, group=True, n_startup_trials=startup)


def _masked(url: str) -> str:
    from mtlkit.experiments.sweep import mask_url

    return mask_url(url)


def _open_round(ctx: _Context, name: str, space: dict[str, Space], prior: list[Any], n: int,
                first: dict[str, Any] | None, split: int, rnd: int) -> tuple[Any, int]:
    """Create the round's study (earlier trials copied in, the defaults then ``n - 1`` placeholders enqueued) or,
    when another process created it, join it after checking it is the same tuning."""
    import optuna

    definition = json.loads(json.dumps({
        "format": FORMAT, "method": ctx.method, "checksum": ctx.checksum, "split": split, "round": rnd,
        "seed": ctx.seed, "fixed": ctx.fixed, "metric": ctx.metric, "trials": n, "pruner": ctx.pruner,
        "space": {k: s.to_json() for k, s in space.items()},
        **({} if ctx.task_weights is None else {"task_weights": np.asarray(ctx.task_weights, dtype=float).tolist()})},
        default=str))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS)
              if ctx.pruner == "median" else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(storage=ctx.storage, study_name=name, direction=ctx.direction, pruner=pruner)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    if created:
        study.set_user_attr(DEFINITION_ATTR, definition)
        dists = distributions(space)
        for t in prior:
            copied = _copy_trial(t, dists)
            if copied is not None:
                study.add_trial(copied)
        if first is not None:
            study.enqueue_trial(first, user_attrs={"defaults": True})
        for _ in range(n - (first is not None)):
            study.enqueue_trial({})
        study.set_user_attr(READY_ATTR, True)
        return study, study._study_id
    study = optuna.load_study(study_name=name, storage=ctx.storage, pruner=pruner)
    deadline = time.monotonic() + 60.0
    while not study.user_attrs.get(READY_ATTR):
        if time.monotonic() > deadline:
            raise MtlkitError(f"tuning study {name!r} was never fully set up by its creator; delete it")
        time.sleep(0.2)
    if study.user_attrs.get(DEFINITION_ATTR) != definition:
        raise MtlkitError(f"tuning study {name!r} in {ctx.url and _masked(ctx.url)} was made with other settings "
                          "(method, data, seed, fixed values, space or budget); pass another study name")
    return study, study._study_id


def _copy_trial(t: Any, dists: dict[str, Any]) -> Any:
    """An earlier round's trial re-expressed in this round's distributions (widened spaces hold every old value),
    marked as copied; None when a value does not fit (a default outside the old space)."""
    import optuna

    params = {k: v for k, v in t.params.items() if k in dists}
    try:
        return optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=t.value if t.state.name == "COMPLETE"
            else None, intermediate_values=dict(t.intermediate_values), state=t.state,
            user_attrs={"copied": True})
    except ValueError:
        return None


def _claim(ctx: _Context, study_id: int) -> int | None:
    from optuna.trial import TrialState

    if ctx.url is not None:
        from mtlkit.experiments import sweep as sw

        sw.fail_stale_trials(ctx.storage, study_id)
        return sw.claim_trial(ctx.storage, study_id, ctx.url)
    for ft in ctx.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        tid = ctx.storage.get_trial_id_from_study_id_trial_number(study_id, ft.number)
        if ctx.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
            return int(tid)
    return None


def _work(ctx: _Context, study: Any, study_id: int, split: Split, i: int, label: str, rnd: int,
          space: dict[str, Space], sign: float, keep: dict[str, Any], must_run: bool) -> bool:
    """Claim and run the round's trials until none is left; True when the time budget stopped it first.
    ``must_run``: the first claim happens whatever the clock (every split runs at least its defaults)."""
    from optuna.trial import TrialState

    ran = 0
    while True:
        if ctx.deadline is not None and time.monotonic() >= ctx.deadline and not (must_run and ran == 0):
            return bool(ctx.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)))
        tid = _claim(ctx, study_id)
        if tid is None:
            return False
        ran += 1
        state, value, run = _run_trial(ctx, study, tid, split, i, rnd, space, sign)
        where = f"{label} " if i or rnd else ""
        ctx.bar.advance(status=f"{where}{'widening ' + str(rnd) + ' ' if rnd else ''}trial "
                        f"{ctx.storage.get_trial_number_from_id(tid)}: {state.lower()}"
                        + (f", {ctx.metric} {value:.4g}" if value is not None else ""))
        if run is not None and value is not None and sign * value < keep["key"]:
            keep.update(run=run, key=sign * value, trial_id=tid)


def _run_trial(ctx: _Context, study: Any, tid: int, split: Split, i: int, rnd: int, space: dict[str, Space],
               sign: float) -> tuple[str, float | None, Any]:
    """Train one claimed trial and record it COMPLETE / PRUNED / FAIL; returns (state, value, run)."""
    import traceback

    import optuna
    from optuna.trial import TrialState

    from mtlkit.train.run import train_one

    number = ctx.storage.get_trial_number_from_id(tid)
    startup = max(2, min(10, ctx.trials // 3))
    study.sampler = _sampler(ctx.seed, i, rnd, number, startup)
    beat: Any = contextlib.nullcontext()
    if ctx.url is not None:
        from mtlkit.experiments.sweep import _Heartbeat

        beat = _Heartbeat(ctx.storage, tid)
    t0 = time.perf_counter()
    cb: _Pruning | None = None
    with beat, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
        trial = optuna.Trial(study, tid)
        try:
            params = suggest(trial, space)
            cb = _Pruning(trial, sign) if ctx.pruner is not None else None
            run = train_one(ctx.method, split, {**ctx.fixed, **params}, seed=ctx.seed + i, device=ctx.device,
                            progress=False, epoch_callback=cb, task_weights=ctx.task_weights)
            value = float(run.evaluate("val").mean[ctx.metric])
            if not math.isfinite(value):
                raise MtlkitError(f"validation {ctx.metric} is not finite (training diverged)")
        except optuna.TrialPruned:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("epochs", cb.epochs if cb is not None else None)
            study.tell(trial, state=TrialState.PRUNED)
            return "PRUNED", None, None
        except KeyboardInterrupt:
            _fail(ctx, tid, "interrupted (KeyboardInterrupt)", time.perf_counter() - t0)
            raise
        except Exception as e:  # any crash of a trial is recorded, and tuning goes on
            _fail(ctx, tid, f"{type(e).__name__}: {e}", time.perf_counter() - t0, traceback.format_exc())
            return "FAIL", None, None
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        hist = run.history
        trial.set_user_attr("epochs", len(hist.val_loss) if hist is not None else None)
        study.tell(trial, value)
    return "COMPLETE", value, run


def _fail(ctx: _Context, tid: int, error: str, seconds: float, tb: str = "") -> None:
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    with contextlib.suppress(UpdateFinishedTrialError):
        ctx.storage.set_trial_user_attr(tid, "error", error[:4000])
        ctx.storage.set_trial_user_attr(tid, "seconds", seconds)
        if tb:
            ctx.storage.set_trial_user_attr(tid, "traceback", tb[-8000:])
        ctx.storage.set_trial_state_values(tid, state=TrialState.FAIL)


def _wait_round(ctx: _Context, study_id: int, poll: float = 1.0) -> None:
    """Wait until no trial of the round is RUNNING in another process (dead workers' trials are failed)."""
    from optuna.trial import TrialState

    if ctx.url is None:
        return
    from mtlkit.experiments import sweep as sw

    while True:
        sw.fail_stale_trials(ctx.storage, study_id)
        if not ctx.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(poll)
