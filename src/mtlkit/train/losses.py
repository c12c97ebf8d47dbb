"""`TaskLoss` lives in `mtlkit.nn.losses` (below the methods, which need it); this module keeps the old import path."""

from mtlkit.nn.losses import TaskLoss

__all__ = ["TaskLoss"]
