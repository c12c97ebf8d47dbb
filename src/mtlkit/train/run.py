"""A trained method (`Run`): evaluate, predict, save and load; and `train`, which makes one."""

from __future__ import annotations

import itertools
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.normalize import Normalizer
from mtlkit.data.spec import DataInfo
from mtlkit.data.splits import Split
from mtlkit.data.transforms import FittedPCA
from mtlkit.errors import DataError, MtlkitError
from mtlkit.methods import registry
from mtlkit.methods.base import MethodInfo, MethodParts, as_output
from mtlkit.train.config import merge_hparams, method_defaults, method_params
from mtlkit.train.distributed import DistContext
from mtlkit.train.losses import TaskLoss
from mtlkit.train.metrics import LOWER_IS_BETTER, PRIMARY_METRIC, average, compute_metrics
from mtlkit.train.trainer import History, TrainingDiverged, fit_sgd


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present (the current CUDA device, never a hard-coded index), else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MtlkitError("device 'cuda' was asked for but torch sees no CUDA device")
    return dev


def versions() -> dict[str, str]:
    from mtlkit import __version__

    return {"mtlkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass
class Evaluation:
    """Per-task metrics of one data part: ``per_task[metric]`` is ``[T]``; ``mean`` averages tasks."""

    kind: str
    task_names: tuple[str, ...]
    per_task: dict[str, np.ndarray]
    mean: dict[str, float] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        """The metric model selection and leaderboards use (rmse, error %, or cross-entropy)."""
        return PRIMARY_METRIC[self.kind]

    def __str__(self) -> str:
        names = list(self.per_task)
        w = max(8, *(len(n) for n in self.task_names))
        lines = ["task".ljust(w) + "".join(f"{m:>20}" for m in names)]
        for t, nm in enumerate(self.task_names):
            lines.append(nm.ljust(w) + "".join(f"{self.per_task[m][t]:>20.4f}" for m in names))
        lines.append("mean".ljust(w) + "".join(f"{self.mean[m]:>20.4f}" for m in names))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"per_task": {m: [clean(x) for x in v] for m, v in self.per_task.items()},
                "mean": {m: clean(v) for m, v in self.mean.items()}}


class Run:
    """A trained model with everything needed to use it on raw inputs: the method and its
    hyper-parameters, the data description, the fitted feature transform and standardisation."""

    def __init__(self, method: str, hparams: dict[str, Any], info: DataInfo, model: nn.Module,
                 normalizer: Normalizer, transform: FittedPCA | None = None, history: History | None = None,
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
        for b in dd.chunks(chunk if chunk is not None else dd.chunk_width()):
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


#: Padded label cells (times 1 + P) one block of `blocked_metrics` holds.
METRIC_CELLS = 1 << 22


def blocked_metrics(kind: str, data: MultiTaskData, pred: np.ndarray, n_classes: Any = None,
                    max_cells: int = METRIC_CELLS) -> dict[str, np.ndarray]:
    """`compute_metrics` of predictions ``pred`` (one per labelled cell, in `Run._cell_predictions`' order)
    against ``data``'s labels, walking the tasks in blocks: each block is laid out ``[k, N(, P)]`` as the
    padded layout is (N: the part's largest task, or its rows for shared input), so every task gets exactly
    the numbers one call on the whole padded layout gives, without holding ``T x N`` cells."""
    T = data.n_tasks
    if data.xs is not None:
        assert data.ys is not None
        counts = np.array([len(v) for v in data.ys], dtype=np.int64)
        N = int(counts.max())
    else:
        assert data.y is not None
        counts = np.array([int(data.label_mask(t).sum()) for t in range(T)], dtype=np.int64)
        N = len(data.y)
    starts = np.concatenate([[0], np.cumsum(counts)])
    tail = pred.shape[1:]
    k = max(1, min(T, max_cells // max(1, N * (1 + int(np.prod(tail))))))
    pieces = []
    for t0 in range(0, T, k):
        t1 = min(T, t0 + k)
        if data.xs is not None:
            assert data.ys is not None
            mask = np.arange(N)[None, :] < counts[t0:t1, None]
            y = np.zeros((t1 - t0, N, *np.shape(data.ys[0])[1:]))
            y[mask] = np.concatenate(data.ys[t0:t1])
        else:
            assert data.y is not None
            yy = np.moveaxis(data.y[:, t0:t1], 1, 0)  # [k, N(, P)]
            mask = ~np.isnan(yy) if yy.ndim == 2 else ~np.isnan(yy).any(-1)
            y = np.nan_to_num(yy, nan=0.0).astype(np.float64)
        p = np.zeros((t1 - t0, N, *tail))
        p[mask] = pred[starts[t0]:starts[t1]]
        pieces.append(compute_metrics(kind, y, p, mask, n_classes=None if n_classes is None else n_classes[t0:t1]))
    return {m: np.concatenate([pc[m] for pc in pieces]) for m in pieces[0]}


RUN_FORMAT = "mtlkit-run/1"
RUN_FILE, MODEL_FILE = "run.json", "model.safetensors"
RUN_KEYS = ("format", "method", "hparams", "info", "seed")
"""Keys every saved ``run.json`` has (the others have defaults; ``model_sha256`` is absent in older runs)."""


def os_reason(e: OSError) -> str:
    """An OSError as 'reason: path' without the errno prefix."""
    reason = e.strerror or str(e)
    return f"{reason}: {e.filename}" if e.filename else reason


def _write_replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _error_detail(e: BaseException) -> str:
    return f"key {e.args[0]!r} is missing" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"


def _read_run_json(path: Path) -> dict[str, Any]:
    """``run.json`` as a dict with every key of `RUN_KEYS`; anything else is an `MtlkitError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MtlkitError(f"{path} cannot be read ({e})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MtlkitError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): the saved run "
                          "is damaged or was edited; save it again") from None
    if not isinstance(meta, dict):
        raise MtlkitError(f"{path} is not a saved run's description (a JSON object expected, got "
                          f"{type(meta).__name__})")
    missing = [k for k in RUN_KEYS if k not in meta]
    if missing:
        raise MtlkitError(f"{path} lacks the key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))} "
                          f"(a saved run's {RUN_FILE} has {', '.join(RUN_KEYS)})")
    if meta["format"] != RUN_FORMAT:
        raise MtlkitError(f"{path} has format {meta['format']!r}; this mtlkit reads {RUN_FORMAT!r}")
    for key, kind in (("method", str), ("hparams", dict), ("info", dict), ("seed", int)):
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise MtlkitError(f"{path}: {key!r} must be a {'JSON object' if kind is dict else kind.__name__}, "
                              f"got {json.dumps(meta[key])[:60]}")
    return meta


def _read_model_file(path: Path, sha256: Any) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``, after checking that it parses and (when ``run.json`` records one)
    that its sha256 is the recorded one."""
    import hashlib

    from safetensors.torch import load as safetensors_load

    try:
        blob = path.read_bytes()
    except OSError as e:
        raise MtlkitError(f"{path} cannot be read ({os_reason(e)})") from None
    try:
        tensors = safetensors_load(blob)
    except Exception as e:  # safetensors' own error type: a truncated, damaged or foreign file
        raise MtlkitError(f"{path} is not a readable safetensors file ({str(e).strip() or type(e).__name__}): it is "
                          "truncated or damaged; save the run again") from None
    if sha256 is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != sha256:
            raise MtlkitError(f"{path} was changed after saving: its sha256 {got[:12]}... differs from the "
                              f"{str(sha256)[:12]}... recorded in {RUN_FILE}")
    return tensors


def _check_model_tensors(path: Path, method: str, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                         ) -> None:
    """Tensor names of the saved model against the model ``run.json`` describes (shapes: at loading)."""
    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    problems = []
    missing = [f"model.{k}" for k in expected if k not in state]
    extra = [f"model.{k}" for k in state if k not in expected]
    if missing:
        problems.append(f"missing {few(missing)}")
    if extra:
        problems.append(f"unexpected {few(extra)}")
    if problems:
        raise MtlkitError(f"{path} does not fit the {method!r} model that {RUN_FILE} describes: {'; '.join(problems)}")


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


# ---------------------------------------------------------------------- training entry point
def _configs(hparams: dict[str, Any] | None, grid: dict[str, Any] | None) -> list[dict[str, Any]]:
    base = dict(hparams or {})
    if not grid:
        return [base]
    keys = list(grid)
    return [{**base, **dict(zip(keys, vals, strict=True))} for vals in itertools.product(*(grid[k] for k in keys))]


def train_one(method: str, split: Split, hparams: dict[str, Any] | None = None, seed: int = 0,
              device: str | torch.device | None = None, progress: bool | None = None,
              standardize: bool = True, checkpoint: str | Path | None = None, checkpoint_every: int = 0,
              resume: bool = False, tensorboard: str | Path | None = None,
              distributed: DistContext | None = None, task_weights: Any = None,
              epoch_callback: Callable[[int, float], None] | None = None, compile: bool = False,
              step_callback: Callable[..., None] | None = None) -> Run:
    """Train ``method`` once with fixed hyper-parameters on ``split.train`` (early stopping on ``split.val``).

    ``task_weights``: a weight per task (``[T]``, e.g. `mtlkit.optim.weighting.svd_task_weights`), rescaled to
    sum to one, replacing the default 1/T in the objective ``Σ_t w_t L_t`` (SGD-trained methods only).

    ``checkpoint`` / ``checkpoint_every`` / ``resume`` / ``tensorboard``: see `fit_sgd` (SGD-trained
    methods only); a resumed run ends with the same model and history as an uninterrupted one.
    ``distributed``: data-parallel training under torchrun on ``distributed.device`` (see `fit_sgd`).
    ``epoch_callback(epoch, val_loss)``: see `fit_sgd` (SGD-trained methods only; a closed-form fit never calls it).
    ``compile``: run the training step's forward pass under ``torch.compile`` (see `fit_sgd`; SGD-trained methods).
    ``step_callback(step, batch, parts, lr)``: see `fit_sgd` (SGD-trained methods only).
    """
    entry = registry.get(method)
    train = split.train
    if train.kind not in entry.kinds:
        raise MtlkitError(f"method {method!r} does not handle {train.kind} tasks (it handles "
                          f"{', '.join(entry.kinds)})")
    if entry.fit is not None and (checkpoint is not None or resume or tensorboard is not None):
        raise MtlkitError(f"method {entry.name!r} is not trained by SGD: checkpoints, resume and TensorBoard "
                          "logging apply only to SGD-trained methods")
    hp = merge_hparams(method_defaults(entry), hparams, method, method_params(entry))
    if task_weights is not None and entry.fit is not None:
        raise MtlkitError(f"method {entry.name!r} is not trained by SGD: task_weights apply only to SGD-trained "
                          "methods")
    if distributed is not None and entry.fit is not None:
        raise MtlkitError(f"method {entry.name!r} is not trained by SGD: distributed training does not apply")
    dev = distributed.device if distributed is not None else resolve_device(device)
    info = train.info()
    norm = Normalizer.fit(train, standardize_x=standardize, standardize_y=standardize)
    torch.manual_seed(seed)
    parts = build_method(entry, info, hp)
    parts.model.to(dev)
    loss = TaskLoss(info.spec, dev)
    train_dd = norm.apply(train).tensors(dev)
    t0 = time.perf_counter()
    hist = None
    if entry.fit is not None:
        entry.fit(parts, train_dd, hp)
    else:
        val_dd = norm.apply(split.val).tensors(dev) if split.val is not None else None
        if entry.pretrain is not None and parts.warm_start is not None:
            _pretrain(entry.pretrain, parts, info, hp, loss, train_dd, val_dd, seed, dev, progress, distributed)
        ident = {"method": entry.name, "data": train.checksum()} if checkpoint is not None else None
        w = _task_weights(task_weights, info.n_tasks, dev)
        try:
            hist = fit_sgd(parts, loss, train_dd, val_dd, hp, seed=seed, task_weights=w, progress=progress,
                           checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, resume=resume, tensorboard=tensorboard,
                           task_names=info.spec.names, fingerprint=ident, distributed=distributed,
                           epoch_callback=epoch_callback, compile=compile, step_callback=step_callback)
        except TrainingDiverged as e:  # name the method: "hard-share diverged in epoch 2 (steps 13-24): ..."
            raise e.named(entry.name) from None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    secs = time.perf_counter() - t0
    src = split.source or train
    return Run(entry.name, hp, info, parts.model, norm, split.transform, hist, split, seed, dev, secs,
               dataset=src.name, checksum=src.checksum())


def _task_weights(weights: Any, n_tasks: int, dev: torch.device) -> torch.Tensor | None:
    """Given task weights as a float tensor on ``dev`` summing to one; an error for a wrong length or sign."""
    if weights is None:
        return None
    w = torch.as_tensor(np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights,
                                   dtype=np.float64))
    if w.shape != (n_tasks,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise MtlkitError(f"task_weights must be {n_tasks} finite non-negative numbers with a positive sum, got "
                          f"shape {tuple(w.shape)}")
    return (w / w.sum()).to(device=dev, dtype=torch.float32)


def _pretrain(name: str, parts: MethodParts, info: DataInfo, hp: dict[str, Any], loss: TaskLoss, train: Any,
              val: Any, seed: int, dev: torch.device, progress: bool | None,
              distributed: DistContext | None) -> None:
    """Train method ``name`` with the hyper-parameters it shares with ``hp`` and hand its model to
    ``parts.warm_start``. Deterministic for a seed, so a resumed run repeats it exactly."""
    pre = registry.get(name)
    if parts.warm_start is None or pre.fit is not None:
        raise MtlkitError(f"pretraining with {name!r} needs a warm_start hook and an SGD-trained {name!r}")
    known = method_defaults(pre)
    pre_hp = merge_hparams(known, {k: v for k, v in hp.items() if k in known}, name)
    torch.manual_seed(seed)
    pre_parts = build_method(pre, info, pre_hp)
    pre_parts.model.to(dev)
    try:
        fit_sgd(pre_parts, loss, train, val, pre_hp, seed=seed, progress=progress, task_names=info.spec.names,
                distributed=distributed)
    except TrainingDiverged as e:
        raise e.named(f"{name} (pretraining)") from None
    parts.warm_start(pre_parts.model)
    parts.model.to(dev)


def grid_point_path(path: str | Path, index: int, n_configs: int, is_dir: bool) -> Path:
    """Where grid point ``index`` keeps its checkpoint file or log directory: ``path`` itself for a single
    configuration, else a sub-directory ``cfg-<index>`` (beside the file's name, or inside the directory)."""
    p = Path(path)
    if n_configs <= 1:
        return p
    return p / f"cfg-{index}" if is_dir else p.parent / f"cfg-{index}" / p.name


def build_method(entry: MethodInfo, info: DataInfo, hp: dict[str, Any]) -> MethodParts:
    """``entry.build(info, hp)``; a hyper-parameter value the model cannot take (a ValueError raised while
    building it) becomes an `MtlkitError` naming the method, so the CLI prints one line instead of a traceback."""
    try:
        return entry.build(info, hp)
    except MtlkitError:
        raise
    except ValueError as e:
        raise MtlkitError(f"method {entry.name!r} cannot be built with these hyper-parameters: {e}") from e


def train(method: str, split: Split, hparams: dict[str, Any] | None = None, seed: int = 0,
          device: str | torch.device | None = None, grid: dict[str, list[Any]] | None = None,
          progress: bool | None = None, standardize: bool = True, checkpoint: str | Path | None = None,
          checkpoint_every: int = 0, resume: bool = False, tensorboard: str | Path | None = None,
          distributed: DistContext | None = None, task_weights: Any = None,
          epoch_callback: Callable[[int, float], None] | None = None, compile: bool = False) -> Run:
    """Train ``method`` on ``split``; with a ``grid`` (name -> values), train every combination and keep
    the one with the best mean validation primary metric (RMSE, error %, or cross-entropy).

    The returned run's ``selection`` lists every configuration tried with its validation score. A training
    run that diverges (`TrainingDiverged`) raises for a single configuration; in a grid it is recorded in
    ``selection`` with ``"failed"`` (the error) and a None score, and the grid goes on; only when no
    configuration ends with a finite validation score is it an error, naming the first failure.
    ``checkpoint`` (a file) and ``tensorboard`` (a directory) get one sub-directory ``cfg-<i>`` per grid
    point; with ``resume`` every grid point continues from its checkpoint (one not reached yet starts).
    ``task_weights``, ``epoch_callback``, ``compile``: see `train_one`.
    """
    configs = _configs(hparams, grid)
    if len(configs) > 1 and split.val is None:
        raise MtlkitError("selecting hyper-parameters needs a validation part: split with val > 0")
    if resume:
        if checkpoint is None:
            raise MtlkitError("resume needs the checkpoint file to resume from")
        first = grid_point_path(checkpoint, 0, len(configs), is_dir=False)
        if not first.is_file():
            raise MtlkitError(f"nothing to resume: no checkpoint at {first}")
    best: Run | None = None
    best_score = math.inf
    tried: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs):
        ck = grid_point_path(checkpoint, i, len(configs), is_dir=False) if checkpoint is not None else None
        tb = grid_point_path(tensorboard, i, len(configs), is_dir=True) if tensorboard is not None else None
        try:
            run = train_one(method, split, cfg, seed=seed, device=device, progress=progress,
                            standardize=standardize, checkpoint=ck, checkpoint_every=checkpoint_every,
                            resume=resume and ck is not None and ck.is_file(), tensorboard=tb,
                            distributed=distributed, task_weights=task_weights, epoch_callback=epoch_callback,
                            compile=compile)
        except TrainingDiverged as e:
            if len(configs) == 1:
                raise
            tried.append({"hparams": cfg, f"val_{PRIMARY_METRIC[split.train.kind]}": None, "failed": str(e)})
            continue
        if len(configs) == 1:
            return run
        ev = run.evaluate("val")
        score = ev.mean[ev.primary]
        sign = 1.0 if LOWER_IS_BETTER[ev.primary] else -1.0
        tried.append({"hparams": cfg, f"val_{ev.primary}": score if math.isfinite(score) else None})
        if math.isfinite(score) and (best is None or sign * score < best_score):
            best, best_score = run, sign * score
    if best is None:
        failed = [t["failed"] for t in tried if "failed" in t]
        rest = len(tried) - len(failed)
        why = (f"{len(failed)} diverged in training (first: {failed[0]})" if failed else "") + \
            (", " if failed and rest else "") + (f"{rest} ended with a non-finite validation metric" if rest else "")
        raise MtlkitError(f"every configuration of {method!r} failed: {why}"
                          + ("" if failed else "; try a lower learning rate"))
    best.selection = tried
    best.train_seconds = time.perf_counter() - t0
    return best
