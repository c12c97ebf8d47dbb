"""What the tasks are: their kind, classes and names (`TaskSpec`), and what a model is built for (`DataInfo`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mtlkit.errors import DataError

KINDS = ("regression", "binary", "multiclass", "distribution")


@dataclass(frozen=True)
class TaskSpec:
    """The prediction problem shared by all tasks of a data set.

    ``kind`` is one of ``regression``, ``binary``, ``multiclass`` (integer labels ``0..p_t-1``) or
    ``distribution`` (soft labels over ``p`` classes); ``n_classes[t]`` is task t's class count (1 for
    regression, 2 for binary) so tasks may have different numbers of classes (Omniglot alphabets).
    """

    kind: str
    names: tuple[str, ...]
    n_classes: tuple[int, ...]
    labels: tuple[float, ...] | None = None
    """The original label values of classes 0, 1, ... when they were given otherwise (binary labels {1, 2} are
    trained as 0/1 and predicted back as 1/2); None when the classes are the labels."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown task kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if len(self.names) != len(self.n_classes):
            raise DataError(f"{len(self.names)} task names but {len(self.n_classes)} class counts")
        if len(set(self.names)) != len(self.names):
            raise DataError("task names must be unique")
        if self.kind in ("multiclass", "distribution") and any(p < 2 for p in self.n_classes):
            raise DataError(f"a {self.kind} task needs at least 2 classes, got {list(self.n_classes)}")

    @property
    def n_tasks(self) -> int:
        return len(self.names)

    @property
    def n_outputs(self) -> int:
        """Width P of the model's output per task: 1 for regression/binary, max classes otherwise."""
        return 1 if self.kind in ("regression", "binary") else max(self.n_classes)

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"


@dataclass(frozen=True)
class DataInfo:
    """Everything a method needs to build its model: the task spec, the feature shape, and whether
    the tasks share one input matrix. Saved with every checkpoint so the model can be rebuilt."""

    spec: TaskSpec
    feature_shape: tuple[int, ...]
    shared: bool
    train_sizes: tuple[int, ...] = field(default=())

    @property
    def n_tasks(self) -> int:
        return self.spec.n_tasks

    @property
    def n_features(self) -> int:
        out = 1
        for s in self.feature_shape:
            out *= s
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"]["names"] = list(self.spec.names)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataInfo:
        s = d["spec"]
        spec = TaskSpec(kind=s["kind"], names=tuple(s["names"]), n_classes=tuple(s["n_classes"]),
                        labels=tuple(float(v) for v in s["labels"]) if s.get("labels") else None)
        return cls(spec=spec, feature_shape=tuple(d["feature_shape"]), shared=bool(d["shared"]),
                   train_sizes=tuple(d.get("train_sizes", ())))
