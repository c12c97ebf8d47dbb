"""Training: the Trainer, per-task losses and metrics, runs and their checkpoints."""

from mtlkit.train.config import TRAIN_DEFAULTS
from mtlkit.train.losses import TaskLoss
from mtlkit.train.run import Evaluation, Run, load, train, train_one
from mtlkit.train.trainer import History, fit_sgd

__all__ = ["TRAIN_DEFAULTS", "Evaluation", "History", "Run", "TaskLoss", "fit_sgd", "load", "train", "train_one"]
