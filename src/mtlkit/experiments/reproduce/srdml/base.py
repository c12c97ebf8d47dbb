"""The SRDML reproduction's name, seeds, budgets, experiment names and the paper's published numbers (Tables 2-4)."""

from __future__ import annotations

DESCRIPTION = ("SRDML (Bai & Zhao, KDD 2022): synthetic Fig. 4b-d and Table 3; Tables 2 and 4 on CIFAR-MTL's "
               "construction from MNIST images")
PAPER = "SRDML (Bai & Zhao, KDD 2022)"
SOURCE = "srdml.md"
PARTS = ("synthetic", "images")
SEED = 0
SYN_SEED = 0
IMG_SEED = 0
STL_IMG = "stl-cnn"  # STL of the image part: T copies of the CNN
DEFAULT_TRIALS = 8   # TPE trials per method (the same for every method of a table); fits ~35 min on 2 CPU cores
QUICK_TRIALS = 2
SMALL_M = 20         # the diagnosis' under-determined synthetic data: 20 rows per task (≈ 13 training rows < d = 20)


# Table 2, CIFAR-MTL column: accuracy, AUC, precision, recall (%); our method name -> (paper name, numbers).
TABLE2_METHODS: list[tuple[str, str]] = [
    ("stl-cnn", "STL"), ("hard-share", "Hard-Share"), ("lasso", "Lasso"), ("l21", "L21"), ("rmtl", "RMTL"),
    ("mrn", "MRN"), ("mmoe", "MMoE"), ("ple", "PLE"), ("mgda-ub", "MGDA-UB"), ("pcgrad", "PCGrad"),
    ("srdml", "SRDML"), ("srdml+pcgrad", "SRDML (w/. PCGrad)"),
]
PAPER_TABLE2: dict[str, tuple[float, float, float, float]] = {
    "stl-cnn": (92.65, 66.20, 71.32, 69.83), "hard-share": (94.70, 95.56, 76.30, 72.28),
    "lasso": (91.48, 86.64, 68.90, 24.74), "l21": (91.50, 87.58, 68.01, 29.32), "rmtl": (92.28, 85.65, 61.54, 28.15),
    "mrn": (94.51, 96.67, 79.94, 76.95), "mmoe": (93.53, 93.17, 73.42, 69.32), "ple": (94.01, 93.32, 75.26, 70.15),
    "mgda-ub": (90.74, 84.38, 57.80, 24.10), "pcgrad": (95.11, 96.69, 79.03, 74.82),
    "srdml": (95.82, 96.43, 81.22, 75.93), "srdml+pcgrad": (96.03, 96.72, 82.59, 77.01),
}
TABLE2_METRICS = ("accuracy", "auc", "precision", "recall")
METRIC_SCALE = {"accuracy": 1.0, "auc": 100.0, "precision": 100.0, "recall": 100.0}  # all reported in %
SHALLOW = ("lasso", "l21", "rmtl")
DEEP = ("hard-share", "mrn", "mmoe", "ple", "mgda-ub", "pcgrad", "srdml", "srdml+pcgrad")
# Table 3 (contradicting tasks): λ -> (RMSE, MAE).
PAPER_TABLE3: dict[float, tuple[float, float]] = {
    1.0: (2.726, 2.198), 0.1: (1.550, 1.260), 0.01: (1.405, 1.127), 0.001: (1.393, 1.127), 0.0: (1.392, 1.126),
}
# Table 4 (accuracy on CIFAR-MTL): without ω, with ω.
PAPER_TABLE4 = (94.92, 95.82)
# λ sweep of Fig. 4d: the paper's grid {1e-3, 5e-3, ..., 0.5, 1} plus 0 (no regulariser).
LAMBDAS = (0.0, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)
TABLE3_LAMBDAS = (1.0, 0.1, 0.01, 0.001, 0.0)
SMALL_M_LAMBDAS = (0.0, 1e-2, 0.1, 0.5, 1.0)
IMG_LAMBDAS = (1e-3, 1e-2, 0.1)  # the image diagnosis: SRDML's tuned configuration with these λ (0.1: the authors')
T4_LAM = 0.1  # Table 4 with the regulariser on: the authors' CIFAR λ (their train.py's μ), METHOD_NOTES §3
GROUPS = {2: "twin pairs", 1: "same-base pairs (not twins)", 0: "cross-base pairs"}
CONTRA_GROUPS = {2: "same base, same sign", 1: "same base, opposite sign (incl. twins)", 0: "cross-base pairs"}
EXP_SYN = "reproduce-srdml-synthetic-tuned"
EXP_IMG = "reproduce-srdml-images-tuned"
EXP_IMG_FIXED = "reproduce-srdml-images-tuned-fixed-omega"
