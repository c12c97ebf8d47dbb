"""`tune`: the budget, the spaces and the defaults trial, each tuned split's rounds with widening past an edge,
the selection; and `tuned_run` / `train_tuned`, which train (or reuse) the selected configuration on every split."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.tuning.result import Direction, SplitTuning, TrialRecord, TuningResult
from mtlkit.experiments.tuning.space import _tuple, decode_params, encode_params, with_defaults
from mtlkit.experiments.tuning.trials import _Context, _masked, _open_round, _wait_round, _work
from mtlkit.hparams import HParam, Space
from mtlkit.methods import registry
from mtlkit.train.metrics import LOWER_IS_BETTER, METRICS_BY_KIND, PRIMARY_METRIC

SELECTIONS = ("first", "each")
PRUNERS = ("median",)


def _as_splits(splits: Sequence[Split | tuple[str, Split]]) -> list[tuple[str, Split]]:
    out = []
    for i, s in enumerate(splits):
        out.append((str(s[0]), s[1]) if isinstance(s, tuple) else (f"split-{i}", s))
    return out


def tune(method: str, splits: Sequence[Split | tuple[str, Split]], *, trials: int, seed: int = 0,
         time_budget: float | None = None, space: Mapping[str, Space] | None = None,
         fixed: Mapping[str, Any] | None = None, metric: str | None = None, selection: str = "first",
         pruner: str | None = "median", widen: int = 0, widen_trials: int | None = None, device: Any = None,
         progress: bool | None = None, storage: str | None = None, study: str | None = None,
         task_weights: Any = None) -> TuningResult:
    """Tune ``method`` with a budget of ``trials`` trials (see the module's doc); returns a `TuningResult`.

    ``splits``: `Split`s or (label, Split) pairs (`mtlkit.experiments.bench.make_splits`); split i trains with
    seed ``seed + i``. ``space``: name → `Space` (default ``registry.search_space(method)`` for the data's task
    kind), less the ``fixed`` names. ``metric``: the validation metric (default: the kind's primary one).
    ``storage``/``study``: an Optuna RDB URL shared by several processes and the study names' prefix
    (default ``tune-<method>-<data checksum>-<seed>``). ``task_weights``: a weight per task for every trial's
    objective (`mtlkit.train.run.train_one`'s, e.g. `mtlkit.optim.weighting.svd_task_weights`; SGD methods only),
    so a weighting scheme is tuned with the same budget as the unweighted method.
    """
    from mtlkit._optional import require

    optuna = require("optuna", "equal-budget tuning")
    from mtlkit.train.config import method_defaults, method_params

    if selection not in SELECTIONS:
        raise MtlkitError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if pruner is not None and pruner not in PRUNERS:
        raise MtlkitError(f"pruner must be one of {', '.join(PRUNERS)} or None, got {pruner!r}")
    if trials < 1:
        raise MtlkitError(f"--trials must be at least 1, got {trials}")
    if widen < 0:
        raise MtlkitError(f"--widen must be at least 0, got {widen}")
    if time_budget is not None and time_budget <= 0:
        raise MtlkitError(f"--time-budget must be positive seconds, got {time_budget}")
    labelled = _as_splits(splits)
    if not labelled:
        raise MtlkitError("tuning needs at least one split")
    if any(s.val is None for _, s in labelled):
        raise MtlkitError("tuning scores on validation rows: every split needs a validation part (val > 0)")
    entry = registry.get(method)
    kind = labelled[0][1].train.kind
    if kind not in entry.kinds:
        raise MtlkitError(f"method {entry.name!r} does not handle {kind} tasks")
    params = method_params(entry)
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - set(params))
    if unknown:
        raise MtlkitError(f"unknown hyper-parameter(s) {', '.join(unknown)} for method {entry.name!r}; "
                          f"known: {', '.join(sorted(params))}")
    sp = dict(space) if space is not None else registry.search_space(entry.name, kind)
    bad = sorted(set(sp) - set(params))
    if bad:
        raise MtlkitError(f"the search space names hyper-parameter(s) {', '.join(bad)} that {entry.name!r} lacks")
    sp = {k: v for k, v in sp.items() if k not in fixed}
    defaults = {**method_defaults(entry), **fixed}
    sp, notes = with_defaults(sp, defaults)
    metric = metric or PRIMARY_METRIC[kind]
    if metric not in METRICS_BY_KIND[kind]:
        raise MtlkitError(f"metric {metric!r} is not computed for {kind} tasks; choose from "
                          f"{', '.join(METRICS_BY_KIND[kind])}")
    direction: Direction = "minimize" if LOWER_IS_BETTER[metric] else "maximize"
    budget = trials if sp else 1
    if not sp:
        notes.append("nothing to search (empty space): one trial, the defaults")
    if entry.fit is not None and pruner is not None:
        pruner = None
        notes.append("closed-form / own solver: no epochs to prune")
    n_widen_trials = max(1, widen_trials if widen_trials is not None else trials // 2)
    src = labelled[0][1].source or labelled[0][1].train
    checksum = src.checksum()
    tuned_idx = [0] if selection == "first" else list(range(len(labelled)))
    t0 = time.perf_counter()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from mtlkit.progress import progress_bar

    try:
        if storage is None:
            st, url = optuna.storages.InMemoryStorage(), None
        else:
            from mtlkit.experiments import sweep as sw

            st, url = sw.open_storage(storage), storage
        prefix = study or f"tune-{entry.name}-{checksum[:12]}-{seed}"
        with progress_bar(budget * len(tuned_idx), f"tune {entry.name}", progress) as bar:
            ctx = _Context(entry.name, params, fixed, metric, direction, seed, budget, n_widen_trials, pruner,
                           device, st, url, prefix, deadline, checksum, bar, task_weights)
            tuned, runs = [], [None] * len(labelled)
            for i in tuned_idx:
                label, split = labelled[i]
                s, run = _tune_split(ctx, i, label, split, sp, defaults, widen)
                tuned.append(s)
                runs[i] = run
    finally:
        optuna.logging.set_verbosity(verbosity)
    hparams = []
    for i in range(len(labelled)):
        s = tuned[0] if selection == "first" else tuned[i]
        hparams.append({**fixed, **(s.best.params if s.best is not None else {})})
    return TuningResult(entry.name, selection, metric, direction, budget, widen, n_widen_trials, seed, pruner, fixed,
                        sp, [label for label, _ in labelled], tuned, hparams, time.perf_counter() - t0, time_budget,
                        None if storage is None else _masked(storage), notes, runs)


def _tune_split(ctx: _Context, i: int, label: str, split: Split, space: dict[str, Space],
                defaults: Mapping[str, Any], widen: int) -> tuple[SplitTuning, Any]:
    """Every round of one split's tuning; returns it and the best trial's Run when this process trained it."""
    res = SplitTuning(i, label, [space])
    keep: dict[str, Any] = {"run": None, "trial_id": None, "key": math.inf}  # the best run trained here
    by_id: dict[int, TrialRecord] = {}
    sign = 1.0 if ctx.direction == "minimize" else -1.0
    prior: list[Any] = []  # earlier rounds' finished trials (FrozenTrials), handed to the next round's study
    for r in range(widen + 1):
        n = ctx.trials if r == 0 else ctx.widen_trials
        first = encode_params({k: defaults[k] for k in space if k in defaults}, space) if r == 0 else None
        study, study_id = _open_round(ctx, f"{ctx.prefix}-s{i}-r{r}", space, prior, n, first, i, r)
        stopped = _work(ctx, study, study_id, split, i, label, r, space, sign, keep, must_run=r == 0)
        _wait_round(ctx, study_id)
        frozen = [t for t in ctx.storage.get_all_trials(study_id, deepcopy=False)
                  if not t.user_attrs.get("copied")]
        for t in sorted(frozen, key=lambda t: t.number):
            rec = _record(t, len(res.trials), i, r, space)
            res.trials.append(rec)
            by_id[t._trial_id] = rec
        res.stopped = res.stopped or stopped
        prior += [t for t in frozen if t.state.name in ("COMPLETE", "PRUNED")]
        res.best = _best(res.trials, ctx.direction)
        res.edges = _edges(res.best, space)
        if res.stopped or r == widen or not res.edges or res.best is None:
            break
        wider, names, blocked = _widen(space, res.edges, ctx.params)
        if blocked:
            res.notes.append(f"{', '.join(blocked)} at the edge of the valid range: not widened")
        if not names:
            break
        space = wider
        res.spaces.append(space)
        res.widened.append(names)
    if res.best is None:
        errors = [f"trial {t.number}: {t.error}" for t in res.trials if t.error]
        raise MtlkitError(f"no trial of {ctx.method} completed on {label} "
                          f"({errors[0] if errors else 'all pruned or not run'})")
    run = keep["run"] if keep["trial_id"] is not None and by_id.get(keep["trial_id"]) is res.best else None
    return res, run


def _record(t: Any, number: int, split: int, rnd: int, space: dict[str, Space]) -> TrialRecord:
    raw = t.params or t.system_attrs.get("fixed_params", {})
    value = t.value if t.state.name == "COMPLETE" else None
    return TrialRecord(number, split, rnd, decode_params(raw, space), value, t.state.name,
                       float(t.user_attrs.get("seconds", 0.0)), t.user_attrs.get("epochs"), t.user_attrs.get("error"))


def _best(records: Sequence[TrialRecord], direction: str) -> TrialRecord | None:
    """The best COMPLETE trial; ties go to the lowest number (the defaults first), so the choice is deterministic."""
    done = [r for r in records if r.state == "COMPLETE" and r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    sign = 1.0 if direction == "minimize" else -1.0
    return min(done, key=lambda r: (sign * float(r.value), r.number))  # type: ignore[arg-type]


def _edges(best: TrialRecord | None, space: Mapping[str, Space]) -> dict[str, str]:
    if best is None:
        return {}
    out = {}
    for k, sp in space.items():
        if k in best.params:
            side = sp.edge(_tuple(best.params[k]))
            if side is not None:
                out[k] = side
    return out


def _widen(space: dict[str, Space], edges: Mapping[str, str], params: Mapping[str, HParam]
           ) -> tuple[dict[str, Space], list[str], list[str]]:
    """The space with each edged dimension pushed past its edge (within the parameter's valid bounds); the names
    widened, and the ones already at a valid bound."""
    out, names, blocked = dict(space), [], []
    for k, side in edges.items():
        p = params.get(k)
        bounds = (p.low, p.high) if p is not None else (None, None)
        wider = space[k].widened(side, bounds=bounds)
        if wider != space[k]:
            out[k] = wider
            names.append(k)
        else:
            blocked.append(k)
    return out, names, blocked


def tuned_run(result: TuningResult, i: int, split: Split, *, device: Any = None, progress: bool | None = None) -> Any:
    """The `Run` of split ``i`` with its selected configuration (``result.hparams[i]``, seed ``result.seed + i``):
    the best trial's run when `tune` trained it in this process (same seed, data and configuration: the same
    model), else trained now. Its ``selection`` lists the trials behind the choice."""
    from mtlkit.train.run import train_one

    run = result.runs[i] if i < len(result.runs) else None
    if run is None:
        run = train_one(result.method, split, result.hparams[i], seed=result.seed + i, device=device,
                        progress=progress)
    run.selection = result.selection_records(i)
    return run


def train_tuned(result: TuningResult, splits: Sequence[Split | tuple[str, Split]], *, device: Any = None,
                progress: bool | None = None) -> list[Any]:
    """One `Run` per split with its selected configuration (see `tuned_run`), for the caller to test and record."""
    labelled = _as_splits(splits)
    if len(labelled) != len(result.hparams):
        raise MtlkitError(f"the tuning chose configurations for {len(result.hparams)} splits; {len(labelled)} given")
    return [tuned_run(result, i, split, device=device, progress=progress) for i, (_, split) in enumerate(labelled)]
