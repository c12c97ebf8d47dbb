"""The trace-norm reproduction's constants (Fig. 1's methods and names, the paper's γ, seeds, split fractions,
defaults and the quick smoke run's sizes), the options' validation, the fixed hyper-parameters and the splits."""

from __future__ import annotations

import argparse
from typing import Any

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.methods import registry
from mtlkit.train.config import method_defaults

DESCRIPTION = ("Trace-norm deep MTL (Yang & Hospedales, ICLR-W 2017) Fig. 1 on Omniglot: STL vs LAF / Tucker / TT "
               "(equal-budget tuning), test accuracy, training loss, norms over training, sharing strength by layer")

# Fig. 1's methods, in the paper's order, with the paper's names.
METHODS: list[tuple[str, str]] = [("stl-cnn", "STL"), ("trace-norm-laf", "LAF"), ("trace-norm-tucker", "Tucker"),
                                  ("trace-norm-tt", "TT")]
NAMES = dict(METHODS)
KIND_NAMES = {"laf": "LAF", "tucker": "Tucker", "tt": "TT"}
PAPER_GAMMA = 0.01  # the paper: "we set all γ = 0.01" (here the defaults trial of every trace-norm method)
PAPER = "Trace norm deep MTL (Yang & Hospedales, ICLR-W 2017)"
SEED = 0
EXPERIMENT = "reproduce-trace-norm"
# Per character (20 drawers): 10% training (the paper's 2 images), 10% validation (tuning and the best epoch;
# the paper has none), 80% test (the paper: 90%). `Split`: test first, then `VAL` of the rest.
TEST, VAL = 0.8, 0.5
# Training choices where the paper is silent (see `_protocol`), and the equal-budget tuning's trials.
DEFAULTS: dict[str, Any] = {"repeats": 5, "size": 35, "epochs": 50, "trials": 8, "batch_size": 32}
ABLATION_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "lr_decay", "decay_steps")  # a method's optimiser
WIDEN = 1  # one more round (trials // 2, counted) past a selected value on the edge of its space
QUICK: dict[str, Any] = {"repeats": 2, "size": 24, "epochs": 3, "trials": 2}
QUICK_ALPHABETS = ["Greek", "Latin", "Tagalog"]  # the smallest three: a fast smoke run


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """repeats, size, epochs, trials after ``--quick``; validated (a `MtlkitError` names the bad option)."""
    s = {"repeats": args.repeats, "size": args.size, "epochs": args.epochs, "trials": args.trials}
    if args.quick:
        s.update({k: min(s[k], v) for k, v in QUICK.items()})
    if s["repeats"] < 1 or s["epochs"] < 1 or s["trials"] < 1:
        raise MtlkitError(f"--repeats, --epochs and --trials must be >= 1, got {s['repeats']}, {s['epochs']} and "
                          f"{s['trials']}")
    if not 24 <= s["size"] <= 105:
        raise MtlkitError(f"--size must be in 24..105 (the paper's CNN needs at least 24x24 images), got {s['size']}")
    return s


def fixed_hparams(method: str, epochs: int) -> dict[str, Any]:
    """What every method of the table trains with and does not tune: the paper's CNN (fc 64; ``hidden`` is the mlp
    backbone's and unused), ``epochs`` epochs with no early stopping (``patience`` 0: the Trainer keeps the epoch
    with the lowest validation loss), batch 32 rows per task. The rest of the method's declared space is tuned."""
    from mtlkit.methods.trace_norm_mtl import ARCH_DEFAULTS

    known = set(method_defaults(registry.get(method)))
    hp = {"epochs": int(epochs), "patience": 0, "batch_size": DEFAULTS["batch_size"],
          "fc": list(ARCH_DEFAULTS["fc"]), "hidden": list(ARCH_DEFAULTS["hidden"])}
    return {k: v for k, v in hp.items() if k in known}


def make_splits(data: MultiTaskData, repeats: int, seed: int = SEED) -> list[Split]:
    """``repeats`` random per-task stratified splits (seed ``seed + r``): per character 10% training (2 of the 20
    drawers, as the paper), 10% validation, 80% test."""
    return [data.split(test=TEST, val=VAL, seed=seed + r) for r in range(repeats)]
