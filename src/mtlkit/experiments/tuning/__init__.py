"""Fair-budget hyper-parameter tuning: every method gets the same number of trials over its declared search space
(`registry.search_space`), drawn by Optuna's TPE with a seeded sampler and scored on validation rows only.

``tune(method, splits, trials=N, seed=S)`` returns a `TuningResult`: the selected configuration(s), every trial
(parameters, value, state, seconds), the budget actually used, the space searched, and the values that ended on
the edge of their space. `train_tuned` then trains (or reuses) the selected configuration on every split.

- Objective: the validation primary metric (RMSE, error %, cross-entropy; or ``metric``), mean over tasks.
  ``selection="first"``: tuned on the first split's validation part, the chosen configuration then trained on
  every split (``trials`` runs). ``selection="each"``: tuned on each split's own validation part
  (``trials × splits`` runs), each split with its own configuration.
- The first trial is the method's defaults (with the caller's fixed values), so tuning never selects a
  configuration worse on validation than the defaults. A default outside the declared space is added to it.
- A `Space` with an ``off`` value (λ = 0) is two Optuna parameters: a categorical switch ``NAME:off`` in
  {off, on} and, when on, the range itself under ``NAME``; so "off" is a candidate like any other.
- Pruning (``pruner="median"``): Optuna's MedianPruner on the per-epoch task-weighted validation loss,
  reported by the Trainer's ``epoch_callback``; a pruned trial counts toward the budget. Closed-form methods
  report no epochs and are never pruned.
- ``time_budget``: seconds per method (all tuned splits together); when it runs out, no further trial starts
  (each tuned split runs at least its defaults trial) and the result says how many ran.
- ``widen=N``: if the selected value of a dimension lies on the edge of its space (`Space.edge`), search again
  (``widen_trials`` more trials, default half the budget) with that dimension widened (`Space.widened`, never past
  the hyper-parameter's valid bounds), up to N times. Each widening round is a new Optuna study (a categorical
  space cannot change within a study) seeded with the earlier rounds' trials, so TPE keeps what it learnt; the
  extra trials are counted and stated ("24 trials + 12 after widening lam").
- ``storage``: an Optuna RDB URL (the sweep storage, e.g. ``sqlite:///results/sweeps.sqlite`` or PostgreSQL).
  Trials are enqueued up front and claimed atomically as in `mtlkit.experiments.sweep`, so several processes
  calling the same ``tune(...)`` share one budget exactly (none runs a trial twice, none adds one), and a tuning
  that was stopped continues where it stopped. Without it, an in-memory storage.

The package's modules: `space` (spaces <-> Optuna parameters), `result` (`TuningResult` and its records),
`trials` (one round's study and trials) and `search` (`tune`, `tuned_run`, `train_tuned`); every name is
re-exported here.
"""

from mtlkit.experiments.tuning.result import (
    FORMAT,
    PRUNE_STARTUP_TRIALS,
    PRUNE_WARMUP_EPOCHS,
    SplitTuning,
    TrialRecord,
    TuningResult,
)
from mtlkit.experiments.tuning.search import PRUNERS, SELECTIONS, train_tuned, tune, tuned_run
from mtlkit.experiments.tuning.space import (
    OFF,
    OFF_SWITCH,
    ON,
    decode_params,
    distributions,
    encode,
    encode_params,
    params_text,
    space_text,
    suggest,
    with_defaults,
)
from mtlkit.experiments.tuning.trials import DEFINITION_ATTR, READY_ATTR

__all__ = [
    "DEFINITION_ATTR", "FORMAT", "OFF", "OFF_SWITCH", "ON", "PRUNERS", "PRUNE_STARTUP_TRIALS", "PRUNE_WARMUP_EPOCHS",
    "READY_ATTR", "SELECTIONS", "SplitTuning", "TrialRecord", "TuningResult", "decode_params", "distributions",
    "encode", "encode_params", "params_text", "space_text", "suggest", "train_tuned", "tune", "tuned_run",
    "with_defaults",
]
