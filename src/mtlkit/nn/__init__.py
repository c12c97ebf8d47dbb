"""Neural building blocks with the task axis first: task-stacked layers and shared backbones."""

from mtlkit.nn.backbones import MLP
from mtlkit.nn.task_layers import TaskLinear, TaskMLP, activation

__all__ = ["MLP", "TaskLinear", "TaskMLP", "activation"]
