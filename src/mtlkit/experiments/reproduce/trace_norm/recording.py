"""Training one network through the Trainer while recording what Fig. 1 needs: the norms of every shareable layer
after each epoch, the per-epoch losses and the last epoch's model beside the kept one."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtlkit.data.normalize import Normalizer
from mtlkit.data.splits import Split
from mtlkit.methods import registry
from mtlkit.methods.trace_norm import KINDS
from mtlkit.methods.trace_norm_mtl import layer_norms
from mtlkit.train.config import merge_hparams, method_defaults, method_params
from mtlkit.train.losses import TaskLoss
from mtlkit.train.run import Run, build_method, resolve_device
from mtlkit.train.trainer import fit_sgd


class NormRecorder:
    """Collects `layer_norms` (every tensor trace norm of every shareable layer) of a model at each call, so the
    norms can be plotted over training (the paper's Fig. 1, bottom)."""

    def __init__(self) -> None:
        self.values: list[dict[str, dict[str, float]]] = []

    def record(self, model: torch.nn.Module) -> None:
        """Append the model's current norms."""
        self.values.append(layer_norms(model))

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """``{layer: {kind: [n_records]}}``."""
        if not self.values:
            return {}
        return {layer: {k: np.array([v[layer][k] for v in self.values]) for k in KINDS} for layer in self.values[0]}


@dataclass
class Recorded:
    """One trained network with what Fig. 1 needs. ``run``: the model the Trainer keeps (the epoch with the lowest
    validation loss; the model `train_one` returns for the same arguments); ``last``: the last epoch's model (the
    paper's protocol, which has no validation set); ``train_loss`` / ``val_loss``: per-epoch per-task losses
    ``[epochs, T]`` (cross-entropy only, the penalty excluded; training: the epoch's mini-batch mean); ``norms``:
    every norm of every shareable layer at initialisation and after each epoch; ``init_model``: θ_init."""

    run: Run
    last: Run
    train_loss: np.ndarray
    val_loss: np.ndarray
    norms: dict[str, dict[str, np.ndarray]]
    init_model: torch.nn.Module
    best_epoch: int
    seconds: float = 0.0


def train_recording(method: str, split: Split, hparams: dict[str, Any] | None = None, seed: int = 0,
                    device: str | torch.device | None = None) -> Recorded:
    """Train ``method`` exactly as `mtlkit.train.run.train_one` does (the Trainer, `fit_sgd`, with the same
    normalisation, seed, batches and model selection: the epoch with the lowest validation loss), recording the
    layer norms after every epoch through the Trainer's ``epoch_callback`` and keeping the last epoch's weights too.
    So the configuration a tuning trial scored on split 0 is, bitwise on a CPU, the model recorded here."""
    entry = registry.get(method)
    if entry.fit is not None:
        raise ValueError(f"method {method!r} is not trained by SGD; train_recording needs an SGD-trained method")
    hp = merge_hparams(method_defaults(entry), hparams, method, method_params(entry))
    dev = resolve_device(device)
    train = split.train
    info = train.info()
    norm = Normalizer.fit(train, standardize_x=True, standardize_y=True)
    torch.manual_seed(seed)
    parts = build_method(entry, info, hp)
    model = parts.model.to(dev)
    init_model = copy.deepcopy(model).cpu()
    loss = TaskLoss(info.spec, dev)
    data = norm.apply(train).tensors(dev)
    val = norm.apply(split.val).tensors(dev) if split.val is not None else None
    recorder = NormRecorder()
    recorder.record(model)
    last: dict[str, Any] = {}

    def on_epoch(epoch: int, val_loss: float) -> None:
        recorder.record(model)
        last["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    t0 = time.perf_counter()
    hist = fit_sgd(parts, loss, data, val, hp, seed=seed, progress=False, task_names=info.spec.names,
                   epoch_callback=on_epoch)
    secs = time.perf_counter() - t0
    src = split.source or train
    run = Run(entry.name, hp, info, model, norm, split.transform, hist, split, seed, dev, secs,
              dataset=src.name, checksum=src.checksum())
    last_model = copy.deepcopy(model)
    last_model.load_state_dict(last.get("state", model.state_dict()))
    last_run = Run(entry.name, hp, info, last_model, norm, split.transform, hist, split, seed, dev, secs,
                   dataset=src.name, checksum=src.checksum())
    return Recorded(run, last_run, np.array(hist.train_loss), np.array(hist.val_loss), recorder.arrays(),
                    init_model, int(hist.best_epoch), secs)
