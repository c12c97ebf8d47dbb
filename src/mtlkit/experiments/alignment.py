"""Covariance alignment's training recipes (Wu, Zhang & Ré, ICLR 2020): Algorithm 1's second phase on a trained run
(`align_run`) and transfer to new tasks (`align_transfer`, paper §3.2).

They train models (a `Run` through the Trainer), so they sit above `mtlkit.train`; the method itself (the model
with its alignment matrices R_t, the phases, the registry's ``hard-share-align``) is `mtlkit.methods.alignment`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from mtlkit.data.spec import DataInfo
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.methods.alignment import (
    ALIGN_DEFAULTS,
    AlignedHardShareNet,
    arch_hparams,
    set_align_phase,
    trainable_bottom,
)
from mtlkit.methods.base import MethodParts
from mtlkit.methods.baselines import HardShareNet
from mtlkit.methods.params import TRAIN_DEFAULTS, merge_hparams
from mtlkit.nn.losses import TaskLoss
from mtlkit.train.run import Run
from mtlkit.train.trainer import fit_sgd

__all__ = ["align_run", "align_transfer"]


def _fit(model: AlignedHardShareNet, info: DataInfo, split: Split, run: Run, hp: dict[str, Any], seed: int,
         progress: bool | None) -> Run:
    """Train ``model`` (phase already set) on ``split`` with the source run's standardisation; a new `Run`."""
    dev = next(model.parameters()).device
    loss = TaskLoss(info.spec, dev)
    train_dd = run.normalizer.apply(split.train).tensors(dev)
    val_dd = run.normalizer.apply(split.val).tensors(dev) if split.val is not None else None
    t0 = time.perf_counter()
    parts = MethodParts(model, shared_parameters=trainable_bottom)
    hist = fit_sgd(parts, loss, train_dd, val_dd, hp, seed=seed, progress=progress, task_names=info.spec.names)
    src = split.source or split.train
    return Run("hard-share-align", hp, info, model, run.normalizer, split.transform, hist, split, seed, dev,
               time.perf_counter() - t0, dataset=src.name, checksum=src.checksum())


def _train_hp(run: Run, hparams: dict[str, Any] | None, phase: str, align: bool) -> dict[str, Any]:
    base = {**TRAIN_DEFAULTS, **{k: v for k, v in run.hparams.items() if k in TRAIN_DEFAULTS}}
    hp = merge_hparams({**ALIGN_DEFAULTS, **base}, {**arch_hparams(run.hparams), **(hparams or {})}, "hard-share-align")
    hp["align_phase"], hp["align"] = phase, align
    return hp


def _source_model(run: Run) -> HardShareNet:
    model = getattr(run, "model", None)
    if not isinstance(model, HardShareNet) or not hasattr(run, "normalizer"):
        raise MtlkitError("covariance alignment needs a trained run of hard-share or hard-share-align, got "
                          f"{type(model).__name__}")
    return model


def align_run(run: Run, split: Split | None = None, phase: str = "fixed", hparams: dict[str, Any] | None = None,
              seed: int = 0, progress: bool | None = False) -> Run:
    """Algorithm 1 on a trained shared-module run: insert R = I before its shared bottom, then train R with the
    heads, the bottom fixed (``phase="fixed"``), or everything (``"joint"``), on ``split`` (default: the run's).

    ``hparams`` override the training ones (epochs, lr, ...). Returns a new ``hard-share-align`` `Run`; the
    input run is not modified.
    """
    src = _source_model(run)
    split = split if split is not None else run.split
    if split is None:
        raise MtlkitError("align_run needs a split: the run has none attached (it was loaded)")
    if split.train.info().spec != run.info.spec or split.train.feature_shape != run.info.feature_shape:
        raise MtlkitError("the split's tasks differ from the ones the run was trained on")
    hp = _train_hp(run, hparams, phase, True)
    torch.manual_seed(seed)
    model = AlignedHardShareNet(run.info, **arch_hparams(hp)).to(next(src.parameters()).device)
    own = {k: v for k, v in src.state_dict().items() if not k.startswith("alignment.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    if unexpected or any(not k.startswith("alignment.") for k in missing):
        raise MtlkitError(f"the run's model does not match hard-share-align (missing {missing}, unexpected "
                          f"{unexpected})")
    if isinstance(src, AlignedHardShareNet):
        model.alignment.R.data.copy_(src.alignment.R.detach())
    set_align_phase(model, phase)
    return _fit(model, run.info, split, run, hp, seed, progress)


def align_transfer(source: Run, target: Split, align: bool = True, phase: str = "joint",
                   hparams: dict[str, Any] | None = None, seed: int = 0, progress: bool | None = False) -> Run:
    """Transfer (paper §3.2): the source run's shared bottom, new heads for the target tasks, R = I added for the
    target (``align``), then fine-tuning on ``target`` (``phase``: ``joint`` fine-tunes all, ``fixed`` keeps the
    bottom). ``align=False`` is the same fine-tuning without alignment (R frozen at I), the baseline."""
    src = _source_model(source)
    info = target.train.info()
    if info.n_features != source.info.n_features:
        raise MtlkitError(f"the target's rows have {info.n_features} features, the source model expects "
                          f"{source.info.n_features}")
    hp = _train_hp(source, hparams, phase, align)
    torch.manual_seed(seed)
    model = AlignedHardShareNet(info, **arch_hparams(hp)).to(next(src.parameters()).device)
    model.bottom.load_state_dict(src.bottom.state_dict())
    set_align_phase(model, phase, align)
    return _fit(model, info, target, source, hp, seed, progress)
