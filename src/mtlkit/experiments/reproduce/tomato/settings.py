"""The TOMATO reproduction's constants (Table 3's methods and data sets with the paper's names and numbers, seeds,
the quick smoke run's sizes) and the options every part reads."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = "TOMATO (Zhang & Lee, CIKM 2020) Tables 3-4 and Fig. 4 on synthetic, mnist-mtl, school-3class"

# Table 3's column order, with the paper's names.
METHODS: list[tuple[str, str]] = [
    ("stl", "Separate"), ("hard-share", "Shared-bottom"), ("single", "Single"), ("inter-task-l2", "Inter-task-l2"),
    ("dmtrl-tucker", "DMTRL-Tucker"), ("mrn", "MRN"), ("cross-stitch", "Cross-stitch"), ("mmoe", "MMoE"),
    ("tomato-el", "TOMATO-el"), ("tomato-ex", "TOMATO-ex"),
]
DATASETS = ("tomato-synthetic", "mnist-mtl", "school-3class")
PAPER_NAMES = {"tomato-synthetic": "Synthetic", "mnist-mtl": "MNIST-MTL", "school-3class": "School"}
# Table 3 (misclassification %), same order as METHODS.
PAPER_TABLE3: dict[str, list[float]] = {
    "tomato-synthetic": [16.55, 14.51, 14.24, 14.21, 15.08, 14.47, 14.69, 14.40, 14.09, 14.10],
    "mnist-mtl": [2.59, 2.68, 49.98, 2.49, 2.60, 2.68, 2.68, 2.59, 2.44, 2.32],
    "school-3class": [50.95, 50.01, 51.80, 50.41, 49.34, 51.06, 50.22, 48.18, 45.00, 46.72],
}
# Table 4 (mean per-task relative gain in accuracy over Separate, %), same order as METHODS.
PAPER_TABLE4: dict[str, list[float]] = {
    "tomato-synthetic": [0.00, 2.44, 2.75, 2.79, 1.75, 2.49, 2.23, 2.57, 2.94, 2.92],
    "mnist-mtl": [0.00, -0.09, -48.66, 0.10, -0.01, -0.08, -0.08, 0.00, 0.16, 0.28],
    "school-3class": [0.00, 3.18, -2.04, 1.96, 5.56, -0.05, 2.76, 8.96, 16.74, 12.93],
}
SEED = 0
QUICK_SYNTHETIC: dict[str, Any] = {"n_per_task": 150, "d": 16}
QUICK_SPLITS = 2  # --quick: at most 2 splits, one-point grids, the real data sets cut by `quick_subset`
CASE_LAMBDAS = (1e-3, 1e-2, 3e-2)  # the Fig. 4 case study's extra λ values


def _cached_only(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "cached_only", False))


def _trials(args: argparse.Namespace) -> int:
    return 2 if args.quick else int(args.trials)


PAPER = "TOMATO (Zhang & Lee, CIKM 2020)"
