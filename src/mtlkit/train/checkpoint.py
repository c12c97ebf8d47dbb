"""Training checkpoints: everything `fit_sgd` needs to continue a killed run at the exact step it reached.

One safetensors file per checkpoint. Tensors (model, best model, optimizer state, RNG states, the epoch's
loss accumulator, the loss history, method state) are its tensors; everything else (position, sampler
state, scheduler state, optimizer hyper-parameters, early-stopping bookkeeping, the run's fingerprint) is
one JSON string in the file's header metadata. Nothing is pickled: no ``torch.save`` / ``torch.load``.

Writes are atomic: the file is written to a temporary file in the same directory, flushed to disk, then
renamed over the old checkpoint (``os.replace``), so a crash at any moment leaves either the previous
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.errors import MtlkitError

FORMAT = "mtlkit-training-checkpoint/1"
META_KEY = "mtlkit"  # safetensors header metadata key holding the JSON document

_TENSOR, _TUPLE, _ITEMS, _FLOAT = "__tensor__", "__tuple__", "__items__", "__float__"


# ---------------------------------------------------------------------- nested state <-> JSON + tensors
def encode_tree(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of a nested state (``state_dict``-like): tensors move into ``tensors`` under a
    dotted key (``optim.state.0.exp_avg``) and are referenced by it; tuples, non-string dict keys and
    non-finite floats are tagged so that `decode_tree` gives back the same Python values."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {_TENSOR: prefix}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode_tree(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {_ITEMS: [[encode_tree(k, f"{prefix}.key{i}", tensors), encode_tree(v, f"{prefix}.{k}", tensors)]
                         for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {_TUPLE: [encode_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT: repr(obj)}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return encode_tree(obj.item(), prefix, tensors)
    raise MtlkitError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint (only tensors, numbers, "
                      "strings, lists, tuples and dicts are stored; nothing is pickled)")


def decode_tree(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of `encode_tree`: rebuilds the nested state with its tensors."""
    if isinstance(obj, list):
        return [decode_tree(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            (tag, val), = obj.items()
            if tag == _TENSOR:
                return tensors[val]
            if tag == _TUPLE:
                return tuple(decode_tree(v, tensors) for v in val)
            if tag == _ITEMS:
                return {decode_tree(k, tensors): decode_tree(v, tensors) for k, v in val}
            if tag == _FLOAT:
                return float(val)
        return {k: decode_tree(v, tensors) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------- the file
def write_atomic(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` + ``meta`` (JSON in the header metadata) as one safetensors file, atomically:
    temporary file in the same directory, fsync, ``os.replace``. On failure the old file is untouched; a
    folder that cannot be written is an `MtlkitError` naming the path."""
    from safetensors.torch import save

    path = Path(path)
    blob = save(dict(tensors), metadata={"format": FORMAT, META_KEY: json.dumps(meta, allow_nan=False)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        reason = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
        raise MtlkitError(f"cannot write the checkpoint {path} ({reason})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (POSIX); harmless where directories cannot be opened
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON document (position, history, fingerprint, ...) without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MtlkitError(f"no training checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # a foreign or damaged file: say so in one line
        raise MtlkitError(f"{path} is not a training checkpoint (not a readable safetensors file: {e})") from None
    if header.get("format") != FORMAT or META_KEY not in header:
        raise MtlkitError(f"{path} is not an mtlkit training checkpoint (format {header.get('format')!r}, "
                          f"expected {FORMAT!r})")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise MtlkitError(f"{path} is a damaged training checkpoint (its metadata is not JSON: {e})") from None
    if not isinstance(meta, dict):
        raise MtlkitError(f"{path} is a damaged training checkpoint (its metadata is not a JSON object)")
    return meta


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors (on the CPU) and the JSON document of a checkpoint."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    try:
        return load_file(str(path)), meta
    except Exception as e:  # safetensors' own error type: truncated or damaged tensor data
        raise MtlkitError(f"{path} is a damaged training checkpoint ({str(e).strip() or type(e).__name__})") \
            from None


# ---------------------------------------------------------------------- what a training run stores
@dataclass
class TrainingState:
    """A training run frozen between two steps: ``step`` steps of epoch ``epoch`` are done (0 = at the
    epoch's start) and ``global_step`` steps in all. ``sampler`` is the sampler's RNG state at the start
    of epoch ``epoch``, so the epoch's batches can be drawn again and skipped to ``step``."""

    epoch: int
    step: int
    global_step: int
    sampler: dict[str, Any]
    acc: torch.Tensor                                   # running per-task loss sum of the current epoch [T]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng_cpu: torch.Tensor
    rng_cuda: list[torch.Tensor] = field(default_factory=list)
    method: dict[str, torch.Tensor] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)
    train_loss: list[np.ndarray] = field(default_factory=list)
    val_loss: list[np.ndarray] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.inf
    diverged: bool = False
    stopped_early: bool = False
    bad_epochs: int = 0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True when the run ended by divergence or early stopping (more epochs would not continue it)."""
        return self.diverged or self.stopped_early


def _cpu_copy(state: Mapping[str, torch.Tensor], prefix: str, out: dict[str, torch.Tensor]) -> None:
    for k, v in state.items():
        out[f"{prefix}.{k}"] = v.detach().cpu().contiguous().clone()


def _loss_matrix(rows: list[np.ndarray], T: int) -> torch.Tensor:
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros((0, T), dtype=torch.float32)


def save_training_state(path: str | Path, st: TrainingState) -> Path:
    """Write ``st`` as one safetensors file, atomically (see `write_atomic`)."""
    tensors: dict[str, torch.Tensor] = {}
    _cpu_copy(st.model, "model", tensors)
    _cpu_copy(st.best_model, "best", tensors)
    _cpu_copy(st.method, "method", tensors)
    tensors["acc"] = st.acc.detach().cpu().contiguous().clone()
    tensors["rng.cpu"] = st.rng_cpu.detach().cpu().contiguous().clone()
    for i, r in enumerate(st.rng_cuda):
        tensors[f"rng.cuda.{i}"] = r.detach().cpu().contiguous().clone()
    T = int(st.acc.shape[0])
    tensors["history.train_loss"] = _loss_matrix(st.train_loss, T)
    tensors["history.val_loss"] = _loss_matrix(st.val_loss, T)
    meta = {
        "position": {"epoch": st.epoch, "step": st.step, "global_step": st.global_step},
        "sampler": st.sampler,
        "optimizer": encode_tree(st.optimizer, "optim", tensors),
        "scheduler": encode_tree(st.scheduler, "sched", tensors),
        "history": {"best_epoch": st.best_epoch, "best_val": st.best_val if math.isfinite(st.best_val) else None,
                    "diverged": st.diverged, "stopped_early": st.stopped_early, "bad_epochs": st.bad_epochs},
        "model_keys": list(st.model), "best_keys": list(st.best_model), "method_keys": list(st.method),
        "rng_cuda": len(st.rng_cuda),
        "fingerprint": st.fingerprint,
    }
    return write_atomic(path, tensors, meta)


def _differences(saved: Any, now: Any, where: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now)):
            out += _differences(saved.get(k), now.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if saved == now else [f"{where or 'fingerprint'}: {_short(saved)} in the checkpoint, {_short(now)} now"]


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def load_training_state(path: str | Path, fingerprint: Mapping[str, Any] | None = None) -> TrainingState:
    """Read a checkpoint written by `save_training_state`; with ``fingerprint``, refuse (`MtlkitError`) a
    checkpoint of a different run (other hyper-parameters, seed, data or model), naming what differs."""
    tensors, meta = read(path)
    if fingerprint is not None:
        now = json.loads(json.dumps(fingerprint, default=str))
        diff = _differences(meta.get("fingerprint"), now)
        if diff:
            raise MtlkitError(f"{path} is the checkpoint of a different run ({'; '.join(diff[:4])}"
                              + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
                              + "); resume the same run, or start afresh without resume")

    try:
        return _training_state(tensors, meta)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        what = f"{e.args[0]!r} is missing" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"
        raise MtlkitError(f"{path} is a damaged training checkpoint ({what})") from None


def _training_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> TrainingState:
    def group(prefix: str, keys: list[str]) -> dict[str, torch.Tensor]:
        return {k: tensors[f"{prefix}.{k}"] for k in keys}

    pos, h = meta["position"], meta["history"]
    tl, vl = tensors["history.train_loss"].numpy(), tensors["history.val_loss"].numpy()
    return TrainingState(
        epoch=int(pos["epoch"]), step=int(pos["step"]), global_step=int(pos["global_step"]),
        sampler=meta["sampler"], acc=tensors["acc"], model=group("model", meta["model_keys"]),
        optimizer=decode_tree(meta["optimizer"], tensors), scheduler=decode_tree(meta["scheduler"], tensors),
        rng_cpu=tensors["rng.cpu"], rng_cuda=[tensors[f"rng.cuda.{i}"] for i in range(int(meta["rng_cuda"]))],
        method=group("method", meta["method_keys"]), best_model=group("best", meta["best_keys"]),
        train_loss=[r.copy() for r in tl], val_loss=[r.copy() for r in vl],
        best_epoch=int(h["best_epoch"]), best_val=math.inf if h["best_val"] is None else float(h["best_val"]),
        diverged=bool(h["diverged"]), stopped_early=bool(h["stopped_early"]), bad_epochs=int(h["bad_epochs"]),
        fingerprint=meta.get("fingerprint", {}),
    )


def describe(path: str | Path) -> str:
    """One line saying where a checkpoint stands (for the CLI): epoch, step within it, steps in all."""
    meta = read_meta(path)
    try:
        pos, h = meta["position"], meta["history"]
        end = " (finished: diverged)" if h["diverged"] else " (finished: stopped early)" if h["stopped_early"] else ""
        return f"epoch {pos['epoch']}, step {pos['step']} of it, {pos['global_step']} steps in all{end}"
    except (KeyError, TypeError) as e:
        what = f"{e.args[0]!r} is missing" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"
        raise MtlkitError(f"{path} is a damaged training checkpoint ({what})") from None
