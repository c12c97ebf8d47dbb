"""`school` (139 schools, exam-score regression, Argyriou's 10 splits) and `school-3class` (TOMATO's bins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.datasets._paths import data_file

SCHOOL = "school/argyriou_splits/school_b.mat"
SPLIT = "school/argyriou_splits/school_{i}_indexes.mat"


def read_school(data_dir: str | Path | None) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple]]:
    """Per-school features [n_t, 28] (27 attributes + bias), scores, and the 10 Argyriou splits as
    per-task (train, test) local row indices."""
    from scipy.io import loadmat

    m = loadmat(str(data_file(data_dir, SCHOOL, "school")))
    x = m["x"].T.astype(np.float64)
    y = m["y"].ravel().astype(np.float64)
    starts = m["task_indexes"].ravel().astype(np.int64) - 1
    ends = np.append(starts[1:], len(y))
    Xs = [x[s:e] for s, e in zip(starts, ends, strict=True)]
    ys = [y[s:e] for s, e in zip(starts, ends, strict=True)]
    task_of = np.repeat(np.arange(len(starts)), ends - starts)
    splits = []
    for i in range(1, 11):
        s = loadmat(str(data_file(data_dir, SPLIT.format(i=i), "school")))
        parts = []
        for key in ("tr", "tst"):
            cols = s[key].ravel().astype(np.int64) - 1
            parts.append([cols[task_of[cols] == t] - starts[t] for t in range(len(starts))])
        splits.append((parts[0], parts[1]))
    return Xs, ys, splits


def load_school(data_dir: str | Path | None = None) -> MultiTaskData:
    Xs, ys, splits = read_school(data_dir)
    return MultiTaskData.from_tasks(Xs, ys, kind="regression", names=[f"school{t + 1}" for t in range(len(Xs))],
                                    name="school", predefined_splits=splits,
                                    notes=["ILEA exam scores, 139 schools, 28 features (27 + bias); "
                                           "Argyriou et al.'s 10 train/test splits (validation carved from train)"])


def load_school_3class(data_dir: str | Path | None = None) -> MultiTaskData:
    Xs, ys, _ = read_school(data_dir)
    bins = [np.digitize(y, [10, 20]).astype(np.float64) for y in ys]  # [0,10) -> 0, [10,20) -> 1, [20,71) -> 2
    return MultiTaskData.from_tasks(Xs, bins, kind="multiclass", n_classes=3,
                                    names=[f"school{t + 1}" for t in range(len(Xs))], name="school-3class",
                                    notes=["TOMATO's School: score bins [0,10), [10,20), [20,71) as 3 classes; "
                                           "random splits"])
