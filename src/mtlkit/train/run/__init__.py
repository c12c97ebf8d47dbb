"""A trained method (`Run`): evaluate, predict, save and load; and `train`, which makes one.

The package's modules: `evaluation` (`Evaluation`, `blocked_metrics`), `files` (the saved run's format),
`trained` (`Run`, `load`, `build_method`, `resolve_device`) and `training` (`train_one`, `train` with grid
selection); every name is re-exported here, so ``mtlkit.train.run.X`` keeps working."""

from mtlkit.train.run.evaluation import METRIC_CELLS, Evaluation, blocked_metrics
from mtlkit.train.run.files import MODEL_FILE, RUN_FILE, RUN_FORMAT, RUN_KEYS, os_reason
from mtlkit.train.run.trained import Run, build_method, load, resolve_device, versions
from mtlkit.train.run.training import grid_point_path, train, train_one

__all__ = ["METRIC_CELLS", "MODEL_FILE", "RUN_FILE", "RUN_FORMAT", "RUN_KEYS", "Evaluation", "Run", "blocked_metrics",
           "build_method", "grid_point_path", "load", "os_reason", "resolve_device", "train", "train_one", "versions"]
