"""Omniglot as multi-task data (the trace-norm deep MTL paper's experiment): one multiclass task per alphabet,
its classes the alphabet's characters, images ``[1, H, W]``.

Only the two official "background small" subsets are staged (``omniglot/omniglot_background_small{1,2}.npz``,
a lossless decode of the PNGs), i.e. 8 of the 50 alphabets: Balinese, Early_Aramaic, Greek, Japanese_(katakana),
Korean, Latin, Sanskrit, Tagalog (242 characters × 20 drawers). Greek and Latin lie in both files with identical
pixels; they are read once. The paper's protocol is 10 repeats of a random 10% train / 90% test split per task
(`paper_splits`).

Choices where the paper is silent: ink is 1 and background 0 (the files store 1 = white background; set
``invert=False`` to keep that); ``size`` (default 105, the paper's 105×105) downsamples by area averaging
(``size=35`` is exactly 3×3 block means and keeps the paper's CNN fast on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.datasets._paths import data_file
from mtlkit.errors import DataError

FILES = ("omniglot/omniglot_background_small1.npz", "omniglot/omniglot_background_small2.npz")
FULL_SIZE = 105
N_DRAWERS = 20


def _area_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Area (box) downsampling of ``[N, H, W]`` to ``[N, size, size]``: each output pixel is the mean of the
    input pixels it covers, fractional overlaps weighted (exact block means when ``size`` divides H)."""
    if size == images.shape[-1]:
        return images.astype(np.float32)

    def weights(n_in: int, n_out: int) -> np.ndarray:
        """[n_out, n_in] overlap of output cell j with input pixel i, rows summing to 1."""
        edges = np.arange(n_out + 1) * n_in / n_out
        lo, hi = edges[:-1, None], edges[1:, None]
        i = np.arange(n_in)[None, :]
        ov = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0, None)
        return ov / ov.sum(1, keepdims=True)

    A, B = weights(images.shape[1], size), weights(images.shape[2], size)
    return (A @ (images.astype(np.float32) @ B.T.astype(np.float32))).astype(np.float32)


def load_omniglot(data_dir: str | Path | None = None, size: int = FULL_SIZE, invert: bool = True,
                  alphabets: list[str] | None = None) -> MultiTaskData:
    """The 8 staged alphabets as 8 multiclass tasks (sorted by name), images ``[1, size, size]`` float32.

    ``alphabets`` keeps only the named ones (in that order). Labels are the characters' 0-based indices
    within their alphabet; every character has 20 images (one per drawer).
    """
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= FULL_SIZE:
        raise DataError(f"omniglot: size must be an integer in 1..{FULL_SIZE}, got {size!r}")
    per_alpha: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rel in FILES:
        path = data_file(data_dir, rel, "omniglot")
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "alphabet", "character", "alphabets"} - set(z.files)
            if missing:
                raise DataError(f"{path} lacks the arrays {sorted(missing)}")
            images, alpha, char, names = z["images"], z["alphabet"], z["character"], z["alphabets"]
        if images.ndim != 3 or images.shape[1:] != (FULL_SIZE, FULL_SIZE):
            raise DataError(f"{path}: images should be [N, {FULL_SIZE}, {FULL_SIZE}], got {images.shape}")
        for a, name in enumerate(names.tolist()):
            if name in per_alpha:  # Greek and Latin are in both subsets, pixel-identical
                continue
            rows = np.flatnonzero(alpha == a)
            order = rows[np.lexsort((rows, char[rows]))]  # by character, stable
            per_alpha[name] = (images[order], char[order].astype(np.int64))
    names_all = sorted(per_alpha)
    chosen = names_all if alphabets is None else list(alphabets)
    unknown = [a for a in chosen if a not in per_alpha]
    if unknown:
        raise DataError(f"omniglot: unknown alphabet(s) {unknown}; staged: {', '.join(names_all)}")
    Xs, ys, n_classes = [], [], []
    for name in chosen:
        img, ch = per_alpha[name]
        classes = np.unique(ch)
        if not np.array_equal(classes, np.arange(len(classes))):
            raise DataError(f"omniglot: alphabet {name} has non-contiguous character indices {classes.tolist()}")
        x = _area_resize(img, size)
        if invert:
            x = 1.0 - x
        Xs.append(x[:, None, :, :])
        ys.append(ch.astype(np.float64))
        n_classes.append(len(classes))
    notes = [f"Omniglot background small1+small2: {len(chosen)} alphabets (of the paper's 50), "
             f"{sum(n_classes)} characters x {N_DRAWERS} drawers; images {size}x{size}"
             + (" (area-downsampled from 105x105)" if size != FULL_SIZE else "")
             + ("; ink = 1, background = 0" if invert else "; background = 1, ink = 0"),
             "paper protocol: 10 repeats of 10% train / 90% test per task (datasets.omniglot.paper_splits)"]
    return MultiTaskData.from_tasks(Xs, ys, kind="multiclass", names=chosen, n_classes=n_classes,
                                    name="omniglot", notes=notes)


def paper_splits(data: MultiTaskData, repeats: int = 10, train: float = 0.1, val: float = 0.0,
                 seed: int = 0) -> list[Split]:
    """The paper's protocol: ``repeats`` random per-task stratified splits with ``train`` of the rows for training
    (10%: 2 of the 20 images per character) and the rest for testing; ``val`` of the training rows may be held
    out for model selection (0 by default, as in the paper, which reports no validation set)."""
    if not 0 < train < 1:
        raise DataError(f"train must be a fraction in (0, 1), got {train!r}")
    if repeats < 1:
        raise DataError(f"repeats must be >= 1, got {repeats!r}")
    return [data.split(test=1.0 - train, val=val, seed=seed + r) for r in range(repeats)]
