"""What a tuning did and chose: every trial (`TrialRecord`), each tuned split's rounds (`SplitTuning`) and the
whole result (`TuningResult`) with its budget, selection and edges in words and as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mtlkit.experiments.tuning.space import _fmt, params_text, space_text
from mtlkit.hparams import Space

FORMAT = "mtlkit-tune/1"
Direction = Literal["minimize", "maximize"]  # an Optuna study's direction
PRUNE_WARMUP_EPOCHS = 5      # MedianPruner: never prune before this many epochs of a trial
PRUNE_STARTUP_TRIALS = 5     # MedianPruner: never prune within a study's first trials


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
    direction: Direction
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
