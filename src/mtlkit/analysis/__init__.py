"""Analysis: learned task-relation matrices (`task_relations`) and the plots drawn from runs and the results
store (`plot_relation_matrix`, `plot_improvement_bars`, `plot_learning_curves`; matplotlib is imported only
when a plot is asked for)."""

from __future__ import annotations

from typing import Any

from mtlkit.analysis.relations import HasTaskRelations, task_relations
from mtlkit.analysis.similarity import covariance_similarity, similarity_matrix

_PLOTS = ("plot_relation_matrix", "plot_improvement_bars", "plot_learning_curves", "save_figure")

__all__ = ["HasTaskRelations", "covariance_similarity", "similarity_matrix", "task_relations", *_PLOTS]


def __getattr__(name: str) -> Any:
    """Lazy access to the plotting functions, so importing `mtlkit.analysis` does not load matplotlib."""
    if name in _PLOTS:
        from mtlkit._optional import require

        require("matplotlib", "plots")
        from mtlkit.analysis import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'mtlkit.analysis' has no attribute {name!r}")
