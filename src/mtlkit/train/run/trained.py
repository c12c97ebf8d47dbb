"""A trained method (`Run`: evaluate, predict, save) and `load`, which rebuilds one from its folder; with
`resolve_device` and `build_method`, which training uses too."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.normalize import Normalizer
from mtlkit.data.spec import DataInfo
from mtlkit.data.splits import Split
from mtlkit.data.transforms import FittedPCA, FittedTransform
from mtlkit.errors import DataError, MtlkitError
from mtlkit.methods import registry
from mtlkit.methods.base import MethodInfo, MethodParts, as_output
from mtlkit.train.losses import TaskLoss
from mtlkit.train.metrics import average
from mtlkit.train.run.evaluation import Evaluation, blocked_metrics
from mtlkit.train.run.files import (
    MODEL_FILE,
    RUN_FILE,
    RUN_FORMAT,
    _check_model_tensors,
    _error_detail,
    _read_model_file,
    _read_run_json,
    _write_replace,
    os_reason,
)
from mtlkit.train.trainer import History


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present (the current CUDA device, never a hard-coded index), else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MtlkitError("device 'cuda' was asked for but torch sees no CUDA device")
    return dev


def versions() -> dict[str, str]:
    from mtlkit._version import __version__

    return {"mtlkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


class Run:
    """A trained model with everything needed to use it on raw inputs: the method and its
    hyper-parameters, the data description, the fitted feature transform and standardisation."""

    def __init__(self, method: str, hparams: dict[str, Any], info: DataInfo, model: nn.Module,
                 normalizer: Normalizer, transform: FittedTransform | None = None, history: History | None = None,
                 split: Split | None = None, seed: int = 0, device: torch.device | None = None,
                 train_seconds: float = 0.0, selection: list[dict[str, Any]] | None = None,
                 dataset: str = "custom", checksum: str = "") -> None:
        self.method, self.hparams, self.info, self.model = method, hparams, info, model
        self.normalizer, self.transform, self.history, self.split = normalizer, transform, history, split
        self.seed, self.device, self.train_seconds = seed, device or torch.device("cpu"), train_seconds
        self.selection = selection or []
        self.dataset, self.checksum = dataset, checksum
        self.loss = TaskLoss(info.spec, self.device)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def _cell_predictions(self, data: MultiTaskData, chunk: int | None = None) -> np.ndarray:
        """Link-scale predictions of every labelled cell on the original label scale, float64 ``[n(, P)]``: task
        0's labelled rows in order, then task 1's, ... The model sees the padded layout's columns in chunks of
        ``chunk`` positions of every task (default `DeviceData.chunk_width`: bounded memory, and the padded
        implementation's own chunk whenever that fits), gathered from the unpadded store."""
        self.model.eval()
        dd = self.normalizer.apply(data).tensors(self.device)
        spec = self.info.spec
        starts = np.concatenate([[0], np.cumsum(dd.counts)])  # each task's first cell in the output
        seen = np.zeros(dd.n_tasks, dtype=np.int64)
        out = np.zeros((int(starts[-1]), *(() if spec.kind in ("regression", "binary") else (spec.n_outputs,))))
        width = chunk if chunk is not None else dd.chunk_width(at_least=int(self.hparams.get("batch_size", 1)))
        for b in dd.chunks(width):
            link = self.loss.link(as_output(self.model(b.x)).pred).float()
            m = b.mask.cpu().numpy()
            dest = (starts[:-1, None] + seen[:, None] + np.cumsum(m, axis=1) - 1)[m]
            out[dest] = link[b.mask].cpu().numpy()
            seen += m.sum(1)
        if spec.kind == "regression":
            out = self.normalizer.y_inverse(out)
        return out

    def evaluate(self, part: str | MultiTaskData = "test") -> Evaluation:
        """Per-task metrics on ``"train"``, ``"val"``, ``"test"`` of the training split, or on given data
        (raw features: the split's transform and the standardisation are applied here)."""
        if isinstance(part, str):
            if self.split is None:
                raise MtlkitError("this run has no split attached (it was loaded); pass a MultiTaskData")
            data = self.split.part(part)
        else:
            data = self._prepare(part)
        self._check_compatible(data)
        per = blocked_metrics(self.info.spec.kind, data, self._cell_predictions(data), self.info.spec.n_classes)
        return Evaluation(self.info.spec.kind, self.info.spec.names, per, average(per))

    def _prepare(self, data: MultiTaskData) -> MultiTaskData:
        return data.with_features(self.transform.apply) if self.transform is not None else data

    def _check_compatible(self, data: MultiTaskData) -> None:
        if data.spec.names != self.info.spec.names or data.kind != self.info.spec.kind:
            raise DataError("the data's tasks differ from the ones this model was trained on "
                            f"({data.n_tasks} {data.kind} tasks vs {self.info.n_tasks} {self.info.spec.kind})")
        if data.feature_shape != self.info.feature_shape:
            raise DataError(f"features have shape {data.feature_shape} per row; the model expects "
                            f"{self.info.feature_shape}")

    def _task_index(self, task: int | str) -> int:
        names = self.info.spec.names
        if isinstance(task, str):
            if task not in names:
                raise DataError(f"unknown task {task!r}; tasks: {', '.join(names[:20])}"
                                + (" ..." if len(names) > 20 else ""))
            return names.index(task)
        if not 0 <= int(task) < len(names):
            raise DataError(f"task index {task} outside 0..{len(names) - 1}")
        return int(task)

    @torch.no_grad()
    def predict_proba(self, X: Any, task: int | str | None = None) -> np.ndarray:
        """Link-scale predictions for raw rows ``X`` [n, ...]: values (regression), P(class 1) (binary)
        or class probabilities; for one task ``[n(, P)]``, or for every task ``[T, n(, P)]``."""
        if hasattr(X, "toarray"):  # scipy.sparse rows, as the data may have been given
            X = X.toarray()
        X = np.asarray(X, dtype=np.float64)
        if self.transform is not None:
            X = self.transform.apply(X)
        if X.shape[1:] != self.info.feature_shape:
            raise DataError(f"X has shape {X.shape[1:]} per row; the model expects {self.info.feature_shape}")
        if not np.isfinite(X).all():
            raise DataError("X contains NaN or inf")
        self.model.eval()
        x = torch.as_tensor(self.normalizer.x(X), dtype=torch.float32, device=self.device)
        if not self.info.shared:
            x = x.expand(self.info.n_tasks, *x.shape)
        out = self.loss.link(as_output(self.model(x)).pred).cpu().numpy().astype(np.float64)
        if self.info.spec.kind == "regression":
            out = self.normalizer.y_inverse(out)
        return out if task is None else out[self._task_index(task)]

    def predict(self, X: Any, task: int | str | None = None) -> np.ndarray:
        """Point predictions for raw rows: values (regression) or class labels (classification), in the labels'
        own values when they were given otherwise than 0..k-1 (binary {1, 2}: `TaskSpec.labels`)."""
        p = self.predict_proba(X, task)
        spec = self.info.spec
        if spec.kind == "regression":
            return p
        cls = (p >= 0.5).astype(np.int64) if spec.kind == "binary" else p.argmax(-1)
        if spec.labels is not None:
            values = np.asarray(spec.labels)
            return values[cls].astype(np.int64) if np.all(values == np.round(values)) else values[cls]
        return cls

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (weights, standardisation, transform) and ``run.json``, which records the
        model file's sha256 (`load` checks it). Each file is written beside itself and renamed into place; a
        folder that cannot be written is an `MtlkitError` naming it."""
        import hashlib

        from safetensors.torch import save as safetensors_bytes

        d = Path(directory)
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}
        for k, v in self.normalizer.state().items():
            tensors[f"normalizer.{k}"] = torch.as_tensor(np.ascontiguousarray(v))
        if self.transform is not None:
            for k, v in self.transform.state().items():
                tensors[f"transform.{k}"] = torch.as_tensor(np.ascontiguousarray(v))
        blob = safetensors_bytes(tensors)
        meta = {"format": RUN_FORMAT, "method": self.method, "hparams": self.hparams,
                "info": self.info.to_json(), "seed": self.seed, "dataset": self.dataset,
                "checksum": self.checksum, "train_seconds": self.train_seconds,
                "transform": "pca" if self.transform is not None else None, "versions": versions(),
                "history": self.history.to_json() if self.history is not None else None,
                "selection": self.selection, "model_sha256": hashlib.sha256(blob).hexdigest()}
        text = json.dumps(meta, indent=1)
        try:
            d.mkdir(parents=True, exist_ok=True)
            _write_replace(d / MODEL_FILE, blob)
            _write_replace(d / RUN_FILE, text.encode())
        except OSError as e:
            raise MtlkitError(f"cannot save the run to {d}: {os_reason(e)}") from None
        return d

    def __repr__(self) -> str:
        return f"Run({self.method!r}, {self.info.n_tasks} tasks, hparams={self.hparams})"


def build_method(entry: MethodInfo, info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """``entry.build(info, hp)``; a hyper-parameter value the model cannot take (a ValueError raised while
    building it) becomes an `MtlkitError` naming the method, so the CLI prints one line instead of a traceback."""
    try:
        return entry.build(info, hp)
    except MtlkitError:
        raise
    except ValueError as e:
        raise MtlkitError(f"method {entry.name!r} cannot be built with these hyper-parameters: {e}") from e


def load(directory: str | Path, device: str | torch.device | None = "cpu") -> Run:
    """Load a saved `Run` (safetensors + JSON; nothing is unpickled).

    A damaged or edited run is an `MtlkitError` naming the file and what is wrong: a missing file, ``run.json``
    not JSON or without a key, ``model.safetensors`` truncated or not safetensors, its sha256 not the one
    ``run.json`` records (runs saved before it was recorded load without the check), or tensors whose names or
    shapes do not fit the model ``run.json`` describes."""
    d = Path(directory)
    if not d.is_dir():
        raise MtlkitError(f"{d} is not a saved run: " + ("it is a file, not a folder" if d.exists() else
                                                        "no such folder"))
    for f in (RUN_FILE, MODEL_FILE):
        if not (d / f).is_file():
            raise MtlkitError(f"{d} is not a saved run: {f} is missing")
    meta_path, model_path = d / RUN_FILE, d / MODEL_FILE
    meta = _read_run_json(meta_path)
    dev = resolve_device(device)
    try:
        info = DataInfo.from_json(meta["info"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MtlkitError(f"{meta_path}: 'info' is not a data description ({_error_detail(e)})") from None
    try:
        entry = registry.get(meta["method"])
        torch.manual_seed(0)
        parts = build_method(entry, info, dict(meta["hparams"]))
    except MtlkitError as e:
        raise MtlkitError(f"{meta_path}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MtlkitError(f"{meta_path}: method {meta['method']!r} cannot be built from its 'hparams' and 'info' "
                          f"({_error_detail(e)})") from None
    tensors = _read_model_file(model_path, meta.get("model_sha256"))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _check_model_tensors(model_path, entry.name, parts.model.state_dict(), state)
    try:  # shapes are checked here: a model may size some parameters from the saved ones (DMTRL's Tucker ranks)
        parts.model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        import re

        found = re.findall(r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
                           r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)", str(e))
        shapes = ", ".join(f"model.{k} is {a}, expected {b}" for k, a, b in found[:3]) + \
            (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise MtlkitError(f"{model_path} does not fit the {entry.name!r} model that {RUN_FILE} describes: "
                          f"{shapes or _error_detail(e)}") from None
    parts.model.to(dev)
    needed = [f"normalizer.{k}" for k in ("x_mean", "x_std", "y_mean", "y_std")]
    if meta.get("transform") == "pca":
        needed += ["transform.pca_mean", "transform.pca_components"]
    absent = [k for k in needed if k not in tensors]
    if absent:
        raise MtlkitError(f"{model_path} lacks the tensor{'s' * (len(absent) > 1)} {', '.join(absent)}")
    norm = Normalizer.from_state({k[len("normalizer."):]: v.numpy() for k, v in tensors.items()
                                  if k.startswith("normalizer.")})
    transform = None
    if meta.get("transform") == "pca":
        transform = FittedPCA(tensors["transform.pca_mean"].numpy(), tensors["transform.pca_components"].numpy())
    hist = None
    if meta.get("history"):
        try:
            h = meta["history"]
            hist = History([np.asarray(v, dtype=np.float64) for v in h["train_loss"]],
                           [np.asarray(v, dtype=np.float64) for v in h["val_loss"]], int(h["best_epoch"]),
                           float(h["best_val"]) if h["best_val"] is not None else math.inf, bool(h["diverged"]),
                           bool(h["stopped_early"]))
        except (KeyError, TypeError, ValueError) as e:
            raise MtlkitError(f"{meta_path}: 'history' is not a training history ({_error_detail(e)})") from None
    return Run(meta["method"], meta["hparams"], info, parts.model, norm, transform, hist, None, meta["seed"],
               dev, float(meta.get("train_seconds") or 0.0), meta.get("selection"), meta.get("dataset", "custom"),
               meta.get("checksum", ""))
