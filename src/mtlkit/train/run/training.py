"""`train_one` (one configuration: standardisation, build, optional pretraining, the Trainer or the method's own
solver) and `train` (a grid of configurations, the best kept by the mean validation primary metric)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.data.normalize import Normalizer
from mtlkit.data.spec import DataInfo
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.methods import registry
from mtlkit.methods.base import MethodParts
from mtlkit.train.config import merge_hparams, method_defaults, method_params
from mtlkit.train.distributed import DistContext
from mtlkit.train.losses import TaskLoss
from mtlkit.train.metrics import LOWER_IS_BETTER, PRIMARY_METRIC
from mtlkit.train.run.trained import Run, build_method, resolve_device
from mtlkit.train.trainer import TrainingDiverged, fit_sgd


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
