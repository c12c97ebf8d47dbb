"""Which tasks to train together: split T tasks into groups that maximise the predicted gain read off a task-affinity
matrix ``M`` (``M[i, j]``: effect of source i on target j; `mtlkit.analysis.affinity.Affinity`).

A task's predicted gain in a group G is the sum of the affinities onto it from the other members,
``Σ_{i∈G, i≠j} M[i, j]`` (``objective="sum"``, the default: a grouping's gain is its total within-group affinity, so
two groups are worth merging exactly when the affinities between them sum to more than 0 — correlation clustering),
or, as in TAG (Fifty et al., NeurIPS 2021), their mean ``(1/(|G|−1)) Σ_{i∈G, i≠j} M[i, j]`` (``objective="mean"``:
the best partner's affinity alone already scores high, so with a free number of groups it prefers small groups; give
``k``). A task alone gains 0. A grouping's predicted gain is the sum over tasks.

Search: exact for T ≤ `EXACT_MAX_TASKS` — dynamic programming over subsets (the best partition of a set is the best
group holding its lowest task plus the best partition of the rest; O(3^T), every group's value vectorised over all
2^T subsets), the optimum over all set partitions, as TAG's and Standley et al.'s exhaustive searches; beyond,
average-linkage agglomerative clustering (scipy) of the symmetrised matrix, the dendrogram cut with the best
objective, then single-task moves while the objective improves (a local optimum, not a guarantee). Unknown entries
(NaN, e.g. pairs not sampled) count as 0 (no transfer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.errors import MtlkitError

EXACT_MAX_TASKS = 14
OBJECTIVES = ("sum", "mean")


@dataclass
class Grouping:
    """A partition of the tasks (``groups``: tuples of task indices, each sorted, ordered by their first task), the
    predicted gain of each task under it (``gain`` ``[T]``), the predicted total of training all tasks in one model
    (``all_in_one``; all alone is 0), the objective, how it was found (``search``: ``exact`` or ``agglomerative``)
    and what the affinity was (``source``, e.g. ``lookahead``)."""

    groups: list[tuple[int, ...]]
    task_names: tuple[str, ...]
    gain: np.ndarray
    all_in_one: float
    objective: str = "sum"
    search: str = "exact"
    source: str = ""

    @property
    def total(self) -> float:
        """Predicted gain summed over tasks."""
        return float(np.sum(self.gain))

    def named_groups(self) -> list[list[str]]:
        """The groups as lists of task names."""
        return [[self.task_names[t] for t in g] for g in self.groups]

    def labels(self) -> np.ndarray:
        """Group index of every task ``[T]`` (for the adjusted Rand index and colouring)."""
        out = np.zeros(len(self.task_names), dtype=np.int64)
        for k, g in enumerate(self.groups):
            out[list(g)] = k
        return out

    def order(self) -> list[int]:
        """The tasks ordered group by group (for a heatmap with the groups as blocks)."""
        return [t for g in self.groups for t in g]

    def advice(self) -> str:
        """One sentence of advice: ``train {a, b} together, keep c alone: predicted gain ...``."""
        def names(g: Sequence[int]) -> str:
            return ", ".join(self.task_names[t] for t in g)

        together = [g for g in self.groups if len(g) > 1]
        alone = [g[0] for g in self.groups if len(g) == 1]
        parts = [f"train {{{names(g)}}} together" for g in together]
        if alone:
            parts.append(f"keep {names(alone)} alone")
        T = len(self.task_names)
        what = f" ({self.source})" if self.source else ""
        return (", ".join(parts) + f": predicted gain {self.total / T:+.4g} per task{what}, against "
                f"{self.all_in_one / T:+.4g} for all tasks in one model and 0 for every task alone "
                f"({len(self.groups)} group{'s' if len(self.groups) != 1 else ''}, {self.objective} affinity onto "
                f"each task from its group, {self.search} search)")

    def to_json(self) -> dict[str, Any]:
        return {"groups": self.named_groups(), "gain": {n: float(g) for n, g in zip(self.task_names, self.gain,
                                                                                    strict=True)},
                "total": self.total, "all_in_one": self.all_in_one, "objective": self.objective,
                "search": self.search, "source": self.source, "advice": self.advice()}

    def write_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        return p


def _clean(matrix: Any) -> np.ndarray:
    m = np.array(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise MtlkitError(f"an affinity matrix must be square and non-empty, got shape {m.shape}")
    m[~np.isfinite(m)] = 0.0
    np.fill_diagonal(m, 0.0)
    return m


def task_gains(matrix: Any, groups: Sequence[Sequence[int]], objective: str = "sum") -> np.ndarray:
    """Each task's predicted gain ``[T]`` under ``groups`` (a partition of the tasks; see the module docstring)."""
    m = _clean(matrix)
    _check_objective(objective)
    out = np.zeros(m.shape[0])
    for g in groups:
        idx = np.asarray(list(g), dtype=np.int64)
        if len(idx) < 2:
            continue
        onto = m[np.ix_(idx, idx)].sum(0)  # Σ_{i∈G} M[i, j] (diagonal zero)
        out[idx] = onto / (len(idx) - 1) if objective == "mean" else onto
    return out


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise MtlkitError(f"unknown grouping objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def subset_values(matrix: Any, objective: str = "sum") -> np.ndarray:
    """The predicted gain of every subset of the tasks as one group, ``[2^T]`` indexed by bit mask (bit t = task t)."""
    m = _clean(matrix)
    T = m.shape[0]
    masks = np.arange(1 << T)
    bits = ((masks[:, None] >> np.arange(T)) & 1).astype(np.float64)  # [2^T, T]
    onto = bits @ m  # [2^T, T]: Σ_{i∈G} M[i, j]
    size = bits.sum(1)
    if objective == "mean":
        onto = onto / np.maximum(size - 1, 1)[:, None]
    return (bits * onto).sum(1)


def _exact(m: np.ndarray, objective: str, k: int | None, budget: int | None) -> list[tuple[int, ...]]:
    """The optimal partition by dynamic programming over subsets, with exactly ``k`` groups, at most ``budget``, or
    any number."""
    T = m.shape[0]
    val = subset_values(m, objective)
    full = (1 << T) - 1
    cap = k if k is not None else budget if budget is not None else None
    levels = cap if cap is not None else 1  # with no cap one level: best over any number of groups
    best = np.full((levels + 1, 1 << T), -np.inf)
    choice = np.zeros((levels + 1, 1 << T), dtype=np.int64)
    best[0, 0] = 0.0  # level c: exactly c groups (level 1 without a cap: any number of groups)
    if cap is None:
        best[1, 0] = 0.0
    for S in range(1, full + 1):
        low = S & -S
        rest = S ^ low
        pos = [b for b in range(T) if rest >> b & 1]
        idx = np.arange(1 << len(pos))
        subs = ((idx[:, None] >> np.arange(len(pos))) & 1) @ (1 << np.asarray(pos, dtype=np.int64)) \
            if pos else np.zeros(1, dtype=np.int64)
        groups = subs | low  # every group holding S's lowest task
        remain = S ^ groups
        if cap is None:
            tot = val[groups] + best[1, remain]
            a = int(np.argmax(tot))
            best[1, S], choice[1, S] = tot[a], groups[a]
            continue
        for c in range(1, levels + 1):
            tot = val[groups] + best[c - 1, remain]
            a = int(np.argmax(tot))
            best[c, S], choice[c, S] = tot[a], groups[a]
    if cap is None:
        c = 1
    elif k is not None:
        c = k
    else:
        c = int(np.argmax(best[1:, full])) + 1
    out: list[tuple[int, ...]] = []
    S = full
    while S:
        g = int(choice[c, S])
        out.append(tuple(b for b in range(T) if g >> b & 1))
        S ^= g
        c = c - 1 if cap is not None else 1
    return sorted(out)


def _total(m: np.ndarray, labels: np.ndarray, objective: str) -> float:
    return float(task_gains(m, _groups_of(labels), objective).sum())


def _groups_of(labels: np.ndarray) -> list[tuple[int, ...]]:
    return sorted(tuple(int(t) for t in np.flatnonzero(labels == g)) for g in np.unique(labels))


def _approximate(m: np.ndarray, objective: str, k: int | None, budget: int | None,
                 max_passes: int = 100) -> list[tuple[int, ...]]:
    """Average-linkage clustering of the symmetrised matrix, the best dendrogram cut, then single-task moves."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    T = m.shape[0]
    if T == 1:
        return [(0,)]
    sym = (m + m.T) / 2.0
    dist = sym.max() - sym
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(np.clip(dist, 0.0, None), checks=False), method="average")
    counts = [k] if k is not None else range(1, (budget or T) + 1)
    cands = [fcluster(tree, t=c, criterion="maxclust") for c in counts]
    labels = max(cands, key=lambda lab: _total(m, lab, objective))
    return _local_moves(m, np.unique(labels, return_inverse=True)[1], objective, k, budget or T, max_passes)


def _local_moves(m: np.ndarray, labels: np.ndarray, objective: str, k: int | None, n_max: int,
                 max_passes: int) -> list[tuple[int, ...]]:
    """Move single tasks (to another group, or alone while fewer than ``n_max`` groups) while the total improves.

    A group's value is ``S_G / (|G| − 1)`` (mean objective; 0 alone) or ``S_G`` (sum), ``S_G`` the sum of its
    off-diagonal entries, so a move changes two groups only, by ``R[g, t] + C[g, t]`` (task t's row and column sums
    over group g's members): every candidate move of a task is scored in O(groups)."""
    T = m.shape[0]
    G = T + 1  # group slots: at most T non-empty, and one more free slot for "alone"
    onehot = np.zeros((G, T))
    onehot[labels, np.arange(T)] = 1.0
    C = onehot @ m        # C[g, j] = Σ_{i∈g} M[i, j]
    R = onehot @ m.T      # R[g, i] = Σ_{j∈g} M[i, j]
    size = onehot.sum(1)
    S = (onehot * C).sum(1)

    def value(s: np.ndarray, n: np.ndarray) -> np.ndarray:
        if objective == "sum":
            return s
        return np.where(n >= 2, s / np.maximum(n - 1, 1), 0.0)

    for _ in range(max_passes):
        improved = False
        for t in range(T):
            a = int(labels[t])
            link = R[:, t] + C[:, t]  # what t adds to each group's S (its own entries: diagonal zero)
            s_a, n_a = S[a] - link[a], size[a] - 1
            gain_leave = value(np.array([s_a]), np.array([n_a]))[0] - value(S[a:a + 1], size[a:a + 1])[0]
            gain_join = value(S + link, size + 1) - value(S, size)
            ok = size > 0
            n_groups = int(ok.sum())
            if n_a > 0 and (k is None and n_groups < n_max):  # alone: one empty slot is enough
                empty = int(np.flatnonzero(~ok)[0])
                ok[empty] = True
            if k is not None and n_a == 0:
                ok[:] = False  # moving the only member would lose a group
            ok[a] = False
            delta = np.where(ok, gain_leave + gain_join, -np.inf)
            b = int(np.argmax(delta))
            if delta[b] > 1e-12:
                S[a], size[a] = s_a, n_a
                S[b], size[b] = S[b] + link[b], size[b] + 1
                C[a] -= m[t]
                R[a] -= m[:, t]
                C[b] += m[t]
                R[b] += m[:, t]
                labels[t] = b
                improved = True
        if not improved:
            break
    return _groups_of(labels)


def group_tasks(affinity: Any, k: int | None = None, budget: int | None = None, objective: str = "sum",
                task_names: Sequence[str] | None = None, exact_max: int = EXACT_MAX_TASKS,
                center: bool | None = None) -> Grouping:
    """Split the tasks into groups maximising the predicted gain (see the module docstring).

    ``affinity``: an `Affinity` or a ``[T, T]`` matrix (row = source, column = target). ``k``: exactly k groups;
    ``budget``: at most that many groups (a model budget); neither: the best number. Exact for T ≤ ``exact_max``,
    agglomerative clustering + local moves beyond. ``center``: subtract the mean off-diagonal entry first (default:
    only for a learned relation, ``how="learned"``, whose zero means nothing: SRDML's ω ≥ 0, a covariance; a lookahead,
    a cosine or a measured gain is 0 for "no effect")."""
    matrix = getattr(affinity, "matrix", affinity)
    names = tuple(task_names if task_names is not None else getattr(affinity, "task_names", ()))
    m = _clean(matrix)
    if center if center is not None else getattr(affinity, "how", "") == "learned":
        raw = np.asarray(matrix, dtype=np.float64)
        known = ~np.eye(m.shape[0], dtype=bool) & np.isfinite(raw)
        if known.any():  # unknown entries stay 0
            m = np.where(known, m - raw[known].mean(), 0.0)
    T = m.shape[0]
    if not names:
        names = tuple(f"task{t}" for t in range(T))
    if len(names) != T:
        raise MtlkitError(f"{len(names)} task names for a {T}×{T} affinity matrix")
    _check_objective(objective)
    if k is not None and budget is not None:
        raise MtlkitError("give the number of groups k or a budget (at most that many groups), not both")
    for nm, v in (("k", k), ("budget", budget)):
        if v is not None and not 1 <= v <= T:
            raise MtlkitError(f"{nm} must be between 1 and the number of tasks ({T}), got {v}")
    exact = exact_max >= T
    groups = _exact(m, objective, k, budget) if exact else _approximate(m, objective, k, budget)
    source = getattr(affinity, "label", "")
    return Grouping(groups, names, task_gains(m, groups, objective),
                    float(task_gains(m, [tuple(range(T))], objective).sum()), objective,
                    "exact" if exact else "agglomerative", source)


def read_groups(path: str | Path, task_names: Sequence[str]) -> list[tuple[int, ...]]:
    """Groups from a file: the ``groups.json`` `Grouping.write_json` writes, or a text file with one group per line,
    task names separated by commas (blank lines and ``#`` comments ignored). Tasks named nowhere are kept alone;
    a task named twice or unknown is an error."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise MtlkitError(f"--groups {p}: cannot be read ({e.strerror or e})") from None
    try:
        raw = json.loads(text)
        named = raw["groups"] if isinstance(raw, dict) else raw
    except json.JSONDecodeError:
        named = [[s.strip() for s in line.split("#")[0].split(",") if s.strip()] for line in text.splitlines()]
    except (KeyError, TypeError):
        raise MtlkitError(f"--groups {p}: a JSON file needs a 'groups' list of lists of task names") from None
    index = {n: t for t, n in enumerate(task_names)}
    seen: set[int] = set()
    out: list[tuple[int, ...]] = []
    for g in named:
        if not g:
            continue
        idx = []
        for n in g:
            if str(n) not in index:
                raise MtlkitError(f"--groups {p}: unknown task {n!r}; tasks: {', '.join(task_names)}")
            t = index[str(n)]
            if t in seen:
                raise MtlkitError(f"--groups {p}: task {n!r} is in two groups")
            seen.add(t)
            idx.append(t)
        out.append(tuple(sorted(idx)))
    out += [(t,) for t in range(len(task_names)) if t not in seen]
    return sorted(out)
