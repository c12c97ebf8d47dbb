"""The runs behind task affinity (issue 14): which of the tasks should share a model?

`affinity(data, method, how)` measures a T×T task-affinity matrix (`mtlkit.analysis.affinity.Affinity`; row =
source, column = target, positive = the source helps the target) by

* ``"lookahead"``: TAG's lookahead affinity (Fifty et al., NeurIPS 2021) averaged over ONE joint training run of
  ``method`` through the Trainer: every ``every`` steps, before the step, on the step's batch, the losses after a
  step on each task's gradient alone (`mtlkit.analysis.affinity.step_affinity`: one batched vector-Jacobian product
  and one forward pass vmapped over T copies of the shared parameters);
* ``"gradient"``: the same run's per-task gradients of the shared parameters, their T×T Gram matrix averaged over
  the steps, normalised to cosine (default), raw (``gram``) or TAG's first-order form (``first-order``);
* ``"pairs"``: measured transfer (Standley et al., ICML 2020): ``method`` trained on every task alone and on every
  pair, ``1 − m_j(pair i, j) / m_j(alone)`` on the validation rows, ``m`` the RMSE (regression) or the cross-entropy
  (classification); O(T²) runs, refused above ``pairs_limit`` tasks unless ``max_pairs`` samples pairs;
* ``"learned"``: a method's own learned relation (`task_relations`: SRDML's ω, AMTFL's AS, TOMATO's ‖θˢ_kt‖ as the
  cosine of the tasks' topic columns, ...), for comparison.

`train_groups` trains one model per group of a grouping (`mtlkit.analysis.grouping.group_tasks`) on a split and
returns each task's metrics, for `mtlkit bench --groups`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlkit.analysis.affinity import GRADIENT_NORMS, HOWS, Affinity, AffinityRecorder, relation_affinity, step_affinity
from mtlkit.analysis.relations import task_relations
from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.spec import TaskSpec
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.methods import registry
from mtlkit.methods.base import MethodParts, row_separable
from mtlkit.nn.losses import TaskLoss
from mtlkit.optim.combiners import task_tape
from mtlkit.train.run import Run, train_one

PAIRS_LIMIT = 10
"""Above this many tasks ``how="pairs"`` (T alone + T(T−1)/2 pair runs: 55 + 10 at T = 10) needs ``max_pairs``."""
TRANSFER_METRIC = {"regression": "rmse", "binary": "cross_entropy", "multiclass": "cross_entropy",
                   "distribution": "cross_entropy"}
"""The validation metric measured pair transfer compares: smooth and lower-is-better for every kind."""


# ---------------------------------------------------------------------------------------------- task subsets
def select_tasks(data: MultiTaskData, tasks: Sequence[int]) -> MultiTaskData:
    """The data of the given tasks only (in that order), rows shared by reference, nothing validated again."""
    idx = [int(t) for t in tasks]
    if not idx or len(set(idx)) != len(idx) or not all(0 <= t < data.n_tasks for t in idx):
        raise MtlkitError(f"tasks must be distinct indices in 0..{data.n_tasks - 1}, got {list(tasks)}")
    s = data.spec
    spec = TaskSpec(s.kind, tuple(s.names[t] for t in idx), tuple(s.n_classes[t] for t in idx), s.labels)
    common: dict[str, Any] = dict(name=data.name, feature_names=data.feature_names, transform=data.transform,
                                  notes=data.notes, validate=False)
    rows = data.feature_rows()
    if not data.shared:
        assert data.ys is not None
        predefined = None
        if data.predefined_splits:
            predefined = [([tr[t] for t in idx], [te[t] for t in idx]) for tr, te in data.predefined_splits]
        return MultiTaskData(spec, xs=[rows[t] for t in idx], ys=[data.ys[t] for t in idx],
                             predefined_splits=predefined, **common)
    assert data.y is not None
    return MultiTaskData(spec, x=rows[0], y=data.y[:, idx], predefined_splits=data.predefined_splits, **common)


def split_tasks(split: Split, tasks: Sequence[int]) -> Split:
    """The same split (the same rows of each task) restricted to the given tasks."""
    def sub(d: MultiTaskData | None) -> MultiTaskData | None:
        return None if d is None else select_tasks(d, tasks)

    idx = {k: (v if v is None or not isinstance(v, (list, tuple)) else [v[t] for t in tasks])
           for k, v in split.indices.items()}
    train = sub(split.train)
    assert train is not None
    return Split(train=train, val=sub(split.val), test=sub(split.test), indices=idx, seed=split.seed,
                 description=split.description, transform=split.transform, source=sub(split.source))


def first_split(data: MultiTaskData, seed: int = 0, test: float = 0.2, val: float = 0.2) -> Split:
    """The split affinity is measured on: the data set's first predefined split (validation carved from its
    training rows) or a seeded random one."""
    from mtlkit.experiments.splits import make_splits

    return make_splits(data, 1, seed=seed, test=test, val=val)[0][1]


# ---------------------------------------------------------------------------------------------- the joint run
@dataclass
class JointAffinity:
    """What one joint run measured: the recorder (per-step lookahead and gradient matrices averaged), the run, the
    steps probed, the seconds the probes took and the whole run's seconds."""

    recorder: AffinityRecorder
    run: Run
    every: int
    probe_seconds: float
    total_seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        """The joint run's time over the same run without probes (1 = free)."""
        plain = max(self.total_seconds - self.probe_seconds, 1e-9)
        return self.total_seconds / plain

    def affinity(self, how: str, normalize: str = "cosine") -> Affinity:
        """The averaged ``lookahead`` or ``gradient`` matrix as an `Affinity`."""
        names = self.run.info.spec.names
        norm = "" if how == "lookahead" else normalize
        details = {**self.details, "steps_probed": self.recorder.steps, "every": self.every,
                   "probe_seconds": self.probe_seconds, "total_seconds": self.total_seconds, "cost": self.cost}
        return Affinity(self.recorder.mean(how, norm), names, how, norm, details)


class _Probe:
    """The Trainer's ``step_callback``: every ``every`` steps, the task affinity of the model as it is on the batch."""

    def __init__(self, loss: TaskLoss, every: int, lookahead: bool, chunk: int | None) -> None:
        self.loss, self.every, self.lookahead, self.chunk = loss, every, lookahead, chunk
        self.recorder = AffinityRecorder()
        self.seconds = 0.0

    def __call__(self, step: int, batch: Any, parts: MethodParts, lr: float) -> None:
        if step % self.every:
            return
        t0 = time.perf_counter()
        model = parts.model
        shared = parts.shared_parameters(model) if parts.shared_parameters is not None else list(model.parameters())
        tape = None
        if not batch.shared and row_separable(parts):  # all T gradients from one backward pass
            tape = task_tape(model, [p for p in shared if p.requires_grad], batch.mask.shape[0])
        st = step_affinity(model, shared, batch.x, lambda pred: self.loss(pred, batch), lr, self.lookahead,
                           self.chunk, tape=tape)
        self.recorder.add(st, lr)
        if batch.x.device.type == "cuda":
            torch.cuda.synchronize(batch.x.device)
        self.seconds += time.perf_counter() - t0


def default_every(n_tasks: int, lookahead: bool) -> int:
    """Probe every step for the gradient affinity (about one backward pass). The lookahead's probe costs about T/5
    training steps (T forward passes of a batch, batched; a step is a forward and a backward pass): every ⌈T/8⌉ steps,
    so the probes add about 1.6 training runs whatever T (every step up to T = 8, where they are cheap)."""
    return max(1, math.ceil(n_tasks / 8)) if lookahead else 1


def joint_affinity(split: Split, method: str = "hard-share", hparams: dict[str, Any] | None = None, seed: int = 0,
                   lookahead: bool = True, every: int | None = None, chunk: int | None = None,
                   device: str | torch.device | None = None, progress: bool | None = None) -> JointAffinity:
    """Train ``method`` once on ``split`` through the Trainer, probing the task affinity every ``every`` steps
    (default `default_every`); ``lookahead=False`` measures only the gradient affinity (cheaper)."""
    entry = registry.get(method)
    if entry.fit is not None:
        raise MtlkitError(f"method {entry.name!r} is not trained by SGD: lookahead and gradient affinity need a joint "
                          "SGD run (use how='pairs' or 'learned')")
    T = split.train.n_tasks
    every = default_every(T, lookahead) if every is None else int(every)
    if chunk is None and T > 32:
        chunk = 16  # bound the vmapped forward's memory: 16 parameter copies at a time
    if every < 1:
        raise MtlkitError(f"every must be at least 1 step, got {every}")
    from mtlkit.train.run import resolve_device

    dev = resolve_device(device)
    probe = _Probe(TaskLoss(split.train.spec, dev), every, lookahead, chunk)
    t0 = time.perf_counter()
    run = train_one(method, split, hparams, seed=seed, device=dev, progress=progress, step_callback=probe)
    total = time.perf_counter() - t0
    if probe.recorder.steps == 0:
        raise MtlkitError("the joint run took no step: no affinity was measured")
    details = {"method": entry.name, "hparams": run.hparams, "seed": seed,
               "epochs_run": len(run.history.train_loss) if run.history is not None else 0}
    return JointAffinity(probe.recorder, run, every, probe.seconds, total, details)


# ---------------------------------------------------------------------------------------------- pairs
@dataclass
class PairTransfer:
    """Measured transfer on the validation and test rows: ``alone[part][j]`` task j's metric trained alone,
    ``pair[part][i, j]`` task j's metric trained with task i (NaN for pairs not run), `gain` ``1 − pair / alone``;
    the metric's name, the number of runs and their seconds."""

    metric: str
    alone: dict[str, np.ndarray]
    pair: dict[str, np.ndarray]
    runs: int
    seconds: float

    def gain(self, part: str = "val") -> np.ndarray:
        """``[T, T]``: ``1 − m_j(with i) / m_j(alone)`` (row = source i, column = target j; NaN on the diagonal)."""
        with np.errstate(all="ignore"):
            g = 1.0 - self.pair[part] / self.alone[part][None, :]
        np.fill_diagonal(g, np.nan)
        return g


def pair_transfer(split: Split, method: str = "hard-share", hparams: dict[str, Any] | None = None, seed: int = 0,
                  max_pairs: int | None = None, pairs_limit: int = PAIRS_LIMIT,
                  device: str | torch.device | None = None, progress: bool | None = None) -> PairTransfer:
    """Train ``method`` on every task alone and on every pair (or ``max_pairs`` pairs drawn with ``seed``) of
    ``split`` and compare each task's validation and test metric (`TRANSFER_METRIC`). More than ``pairs_limit``
    tasks without ``max_pairs`` is an error, before any training."""
    T = split.train.n_tasks
    all_pairs = [(i, j) for i in range(T) for j in range(i + 1, T)]
    if max_pairs is None and pairs_limit < T:
        raise MtlkitError(f"how='pairs' trains {T} + {len(all_pairs)} models for {T} tasks (limit {pairs_limit} "
                          "tasks): use how='lookahead' (one run), or sample pairs with --max-pairs N")
    if max_pairs is not None and max_pairs < 1:
        raise MtlkitError(f"--max-pairs must be at least 1, got {max_pairs}")
    pairs = all_pairs
    if max_pairs is not None and max_pairs < len(all_pairs):
        rng = np.random.default_rng(seed)
        pairs = [all_pairs[k] for k in np.sort(rng.choice(len(all_pairs), size=max_pairs, replace=False))]
    metric = TRANSFER_METRIC[split.train.kind]
    parts = [p for p in ("val", "test") if getattr(split, p) is not None]
    t0 = time.perf_counter()

    def measure(tasks: Sequence[int]) -> dict[str, np.ndarray]:
        run = train_one(method, split_tasks(split, tasks), hparams, seed=seed, device=device, progress=progress)
        return {p: np.asarray(run.evaluate(p).per_task[metric], dtype=np.float64) for p in parts}

    single = [measure([t]) for t in range(T)]
    alone = {p: np.array([s[p][0] for s in single]) for p in parts}
    pair = {p: np.full((T, T), np.nan) for p in parts}
    for i, j in pairs:
        m = measure([i, j])
        for p in parts:  # [source, target]: task j's metric trained with i, and task i's trained with j
            pair[p][i, j], pair[p][j, i] = m[p][1], m[p][0]
    return PairTransfer(metric, alone, pair, T + len(pairs), time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- entry point
def affinity(data: MultiTaskData | Split, method: str = "hard-share", how: str = "lookahead", *,
             hparams: dict[str, Any] | None = None, seed: int = 0, normalize: str = "cosine",
             every: int | None = None, chunk: int | None = None, relation: str | None = None,
             max_pairs: int | None = None, pairs_limit: int = PAIRS_LIMIT, device: str | torch.device | None = None,
             progress: bool | None = None) -> Affinity:
    """The T×T task-affinity matrix of ``data`` (its first split, `first_split`, or a given `Split`) measured
    ``how`` (see the module docstring) with ``method``. ``normalize`` applies to ``how="gradient"``
    (`GRADIENT_NORMS`); ``every``/``chunk`` to the joint run's probes; ``relation`` names the learned matrix
    (default: the method's first); ``max_pairs``/``pairs_limit`` to ``how="pairs"``."""
    if how not in HOWS:
        raise MtlkitError(f"unknown affinity measure {how!r}; choose from {', '.join(HOWS)}")
    if how == "gradient" and normalize not in GRADIENT_NORMS:
        raise MtlkitError(f"unknown gradient normalisation {normalize!r}; choose from {', '.join(GRADIENT_NORMS)}")
    split = data if isinstance(data, Split) else first_split(data, seed)
    names = split.train.spec.names
    if how in ("lookahead", "gradient"):
        joint = joint_affinity(split, method, hparams, seed, lookahead=how == "lookahead", every=every, chunk=chunk,
                               device=device, progress=progress)
        return joint.affinity(how, normalize)
    if how == "pairs":
        pt = pair_transfer(split, method, hparams, seed, max_pairs, pairs_limit, device, progress)
        return Affinity(pt.gain("val"), names, "pairs", pt.metric,
                        {"method": method, "runs": pt.runs, "total_seconds": pt.seconds,
                         "alone": pt.alone["val"].tolist(), "pairs_run": int(np.isfinite(pt.pair["val"]).sum() // 2)})
    t0 = time.perf_counter()
    run = train_one(method, split, hparams, seed=seed, device=device, progress=progress)
    rels = task_relations(run)
    if not rels:
        raise MtlkitError(f"method {method!r} learns no task relation (task_relations); try srdml, amtfl, mrn, "
                          "tomato-el or cross-stitch")
    name = relation if relation is not None else next(iter(rels))
    if name not in rels:
        raise MtlkitError(f"method {method!r} has no relation {name!r}; it has {', '.join(rels)}")
    return Affinity(relation_affinity(rels[name], len(names)), names, "learned", name,
                    {"method": run.method, "relation": name, "total_seconds": time.perf_counter() - t0})


# ---------------------------------------------------------------------------------------------- grouped training
def train_groups(method: str, split: Split, groups: Sequence[Sequence[int]], *, hparams: dict[str, Any] | None = None,
                 grid: dict[str, list[Any]] | None = None, seed: int = 0, device: str | torch.device | None = None,
                 progress: bool | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float,
                                                        list[dict[str, Any]]]:
    """One ``method`` model per group on ``split`` (grid-selected on validation per group when ``grid``): each
    task's test and validation metrics (``{metric: [T]}``, every metric of the kind), the seconds, each group's
    hyper-parameters."""
    from mtlkit.train.run import train

    T = split.train.n_tasks
    flat = sorted(t for g in groups for t in g)
    if flat != list(range(T)):
        raise MtlkitError(f"groups must partition the {T} tasks, got {[list(g) for g in groups]}")
    test: dict[str, np.ndarray] = {}
    val: dict[str, np.ndarray] = {}
    chosen = []
    t0 = time.perf_counter()
    for g in groups:
        sub = split_tasks(split, g)
        run = train(method, sub, hparams=hparams, grid=grid, seed=seed, device=device, progress=progress)
        for out, part in ((test, "test"), (val, "val")):
            if getattr(sub, part) is None:
                continue
            for k, v in run.evaluate(part).per_task.items():
                out.setdefault(k, np.full(T, np.nan))[list(g)] = v
        chosen.append({"tasks": [split.train.spec.names[t] for t in g], "hparams": run.hparams})
    return test, val, time.perf_counter() - t0, chosen


def resolve_groups(spec: Any, split: Split, *, how: str = "lookahead", method: str = "hard-share",
                   hparams: dict[str, Any] | None = None, seed: int = 0, device: str | torch.device | None = None,
                   progress: bool | None = None) -> tuple[list[tuple[int, ...]], str]:
    """The groups ``spec`` names for ``split``, with a line saying where they come from: ``"auto"`` or a number K
    (measure ``how`` affinity with ``method`` on the split's training and validation rows, then `group_tasks`, with
    the best number of groups or K), a list of index groups, or a file (`read_groups`)."""
    from pathlib import Path

    from mtlkit.analysis.grouping import group_tasks, read_groups

    names = split.train.spec.names
    if isinstance(spec, (list, tuple)):
        groups = sorted(tuple(sorted(int(t) for t in g)) for g in spec)
        return groups, "given groups"
    text = str(spec)
    if text == "auto" or text.isdigit():
        k = None if text == "auto" else int(text)
        from mtlkit.methods.params import method_defaults

        known = set(method_defaults(registry.get(method)))
        aff = affinity(split, method, how, hparams={k_: v for k_, v in (hparams or {}).items() if k_ in known},
                       seed=seed, device=device, progress=progress)
        g = group_tasks(aff, k=k)
        T = len(names)
        return g.groups, (f"{aff.label} affinity of {method} on the split's training rows, {g.search} grouping "
                          f"({g.objective}): predicted gain {g.total / T:+.3g} per task against "
                          f"{g.all_in_one / T:+.3g} all in one")
    return read_groups(Path(text), names), f"groups from {text}"


def _groups_text(groups: Sequence[Sequence[int]], names: Sequence[str], most: int = 12) -> str:
    """Groups as ``a+b | c+d``; a group of more than ``most`` tasks as its size and its first and last names."""
    def one(g: Sequence[int]) -> str:
        if len(g) <= most:
            return "+".join(names[t] for t in g)
        return f"{len(g)} tasks ({'+'.join(names[t] for t in g[:3])}+…+{names[g[-1]]})"

    return " | ".join(one(g) for g in groups)


def add_grouped(res: Any, splits: Sequence[tuple[str, Split]], methods: Sequence[str], groups: Any, *,
                how: str = "lookahead", select: bool = True, grids: dict[str, dict[str, list[Any]]] | None = None,
                hparams: dict[str, Any] | None = None, seed: int = 0, device: str | None = None,
                progress: bool | None = None) -> None:
    """Add ``METHOD@groups`` to a bench's result (`mtlkit.experiments.bench.BenchResult`) for every method that
    shares anything (not the STL family): on each split, one model per group (`train_groups`), the groups from
    `resolve_groups` (``"auto"`` / K: measured on that split's training and validation rows, so the test rows never
    decide the grouping), selected as the all-in-one model was: its grid on validation per group, or, when it was
    tuned, its tuned configuration of that split. The groups of each split are noted in ``res.notes``."""
    from mtlkit.methods.params import method_defaults

    shared = [m for m in methods if not registry.get(m).name.startswith("stl")]
    if not shared:
        raise MtlkitError("--groups needs a method that shares parameters (stl trains every task alone anyway)")
    for m in shared:
        name = f"{registry.get(m).name}@groups"
        res.scores[name] = np.full((len(splits), len(res.task_names)), np.nan)
        res.seconds[name], res.hparams[name] = [], []
    for i, (label, split) in enumerate(splits):
        grp, why = resolve_groups(groups, split, how=how, hparams=hparams, seed=seed + i, device=device,
                                  progress=False if progress is False else None)
        names = split.train.spec.names
        text = " | ".join("+".join(names[t] for t in g) for g in grp)
        res.notes.append(f"groups on {label}: {_groups_text(grp, names)} — {why}")
        for m in shared:
            entry = registry.get(m)
            name = f"{entry.name}@groups"
            known = set(method_defaults(entry))
            if res.selection == "tuned" and res.hparams.get(entry.name):
                hp, grid = dict(res.hparams[entry.name][i]), None
            else:
                hp = {k: v for k, v in (hparams or {}).items() if k in known}
                grid = (grids or {}).get(entry.name, entry.grid_for(split.train.kind)) if select else None
                grid = {k: v for k, v in (grid or {}).items() if k not in hp} or None
            test, _, secs, _ = train_groups(entry.name, split, grp, hparams=hp, grid=grid, seed=seed + i,
                                            device=device, progress=False if progress is False else None)
            res.scores[name][i] = test[res.metric]
            res.seconds[name].append(secs)
            res.hparams[name].append({"groups": text})
