"""Training hyper-parameters every SGD-trained method accepts, with their defaults."""

from __future__ import annotations

from typing import Any

from mtlkit.errors import MtlkitError

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 100,          # passes over the largest task's training rows
    "batch_size": 32,       # rows per task per step (same B for every task)
    "optimizer": "adam",    # adam | sgd
    "lr": 1e-3,             # r0
    "momentum": 0.0,        # sgd only
    "weight_decay": 0.0,    # optimizer L2 on all parameters
    "lr_decay": 1.0,        # γ in r_i = r0·γ^(i/η); 1 = constant
    "decay_steps": 1000,    # η (steps)
    "patience": 20,         # early stopping: epochs without a better validation loss (0 = off)
}


def method_defaults(entry: Any) -> dict[str, Any]:
    """Every hyper-parameter a registered method accepts, with its default: the method's own, plus the
    Trainer's for SGD-trained methods (a method with its own ``fit`` takes only its own)."""
    return dict(entry.defaults) if entry.fit is not None else {**TRAIN_DEFAULTS, **entry.defaults}


def merge_hparams(defaults: dict[str, Any], given: dict[str, Any] | None, method: str) -> dict[str, Any]:
    """Defaults overridden by ``given``; an unknown name is an error listing the known ones."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise MtlkitError(f"unknown hyper-parameter(s) {', '.join(unknown)} for method {method!r}; "
                          f"known: {', '.join(sorted(defaults))}")
    out = {**defaults, **given}
    if "optimizer" in out and out["optimizer"] not in ("adam", "sgd"):
        raise MtlkitError(f"optimizer must be 'adam' or 'sgd', got {out['optimizer']!r}")
    for k in ("epochs", "batch_size"):
        if k in out and (not isinstance(out[k], int) or out[k] < 1):
            raise MtlkitError(f"{k} must be a positive integer, got {out[k]!r}")
    return out
