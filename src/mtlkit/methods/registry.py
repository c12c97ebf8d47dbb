"""The one registry of named methods. Registering a name twice raises; unknown names list the known ones."""

from __future__ import annotations

from typing import Any

from mtlkit.errors import UnknownNameError
from mtlkit.methods.base import MethodInfo

_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method; its name and aliases must be new."""
    for n in (info.name, *info.aliases):
        if n in _REGISTRY or n in _ALIASES:
            raise ValueError(f"method name {n!r} is already registered")
    _REGISTRY[info.name] = info
    for a in info.aliases:
        _ALIASES[a] = info.name
    return info


def get(name: str) -> MethodInfo:
    """The entry for ``name`` (or one of its aliases)."""
    _ensure_loaded()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    return _REGISTRY[key]


def names() -> list[str]:
    """All registered method names (aliases not included), in registration order."""
    _ensure_loaded()
    return list(_REGISTRY)


def describe(name: str) -> dict[str, Any]:
    """Paper, summary, hyper-parameters with defaults, default grid, supported task kinds, needs."""
    from mtlkit.train.config import method_defaults

    info = get(name)
    hp = method_defaults(info)
    return {"name": info.name, "summary": info.summary, "paper": info.paper, "hyperparameters": hp,
            "grid": {kind: info.grid_for(kind) for kind in info.kinds}, "kinds": list(info.kinds),
            "needs": list(info.needs), "aliases": list(info.aliases),
            "training": "closed form / own solver" if info.fit is not None else "SGD (Trainer)"}


def _ensure_loaded() -> None:
    """Import every module of `mtlkit.methods`: a method module registers its methods on import, so a new
    method needs no edit here."""
    import importlib
    import pkgutil

    import mtlkit.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("base", "registry") and not mod.name.startswith("_"):
            importlib.import_module(f"mtlkit.methods.{mod.name}")
