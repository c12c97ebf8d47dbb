"""Task affinity: how much training on task i helps (or hurts) task j, as a T×T matrix (row = source i, column =
target j), and the per-step math behind it. The runs that produce it (a joint training run, pair runs) live in
`mtlkit.experiments.affinity`; here are only the computations on given models and tensors, and the result type.

* lookahead (TAG, Fifty et al., NeurIPS 2021): ``Z_{i→j} = 1 − L_j(θ_s − lr·∇_{θ_s} L_i, θ_j) / L_j(θ_s, θ_j)``
  on one batch, for all T source tasks at once: the T per-task gradients of the shared parameters θ_s in one batched
  vector-Jacobian product (`mtlkit.optim.combiners.task_gradient_parts`), then ONE forward pass over T copies of θ_s
  (``torch.func.vmap`` of ``torch.func.functional_call``), never T Python passes;
* gradient: its first-order form from the same gradients' T×T Gram matrix ``⟨g_i, g_j⟩`` — raw (``"gram"``), cosine
  (``"cosine"``), or TAG's first-order expansion ``lr·⟨g_i, g_j⟩ / L_j`` (``"first-order"``).

Positive = the source's update lowers the target's loss (helps it)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.errors import MtlkitError
from mtlkit.optim.combiners import TaskTape, task_gradient_parts

HOWS = ("lookahead", "gradient", "pairs", "learned")
GRADIENT_NORMS = ("cosine", "gram", "first-order")


@dataclass
class Affinity:
    """A task-affinity matrix: ``matrix[i, j]`` is the effect of source task i on target task j (positive helps),
    with the task names, how it was measured (`HOWS`), its normalisation and the measurement's details (steps,
    seconds, method, ...). The diagonal is a task's effect on itself; grouping uses only the off-diagonal."""

    matrix: np.ndarray
    task_names: tuple[str, ...]
    how: str
    normalize: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        self.task_names = tuple(str(n) for n in self.task_names)
        T = len(self.task_names)
        if self.matrix.shape != (T, T):
            raise MtlkitError(f"an affinity matrix for {T} tasks must be {T}×{T}, got shape {self.matrix.shape}")

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def label(self) -> str:
        """``lookahead``, ``gradient (cosine)``, ...: how, with the normalisation when there is one."""
        return f"{self.how} ({self.normalize})" if self.normalize else self.how

    def off_diagonal(self) -> np.ndarray:
        """The matrix with NaN on the diagonal (what grouping and summaries read)."""
        m = self.matrix.copy()
        np.fill_diagonal(m, np.nan)
        return m

    def symmetric(self) -> np.ndarray:
        """``(M + Mᵀ) / 2``: the mutual affinity of each pair (NaN where either direction is unknown)."""
        return (self.matrix + self.matrix.T) / 2.0

    def summary(self) -> Any:
        """Per task (a pandas DataFrame indexed by task): ``self`` (the diagonal), ``received`` (mean effect of the
        other tasks on it), ``given`` (its mean effect on the others), ``best_partner`` (the task helping it most)."""
        import pandas as pd

        off = self.off_diagonal()
        with warnings.catch_warnings():  # an all-NaN column is a legitimate 'unknown', not worth a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            received = np.nanmean(off, axis=0)
            given = np.nanmean(off, axis=1)
        best = [self.task_names[int(np.nanargmax(off[:, j]))] if np.isfinite(off[:, j]).any() else ""
                for j in range(self.n_tasks)]
        return pd.DataFrame({"self": np.diag(self.matrix), "received": received, "given": given,
                             "best_partner": best}, index=pd.Index(self.task_names, name="task"))

    def to_frame(self) -> Any:
        """The matrix as a pandas DataFrame: rows the source tasks, columns the target tasks."""
        import pandas as pd

        return pd.DataFrame(self.matrix, index=pd.Index(self.task_names, name="source"),
                            columns=pd.Index(self.task_names, name="target"))

    def write_csv(self, path: str | Path) -> Path:
        """The matrix as CSV (first column the source task, header the target tasks); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(p, float_format="%.6g")
        return p

    @classmethod
    def read_csv(cls, path: str | Path, how: str = "", normalize: str = "") -> Affinity:
        """An affinity written by `write_csv` (a square table whose row and column labels agree)."""
        import pandas as pd

        try:
            df = pd.read_csv(path, index_col=0)
        except (OSError, ValueError) as e:
            raise MtlkitError(f"{path}: not an affinity CSV ({e})") from None
        if list(map(str, df.index)) != list(map(str, df.columns)):
            raise MtlkitError(f"{path}: the row labels (source tasks) must equal the column labels (target tasks)")
        return cls(df.to_numpy(dtype=np.float64), tuple(map(str, df.index)), how, normalize,
                   {"file": str(path)})


# ---------------------------------------------------------------------------------------------- one step's math
@dataclass
class StepAffinity:
    """What one batch gives: the lookahead matrix ``[T, T]`` (None when not asked for), the Gram matrix of the
    per-task gradients of the shared parameters ``[T, T]``, and the per-task losses before the step ``[T]``."""

    gram: torch.Tensor
    losses: torch.Tensor
    lookahead: torch.Tensor | None = None


def _pred(out: Any) -> torch.Tensor:
    """A model's predictions: ``out.pred`` for a `ModelOutput`, else ``out`` itself."""
    return out.pred if hasattr(out, "pred") else out


def step_affinity(model: nn.Module, shared: Sequence[nn.Parameter], x: torch.Tensor,
                  loss_fn: Callable[[torch.Tensor], torch.Tensor], lr: float, lookahead: bool = True,
                  chunk: int | None = None, tape: TaskTape | None = None) -> StepAffinity:
    """Task affinity on one batch ``x`` at the model's current parameters (eval mode: no dropout draws).

    ``loss_fn(pred [T, B, P]) -> [T]`` gives the per-task losses of the batch. The T per-task gradients ``g_i`` of
    the ``shared`` parameters come from one batched vector-Jacobian product; with ``lookahead`` the losses after a
    step ``θ_s − lr·g_i`` come from one forward pass vmapped over the T copies of the shared parameters (``chunk``
    copies at a time when given, to bound memory). With a `TaskTape` of the model (a row-separable model on
    per-task input) the gradients come from one ordinary backward pass instead. The model's parameters are never
    changed."""
    was = model.training
    model.eval()
    try:
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise MtlkitError("task affinity needs at least one shared parameter that requires a gradient")
        with torch.enable_grad():
            with tape if tape is not None else contextlib.nullcontext():
                losses = loss_fn(_pred(model(x)))
            if losses.dim() != 1:
                raise MtlkitError(f"loss_fn must return the [T] per-task losses, got shape {tuple(losses.shape)}")
            grads = task_gradient_parts(losses, params, retain_graph=False, tape=tape)
        gram = grads.gram().detach()
        before = losses.detach()
        if not lookahead:
            return StepAffinity(gram, before)
        with torch.no_grad():
            G = grads.dense()  # [T, n]: row i the flattened gradient of L_i w.r.t. the shared parameters
            after = lookahead_losses(model, params, G, x, loss_fn, lr, chunk)
        Z = torch.where(before[None, :] > 0, 1.0 - after / before[None, :], torch.full_like(after, float("nan")))
        return StepAffinity(gram, before, Z)
    finally:
        model.train(was)


def lookahead_losses(model: nn.Module, params: Sequence[nn.Parameter], G: torch.Tensor, x: torch.Tensor,
                     loss_fn: Callable[[torch.Tensor], torch.Tensor], lr: float, chunk: int | None = None
                     ) -> torch.Tensor:
    """``[S, T]``: the per-task losses on ``x`` after a step ``θ_s − lr·G[s]`` of the shared parameters ``params``
    (``G`` ``[S, n]``, the parameters flattened and concatenated in order), every other parameter and buffer as in
    ``model``; one forward pass vmapped over the S parameter copies (``chunk`` at a time)."""
    from torch.func import functional_call, vmap

    by_id = {id(p): n for n, p in model.named_parameters()}
    names = [by_id[id(p)] for p in params]
    base = {n: p.detach() for n, p in model.named_parameters()}
    base.update(dict(model.named_buffers()))
    stacked: dict[str, torch.Tensor] = {}
    i = 0
    for n, p in zip(names, params, strict=True):
        k = p.numel()
        stacked[n] = p.detach()[None] - lr * G[:, i:i + k].reshape(G.shape[0], *p.shape).to(p.dtype)
        i += k

    def losses_at(moved: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(_pred(functional_call(model, {**base, **moved}, (x,))))

    return vmap(losses_at, chunk_size=chunk)(stacked)


def gradient_matrix(gram: torch.Tensor | np.ndarray, normalize: str = "cosine", losses: Any = None,
                    lr: float | None = None) -> np.ndarray:
    """The gradient affinity of one step from the Gram matrix ``⟨g_i, g_j⟩``: ``"gram"`` (as is), ``"cosine"``
    (``⟨g_i, g_j⟩ / (‖g_i‖ ‖g_j‖)``, NaN for a zero gradient) or ``"first-order"`` (``lr·⟨g_i, g_j⟩ / L_j``: the
    lookahead's first-order Taylor expansion, which needs the step's ``losses`` and ``lr``)."""
    g = np.asarray(gram.detach().cpu() if isinstance(gram, torch.Tensor) else gram, dtype=np.float64)
    if normalize == "gram":
        return g
    if normalize == "cosine":
        n = np.sqrt(np.clip(np.diag(g), 0.0, None))
        with np.errstate(all="ignore"):
            out = g / np.outer(n, n)
        out[~np.isfinite(out)] = np.nan
        return np.clip(out, -1.0, 1.0)
    if normalize == "first-order":
        if losses is None or lr is None:
            raise MtlkitError("the first-order gradient affinity needs the step's losses and learning rate")
        L = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = lr * g / L[None, :]
        out[~np.isfinite(out)] = np.nan
        return out
    raise MtlkitError(f"unknown gradient normalisation {normalize!r}; choose from {', '.join(GRADIENT_NORMS)}")


class AffinityRecorder:
    """Averages per-step affinities over a run (NaN entries skipped: a target with no labelled row in a batch):
    the lookahead matrix, and the gradient matrix under each normalisation of `GRADIENT_NORMS`."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.steps = 0

    def _add(self, key: str, m: np.ndarray) -> None:
        ok = np.isfinite(m)
        if key not in self.sums:
            self.sums[key] = np.zeros(m.shape)
            self.counts[key] = np.zeros(m.shape)
        self.sums[key] += np.where(ok, m, 0.0)
        self.counts[key] += ok

    def add(self, step: StepAffinity, lr: float) -> None:
        """Record one step (its lookahead matrix when measured, the gradient matrix in every normalisation)."""
        self.steps += 1
        if step.lookahead is not None:
            self._add("lookahead", step.lookahead.detach().cpu().double().numpy())
        for norm in GRADIENT_NORMS:
            self._add(f"gradient/{norm}", gradient_matrix(step.gram, norm, step.losses, lr))

    def mean(self, how: str, normalize: str = "") -> np.ndarray:
        """The average over the recorded steps (NaN where no step measured an entry)."""
        key = how if how == "lookahead" else f"{how}/{normalize}"
        if key not in self.sums:
            raise MtlkitError(f"no {key} affinity was recorded (steps recorded: {self.steps})")
        with np.errstate(all="ignore"):
            return np.where(self.counts[key] > 0, self.sums[key] / np.maximum(self.counts[key], 1), np.nan)


def relation_affinity(matrix: np.ndarray, n_tasks: int) -> np.ndarray:
    """A learned relation as a task × task affinity: a ``[T, T]`` matrix as is; a ``[K, T]`` one (topics × tasks,
    e.g. TOMATO's ‖θˢ_kt‖) as the cosine similarity of the tasks' columns."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (n_tasks, n_tasks):
        return m
    if m.ndim == 2 and m.shape[1] == n_tasks:
        n = np.linalg.norm(m, axis=0)
        with np.errstate(all="ignore"):
            out = (m.T @ m) / np.outer(n, n)
        out[~np.isfinite(out)] = 0.0
        return out
    raise MtlkitError(f"a learned relation must be [T, T] or [K, T] with T = {n_tasks}, got shape {m.shape}")


def affinity_figure(aff: Affinity, groups: Sequence[Sequence[int]] | None = None, title: str = "") -> Any:
    """The affinity matrix as a heatmap (rows = source, columns = target), tasks ordered group by group with the
    groups' boundaries drawn; matplotlib is imported here, on the Agg canvas (`mtlkit.analysis.plots`)."""
    from mtlkit.analysis.plots import relation_matrix_figure

    order = [t for g in groups for t in g] if groups else list(range(aff.n_tasks))
    # the diagonal (a task's effect on itself, often far larger) is grey, so the colours span what grouping reads
    m = aff.off_diagonal()[np.ix_(order, order)]
    names = [aff.task_names[t] for t in order]
    label = {"lookahead": "Z", "pairs": "gain"}.get(aff.how, "cos" if aff.normalize == "cosine" else "")
    fig = relation_matrix_figure(m, names, names, title or f"{aff.label} affinity (row: source, column: target; self "
                                 "grey)", value_label=label)
    ax = fig.axes[0]
    if groups and len(groups) > 1:
        edge = np.cumsum([len(g) for g in groups])[:-1] - 0.5
        for e in edge:
            ax.axhline(e, color="black", lw=1.6)
            ax.axvline(e, color="black", lw=1.6)
    ax.set_ylabel("source task")
    ax.set_xlabel("target task")
    return fig
