"""Multi-task data: the data model, splits, padded device tensors and the task-axis-first sampler."""

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.normalize import Normalizer
from mtlkit.data.sampler import TaskBatchSampler
from mtlkit.data.spec import KINDS, DataInfo, TaskSpec
from mtlkit.data.splits import Split
from mtlkit.data.tensors import Batch, DeviceData
from mtlkit.data.transforms import PCA

__all__ = ["KINDS", "PCA", "Batch", "DataInfo", "DeviceData", "MultiTaskData", "Normalizer", "Split",
           "TaskBatchSampler", "TaskSpec"]
