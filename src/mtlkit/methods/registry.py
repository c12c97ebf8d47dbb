"""The one registry of named methods. Registering a name twice raises; unknown names list the known ones."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch

from mtlkit.data.spec import DataInfo
from mtlkit.errors import MtlkitError, UnknownNameError
from mtlkit.hparams import Space
from mtlkit.methods.base import MethodInfo, MethodParts

_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method; its name and aliases must be new. An entry declaring ``row_separable`` gets a build that marks
    the parts it returns (`MethodParts.row_separable`)."""
    for n in (info.name, *info.aliases):
        if n in _REGISTRY or n in _ALIASES:
            raise ValueError(f"method name {n!r} is already registered")
    if info.row_separable:
        info = dataclasses.replace(info, build=_separable_build(info.build))
    _REGISTRY[info.name] = info
    for a in info.aliases:
        _ALIASES[a] = info.name
    return info


def _separable_build(build: Callable[[DataInfo, dict[str, Any]], MethodParts]
                     ) -> Callable[[DataInfo, dict[str, Any]], MethodParts]:
    @functools.wraps(build)  # keeps the defining module (the docs order methods by it)
    def separable(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
        parts = build(info, hp)
        parts.row_separable = True
        return parts

    return separable


def get(name: str) -> MethodInfo:
    """The entry for ``name`` (or one of its aliases); ``"method+combiner"`` (e.g. ``srdml+pcgrad``) is the
    method trained with a named gradient combiner (`mtlkit.optim.combiners.COMBINERS`) on its shared parameters."""
    _ensure_loaded()
    key = _ALIASES.get(name, name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if "+" in name:
        return _compose(name)
    raise UnknownNameError(f"unknown method {name!r}; known methods: {', '.join(names())}")


def _compose(name: str) -> MethodInfo:
    """The derived entry for ``"base+combiner"``: ``base``'s build with its combiner replaced (and the combiner's
    hyper-parameters and training state added). Not registered: `names` lists only the base methods."""
    from mtlkit.optim.combiners import COMBINERS

    base_name, _, comb = name.rpartition("+")
    if comb not in COMBINERS:
        raise UnknownNameError(f"unknown gradient combiner {comb!r} in {name!r}; known combiners: "
                               f"{', '.join(COMBINERS)} (use them as METHOD+COMBINER, e.g. srdml+pcgrad)")
    if "+" in base_name:
        raise UnknownNameError(f"{name!r} names more than one gradient combiner; use METHOD+COMBINER")
    base = get(base_name)
    if base.name in COMBINERS:
        raise UnknownNameError(f"{base.name!r} already is a method trained with a combiner; compose a base method "
                               f"instead, e.g. hard-share+{comb}")
    if base.fit is not None:
        raise MtlkitError(f"method {base.name!r} is not trained by SGD (it has its own solver), so it cannot take "
                          f"the gradient combiner {comb!r}")
    spec = COMBINERS[comb]
    own = set(spec.defaults) - set(base.defaults)
    spec_declared = {p.name for p in spec.params}
    params = (*(p for p in base.params if p.name not in spec_declared), *spec.params)

    def build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
        parts = base.build(info, {k: v for k, v in hp.items() if k not in own})
        c = spec.make({k: hp[k] for k in spec.defaults if k in hp})
        parts.combiner = c
        c_state, c_load = getattr(c, "state", None), getattr(c, "load_state", None)
        if c_state is not None and c_load is not None:
            b_state, b_load = parts.state, parts.load_state
            c_keys = set(c_state())
            prefix = f"{getattr(c, 'name', comb)}."  # a stateful combiner's keys (some appear after its first step)

            def mine(k: str) -> bool:
                return k in c_keys or k.startswith(prefix)

            def state() -> dict[str, torch.Tensor]:
                return {**(b_state() if b_state is not None else {}), **c_state()}

            def load_state(st: dict[str, torch.Tensor]) -> None:
                if b_load is not None:
                    b_load({k: v for k, v in st.items() if not mine(k)})
                c_load({k: v for k, v in st.items() if mine(k)})

            parts.state, parts.load_state = state, load_state
        return parts

    return dataclasses.replace(
        base, name=f"{base.name}+{comb}", summary=f"{base.summary} Trained with {comb}: {spec.summary}",
        paper=f"{base.paper}; {spec.paper}", build=build, defaults={**base.defaults, **spec.defaults},
        params=params, needs=tuple(dict.fromkeys((*base.needs, *spec.needs))), aliases=())


def names() -> list[str]:
    """All registered method names (aliases not included), in registration order."""
    _ensure_loaded()
    return list(_REGISTRY)


def describe(name: str) -> dict[str, Any]:
    """Paper, summary, typed hyper-parameters, default grid, tuning space, supported task kinds, needs.

    ``hyperparameters`` maps each name to its declaration (`HParam.describe`: type, default, valid values, doc,
    tuning space); ``defaults`` maps each name to its default alone."""
    from mtlkit.methods.params import method_params

    info = get(name)
    params = method_params(info)
    return {"name": info.name, "summary": info.summary, "paper": info.paper,
            "hyperparameters": {k: p.describe() for k, p in params.items()},
            "defaults": {k: p.default for k, p in params.items()},
            "grid": {kind: info.grid_for(kind) for kind in info.kinds},
            "search_space": {k: p.search_text() for k, p in params.items() if p.space is not None},
            "kinds": list(info.kinds), "needs": list(info.needs), "aliases": list(info.aliases),
            "training": "closed form / own solver" if info.fit is not None else
            "SGD (Trainer)" + (f", can start from a trained {info.pretrain} model" if info.pretrain else "")}


def search_space(name: str, kind: str | None = None) -> dict[str, Space]:
    """The equal-budget tuning space of a method: every declared hyper-parameter with a `Space` (the Trainer's
    ``lr``, ``optimizer``, ``momentum`` for SGD-trained methods, and the method's own), by name. With ``kind``
    (a task kind), only the parameters tuned for that kind (`HParam.kinds`): ``stl-linear`` searches ``alpha``
    for regression and ``C`` for classification; without it, every parameter with a space."""
    from mtlkit.methods.params import method_params

    return {k: p.space for k, p in method_params(get(name)).items() if p.space is not None and p.tuned_for(kind)}


def _ensure_loaded() -> None:
    """Import every module of `mtlkit.methods`: a method module registers its methods on import, so a new
    method needs no edit here."""
    import importlib
    import pkgutil

    import mtlkit.methods as pkg

    first = ["baselines", "linear"]  # the reference points lead the listing; the rest by module name
    rest = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if m.name not in ("base", "registry", *first) and not m.name.startswith("_"))
    for name in first + rest:
        importlib.import_module(f"mtlkit.methods.{name}")
