"""`mtlkit reproduce transfer`: Wu, Zhang & Ré, "Understanding and Improving Information Transfer in Multi-Task
Learning" (ICLR 2020) on the data available here.

Parts (``--parts``):

* ``synthetic`` — Fig. 3 (target task 1 with the R_i Q_i D_i construction of §2.3; MTL − STL validation MSE of task
  1 against the source task's rows, for a source with the same covariance / other singular values / other
  rotation) and Fig. 8 (MTL − STL against the cosine distance of the two tasks' models; linear and ReLU,
  regression and classification). Shared module of capacity r = 1, batched over all settings at once; each figure
  is an effect against a knob with one fixed solver for MTL and STL alike (no tuning on either side).
* ``noise`` — Algorithm 2 under label noise (the ChestX-ray14 ablation of §3.3 / App. C.5) on the embedded 8×8
  digits as one-vs-rest tasks with one shared input: pairs of tasks, 20% of one task's training labels flipped,
  SVD re-weighted vs unweighted hard-share, AUC on clean test labels. Each weighting is tuned with the same
  number of TPE trials (`mtlkit.experiments.tuning.tune` with the weights in the objective) on the first pair's
  validation rows, the choice then trained on every pair.
* ``sentiment`` — the six sentence sets (`mtlkit.datasets.sentiment`): STL vs hard-share, each tuned with the same
  trials (`tune` + `train_tuned`); covariance alignment (Algorithm 1, two phases: the tuned hard-share, then R + heads
  with the shared module fixed) vs the same second phase without R, each phase-2 variant tuned with the same
  trials (`tpe_search`, the alignment's on/off switch one of its choices); the capacity sweep of §3.3 (Fig. 6, one
  hyper-parameter on purpose, each method at its own tuned training settings); the covariance similarity (Eq. 5)
  of all 15 task pairs before vs after alignment (Fig. 7); transfer from SST to the other five tasks with and
  without alignment (Fig. 5b), each variant tuned with the same trials.

`claim_rows` turns the measurements into the claims ledger (`mtlkit.experiments.claims`), one verdict rule for all.

Modules: ``base`` (name, seeds, budgets, the step cache), ``data`` (generators), ``solvers``, the
experiments ``synthetic``, ``noise``, ``sentiment``, ``paper_claims`` (`claim_rows`), the results file's
``sections`` and ``sentiment_section``, and ``command`` (options, `Settings`, `run`); every public name is
re-exported here.
"""

from __future__ import annotations

from mtlkit.experiments.reproduce.transfer.base import (
    CACHE_FORMAT,
    CACHE_STATS,
    DEFAULT_TRIALS,
    DESCRIPTION,
    NAME,
    OUT_NAME,
    PAPER,
    PARTS,
    QUICK_TRIALS,
    SEED,
    SOURCE,
    cached,
)
from mtlkit.experiments.reproduce.transfer.command import Settings, add_arguments, run
from mtlkit.experiments.reproduce.transfer.data import (
    CovarianceConstruction,
    NoiseTask,
    covariance_construction,
    flip_labels,
    noise_pairs,
    noise_task,
    random_orthogonal,
    unit_with_cosine,
)
from mtlkit.experiments.reproduce.transfer.noise import (
    NOISE_FIXED,
    NOISE_SHARES,
    R1_ARCH,
    NoiseResult,
    noise_experiment,
)
from mtlkit.experiments.reproduce.transfer.paper_claims import (
    FIG8_PANELS,
    PAPER_CAPACITY_GAP,
    PAPER_MTL_GAIN,
    PAPER_NOISE,
    claim_rows,
    fig3_panel,
)
from mtlkit.experiments.reproduce.transfer.sections import FIG3_PANELS, SOURCE_NAMES
from mtlkit.experiments.reproduce.transfer.sentiment import (
    LEVEL_GRID,
    LONG_FACTOR,
    PHASE2,
    SENT_EMBED,
    SENT_METHODS,
    SENT_TRAIN,
    SENT_WIDTH,
    SENT_WIDTHS,
    TRANSFER_SOURCE,
    TRANSFER_VARIANTS,
    SentimentResult,
    level_check,
    sentiment_experiment,
)
from mtlkit.experiments.reproduce.transfer.sentiment_section import METHOD_LABELS, PAPER_CAPACITY, PAPER_OVERALL
from mtlkit.experiments.reproduce.transfer.solvers import (
    ALIGN_HP,
    NOISE_VARIANTS,
    SIM_ROWS,
    TRANSFER_HP,
    best_where,
    embedding_alignment,
    embedding_transfer,
    fit_shared_gd,
    linear_mtl_als,
    noise_weights,
    pair_similarities,
    predict_shared,
    shared_inputs,
    stl_embeddings,
    tpe_search,
)
from mtlkit.experiments.reproduce.transfer.synthetic import (
    FIG8_SETTINGS,
    RELU_CLASS_THRESHOLD,
    Fig3Result,
    Fig8Result,
    fig3_experiment,
    fig8_experiment,
)

__all__ = [
    "ALIGN_HP", "CACHE_FORMAT", "CACHE_STATS", "CovarianceConstruction", "DEFAULT_TRIALS", "DESCRIPTION",
    "FIG3_PANELS", "FIG8_PANELS", "FIG8_SETTINGS", "Fig3Result", "Fig8Result", "LEVEL_GRID", "LONG_FACTOR",
    "METHOD_LABELS", "NAME", "NOISE_FIXED", "NOISE_SHARES", "NOISE_VARIANTS", "NoiseResult", "NoiseTask",
    "OUT_NAME", "PAPER", "PAPER_CAPACITY", "PAPER_CAPACITY_GAP", "PAPER_MTL_GAIN", "PAPER_NOISE", "PAPER_OVERALL",
    "PARTS", "PHASE2", "QUICK_TRIALS", "R1_ARCH", "RELU_CLASS_THRESHOLD", "SEED", "SENT_EMBED", "SENT_METHODS",
    "SENT_TRAIN", "SENT_WIDTH", "SENT_WIDTHS", "SIM_ROWS", "SOURCE", "SOURCE_NAMES", "SentimentResult", "Settings",
    "TRANSFER_HP", "TRANSFER_SOURCE", "TRANSFER_VARIANTS", "add_arguments", "best_where", "cached", "claim_rows",
    "covariance_construction", "embedding_alignment", "embedding_transfer", "fig3_experiment", "fig3_panel",
    "fig8_experiment", "fit_shared_gd", "flip_labels", "level_check", "linear_mtl_als", "noise_experiment",
    "noise_pairs", "noise_task", "noise_weights", "pair_similarities", "predict_shared", "random_orthogonal", "run",
    "sentiment_experiment", "shared_inputs", "stl_embeddings", "tpe_search", "unit_with_cosine",
]
