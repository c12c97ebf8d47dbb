"""Declared search spaces (`Space`) <-> Optuna parameters: distributions, suggesting a trial's values (a space
with an ``off`` value through its categorical on/off switch), encoding and decoding a configuration, the defaults
added to a space, and the spaces and values in words."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from mtlkit.hparams import Space

OFF_SWITCH = ":off"          # the categorical switch of a space with an ``off`` value is NAME + OFF_SWITCH
OFF, ON = "off", "on"


# ---------------------------------------------------------------------- spaces <-> Optuna parameters
def encode(value: Any) -> Any:
    """Optuna categorical choices must be scalars: lists and dicts travel as their JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _decode_choice(space: Space, raw: Any) -> Any:
    for c in space.choices:
        if encode(c) == raw and type(encode(c)) is type(raw):
            return list(c) if isinstance(c, tuple) else c
    return raw


def distributions(space: Mapping[str, Space]) -> dict[str, Any]:
    """The Optuna distribution of every parameter the space suggests (switches of ``off`` values included)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None:
            out[name + OFF_SWITCH] = CategoricalDistribution([OFF, ON])
        if sp.kind == "choice":
            out[name] = CategoricalDistribution([encode(c) for c in sp.choices])
        elif sp.kind == "int":
            out[name] = IntDistribution(int(sp.low), int(sp.high), log=sp.log)  # type: ignore[arg-type]
        else:
            out[name] = FloatDistribution(float(sp.low), float(sp.high),  # type: ignore[arg-type]
                                          log=sp.kind == "log" or sp.log)
    return out


def suggest(trial: Any, space: Mapping[str, Space]) -> dict[str, Any]:
    """The trial's hyper-parameter values: for a space with an ``off`` value, the switch first, then (when on)
    the range; lists come back as lists."""
    raw: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None:
            raw[name + OFF_SWITCH] = trial.suggest_categorical(name + OFF_SWITCH, [OFF, ON])
            if raw[name + OFF_SWITCH] == OFF:
                continue
        if sp.kind == "choice":
            raw[name] = trial.suggest_categorical(name, [encode(c) for c in sp.choices])
        elif sp.kind == "int":
            raw[name] = trial.suggest_int(name, int(sp.low), int(sp.high), log=sp.log)  # type: ignore[arg-type]
        else:
            raw[name] = trial.suggest_float(name, float(sp.low), float(sp.high),  # type: ignore[arg-type]
                                            log=sp.kind == "log" or sp.log)
    return decode_params(raw, space)


def decode_params(raw: Mapping[str, Any], space: Mapping[str, Space]) -> dict[str, Any]:
    """Hyper-parameter values from a trial's Optuna parameters (switches folded in: ``lam:off=off`` → lam=0)."""
    out: dict[str, Any] = {}
    for name, sp in space.items():
        if sp.off is not None and raw.get(name + OFF_SWITCH) == OFF:
            out[name] = sp.off
        elif name in raw:
            out[name] = _decode_choice(sp, raw[name]) if sp.kind == "choice" else raw[name]
    for name, v in raw.items():  # parameters of an older round's space that this one lacks
        base = name[: -len(OFF_SWITCH)] if name.endswith(OFF_SWITCH) else name
        if base not in space and base not in out:
            out[base] = v
    return out


def encode_params(values: Mapping[str, Any], space: Mapping[str, Space]) -> dict[str, Any]:
    """The Optuna parameters of a configuration (to enqueue it); a value the space cannot hold is left out."""
    raw: dict[str, Any] = {}
    for name, sp in space.items():
        if name not in values:
            continue
        v = values[name]
        if sp.off is not None:
            if v == sp.off:
                raw[name + OFF_SWITCH] = OFF
                continue
            raw[name + OFF_SWITCH] = ON
        if sp.kind == "choice":
            if encode(_tuple(v)) in [encode(c) for c in sp.choices]:
                raw[name] = encode(_tuple(v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if (sp.kind == "log" or sp.log) and v <= 0:
                continue
            raw[name] = int(v) if sp.kind == "int" else float(v)
    return raw


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def with_defaults(space: Mapping[str, Space], defaults: Mapping[str, Any]) -> tuple[dict[str, Space], list[str]]:
    """The space with every default inside it (a choice added, a range stretched), so that the defaults can be
    the first trial; and a note for each one that had to be added."""
    out, notes = {}, []
    for name, sp in space.items():
        v = defaults.get(name)
        if v is None or (sp.off is not None and v == sp.off):
            out[name] = sp
            continue
        if sp.kind == "choice":
            if encode(_tuple(v)) not in [encode(c) for c in sp.choices]:
                sp = Space("choice", choices=(*sp.choices, _tuple(v)), off=sp.off)
                notes.append(f"{name}: the default {_fmt(v)} is not among the declared choices; added")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if (sp.kind == "log" or sp.log) and v <= 0:
                notes.append(f"{name}: the default {_fmt(v)} cannot lie in a log space; the first trial samples it")
            elif not float(sp.low) <= v <= float(sp.high):  # type: ignore[arg-type]
                lo, hi = min(float(sp.low), v), max(float(sp.high), v)  # type: ignore[arg-type]
                if sp.kind == "int":
                    lo, hi = math.floor(lo), math.ceil(hi)
                sp = Space(sp.kind, lo, hi, off=sp.off, log=sp.log)
                notes.append(f"{name}: the default {_fmt(v)} lies outside the declared range; range stretched to it")
        out[name] = sp
    return out, notes


def space_text(space: Mapping[str, Space]) -> str:
    """``lr log[0.0001, 0.3]; lam log[1e-05, 0.1] ∪ {0}``."""
    return "; ".join(f"{k} {s.text()}" for k, s in space.items()) or "(empty: defaults only)"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "the defaults"
