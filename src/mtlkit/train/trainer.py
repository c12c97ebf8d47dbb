"""The Trainer: one batched step per mini-batch for any method, built only from the method's roles
(model, penalties, proximal steps, combiner) — it never reads a method's name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlkit.data.sampler import TaskBatchSampler
from mtlkit.data.tensors import DeviceData
from mtlkit.methods.base import MethodParts, as_output
from mtlkit.optim.schedule import exponential_decay
from mtlkit.progress import progress_bar
from mtlkit.train.losses import TaskLoss


@dataclass
class History:
    """Per-epoch per-task mean training loss and validation loss (``[epochs, T]``), the selected epoch."""

    train_loss: list[np.ndarray] = field(default_factory=list)
    val_loss: list[np.ndarray] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.inf
    diverged: bool = False
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"train_loss": [v.tolist() for v in self.train_loss],
                "val_loss": [v.tolist() for v in self.val_loss], "best_epoch": self.best_epoch,
                "best_val": self.best_val if math.isfinite(self.best_val) else None,
                "diverged": self.diverged, "stopped_early": self.stopped_early}


def make_optimizer(params: list[torch.nn.Parameter], hp: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD or Adam; Adam uses torch's fused kernel (one pass over each stacked ``[T, in, out]`` tensor
    instead of several elementwise passes), which matters most when T is large."""
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"], fused=fused)


@torch.no_grad()
def mean_task_loss(model: torch.nn.Module, loss: TaskLoss, data: DeviceData, chunk: int | None = None) -> torch.Tensor:
    """Per-task mean loss [T] over all labelled rows of ``data`` (stays on the device)."""
    total = torch.zeros(data.n_tasks, device=data.mask.device)
    for b in data.chunks(chunk):
        pred = as_output(model(b.x)).pred
        total += loss.per_row(pred, b.y, b.mask).sum(1)
    return total / data.mask.sum(1).clamp_min(1)


def fit_sgd(parts: MethodParts, loss: TaskLoss, train: DeviceData, val: DeviceData | None,
            hp: dict[str, Any], seed: int = 0, task_weights: torch.Tensor | None = None,
            progress: bool | None = None, eval_chunk: int | None = 65536) -> History:
    """Train ``parts.model`` in place; at the end it holds the epoch with the lowest validation loss.

    Objective per step: ``Σ_t w_t L_t + Σ penalties`` (``w_t = 1/T`` by default), gradients by the
    method's combiner, then the optimizer step, then each proximal step with the step's learning rate.
    Host synchronisation happens once per epoch (losses and early stopping), never per step.
    """
    model = parts.model
    T = train.n_tasks
    device = train.mask.device
    w = task_weights if task_weights is not None else torch.full((T,), 1.0 / T, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    sched = exponential_decay(opt, hp["lr_decay"], hp["decay_steps"])
    sampler = TaskBatchSampler(train, hp["batch_size"], seed=seed)
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    hist = History()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bad, patience = 0, int(hp.get("patience") or 0)
    with progress_bar(hp["epochs"], "training", progress) as bar:
        for epoch in range(hp["epochs"]):
            model.train()
            acc = torch.zeros(T, device=device)
            for batch in sampler:
                out = as_output(model(batch.x))
                losses = loss(out.pred, batch)
                total = (w * losses).sum()
                for pen in parts.penalties:
                    total = total + pen(model, out, batch)
                opt.zero_grad(set_to_none=True)
                parts.combiner.backward(losses, total, shared)
                opt.step()
                if parts.proxes:
                    lr = opt.param_groups[0]["lr"]
                    with torch.no_grad():
                        for prox in parts.proxes:
                            prox(model, lr)
                sched.step()
                acc += losses.detach()
            model.eval()
            vl = mean_task_loss(model, loss, val, eval_chunk) if val is not None else acc / len(sampler)
            host = torch.cat([acc / len(sampler), vl]).cpu().numpy()  # the epoch's one sync
            tr_l, va_l = host[:T], host[T:]
            hist.train_loss.append(tr_l)
            hist.val_loss.append(va_l)
            score = float((w.cpu().numpy() * va_l).sum())
            if not np.isfinite(tr_l).all() or not math.isfinite(score):
                hist.diverged = True
                break
            if score < hist.best_val - 1e-12:
                hist.best_val, hist.best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            bar.advance(status=f"val loss {score:.4g} (best {hist.best_val:.4g} @ {hist.best_epoch})")
            if patience and bad >= patience:
                hist.stopped_early = True
                break
    model.load_state_dict(best_state)
    return hist
