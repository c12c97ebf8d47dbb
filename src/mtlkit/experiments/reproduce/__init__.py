"""`mtlkit reproduce NAME`: re-run a paper's experiments and write its tables beside the paper's numbers.

Each reproduction is a module here with ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args, ctx)``
returning the files it wrote; `common` holds what they share (provenance header, paper-vs-ours tables,
the two-phase protocol: select on one split's validation part, then evaluate on every split)."""

from __future__ import annotations

import importlib
from types import ModuleType

from mtlkit.errors import UnknownNameError

REPRODUCTIONS: dict[str, str] = {
    "tomato": "mtlkit.experiments.reproduce.tomato",
    "trace-norm": "mtlkit.experiments.reproduce.trace_norm",
    "transfer": "mtlkit.experiments.reproduce.transfer",
    "amtfl": "mtlkit.experiments.reproduce.amtfl",
    "srdml": "mtlkit.experiments.reproduce.srdml",
    "affinity": "mtlkit.experiments.reproduce.affinity",
    "aggregators": "mtlkit.experiments.reproduce.aggregators",
    "claims": "mtlkit.experiments.reproduce.ledger",
    "all": "mtlkit.experiments.reproduce.everything",
}


def get(name: str) -> ModuleType:
    """The module of reproduction ``name``."""
    if name not in REPRODUCTIONS:
        raise UnknownNameError(f"unknown reproduction {name!r}; known: {', '.join(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])
