"""Fair-budget hyper-parameter tuning: every method gets the same number of trials over its declared search space
(`registry.search_space`), drawn by Optuna's TPE with a seeded sampler and scored on validation rows only.

``tune(method, splits, trials=N, seed=S)`` returns a `TuningResult`: the selected configuration(s), every trial
(parameters, value, state, seconds), the budget actually used, the space searched, and the values that ended on
the edge of their space. `train_tuned` then trains (or reuses) the selected configuration on every split.

- Objective: the validation primary metric (RMSE, error %, cross-entropy; or ``metric``), mean over tasks.
  ``selection="first"``: tuned on the first split's validation part, the chosen configuration then trained on
  every split (``trials`` runs). ``selection="each"``: tuned on each split's own validation part
  (``trials × splits`` runs), each split with its own configuration.
- The first trial is the method's defaults (with the caller's fixed values), so tuning never selects a
  configuration worse on validation than the defaults. A default outside the declared space is added to it.
- A `Space` with an ``off`` value (λ = 0) is two Optuna parameters: a categorical switch ``NAME:off`` in
  {off, on} and, when on, the range itself under ``NAME``; so "off" is a candidate like any other.
- Pruning (``pruner="median"``): Optuna's MedianPruner on the per-epoch task-weighted validation loss,
  reported by the Trainer's ``epoch_callback``; a pruned trial counts toward the budget. Closed-form methods
  report no epochs and are never pruned.
- ``time_budget``: seconds per method (all tuned splits together); when it runs out, no further trial starts
  (each tuned split runs at least its defaults trial) and the result says how many ran.
- ``widen=N``: if the selected value of a dimension lies on the edge of its space (`Space.edge`), search again
  (``widen_trials`` more trials, default half the budget) with that dimension widened (`Space.widened`, never past
  the hyper-parameter's valid bounds), up to N times. Each widening round is a new Optuna study (a categorical
  space cannot change within a study) seeded with the earlier rounds' trials, so TPE keeps what it learnt; the
  extra trials are counted and stated ("24 trials + 12 after widening lam").
- ``storage``: an Optuna RDB URL (the sweep storage, e.g. ``sqlite:///results/sweeps.sqlite`` or PostgreSQL).
  Trials are enqueued up front and claimed atomically as in `mtlkit.experiments.sweep`, so several processes
  calling the same ``tune(...)`` share one budget exactly (none runs a trial twice, none adds one), and a tuning
  that was stopped continues where it stopped. Without it, an in-memory storage.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, Space
from mtlkit.methods import registry
from mtlkit.train.metrics import LOWER_IS_BETTER, METRICS_BY_KIND, PRIMARY_METRIC

FORMAT = "mtlkit-tune/1"
SELECTIONS = ("first", "each")
PRUNERS = ("median",)
OFF_SWITCH = ":off"          # the categorical switch of a space with an ``off`` value is NAME + OFF_SWITCH
OFF, ON = "off", "on"
PRUNE_WARMUP_EPOCHS = 5      # MedianPruner: never prune before this many epochs of a trial
PRUNE_STARTUP_TRIALS = 5     # MedianPruner: never prune within a study's first trials
DEFINITION_ATTR = "mtlkit_tune"
READY_ATTR = "mtlkit_ready"


# ---------------------------------------------------------------------- spaces <-> Optuna parameters
def encode(value: Any) -> Any:
    """Optuna categorical choices must be scalars: lists and dicts travel as their JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _decode_choice(space: Space, raw: Any) -> Any:
    for c in space.choices:
        if encode(c) == raw and type(encode(c)) is type(raw):
            return list(c) if isinstance(c, tuple) else c
    return raw


def distributions(space: Mapping[str, Space]) -> dict[str, Any]:
    """The Optuna distribution of every parameter the space suggests (switches of ``off`` values included)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None:
            out[name + OFF_SWITCH] = CategoricalDistribution([OFF, ON])
        if sp.kind == "choice":
            out[name] = CategoricalDistribution([encode(c) for c in sp.choices])
        elif sp.kind == "int":
            out[name] = IntDistribution(int(sp.low), int(sp.high), log=sp.log)  # type: ignore[arg-type]
        else:
            out[name] = FloatDistribution(float(sp.low), float(sp.high),  # type: ignore[arg-type]
                                          log=sp.kind == "log" or sp.log)
    return out


def suggest(trial: Any, space: Mapping[str, Space]) -> dict[str, Any]:
    """The trial's hyper-parameter values: for a space with an ``off`` value, the switch first, then (when on)
    the range; lists come back as lists."""
    raw: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None:
            raw[name + OFF_SWITCH] = trial.suggest_categorical(name + OFF_SWITCH, [OFF, ON])
            if raw[name + OFF_SWITCH] == OFF:
                continue
        if sp.kind == "choice":
            raw[name] = trial.suggest_categorical(name, [encode(c) for c in sp.choices])
        elif sp.kind == "int":
            raw[name] = trial.suggest_int(name, int(sp.low), int(sp.high), log=sp.log)  # type: ignore[arg-type]
        else:
            raw[name] = trial.suggest_float(name, float(sp.low), float(sp.high),  # type: ignore[arg-type]
                                            log=sp.kind == "log" or sp.log)
    return decode_params(raw, space)


def decode_params(raw: Mapping[str, Any], space: Mapping[str, Space]) -> dict[str, Any]:
    """Hyper-parameter values from a trial's Optuna parameters (switches folded in: ``lam:off=off`` → lam=0)."""
    out: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None and raw.get(name + OFF_SWITCH) == OFF:
            out[name] = sp.off
        elif name in raw:
            out[name] = _decode_choice(sp, raw[name]) if sp.kind == "choice" else raw[name]
    for name, v in raw.items():  # parameters of an older round's space that this one lacks
        base = name[: -len(OFF_SWITCH)] if name.endswith(OFF_SWITCH) else name
        if base not in space and base not in out:
            out[base] = v
    return out


def encode_params(values: Mapping[str, Any], space: Mapping[str, Space]) -> dict[str, Any]:
    """The Optuna parameters of a configuration (to enqueue it); a value the space cannot hold is left out."""
    raw: dict[str, Any] = {}
    for name, sp in space.items():
        if name not in values:
            continue
        v = values[name]
        if sp.off is not None:
            if v == sp.off:
                raw[name + OFF_SWITCH] = OFF
                continue
            raw[name + OFF_SWITCH] = ON
        if sp.kind == "choice":
            if encode(_tuple(v)) in [encode(c) for c in sp.choices]:
                raw[name] = encode(_tuple(v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if (sp.kind == "log" or sp.log) and v <= 0:
                continue
            raw[name] = int(v) if sp.kind == "int" else float(v)
    return raw


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def with_defaults(space: Mapping[str, Space], defaults: Mapping[str, Any]) -> tuple[dict[str, Space], list[str]]:
    """The space with every default inside it (a choice added, a range stretched), so that the defaults can be
    the first trial; and a note for each one that had to be added."""
    out, notes = {}, []
    for name, sp in space.items():
        v = defaults.get(name)
        if v is None or (sp.off is not None and v == sp.off):
            out[name] = sp
            continue
        if sp.kind == "choice":
            if encode(_tuple(v)) not in [encode(c) for c in sp.choices]:
                sp = Space("choice", choices=(*sp.choices, _tuple(v)), off=sp.off)
                notes.append(f"{name}: the default {_fmt(v)} is not among the declared choices; added")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if (sp.kind == "log" or sp.log) and v <= 0:
                notes.append(f"{name}: the default {_fmt(v)} cannot lie in a log space; the first trial samples it")
            elif not float(sp.low) <= v <= float(sp.high):  # type: ignore[arg-type]
                lo, hi = min(float(sp.low), v), max(float(sp.high), v)  # type: ignore[arg-type]
                if sp.kind == "int":
                    lo, hi = math.floor(lo), math.ceil(hi)
                sp = Space(sp.kind, lo, hi, off=sp.off, log=sp.log)
                notes.append(f"{name}: the default {_fmt(v)} lies outside the declared range; range stretched to it")
        out[name] = sp
    return out, notes


def space_text(space: Mapping[str, Space]) -> str:
    """``lr log[0.0001, 0.3]; lam log[1e-05, 0.1] ∪ {0}``."""
    return "; ".join(f"{k} {s.text()}" for k, s in space.items()) or "(empty: defaults only)"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "the defaults"


# ---------------------------------------------------------------------- results
@dataclass
class TrialRecord:
    """One trial: ``number`` counts a tuned split's trials over every round; ``round`` 0 is the budget, r ≥ 1 the
    r-th widening. ``state``: COMPLETE, PRUNED (counts toward the budget), FAIL (with ``error``), or WAITING
    (never started: the time budget ran out). ``epochs``: epochs trained (SGD methods)."""

    number: int
    split: int
    round: int
    params: dict[str, Any]
    value: float | None
    state: str
    seconds: float
    epochs: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "split": self.split, "round": self.round, "params": self.params,
                "value": self.value, "state": self.state, "seconds": self.seconds, "epochs": self.epochs,
                "error": self.error}


@dataclass
class SplitTuning:
    """The tuning on one split: the space of each round, the dimensions widened before each later round, every
    trial, the best one, and its edges in the last space."""

    split: int
    label: str
    spaces: list[dict[str, Space]]
    widened: list[list[str]] = field(default_factory=list)
    trials: list[TrialRecord] = field(default_factory=list)
    best: TrialRecord | None = None
    edges: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def space(self) -> dict[str, Space]:
        """The last (possibly widened) space."""
        return self.spaces[-1]

    def ran(self, round: int | None = None) -> int:
        """Trials that ran (COMPLETE, PRUNED or FAIL) in ``round`` (None: all rounds)."""
        return sum(t.state != "WAITING" and (round is None or t.round == round) for t in self.trials)

    def budget_text(self, nominal: int) -> str:
        """``24 trials + 12 after widening lam`` (and how many were pruned, failed, or cut by the time budget)."""
        text = f"{self.ran(0)} trials" if self.ran(0) == nominal else f"{self.ran(0)} of {nominal} trials"
        for r, names in enumerate(self.widened, start=1):
            text += f" + {self.ran(r)} after widening {', '.join(names)}"
        states = [t.state for t in self.trials]
        extra = [f"{states.count(s)} {w}" for s, w in (("PRUNED", "pruned"), ("FAIL", "failed")) if s in states]
        if self.stopped:
            extra.append("stopped by the time budget")
        return text + (f" ({'; '.join(extra)})" if extra else "")


@dataclass
class TuningResult:
    """What `tune` did and chose. ``hparams[i]`` is the configuration to train on split i (fixed values plus the
    selected ones); ``tuned`` holds one `SplitTuning` per tuned split (one for ``selection="first"``)."""

    method: str
    selection: str
    metric: str
    direction: str
    budget: int
    widen: int
    widen_trials: int
    seed: int
    pruner: str | None
    fixed: dict[str, Any]
    space: dict[str, Space]
    splits: list[str]
    tuned: list[SplitTuning]
    hparams: list[dict[str, Any]]
    seconds: float
    time_budget: float | None = None
    storage: str | None = None
    notes: list[str] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list, repr=False)  # the best trials' Runs kept in this process

    @property
    def best_params(self) -> dict[str, Any]:
        """The selected values of the searched hyper-parameters (the first split's with ``selection="each"``)."""
        b = self.tuned[0].best
        return dict(b.params) if b is not None else {}

    @property
    def best_value(self) -> float:
        """The selected configuration's validation score (mean over tuned splits with ``selection="each"``)."""
        vals = [t.best.value for t in self.tuned if t.best is not None and t.best.value is not None]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial of every tuned split."""
        return [t for s in self.tuned for t in s.trials]

    @property
    def n_trials(self) -> int:
        """Trials that ran (pruned and failed ones included), over every tuned split and round."""
        return sum(s.ran() for s in self.tuned)

    @property
    def stopped(self) -> bool:
        """Whether the time budget stopped the tuning before its trials were done."""
        return any(s.stopped for s in self.tuned)

    @property
    def edges(self) -> dict[str, str]:
        """Hyper-parameter → ``"low"``/``"high"``: selected values on the edge of their (last) space, on any split."""
        out: dict[str, str] = {}
        for s in self.tuned:
            for k, side in s.edges.items():
                out[k] = side if out.get(k, side) == side else "low and high"
        return out

    def budget_text(self) -> str:
        """The budget used in words: ``24 trials + 12 after widening lam`` (per split with ``selection="each"``)."""
        if self.selection == "first":
            return self.tuned[0].budget_text(self.budget)
        texts = [s.budget_text(self.budget) for s in self.tuned]
        if len(set(texts)) == 1:
            return f"{texts[0]} on each of {len(self.tuned)} splits ({self.n_trials} runs)"
        return "; ".join(f"{s.label}: {t}" for s, t in zip(self.tuned, texts, strict=True))

    def selection_text(self) -> str:
        if self.selection == "first":
            return (f"tuned on the first split's ({self.splits[0]}) validation rows; the chosen configuration was "
                    f"then trained on every split")
        return f"tuned on each split's own validation rows ({self.budget} trials × {len(self.tuned)} splits)"

    def edge_lines(self) -> list[str]:
        """``⚠ at edge: lam=0.0001 (low edge of log[1e-05, 0.1] ∪ {0})``, one per edged value and split."""
        out = []
        for s in self.tuned:
            if s.best is None:
                continue
            where = f" on {s.label}" if self.selection == "each" else ""
            for k, side in s.edges.items():
                out.append(f"⚠ at edge: {k}={_fmt(s.best.params.get(k))} ({side} edge of {s.space[k].text()}){where}")
        return out

    def text(self) -> str:
        """A Markdown summary: budget, sampler and pruner, space, selection, edges."""
        arrow = "lower is better" if self.direction == "minimize" else "higher is better"
        pr = (f"MedianPruner on the per-epoch validation loss (after {PRUNE_STARTUP_TRIALS} trials and "
              f"{PRUNE_WARMUP_EPOCHS} epochs; pruned trials count toward the budget)" if self.pruner else "no pruning")
        out = [f"**{self.method}**: {self.budget_text()}; TPE (multivariate, seed {self.seed}), {pr}; "
               f"{self.selection_text()}; objective: validation {self.metric} ({arrow}), mean over tasks; "
               f"{self.seconds:.1f} s" + (f" (time budget {self.time_budget:g} s)" if self.time_budget else "") + ".",
               "", f"- space: {space_text(self.space)}"]
        for s in self.tuned:
            where = f" ({s.label})" if self.selection == "each" else ""
            if s.widened:
                out.append(f"- widened space{where}: {space_text(s.space)}")
            if s.best is not None:
                out.append(f"- selected{where}: {params_text(s.best.params)} (validation {self.metric} "
                           f"{_fmt(s.best.value)}, trial {s.best.number})")
        if self.fixed:
            out.append(f"- fixed: {params_text(self.fixed)}")
        out += [f"- {n}" for n in [*self.notes, *(n for s in self.tuned for n in s.notes)]]
        out += [f"- {line}" for line in self.edge_lines()]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "selection": self.selection, "metric": self.metric,
                "direction": self.direction, "budget": self.budget, "budget_text": self.budget_text(),
                "n_trials": self.n_trials, "widen": self.widen, "widen_trials": self.widen_trials, "seed": self.seed,
                "pruner": self.pruner, "fixed": self.fixed, "space": {k: s.to_json() for k, s in self.space.items()},
                "space_text": space_text(self.space), "splits": self.splits, "hparams": self.hparams,
                "best_params": self.best_params, "best_value": _finite(self.best_value), "edges": self.edges,
                "edge_lines": self.edge_lines(), "seconds": self.seconds, "time_budget": self.time_budget,
                "stopped": self.stopped, "storage": self.storage, "notes": self.notes,
                "tuned": [{"split": s.split, "label": s.label, "spaces": [space_text(x) for x in s.spaces],
                           "widened": s.widened, "best": s.best.number if s.best else None, "edges": s.edges,
                           "stopped": s.stopped, "notes": s.notes, "trials": [t.to_json() for t in s.trials]}
                          for s in self.tuned]}

    def selection_records(self, split: int) -> list[dict[str, Any]]:
        """The trials behind split ``split``'s configuration, as a `Run.selection` list (for the results store)."""
        s = self.tuned[split if self.selection == "each" else 0]
        return [{"hparams": t.params, f"val_{self.metric}": t.value, "trial": t.number, "round": t.round,
                 "state": t.state, "seconds": t.seconds} for t in s.trials]


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


# ---------------------------------------------------------------------- tuning
@dataclass
class _Context:
    method: str
    params: dict[str, HParam]
    fixed: dict[str, Any]
    metric: str
    direction: str
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


def _search_space(method: str, kind: str) -> dict[str, Space]:
    try:
        return dict(registry.search_space(method, kind))  # type: ignore[call-arg]
    except TypeError:  # a registry whose search_space takes no task kind
        return dict(registry.search_space(method))


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
    import optuna

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
    sp = dict(space) if space is not None else _search_space(entry.name, kind)
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
    direction = "minimize" if LOWER_IS_BETTER[metric] else "maximize"
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


def _masked(url: str) -> str:
    from mtlkit.experiments.sweep import mask_url

    return mask_url(url)


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
