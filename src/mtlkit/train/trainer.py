"""The Trainer: one batched step per mini-batch for any method, built only from the method's roles
(model, penalties, proximal steps, combiner) — it never reads a method's name."""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.data.sampler import TaskBatchSampler
from mtlkit.data.tensors import Batch, DeviceData
from mtlkit.errors import MtlkitError
from mtlkit.methods.base import MethodParts, as_output, row_separable
from mtlkit.optim.combiners import task_tape
from mtlkit.optim.schedule import exponential_decay
from mtlkit.progress import progress_bar, training_label
from mtlkit.train import checkpoint as ckpt_io
from mtlkit.train.distributed import DistContext
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


class TrainingDiverged(MtlkitError):
    """The training (or validation) loss became NaN or inf: the run stops and is not reported.

    ``epoch`` is 1-based; ``steps`` the (first, last) optimisation step of that epoch (the loss is read once per
    epoch, so the first non-finite step lies between them); ``value`` "nan" or "inf"; ``part`` "training" or
    "validation"; ``lr`` the run's initial learning rate; ``method`` the method's name once known."""

    def __init__(self, epoch: int, steps: tuple[int, int], value: str, part: str, lr: float,
                 method: str | None = None) -> None:
        self.epoch, self.steps, self.value, self.part, self.lr, self.method = epoch, steps, value, part, lr, method
        where = f"steps {steps[0]}-{steps[1]}" if steps[0] < steps[1] else f"step {steps[1]}"
        super().__init__(f"{method or 'training'} diverged in epoch {epoch} ({where}): the {part} loss became "
                         f"{value}; lower lr (now {lr:g})")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its fields (worker processes, optuna)
        return (type(self), (self.epoch, self.steps, self.value, self.part, self.lr, self.method))

    def named(self, method: str) -> TrainingDiverged:
        """The same error naming ``method``."""
        return TrainingDiverged(self.epoch, self.steps, self.value, self.part, self.lr, method)


def _nonfinite(values: np.ndarray) -> str:
    return "nan" if np.isnan(values).any() else "inf"


def make_optimizer(params: list[torch.nn.Parameter], hp: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD or Adam; Adam uses torch's fused kernel (one pass over each stacked ``[T, in, out]`` tensor
    instead of several elementwise passes), which matters most when T is large."""
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"], fused=fused)


@torch.no_grad()
def mean_task_loss(model: torch.nn.Module, loss: TaskLoss, data: DeviceData, chunk: int | None = None) -> torch.Tensor:
    """Per-task mean loss [T] over all labelled rows of ``data`` (stays on the device).

    The rows are walked in chunks of ``chunk`` positions of every task (``[T, chunk, ...]`` gathered from the
    unpadded store; default `DeviceData.chunk_width`, which bounds a chunk's memory and is the padded
    implementation's single 65536-wide chunk whenever that fits, so the numbers are the same bits)."""
    total = torch.zeros(data.n_tasks, device=data.device)
    for b in data.chunks(chunk if chunk is not None else data.chunk_width()):
        pred = as_output(model(b.x)).pred
        total += loss.per_row(pred, b.y, b.mask).sum(1)
    return total / data.task_counts().clamp_min(1)


def training_step(parts: MethodParts, fwd: torch.nn.Module, loss: TaskLoss, batch: Batch, w: torch.Tensor,
                  opt: torch.optim.Optimizer, shared: Sequence[torch.nn.Parameter],
                  distributed: DistContext | None = None) -> torch.Tensor:
    """One optimisation step of any method; returns the batch's per-task losses ``[T]`` (detached, on the device).

    ``Σ_t w_t L_t + Σ penalties``; gradients by the method's combiner (given the per-task losses, the weights
    ``w`` and the model's named features); the optimizer step; each proximal step with the step's learning
    rate. ``fwd`` is the model or its DistributedDataParallel wrapper; with ``distributed`` each task's loss is
    divided by its labelled rows in the global batch (one all-reduce of the counts).

    A combiner that takes per-task gradients (``per_task_gradients``) on a row-separable method
    (`MethodParts.row_separable`) with per-task input gets them from one backward pass: the forward pass runs
    under a `TaskTape` (hooks on the shared layers), which the combiner receives as ``tape``."""
    model = parts.model
    tape = None
    if getattr(parts.combiner, "per_task_gradients", False) and not batch.shared and row_separable(parts):
        tape = task_tape(model, [p for p in shared if p.requires_grad], batch.mask.shape[0])
    with tape if tape is not None else contextlib.nullcontext():
        out = as_output(fwd(batch.x))
    if distributed is not None:
        n_global = distributed.all_reduce_sum(batch.mask.sum(1).to(out.pred.dtype))
        rows = loss.per_row(out.pred, batch.y, batch.mask).sum(1)
        losses = rows / n_global.clamp_min(1) * distributed.world_size
    else:
        losses = loss(out.pred, batch)
    total = (w * losses).sum()
    for pen in parts.penalties:
        total = total + pen(model, out, batch)
    opt.zero_grad(set_to_none=True)
    if tape is not None:
        parts.combiner.backward(losses, total, shared, weights=w, features=out.features, tape=tape)  # type: ignore[call-arg]
    else:
        parts.combiner.backward(losses, total, shared, weights=w, features=out.features)
    opt.step()
    if parts.proxes:
        lr = opt.param_groups[0]["lr"]
        with torch.no_grad():
            for prox in parts.proxes:
                prox(model, lr)
    after = getattr(parts.combiner, "after_step", None)
    if after is not None:  # e.g. FAMO: the batch's losses after the step, recomputed without a graph
        def recompute() -> torch.Tensor:
            with torch.no_grad():
                pred = as_output(fwd(batch.x)).pred
                if distributed is None:
                    return loss(pred, batch)
                return loss.per_row(pred, batch.y, batch.mask).sum(1) / n_global.clamp_min(1) * distributed.world_size

        after(recompute)
    return losses.detach()


class _CompiledForward(torch.nn.Module):
    """``fwd`` under torch.compile; if the first compiled call fails (no C++ compiler for inductor, an operation
    dynamo cannot trace), one warning and every call from then on runs ``fwd`` eagerly."""

    def __init__(self, fwd: torch.nn.Module) -> None:
        super().__init__()
        self.fwd = fwd
        self.compiled: Callable[..., Any] | None = torch.compile(fwd)
        self.tried = False

    def forward(self, x: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.fwd(x)
        if self.tried:
            return self.compiled(x)
        try:
            out = self.compiled(x)
        except Exception as e:  # the eager call below raises again if the model itself is at fault
            self.compiled = None
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            warnings.warn(f"compile: torch.compile failed ({type(e).__name__}: {first}); training eagerly",
                          stacklevel=2)
            return self.fwd(x)
        self.tried = True
        return out


def compile_forward(fwd: torch.nn.Module, parts: MethodParts) -> torch.nn.Module:
    """The training step's forward pass under ``torch.compile`` (AOTAutograd compiles its backward with it), or
    ``fwd`` itself with a one-line warning where that cannot work: a torch without ``torch.compile``; a combiner
    that takes per-task gradients (it differentiates inside the eager autograd graph, where a compiled forward is
    one opaque node); a first compiled call that fails (then the run continues eagerly)."""
    if not hasattr(torch, "compile"):
        warnings.warn(f"compile: torch {torch.__version__} has no torch.compile; training eagerly", stacklevel=2)
        return fwd
    if getattr(parts.combiner, "per_task_gradients", False):
        warnings.warn(f"compile: {type(parts.combiner).__name__} takes per-task gradients through the eager autograd "
                      "graph, which a compiled forward pass hides; training eagerly", stacklevel=2)
        return fwd
    return _CompiledForward(fwd)


def _fingerprint(parts: MethodParts, train: DeviceData, val: DeviceData | None, hp: dict[str, Any], seed: int,
                 task_weights: torch.Tensor | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """What identifies a run for resuming: hyper-parameters (``epochs`` aside: a run may be extended),
    seed, data shapes, the model's tensor shapes, task weights, plus the caller's ``extra`` (method, data
    checksum). A checkpoint whose fingerprint differs belongs to another run."""
    def shapes(d: DeviceData | None) -> dict[str, Any] | None:
        if d is None:
            return None
        return {"x": d.x_shape, "y": d.y_shape, "shared": d.shared, "counts": [int(c) for c in d.counts]}

    fp: dict[str, Any] = {
        "hparams": {k: v for k, v in sorted(hp.items()) if k != "epochs"}, "seed": int(seed),
        "train": shapes(train), "val": shapes(val),
        "model": {k: list(v.shape) for k, v in parts.model.state_dict().items()},
        "task_weights": None if task_weights is None else task_weights.detach().cpu().tolist(),  # once, at start
    }
    fp.update(extra or {})
    return json.loads(json.dumps(fp, default=str))


def _summary_writer(log_dir: str | Path, purge_step: int | None) -> Any:
    """TensorBoard's SummaryWriter, imported only when asked for; ``purge_step`` makes TensorBoard drop
    what an earlier run logged in the same directory from that epoch on (0 for a fresh run: it replaces
    the old curves; the resumed epoch for a resumed run: no duplicate points)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise MtlkitError(f"TensorBoard logging needs the tensorboard package ({e}); install mtlkit[tensorboard]") \
            from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def fit_sgd(parts: MethodParts, loss: TaskLoss, train: DeviceData, val: DeviceData | None,
            hp: dict[str, Any], seed: int = 0, task_weights: torch.Tensor | None = None,
            progress: bool | None = None, eval_chunk: int | None = None,
            checkpoint: str | Path | None = None, checkpoint_every: int = 0, resume: bool = False,
            tensorboard: str | Path | None = None, task_names: Sequence[str] | None = None,
            fingerprint: Mapping[str, Any] | None = None, distributed: DistContext | None = None,
            epoch_callback: Callable[[int, float], None] | None = None, compile: bool = False,
            step_callback: Callable[[int, Batch, MethodParts, float], None] | None = None) -> History:
    """Train ``parts.model`` in place; at the end it holds the epoch with the lowest validation loss.

    Objective per step: ``Σ_t w_t L_t + Σ penalties`` (``w_t = 1/T`` by default), gradients by the
    method's combiner (given the per-task losses, the weights ``w`` and the model's named features), then the
    optimizer step, then each proximal step with the step's learning rate.
    Host synchronisation happens once per epoch (losses and early stopping), never per step — except at
    the steps that write a checkpoint. A non-finite training or validation loss, read with that one sync at
    an epoch's end, stops the run: `TrainingDiverged` (an `MtlkitError` naming the epoch, its steps and the
    learning rate) is raised after the checkpoint, if any, records the run as finished.

    ``checkpoint``: a file that receives the full training state (`mtlkit.train.checkpoint`) every
    ``checkpoint_every`` optimisation steps (0: at every epoch's end) and when training ends. ``resume``:
    continue from that file at the exact step it records; on the CPU the result is bitwise identical to
    an uninterrupted run with the same seed. ``fingerprint`` adds identity (method name, data checksum)
    a resumed checkpoint must match. ``tensorboard``: a log directory for per-epoch scalars (train / val
    loss, weighted mean and per task named by ``task_names``, learning rate); a resumed run appends to it.

    ``distributed``: data-parallel training under torchrun (`mtlkit.train.distributed`). The model is
    wrapped in DistributedDataParallel, each rank takes its share of every step's global batch, and each
    task's loss is divided by the task's labelled rows in the *global* batch (one all-reduce of the
    counts per step), so the averaged gradient is the single-process gradient of that batch. Only rank 0
    writes checkpoints and TensorBoard logs; a resumed distributed run restores rank 0's RNG state on
    every rank (bitwise resume holds without dropout).

    ``eval_chunk``: positions of every task per validation forward (default `DeviceData.chunk_width` with at least
    the batch size: bounded memory, see `mean_task_loss`).

    ``epoch_callback(epoch, val_loss)``: called after each epoch with the task-weighted mean validation loss (the
    early-stopping score); it may raise to stop training (tuning's pruner raises ``optuna.TrialPruned``).

    ``step_callback(step, batch, parts, lr)``: called before each optimisation step with the global step (0-based),
    the step's batch, the method's parts and the step's learning rate, e.g. to measure task affinity on the model as
    it is (`mtlkit.experiments.affinity`); it must leave the model's parameters and the RNG state as it found them.

    ``compile``: the training step's forward pass (and through AOTAutograd its backward) runs under
    ``torch.compile`` (`compile_forward`; a one-line warning and eager steps where it cannot). Without dropout
    the losses are the eager ones up to float rounding; compiled dropout draws other masks. Validation is eager.
    """
    model = parts.model
    T = train.n_tasks
    device = train.device
    if checkpoint_every < 0:
        raise MtlkitError(f"checkpoint_every must be >= 0 steps, got {checkpoint_every}")
    if resume and checkpoint is None:
        raise MtlkitError("resume needs the checkpoint file to resume from")
    if task_names is not None and len(task_names) != T:
        raise MtlkitError(f"{len(task_names)} task names given for {T} tasks")
    w = task_weights if task_weights is not None else torch.full((T,), 1.0 / T, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    sched = exponential_decay(opt, hp["lr_decay"], hp["decay_steps"])
    ddp = distributed is not None and distributed.world_size > 1
    dist = distributed if ddp else None  # the group the sampler splits batches over (None: this process alone)
    main = distributed is None or distributed.is_main
    fwd: torch.nn.Module = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        fwd = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        fwd = compile_forward(fwd, parts)
    sampler = TaskBatchSampler(train, hp["batch_size"], seed=seed,
                               rank=dist.rank if dist is not None else 0,
                               world_size=dist.world_size if dist is not None else 1)
    steps = len(sampler)
    # a validation chunk no smaller than a training batch (see `DeviceData.chunk_width`)
    val_chunk = eval_chunk if eval_chunk is not None or val is None else val.chunk_width(at_least=hp["batch_size"])
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    hist = History()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bad, patience = 0, int(hp.get("patience") or 0)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    every = int(checkpoint_every)
    ident = _fingerprint(parts, train, val, hp, seed, task_weights, fingerprint) if ckpt is not None else {}
    start_epoch, start_step, global_step = 0, 0, 0
    acc_resumed: torch.Tensor | None = None
    if resume:
        assert ckpt is not None
        st = ckpt_io.load_training_state(ckpt, ident)
        if st.epoch + (st.step > 0) > hp["epochs"]:
            raise MtlkitError(f"{ckpt} is at epoch {st.epoch}, beyond epochs={hp['epochs']}: resume with at least "
                              f"epochs={st.epoch + (st.step > 0)}")
        model.load_state_dict(st.model)
        opt.load_state_dict(st.optimizer)
        sched.load_state_dict(st.scheduler)
        if st.method and parts.load_state is None:
            raise MtlkitError(f"{ckpt} holds method state ({', '.join(st.method)}) that this method cannot load")
        if parts.load_state is not None:
            parts.load_state({k: v.to(device) for k, v in st.method.items()})
        torch.set_rng_state(st.rng_cpu)
        if device.type == "cuda" and st.rng_cuda:
            torch.cuda.set_rng_state_all(st.rng_cuda)
        sampler.set_state(st.sampler)
        hist = History(st.train_loss, st.val_loss, st.best_epoch, st.best_val, st.diverged, st.stopped_early)
        current = model.state_dict()
        best_state = {k: v.to(current[k].device) for k, v in st.best_model.items()}
        bad = st.bad_epochs
        start_epoch, start_step, global_step = st.epoch, st.step, st.global_step
        acc_resumed = st.acc.to(device) if st.step else None

    def save(epoch: int, step: int, sampler_state: dict[str, Any], acc: torch.Tensor) -> None:
        """Write the state between two steps (``step`` steps of ``epoch`` done); syncs, so only at checkpoints."""
        assert ckpt is not None
        if not main:
            return
        if writer is not None:
            writer.flush()  # what TensorBoard shows never runs ahead of what a resume restores
        ckpt_io.save_training_state(ckpt, ckpt_io.TrainingState(
            epoch=epoch, step=step, global_step=global_step, sampler=sampler_state, acc=acc,
            model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            rng_cpu=torch.get_rng_state(),
            rng_cuda=list(torch.cuda.get_rng_state_all()) if device.type == "cuda" else [],
            method=parts.state() if parts.state is not None else {}, best_model=best_state,
            train_loss=hist.train_loss, val_loss=hist.val_loss, best_epoch=hist.best_epoch,
            best_val=hist.best_val, diverged=hist.diverged, stopped_early=hist.stopped_early, bad_epochs=bad,
            fingerprint=ident))

    names = [str(n) for n in task_names] if task_names is not None else [f"task{t}" for t in range(T)]
    # purge_step: TensorBoard drops what an earlier (killed) run logged from this epoch on: no duplicate points
    writer = _summary_writer(tensorboard, start_epoch) if tensorboard is not None and main else None
    w_host = w.detach().cpu().numpy()
    epoch = start_epoch
    unsaved = False  # progress since the last checkpoint
    diverged: TrainingDiverged | None = None
    try:
        with progress_bar(hp["epochs"], training_label(), progress if main else False, timed=True,
                          unit="epoch") as bar:
            if start_epoch:
                bar.advance(min(start_epoch, hp["epochs"]))
            while epoch < hp["epochs"] and not (hist.diverged or hist.stopped_early):
                model.train()
                first = start_step if epoch == start_epoch else 0
                acc = acc_resumed if first and acc_resumed is not None else torch.zeros(T, device=device)
                epoch_state = sampler.state()  # before the epoch's draw: regenerates this epoch on resume
                due_at_end = False
                for s, batch in enumerate(sampler.epoch(first), start=first):
                    if step_callback is not None:
                        step_callback(global_step, batch, parts, opt.param_groups[0]["lr"])
                    losses = training_step(parts, fwd, loss, batch, w, opt, shared, distributed if ddp else None)
                    sched.step()
                    acc += losses
                    global_step += 1
                    unsaved = True
                    if ckpt is not None and every and global_step % every == 0:
                        if s + 1 < steps:
                            if ddp:  # a collective on every rank: the checkpoint holds the global running loss
                                assert distributed is not None
                                part = distributed.all_reduce_sum(acc.clone()) / distributed.world_size
                            save(epoch, s + 1, epoch_state, part if ddp else acc)
                            unsaved = False
                        else:  # the epoch's last step: save after its bookkeeping below
                            due_at_end = True
                model.eval()
                if ddp:
                    assert distributed is not None
                    acc = distributed.all_reduce_sum(acc) / distributed.world_size  # the global batches' losses
                end_hook = getattr(parts.combiner, "epoch_end", None)
                if end_hook is not None:  # e.g. DWA, STCH: the epoch's mean training loss per task (no sync)
                    end_hook(acc / steps)
                vl = mean_task_loss(model, loss, val, val_chunk) if val is not None else acc / steps
                host = torch.cat([acc / steps, vl]).cpu().numpy()  # the epoch's one sync
                tr_l, va_l = host[:T], host[T:]
                hist.train_loss.append(tr_l)
                hist.val_loss.append(va_l)
                score = float((w_host * va_l).sum())
                if writer is not None:
                    _log_epoch(writer, epoch, float((w_host * tr_l).sum()), score, tr_l, va_l, names,
                               opt.param_groups[0]["lr"])
                epoch += 1
                if not np.isfinite(tr_l).all() or not math.isfinite(score):  # read with the epoch's one sync
                    hist.diverged = True
                    bad_part = "training" if not np.isfinite(tr_l).all() else "validation"
                    diverged = TrainingDiverged(epoch, (global_step - steps + 1 + first, global_step),
                                                _nonfinite(tr_l if bad_part == "training" else va_l), bad_part,
                                                float(hp["lr"]))
                    break
                if score < hist.best_val - 1e-12:
                    hist.best_val, hist.best_epoch, bad = score, epoch - 1, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
                bar.advance(status=f"val loss {score:.4g} (best {hist.best_val:.4g} @ {hist.best_epoch})")
                if epoch_callback is not None:
                    epoch_callback(epoch - 1, score)
                if patience and bad >= patience:
                    hist.stopped_early = True
                    break
                if ckpt is not None and (every == 0 or due_at_end):
                    save(epoch, 0, sampler.state(), torch.zeros(T, device=device))
                    unsaved = False
        if ckpt is not None and (unsaved or not ckpt.exists()):
            save(epoch, 0, sampler.state(), torch.zeros(T, device=device))  # the end: a resume returns at once
    finally:
        if writer is not None:
            writer.close()
    if hist.diverged:  # the checkpoint (if any) records it as finished; a resume ends here again
        if diverged is None:  # resumed from the checkpoint of a run that had diverged
            last = hist.train_loss[-1] if hist.train_loss else np.array([math.nan])
            which = "training" if not np.isfinite(last).all() or not hist.val_loss else "validation"
            diverged = TrainingDiverged(len(hist.train_loss), (global_step, global_step),
                                        _nonfinite(last if which == "training" else hist.val_loss[-1]), which,
                                        float(hp["lr"]))
        raise diverged
    model.load_state_dict(best_state)
    return hist


def _log_epoch(writer: Any, epoch: int, train_mean: float, val_mean: float, tr_l: np.ndarray, va_l: np.ndarray,
               names: Sequence[str], lr: float) -> None:
    """One epoch's TensorBoard scalars, at step ``epoch`` (the History index)."""
    writer.add_scalar("loss/train", train_mean, epoch)
    writer.add_scalar("loss/val", val_mean, epoch)
    writer.add_scalar("lr", float(lr), epoch)
    for t, name in enumerate(names):
        writer.add_scalar(f"train_loss/{name}", float(tr_l[t]), epoch)
        writer.add_scalar(f"val_loss/{name}", float(va_l[t]), epoch)
