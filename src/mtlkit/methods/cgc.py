"""`cgc`: Customized Gate Control (Tang et al., RecSys 2020, §4.2), the single-level form of PLE: per task,
``n_task_experts`` task experts and ``n_shared_experts`` shared experts, task t's gate mixing its own and the shared
experts into its tower. It is `ple` with ``levels = 1`` (the last PLE level has no shared gate), registered under
its own name with ``levels`` fixed; like every SGD method it takes any loss weighting or gradient aggregator
(``cgc+uw``, ``cgc+nash-mtl``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mtlkit.data.spec import DataInfo
from mtlkit.methods.base import MethodParts
from mtlkit.methods.ple import PLE_PARAMS
from mtlkit.methods.ple import _build as _ple_build
from mtlkit.methods.registry import _REGISTRY, register

CGC_PARAMS = tuple(p for p in PLE_PARAMS if p.name != "levels")


def _build(info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    return _ple_build(info, {**hp, "levels": 1})


register(dataclasses.replace(  # ple's entry (grid, kinds, row-separability) with levels fixed at 1
    _REGISTRY["ple"],
    name="cgc",
    summary="Customized gate control: task-specific and shared experts, one gate per task over its own + the "
            "shared experts, then task towers (PLE with one level).",
    paper="Tang et al., Progressive Layered Extraction (PLE), RecSys 2020, §4.2 (CGC)",
    build=_build,
    params=CGC_PARAMS,
    defaults={},
    aliases=(),
))
