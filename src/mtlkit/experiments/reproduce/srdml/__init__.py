"""`mtlkit reproduce srdml`: SRDML (Bai & Zhao, KDD 2022) — the synthetic experiment (Fig. 4b-d: learned ω, per-task
improvement over STL, λ sensitivity), the contradicting tasks of Table 3, and Table 2 / Table 4 analogues on the
CIFAR-MTL construction (ten one-vs-rest tasks on the same images) built from the staged MNIST test images.

Every comparison of methods (Fig. 4c: SRDML vs STL; Table 2: the twelve methods; Table 4: ω learned vs fixed) runs
under the equal-budget protocol (`mtlkit.experiments.reproduce.protocol.tune_then_evaluate`): the same number of
TPE trials per method over its declared search space on split 0's validation rows. The λ sensitivity curves
(Fig. 4d, Table 3) stay sweeps of λ around SRDML's tuned configuration. `claim_rows` turns the measurements into
the claims ledger's rows, each verdict by `mtlkit.experiments.claims.verdict`.

Modules: ``base`` (seeds, budgets, the paper's numbers), ``helpers`` (shared by the parts), ``synthetic``
(Fig. 4b-d, Table 3), ``images`` (Tables 2 and 4), ``paper_claims`` (`claim_rows`) and ``command`` (options,
`run`); every public name is re-exported here.
"""

from __future__ import annotations

from mtlkit.experiments.reproduce.srdml.base import (
    CONTRA_GROUPS,
    DEEP,
    DEFAULT_TRIALS,
    DESCRIPTION,
    EXP_IMG,
    EXP_IMG_FIXED,
    EXP_SYN,
    GROUPS,
    IMG_LAMBDAS,
    IMG_SEED,
    LAMBDAS,
    METRIC_SCALE,
    PAPER,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PAPER_TABLE4,
    PARTS,
    QUICK_TRIALS,
    SEED,
    SHALLOW,
    SMALL_M,
    SMALL_M_LAMBDAS,
    SOURCE,
    STL_IMG,
    SYN_SEED,
    T4_LAM,
    TABLE2_METHODS,
    TABLE2_METRICS,
    TABLE3_LAMBDAS,
)
from mtlkit.experiments.reproduce.srdml.command import add_arguments, run
from mtlkit.experiments.reproduce.srdml.helpers import contradicting_groups, pair_group_means, paired, store_scores
from mtlkit.experiments.reproduce.srdml.images import image_level_check
from mtlkit.experiments.reproduce.srdml.paper_claims import claim_rows
from mtlkit.experiments.reproduce.srdml.synthetic import noise_floor

__all__ = [
    "CONTRA_GROUPS", "DEEP", "DEFAULT_TRIALS", "DESCRIPTION", "EXP_IMG", "EXP_IMG_FIXED", "EXP_SYN", "GROUPS",
    "IMG_LAMBDAS", "IMG_SEED", "LAMBDAS", "METRIC_SCALE", "PAPER", "PAPER_TABLE2", "PAPER_TABLE3", "PAPER_TABLE4",
    "PARTS", "QUICK_TRIALS", "SEED", "SHALLOW", "SMALL_M", "SMALL_M_LAMBDAS", "SOURCE", "STL_IMG", "SYN_SEED",
    "T4_LAM", "TABLE2_METHODS", "TABLE2_METRICS", "TABLE3_LAMBDAS", "add_arguments", "claim_rows",
    "contradicting_groups", "image_level_check", "noise_floor", "pair_group_means", "paired", "run", "store_scores",
]
