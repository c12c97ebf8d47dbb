"""mtlkit: multi-task learning in PyTorch, with the task axis first and batched.

    import mtlkit
    data = mtlkit.datasets.load("digits")
    split = data.split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("hard-share", split, seed=0)
    print(run.evaluate("test"))
"""

__version__ = "0.1.0"

from mtlkit import datasets, methods  # noqa: E402
from mtlkit.data import MultiTaskData, Split, TaskSpec  # noqa: E402
from mtlkit.errors import DataError, MtlkitError, UnknownNameError  # noqa: E402
from mtlkit.train import Evaluation, Run, load, train  # noqa: E402

__all__ = ["DataError", "Evaluation", "MtlkitError", "MultiTaskData", "Run", "Split", "TaskSpec",
           "UnknownNameError", "__version__", "datasets", "load", "methods", "train"]
