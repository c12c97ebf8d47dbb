"""Train/validation/test splits: per-task stratified from a seed, or from given index sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.multitask import MultiTaskData
    from mtlkit.data.transforms import FittedTransform


@dataclass
class Split:
    """The three parts of one split, with the row indices that made them (into the original data).

    If the data set carries a feature transform (e.g. MNIST-MTL's PCA-64), it was fitted on the
    training rows only and applied to all three parts; it is kept in ``transform``.
    """

    train: MultiTaskData
    val: MultiTaskData | None
    test: MultiTaskData | None
    indices: dict[str, Any]
    seed: int | None = None
    description: str = ""
    transform: FittedTransform | None = None
    source: MultiTaskData | None = field(default=None, repr=False)

    def part(self, name: str) -> MultiTaskData:
        """``"train"``, ``"val"`` or ``"test"``; a clear error if that part is empty."""
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split part {name!r}; expected train, val or test")
        d = getattr(self, name)
        if d is None:
            raise DataError(f"this split has no {name} part ({self.description})")
        return d


def _systematic(order: np.ndarray, frac: float) -> np.ndarray:
    """Boolean mask picking round(frac·n) rows spread evenly along ``order`` (class-sorted, so the
    pick is stratified by label with an exact total)."""
    n = len(order)
    i = np.arange(n)
    pick_sorted = np.floor((i + 1) * frac + 0.5) - np.floor(i * frac + 0.5) >= 1
    out = np.zeros(n, dtype=bool)
    out[order[pick_sorted]] = True
    return out


def _strat_key(y: np.ndarray, kind: str) -> np.ndarray:
    """The label to stratify on: the class (the argmax for soft labels), or the target for regression."""
    if kind == "distribution":
        return np.argmax(y, axis=1).astype(np.float64)
    return y


def _quantile_bins(rng: np.random.Generator, key: np.ndarray, frac: float) -> np.ndarray:
    """Bin a continuous target into consecutive quantile bins of about ``1/frac`` rows each (ties broken at
    random), so that picking about one row per bin stratifies by value while *which* row of a bin is picked
    depends on the seed. Stratifying by the raw value instead makes the pick a fixed function of the sorted
    targets: every seed would give the same split."""
    n = len(key)
    n_bins = max(1, min(n, int(round(n * min(frac, 1.0 - frac))) or 1))
    order = np.lexsort((rng.random(n), key))  # by value, ties in random order
    bins = np.empty(n, dtype=np.int64)
    bins[order] = (np.arange(n) * n_bins) // n
    return bins


def _pick(rng: np.random.Generator, rows: np.ndarray, key: np.ndarray, frac: float,
          continuous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (picked, rest) with ``round(frac·n)`` picked, stratified by ``key``: a class label,
    or (``continuous``) a regression target, stratified by its quantile bins. Rows with equal keys are picked
    in a random order drawn from ``rng``, so every seed gives another split."""
    if continuous and len(rows):
        key = _quantile_bins(rng, np.asarray(key, dtype=np.float64), frac)
    perm = rng.permutation(len(rows))
    order = perm[np.argsort(key[perm], kind="stable")]
    mask = _systematic(order, frac)
    return rows[mask], rows[~mask]


def _check_fractions(test: float, val: float) -> None:
    for nm, f in (("test", test), ("val", val)):
        if not 0.0 <= f < 1.0:
            raise DataError(f"{nm} fraction must be in [0, 1), got {f}")


def _finish(data: MultiTaskData, idx: dict[str, Any], seed: int | None, desc: str) -> Split:
    parts = {k: (data.subset(v) if v is not None else None) for k, v in idx.items()}
    fitted = None
    if data.transform is not None:
        train = parts["train"]
        assert train is not None  # every split has training rows
        fitted = data.transform.fit(train)
        parts = {k: (p.with_features(fitted.apply) if p is not None else None) for k, p in parts.items()}
    train = parts["train"]
    assert train is not None
    return Split(train=train, val=parts["val"], test=parts["test"], indices=idx, seed=seed,
                 description=desc, transform=fitted, source=data)


def random_split(data: MultiTaskData, test: float = 0.2, val: float = 0.2, seed: int = 0) -> Split:
    """Per-task stratified random split (see `MultiTaskData.split`)."""
    _check_fractions(test, val)
    rng = np.random.default_rng(seed)
    kind = data.kind
    if data.shared:
        n = data.n_rows
        rows = np.arange(n)
        key = rng.random(n)
        te, rest = _pick(rng, rows, key, test) if test > 0 else (rows[:0], rows)
        va, tr = _pick(rng, rest, key[rest], val) if val > 0 else (rows[:0], rest)
        for t, nm in enumerate(data.task_names):
            m = data.label_mask(t)
            for part, r in (("train", tr), ("val", va), ("test", te)):
                if (part == "train" or len(r)) and not m[r].any():
                    raise DataError(f"task {nm!r} has {int(m.sum())} labelled rows: none fell in the {part} "
                                    f"part; too few to split with test={test}, val={val}")
        idx: dict[str, Any] = {"train": np.sort(tr), "val": np.sort(va) if val > 0 else None,
               "test": np.sort(te) if test > 0 else None}
        return _finish(data, idx, seed, f"random split, seed {seed}, test {test}, val {val} (by row)")
    trs, vas, tes = [], [], []
    for t, nm in enumerate(data.task_names):
        y = data.task_labels(t)
        n = len(y)
        key = _strat_key(y, kind)
        cont = kind == "regression"
        rows = np.arange(n)
        te, rest = _pick(rng, rows, key, test, cont) if test > 0 else (rows[:0], rows)
        va, tr = _pick(rng, rest, key[rest], val, cont) if val > 0 else (rows[:0], rest)
        if len(tr) == 0 or (test > 0 and len(te) == 0) or (val > 0 and len(va) == 0):
            raise DataError(f"task {nm!r} has {n} rows: too few to split into train/val/test with "
                            f"test={test}, val={val} (it gives {len(tr)}/{len(va)}/{len(te)} rows)")
        trs.append(np.sort(tr))
        vas.append(np.sort(va))
        tes.append(np.sort(te))
    idx = {"train": trs, "val": vas if val > 0 else None, "test": tes if test > 0 else None}
    return _finish(data, idx, seed, f"random per-task stratified split, seed {seed}, test {test}, val {val}")


def _as_index(a: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what} must be integer row indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise DataError(f"{what} has an index outside 0..{n - 1}")
    if len(np.unique(arr)) != len(arr):
        raise DataError(f"{what} repeats a row index")
    return arr


def indexed_split(
    data: MultiTaskData,
    train: Sequence[np.ndarray] | np.ndarray,
    test: Sequence[np.ndarray] | np.ndarray,
    val: Sequence[np.ndarray] | np.ndarray | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """A split from given index sets (see `MultiTaskData.split_indices`)."""
    _check_fractions(0.0, val_fraction)
    rng = np.random.default_rng(seed)
    if data.shared:
        n = data.n_rows
        tr = _as_index(train, n, "train indices")
        te = _as_index(test, n, "test indices")
        if val is not None:
            va = _as_index(val, n, "val indices")
        elif val_fraction > 0:
            va, tr = _pick(rng, tr, rng.random(len(tr)), val_fraction)
        else:
            va = None
        parts = [p for p in (tr, va, te) if p is not None]
        if len(np.unique(np.concatenate(parts))) != sum(len(p) for p in parts):
            raise DataError("train, val and test indices overlap")
        idx: dict[str, Any] = {"train": np.sort(tr), "val": None if va is None else np.sort(va), "test": np.sort(te)}
        return _finish(data, idx, seed, "given index sets (by row)")
    T = data.n_tasks
    for nm, s in (("train", train), ("test", test), ("val", val)):
        if s is not None and len(s) != T:
            raise DataError(f"{nm} index sets: {len(s)} given for {T} tasks (one array per task)")
    trs, vas, tes = [], [], []
    for t, nm in enumerate(data.task_names):
        y = data.task_labels(t)
        n = len(y)
        tr = _as_index(train[t], n, f"train indices of task {nm!r}")
        te = _as_index(test[t], n, f"test indices of task {nm!r}")
        if val is not None:
            va = _as_index(val[t], n, f"val indices of task {nm!r}")
        elif val_fraction > 0:
            va, tr = _pick(rng, tr, _strat_key(y, data.kind)[tr], val_fraction, data.kind == "regression")
        else:
            va = np.zeros(0, dtype=np.int64)
        allp = np.concatenate([tr, va, te])
        if len(np.unique(allp)) != len(allp):
            raise DataError(f"train, val and test indices of task {nm!r} overlap")
        if len(tr) == 0 or (val_fraction > 0 or val is not None) and len(va) == 0:
            raise DataError(f"task {nm!r} has {len(tr) + len(va)} training rows: too few to carve a "
                            f"validation set with val_fraction={val_fraction}")
        trs.append(np.sort(tr))
        vas.append(np.sort(va))
        tes.append(np.sort(te))
    has_val = val is not None or val_fraction > 0
    idx = {"train": trs, "val": vas if has_val else None, "test": tes}
    desc = "given index sets" + ("" if val is not None else f", val {val_fraction} of train (seed {seed})")
    return _finish(data, idx, seed, desc)
