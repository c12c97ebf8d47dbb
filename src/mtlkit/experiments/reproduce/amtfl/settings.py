"""The AMTFL reproduction's constants: the paper's numbers, seeds, budgets and each part's epochs and sizes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from mtlkit.data.splits import Split

DESCRIPTION = ("Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018): synthetic Fig. 4-5, Table 1 (School, MNIST Kang split), "
               "Tables 2-3 and Fig. 6 analogues on imbalanced MNIST")
PAPER = "Deep-AMTFL (Lee, Yang & Hwang, AAAI 2018)"
PARTS = ("synthetic", "school", "mnist", "deep")
SEED = 0
SYN_SEED = 0
TRIALS = 8  # --trials default: what fits a ~35 min run on 2 shared CPU cores (measured; see the results file)
SYN_TRIALS = 32  # --syn-trials default: the synthetic table's models train in about a second each
QUICK_TRIALS = 2
WIDEN = 1  # one more round (half the trials, counted) past a selected value on the edge of its space
CACHE_FORMAT = "mtlkit-amtfl-tuned/1"
# Table 1 (RMSE for School, error % for MNIST), the paper's ± (its "standard error for 95% CI").
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "STL": {"mnist": (14.8, 0.6), "school": (10.16, 0.08)},
    "Go-MTL": {"mnist": (14.4, 1.3), "school": (9.87, 0.06)},
    "AMTL": {"mnist": (12.9, 1.4), "school": (10.13, 0.08)},
    "NN": {"mnist": (10.1, 1.0), "school": (9.89, 0.03)},
    "MT-NN": {"mnist": (8.84, 1.1), "school": (9.91, 0.04)},
    "AMTFL": {"mnist": (8.52, 1.1), "school": (9.89, 0.09)},
}
# Table 2 (average per-class error %, CIFAR-100 / AWA-C / ImageNet-352) and Table 3 (AWA transfer, error %).
PAPER_TABLE2: dict[str, tuple[float, float, float]] = {
    "CNN": (19.65, 11.36, 66.54), "MT-CNN": (19.65, 10.54, 65.69), "Deep-AMTL": (19.51, 10.27, 65.61),
    "Deep-AMTFL": (19.20, 9.96, 64.49),
}
PAPER_TABLE2_DATA = ("CIFAR-100", "AWA-C", "ImageNet-352")
PAPER_TABLE3: dict[str, float] = {"CNN": 5.00, "Deep-AMTL": 5.00, "Deep-AMTFL": 4.33}
PAPER_FIG6 = (41, 50)  # Deep-AMTFL better than the base CNN on 41 of AWA's 50 classes

ScoreFn = Callable[[Any, Split, str], np.ndarray]
Spec = tuple[str, dict[str, Any]]  # (registry method, values fixed for it by the protocol)


def _settings(quick: bool) -> dict[str, Any]:
    """Epoch budgets and sizes of every part (the quick smoke run shrinks all of them)."""
    if quick:
        return {"syn_epochs": 3, "school_epochs": 2, "mnist_epochs": 2,
                "deep_epochs": 1, "deep_counts": (20, 18, 16, 14, 12, 10, 8, 6, 4, 2), "deep_val": 5,
                "deep_test": 10, "scaling_T": (4, 8), "transfer_train": 5, "go_iters": 2,
                "go_inner": 10, "widen": 0}
    return {"syn_epochs": 300, "school_epochs": 60, "mnist_epochs": 100, "deep_epochs": 60,
            "deep_counts": (200, 180, 160, 140, 120, 100, 80, 60, 40, 20),
            "deep_val": 30, "deep_test": None, "scaling_T": (12, 24, 48), "transfer_train": 10, "go_iters": 20,
            "go_inner": 100, "widen": WIDEN}


CNN_ARCH = {"channels": [8, 16], "hidden": [64]}
SOURCE_DIGITS = tuple(range(7))  # Table 3 analogue: train on digits 0-6, transfer to 7-9
TARGET_DIGITS = (7, 8, 9)


def _trials(args: argparse.Namespace) -> tuple[int, int]:
    """(trials of the real-data tables, trials of the synthetic table)."""
    from mtlkit.errors import MtlkitError

    for name in ("trials", "syn_trials"):
        if getattr(args, name) < 1:
            raise MtlkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.quick:
        return min(args.trials, QUICK_TRIALS), min(args.syn_trials, QUICK_TRIALS)
    return args.trials, args.syn_trials
