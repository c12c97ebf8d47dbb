"""Training hyper-parameters every SGD-trained method accepts (typed, with defaults and tuning spaces), and the
merge of a method's declared hyper-parameters with the values a caller gives.

It lives beside the registry (not in `mtlkit.train`) because the registry's ``describe`` / ``search_space`` need
the Trainer's declarations and the methods sit below the Trainer; `mtlkit.train.config` re-exports every name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mtlkit.errors import MtlkitError
from mtlkit.hparams import HParam, as_params, check_all, choice, log_range

TRAIN_PARAMS: tuple[HParam, ...] = (
    HParam("epochs", "int", 100, "passes over the largest task's training rows", low=1),
    HParam("batch_size", "int", 32, "rows per task per step (the same B for every task)", low=1),
    HParam("optimizer", "str", "adam", "the optimiser", choices=("adam", "sgd"), space=choice("adam", "sgd")),
    HParam("lr", "float", 1e-3, "r0: the initial learning rate", low=0.0, low_open=True,
           space=log_range(1e-4, 3e-1)),
    HParam("momentum", "float", 0.0, "SGD momentum (sgd only)", low=0.0, high=1.0, high_open=True,
           space=choice(0.0, 0.9)),
    HParam("weight_decay", "float", 0.0, "optimiser L2 on all parameters", low=0.0),
    HParam("lr_decay", "float", 1.0, "γ in r_i = r0·γ^(i/η); 1 = constant", low=0.0, low_open=True, high=1.0),
    HParam("decay_steps", "int", 1000, "η: steps per decay of the learning rate by γ", low=1),
    HParam("patience", "int", 20, "early stopping: epochs without a better validation loss (0 = off)", low=0),
)
TRAIN_DEFAULTS: dict[str, Any] = {p.name: p.default for p in TRAIN_PARAMS}


def method_params(entry: Any) -> dict[str, HParam]:
    """Every hyper-parameter a registered method accepts, typed: the method's own declarations, plus the
    Trainer's for SGD-trained methods (a method with its own ``fit`` takes only its own). A method that only
    changes a Trainer parameter's default (TOMATO's ``lr=0.1``) keeps the Trainer's type, range and space."""
    own = as_params(getattr(entry, "params", ()), entry.defaults)
    if entry.fit is not None:
        return own
    out = {p.name: p for p in TRAIN_PARAMS}
    for k, p in own.items():
        out[k] = dataclasses.replace(out[k], default=p.default) if k in out and not p.declared else p
    return out


def method_defaults(entry: Any) -> dict[str, Any]:
    """Every hyper-parameter a registered method accepts, with its default."""
    return {k: p.default for k, p in method_params(entry).items()}


def merge_hparams(defaults: dict[str, Any], given: dict[str, Any] | None, method: str,
                  params: Mapping[str, HParam] | None = None) -> dict[str, Any]:
    """Defaults overridden by ``given``; an unknown name is an error listing the known ones, and every given
    value is checked against its declaration (``params``, else the Trainer's for the Trainer's names)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise MtlkitError(f"unknown hyper-parameter(s) {', '.join(unknown)} for method {method!r}; "
                          f"known: {', '.join(sorted(defaults))}")
    decl = dict(params) if params is not None else {p.name: p for p in TRAIN_PARAMS if p.name in defaults}
    return {**defaults, **check_all(decl, given, method)}
