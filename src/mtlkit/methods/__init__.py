"""Methods: each a named recipe of architecture + penalties + proximal steps + gradient combiner.

``names()`` lists them, ``describe(name)`` tells the paper, hyper-parameters and default grid.
"""

from mtlkit.methods.base import MethodInfo, MethodParts, ModelOutput
from mtlkit.methods.registry import describe, get, names, register

__all__ = ["MethodInfo", "MethodParts", "ModelOutput", "describe", "get", "names", "register"]
