"""`mtlkit reproduce trace-norm`: Yang & Hospedales' Omniglot experiment (Trace Norm Regularised Deep MTL, Fig. 1):
STL vs the LAF / Tucker / TT tensor-trace-norm networks — test accuracy, training-loss curves, the three norms of
every shareable layer over training while each one is optimised, and sharing strength by layer."""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.data.normalize import Normalizer
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.reproduce.common import Context, fmt, markdown_table, provenance
from mtlkit.experiments.stats import mean_ci
from mtlkit.methods import registry
from mtlkit.methods.base import MethodParts
from mtlkit.methods.trace_norm import KINDS
from mtlkit.methods.trace_norm_mtl import layer_norms, sharing_strength
from mtlkit.optim.schedule import exponential_decay
from mtlkit.train.config import merge_hparams, method_defaults
from mtlkit.train.losses import TaskLoss
from mtlkit.train.run import Run, resolve_device
from mtlkit.train.trainer import History, make_optimizer, training_step

DESCRIPTION = ("Trace-norm deep MTL (Yang & Hospedales, ICLR-W 2017) Fig. 1 on Omniglot: STL vs LAF / Tucker / TT "
               "test accuracy, training loss, norms over training, sharing strength by layer")

# Fig. 1's methods, in the paper's order, with the paper's names.
METHODS: list[tuple[str, str]] = [("stl-cnn", "STL"), ("trace-norm-laf", "LAF"), ("trace-norm-tucker", "Tucker"),
                                  ("trace-norm-tt", "TT")]
NAMES = dict(METHODS)
KIND_NAMES = {"laf": "LAF", "tucker": "Tucker", "tt": "TT"}
GAMMA = 0.01  # the paper: "we set all γ = 0.01"
SEED = 0
EXPERIMENT = "reproduce-trace-norm"
# Training choices where the paper is silent (see `_protocol`).
DEFAULTS: dict[str, Any] = {"repeats": 5, "size": 35, "epochs": 100, "lr": 1e-3, "batch_size": 32}
QUICK: dict[str, Any] = {"repeats": 2, "size": 24, "epochs": 3}
QUICK_ALPHABETS = ["Greek", "Latin", "Tagalog"]  # the smallest three: a fast smoke run


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                   help=f"random 10%%/90%% splits (paper: 10; default {DEFAULTS['repeats']}, which fits 20 minutes "
                        "on a shared 2-core CPU; 10 takes about twice as long)")
    p.add_argument("--size", type=int, default=DEFAULTS["size"],
                   help=f"image side after area downsampling from 105 (paper: 105; default {DEFAULTS['size']}, "
                        "exactly 3x3 block means, about 9x less compute per image on a CPU)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help=f"fixed number of training epochs, no early stopping (default {DEFAULTS['epochs']})")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help=f"Adam learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--gamma", type=float, default=GAMMA, help=f"every γ of every norm term (paper: {GAMMA})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['repeats']} repeats, {QUICK['size']}x{QUICK['size']} images, "
                        f"{QUICK['epochs']} epochs (numbers are meaningless; for testing)")


# ---------------------------------------------------------------------- per-epoch recording
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
    """One trained network with what Fig. 1 needs: the per-epoch mean task training loss ``[epochs, T]``
    (cross-entropy only, the penalty excluded), the norms at initialisation and after every epoch, and the
    initial model (θ_init of the sharing strength)."""

    run: Run
    train_loss: np.ndarray
    norms: dict[str, dict[str, np.ndarray]]
    init_model: torch.nn.Module
    seconds: float = 0.0


def train_recording(method: str, split: Split, hparams: dict[str, Any] | None = None, seed: int = 0,
                    device: str | torch.device | None = None) -> Recorded:
    """Train ``method`` for exactly ``hparams['epochs']`` epochs (no validation, no early stopping: the paper's
    protocol) recording the training loss and the layer norms after each epoch; the final model is the last one.

    The step is the Trainer's (`mtlkit.train.trainer.fit_sgd`): ``(1/T) Σ_t L_t + Σ penalties``, the method's
    combiner, optimizer and learning-rate schedule, the same `TaskBatchSampler` batches for a seed. The Trainer
    keeps the best-validation epoch and has no per-epoch hook, hence this loop.
    """
    from mtlkit.data.sampler import TaskBatchSampler

    entry = registry.get(method)
    if entry.fit is not None:
        raise ValueError(f"method {method!r} is not trained by SGD; train_recording needs an SGD-trained method")
    hp = merge_hparams(method_defaults(entry), hparams, method)
    dev = resolve_device(device)
    train = split.train
    info = train.info()
    norm = Normalizer.fit(train)
    torch.manual_seed(seed)
    parts: MethodParts = entry.build(info, hp)
    model = parts.model.to(dev)
    init_model = copy.deepcopy(model).cpu()
    loss = TaskLoss(info.spec, dev)
    data = norm.apply(train).tensors(dev)
    T = info.n_tasks
    w = torch.full((T,), 1.0 / T, device=dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    sched = exponential_decay(opt, hp["lr_decay"], hp["decay_steps"])
    sampler = TaskBatchSampler(data, hp["batch_size"], seed=seed)
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    recorder = NormRecorder()
    recorder.record(model)
    losses_per_epoch: list[np.ndarray] = []
    t0 = time.perf_counter()
    for _ in range(hp["epochs"]):
        model.train()
        acc = torch.zeros(T, device=dev)
        for batch in sampler.epoch():
            acc += training_step(parts, model, loss, batch, w, opt, shared)  # the Trainer's own step
            sched.step()
        model.eval()
        epoch_loss = (acc / len(sampler)).cpu().numpy()
        losses_per_epoch.append(epoch_loss)
        recorder.record(model)
        if not np.isfinite(epoch_loss).all():
            break
    secs = time.perf_counter() - t0
    hist = History(train_loss=list(losses_per_epoch), val_loss=list(losses_per_epoch),
                   best_epoch=len(losses_per_epoch) - 1,
                   best_val=float(losses_per_epoch[-1].mean()) if losses_per_epoch else math.inf,
                   diverged=not all(np.isfinite(v).all() for v in losses_per_epoch))
    src = split.source or train
    run = Run(entry.name, hp, info, model, norm, split.transform, hist, split, seed, dev, secs,
              dataset=src.name, checksum=src.checksum())
    return Recorded(run, np.array(losses_per_epoch), recorder.arrays(), init_model, secs)


# ---------------------------------------------------------------------- the experiment
@dataclass
class Results:
    """Everything the results file shows, per method: arrays over repeats."""

    methods: list[str]
    task_names: list[str]
    layers: list[str]
    accuracy: dict[str, np.ndarray]          # [R, T] test accuracy %
    test_ce: dict[str, np.ndarray]           # [R, T] test cross-entropy
    train_ce: dict[str, np.ndarray]          # [R, T] final training cross-entropy (whole training set)
    curves: dict[str, np.ndarray]            # [R, E] task-mean training loss per epoch
    norms: dict[str, dict[str, dict[str, np.ndarray]]]  # method -> layer -> kind -> [R, E+1]
    sharing: dict[str, dict[str, np.ndarray]]           # method -> norm -> [R, L] (norm: laf/tucker/tt/fro)
    seconds: dict[str, float]
    reused: int = 0                          # runs read back from the cache instead of trained
    cache: str = ""


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """repeats, size, epochs after ``--quick``; validated (a `MtlkitError`, a ValueError, names the bad option)."""
    s = {"repeats": args.repeats, "size": args.size, "epochs": args.epochs}
    if args.quick:
        s.update({k: min(s[k], v) for k, v in QUICK.items()})
    if s["repeats"] < 1 or s["epochs"] < 1:
        raise MtlkitError(f"--repeats and --epochs must be >= 1, got {s['repeats']} and {s['epochs']}")
    if not 24 <= s["size"] <= 105:
        raise MtlkitError(f"--size must be in 24..105 (the paper's CNN needs at least 24x24 images), got {s['size']}")
    if not args.lr > 0 or not args.gamma >= 0:
        raise MtlkitError(f"--lr must be > 0 and --gamma >= 0, got {args.lr} and {args.gamma}")
    return s


def method_hparams(method: str, epochs: int, lr: float, gamma: float) -> dict[str, Any]:
    """The hyper-parameters of one method: a fixed number of epochs, no early stopping, Adam ``lr``, batch 32; the
    trace-norm methods get ``gamma`` (γ of every norm term; the method weighs the norms against the SUM of the task
    losses, see `mtlkit.methods.trace_norm_mtl`)."""
    hp: dict[str, Any] = {"epochs": epochs, "lr": lr, "batch_size": DEFAULTS["batch_size"], "patience": 0}
    if method != "stl-cnn":
        hp["gamma"] = gamma
    return hp


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the experiment and write ``trace-norm.md``, ``trace-norm.csv`` and the figures into ``ctx.out``."""
    from mtlkit.datasets import load
    from mtlkit.datasets.omniglot import paper_splits

    s = _settings(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny SVDs of the penalty are ~100x slower multi-threaded on a busy CPU
    try:
        data = load("omniglot", args.data_dir, size=s["size"], alphabets=QUICK_ALPHABETS if args.quick else None)
        ctx.record(data)
        splits = paper_splits(data, repeats=s["repeats"], seed=SEED)
        res = _experiment(ctx, data.task_names, splits, s["epochs"], args.lr, args.gamma)
    finally:
        torch.set_num_threads(threads)
    figs = _figures(res, ctx.out)
    lines = ["# Trace norm regularised deep MTL (Yang & Hospedales, ICLR-W 2017): Omniglot, Fig. 1 reproduced", ""]
    protocol = _protocol(args, s, data.notes)
    if res.reused:
        n = len(res.methods) * s["repeats"]
        protocol.insert(0, f"{res.reused} of {n} runs were read back from the run cache `{res.cache}` (written "
                           "by an earlier invocation with the same settings and data); the compute time above "
                           "counts this invocation only, the training time of every run is at the end.")
    lines += provenance(ctx, f"splits {SEED}..{SEED + s['repeats'] - 1} (`paper_splits` seed r for repeat r); "
                             "every network of repeat r initialised with torch seed r (the four methods start from "
                             "identical weights)", protocol)
    lines += ["", *_accuracy_section(res), "", *_loss_section(res), "", *_norm_section(res), "",
              *_sharing_section(res), "", *_claims(res)]
    md = ctx.out / "trace-norm.md"
    md.write_text("\n".join(lines) + "\n")
    csv = ctx.out / "trace-norm.csv"
    rows = ["method,repeat,task,test_accuracy,test_cross_entropy,train_cross_entropy"]
    for m in res.methods:
        for r in range(res.accuracy[m].shape[0]):
            for t, name in enumerate(res.task_names):
                rows.append(f"{m},{r},{name},{res.accuracy[m][r, t]:.6g},{res.test_ce[m][r, t]:.6g},"
                            f"{res.train_ce[m][r, t]:.6g}")
    csv.write_text("\n".join(rows) + "\n")
    return [md, csv, *figs]


def _experiment(ctx: Context, task_names: Sequence[str], splits: list[Split], epochs: int, lr: float,
                gamma: float) -> Results:
    """Train the four methods on every split; collect accuracies, losses, norm traces and sharing strengths.

    Each (method, repeat) is cached as an ``.npz`` in a folder beside the results store, keyed by the settings
    and the data checksum, so a stopped reproduction continues where it stopped (delete the folder to retrain)."""
    methods = [m for m, _ in METHODS]
    cache = ctx.store.path.parent / f"{ctx.store.path.stem}-traces"
    checksum = "-".join(c[:10] for c in ctx.datasets.values())
    one: dict[str, list[dict[str, np.ndarray]]] = {m: [] for m in methods}
    reused = 0
    for r, split in enumerate(splits):
        for m in methods:
            hp = method_hparams(m, epochs, lr, gamma)
            path = cache / f"{m}-r{r}-e{epochs}-lr{lr:g}-g{gamma:g}-{checksum}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    one[m].append({k: z[k] for k in z.files})
                reused += 1
                continue
            rec = train_recording(m, split, hp, seed=SEED + r, device=ctx.device)
            test, train = rec.run.evaluate("test"), rec.run.evaluate("train")
            ctx.store.add(rec.run, EXPERIMENT, f"repeat{r}", None, test)
            arrays = {"accuracy": test.per_task["accuracy"], "test_ce": test.per_task["cross_entropy"],
                      "train_ce": train.per_task["cross_entropy"], "curve": _pad(rec.train_loss.mean(1), epochs),
                      "seconds": np.array(rec.seconds)}
            for layer, kinds in rec.norms.items():
                for k, v in kinds.items():
                    arrays[f"norm/{layer}/{k}"] = _pad(v, epochs + 1)
            for k in (*KINDS, "fro"):
                st = sharing_strength(rec.init_model, rec.run.model, norm=k)
                arrays["layers"] = np.array(list(st))
                arrays[f"sharing/{k}"] = np.array(list(st.values()))
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)
            one[m].append(arrays)
    layers = [str(v) for v in one[methods[0]][0]["layers"]]

    def stack(m: str, key: str) -> np.ndarray:
        return np.stack([d[key] for d in one[m]])

    return Results(
        methods, list(task_names), layers,
        {m: stack(m, "accuracy") for m in methods}, {m: stack(m, "test_ce") for m in methods},
        {m: stack(m, "train_ce") for m in methods}, {m: stack(m, "curve") for m in methods},
        {m: {layer: {k: stack(m, f"norm/{layer}/{k}") for k in KINDS} for layer in layers} for m in methods},
        {m: {k: stack(m, f"sharing/{k}") for k in (*KINDS, "fro")} for m in methods},
        {m: float(stack(m, "seconds").sum()) for m in methods}, reused, str(cache))


def _pad(v: np.ndarray, n: int) -> np.ndarray:
    """``v`` padded with NaN to length ``n`` (a diverged run stops early)."""
    out = np.full(n, np.nan)
    out[:len(v)] = v
    return out


# ---------------------------------------------------------------------- the results file
def _protocol(args: argparse.Namespace, s: dict[str, Any], notes: Sequence[str]) -> list[str]:
    lines = [
        *notes,
        f"Tasks: {'3 of ' if args.quick else ''}the 8 staged alphabets (the paper uses all 50; only the two "
        "'background small' subsets are staged "
        "here), one multiclass task each. Network per task: the paper's CNN — conv 8@5x5, conv 12@3x3, conv "
        "16@3x3, each followed by 2x2 max-pooling, fc 64, fc #classes, tanh; 'valid' convolutions (the paper is "
        "silent). Shareable (penalised) layers: conv1-conv3 and fc1; biases and output layers are not penalised.",
        f"Images {s['size']}x{s['size']} instead of the paper's 105x105"
        + (" (area-downsampled: exact 3x3 block means): a 105x105 run costs about 9x more per image and does not "
           "fit this 2-core shared CPU's 20-minute budget; `--size 105` runs the paper's size."
           if s["size"] == 35 else "."),
        f"{s['repeats']} repeats (paper: 10), each a new random per-task stratified split: 10% of every alphabet's "
        "images for training (2 of the 20 drawers' images per character), 90% for testing. There is no "
        "validation set in the paper's protocol and none here: every method trains for a fixed "
        f"{s['epochs']} epochs (an epoch = ceil(largest task's training rows / 32) steps of 32 rows per task; "
        "the paper gives no epoch count) and the LAST epoch's model is evaluated. No early stopping.",
        f"Optimiser (the paper is silent): Adam, learning rate {args.lr:g}, batch 32 rows per task, no weight "
        "decay; pixels standardised with the training rows' mean and std. The four methods of a repeat start "
        "from the same initial weights (same torch seed) and see the same batches.",
        f"Penalty: every γ = {args.gamma:g} (the paper's value) on every norm term of every shareable layer "
        "(Eq. 1-3: LAF one term per layer, Tucker N = 5 (conv) or 3 (fc) terms, TT N − 1 terms), weighed against "
        "the SUM over tasks of the per-task mean cross-entropies (`trace-norm-*`'s convention: it adds "
        "(1/T)·γ·Σ norms to the task-mean loss the Trainer minimises; same minimiser as Σ_t L_t + γ·Σ norms, the "
        "form of the paper's objective in its introduction). The paper does not say which loss scale its γ "
        "refers to; the authors' released demo puts γ next to the task MEAN. In a pilot on repeat 0 that "
        "8x stronger reading (γ·T = 0.08 for the method) drove every Tucker weight to zero (chance accuracy), "
        "which the paper's Fig. 1 does not show, so the sum reading is used. Gradients: the SVD subgradient "
        "U Vᵀ.",
        "Training loss: the per-task cross-entropy only (the penalty excluded), averaged over tasks; the curves "
        "are the mean over each epoch's mini-batches (the weights change within the epoch), the table's final "
        "value is evaluated on the whole training set with the final weights.",
        "Sharing strength (paper: 1 − ‖optimised param‖ / ‖initialised param‖) per shareable layer, θ the layer's "
        "weights stacked over the tasks (paper layout, task axis last); θ_init is the random initialisation "
        "the network started from — the same for all four methods — and ‖·‖ the method's own tensor trace norm "
        "(STL is reported under each of the three norms) and, as a plain-shrinkage reference, the Frobenius norm.",
        "Means are over repeats with 95% Student-t intervals; test metrics are averaged over the tasks first.",
    ]
    if args.quick:
        lines.insert(0, f"**QUICK SMOKE RUN**: {', '.join(QUICK_ALPHABETS)} only, tiny images, few epochs and "
                        "repeats; the numbers mean nothing.")
    elif s["repeats"] < 10:
        lines.insert(0, f"**Reduced protocol**: {s['repeats']} repeats instead of the paper's 10, to fit the "
                        "20-minute budget on a shared 2-core CPU; `--repeats 10` runs the paper's protocol.")
    return lines


def _task_mean(a: np.ndarray) -> np.ndarray:
    """``[R, T]`` → ``[R]``: the task-averaged value of every repeat."""
    return np.nanmean(a, axis=1)


def _cell(values: np.ndarray, decimals: int = 2) -> str:
    """``mean ± CI`` over repeats of a ``[R]`` array."""
    mean, ci = mean_ci(values)
    return f"{fmt(float(mean), decimals)} ± {fmt(float(ci), decimals)}"


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Mean ± CI over repeats of ``a − b`` (``[R]`` each) and the number of repeats where a > b."""
    d = a - b
    mean, ci = mean_ci(d)
    return float(mean), float(ci), int(np.sum(d > 0))


def _accuracy_section(res: Results) -> list[str]:
    stl = _task_mean(res.accuracy["stl-cnn"])
    out = ["## Test accuracy (Fig. 1, top left)", "",
           "Task-averaged test accuracy (%) on the 90% test part. The paper reports no numbers (Fig. 1 plots "
           "them; its text: STL has the worst test performance, the three trace norms are not very different). "
           "Δ vs STL is paired over repeats.", ""]
    rows = []
    for m in res.methods:
        a = _task_mean(res.accuracy[m])
        if m == "stl-cnn":
            delta = "–"
        else:
            d, ci, n = _paired(a, stl)
            delta = f"{d:+.2f} ± {fmt(ci)} (better in {n}/{len(a)})"
        rows.append([f"{NAMES[m]} (`{m}`)", "– (bars only)", _cell(a), delta, _cell(_task_mean(res.test_ce[m]), 3)])
    out += markdown_table(["method", "paper", "ours: accuracy %", "Δ vs STL (points)", "ours: test cross-entropy"],
                          rows)
    out += ["", "![test accuracy](trace-norm-accuracy.png)", "", "Per task (mean test accuracy % over repeats):", ""]
    rows = [[name, *[fmt(float(np.mean(res.accuracy[m][:, t]))) for m in res.methods]]
            for t, name in enumerate(res.task_names)]
    out += markdown_table(["alphabet", *[NAMES[m] for m in res.methods]], rows)
    return out


def _loss_section(res: Results) -> list[str]:
    out = ["## Training loss (Fig. 1, top middle)", "",
           "Cross-entropy on the training part (penalty excluded), task-averaged: at the end of training on the "
           "whole training set, and the last epoch's mini-batch mean.", ""]
    rows = [[NAMES[m], _cell(_task_mean(res.train_ce[m]), 3), _cell(res.curves[m][:, -1], 3)] for m in res.methods]
    out += markdown_table(["method", "final training cross-entropy", "last epoch's mini-batch mean"], rows)
    out += ["", "![training loss](trace-norm-train-loss.png)"]
    return out


def _total_norm(res: Results, m: str, kind: str) -> np.ndarray:
    """``[R, E+1]``: the ``kind`` norm summed over the shareable layers, per repeat and epoch."""
    return np.sum([res.norms[m][layer][kind] for layer in res.layers], axis=0)


def _norm_section(res: Results) -> list[str]:
    out = ["## The three norms over training (Fig. 1, bottom)", "",
           "Each norm summed over the four shareable layers, at the end of training relative to its value at "
           "initialisation (mean over repeats; < 1: the norm went down). One row per optimised norm; STL "
           "optimises none.", ""]
    rows = []
    for m in res.methods:
        row = [NAMES[m]]
        for k in KINDS:
            tot = _total_norm(res, m, k)
            row.append(_cell(tot[:, -1] / tot[:, 0], 3))
        rows.append(row)
    out += markdown_table(["optimised", *[f"{KIND_NAMES[k]} norm: final / initial" for k in KINDS]], rows)
    out += ["", "Per layer, final / initial of the optimised norm (STL: LAF):", ""]
    rows = []
    for m in res.methods:
        k = _own_kind(m)
        rows.append([f"{NAMES[m]} ({KIND_NAMES[k]})",
                     *[fmt(float(np.nanmean(res.norms[m][layer][k][:, -1] / res.norms[m][layer][k][:, 0])), 3)
                       for layer in res.layers]])
    out += markdown_table(["method (norm)", *res.layers], rows)
    out += ["", "![norms over training](trace-norm-norms.png)"]
    return out


def _own_kind(m: str) -> str:
    """The norm a method optimises (LAF for STL, the sharing-strength default)."""
    return m.rsplit("-", 1)[-1] if m.startswith("trace-norm-") else "laf"


def _sharing_section(res: Results) -> list[str]:
    out = ["## Sharing strength by layer (Fig. 1, top right)", "",
           "1 − ‖θ_opt‖/‖θ_init‖ per shareable layer (bottom → top), mean ± 95% CI over repeats. Higher = the "
           "stack of the tasks' copies of that layer shrank more in that norm (towards a low-rank, shared "
           "stack). STL rows show how much plain training changes the same norm (negative: it grew).", ""]
    rows = []
    for m in res.methods[1:]:
        k = _own_kind(m)
        rows.append([f"{NAMES[m]} ({KIND_NAMES[k]} norm)", *[_cell(res.sharing[m][k][:, i], 3)
                                                            for i in range(len(res.layers))]])
    for k in KINDS:
        rows.append([f"STL ({KIND_NAMES[k]} norm)", *[_cell(res.sharing["stl-cnn"][k][:, i], 3)
                                                     for i in range(len(res.layers))]])
    for m in res.methods:
        rows.append([f"{NAMES[m]} (Frobenius)", *[_cell(res.sharing[m]["fro"][:, i], 3)
                                                 for i in range(len(res.layers))]])
    out += markdown_table(["method (norm)", *res.layers], rows)
    out += ["", "![sharing strength by layer](trace-norm-sharing.png)"]
    return out


def _verdict(mean: float, ci: float, positive: bool = True) -> str:
    """'holds' when the paired difference has the claimed sign and its CI excludes 0; 'direction only' when only
    the sign agrees; else 'does not hold'."""
    s = mean if positive else -mean
    if not math.isfinite(ci):
        return "holds in direction (one repeat: no interval)" if s > 0 else "does not hold"
    return "holds" if s - ci > 0 else ("direction only (CI includes 0)" if s > 0 else "does not hold")


def _overall(verdicts: Sequence[str]) -> str:
    """One word for a claim tested against several methods."""
    if all(v == "holds" for v in verdicts):
        return "HOLDS"
    if all(v == "holds" or v.startswith(("direction", "holds in direction")) for v in verdicts):
        return "DIRECTION ONLY (right sign for every method, not significant for all)"
    return "DOES NOT HOLD for every method"


def _claims(res: Results) -> list[str]:
    out = ["## The paper's claims, checked here", ""]
    stl_acc, stl_tr = _task_mean(res.accuracy["stl-cnn"]), _task_mean(res.train_ce["stl-cnn"])
    mtl = res.methods[1:]
    R = len(stl_acc)
    parts, verdicts = [], []
    for m in mtl:
        d, ci, n = _paired(_task_mean(res.train_ce[m]), stl_tr)
        verdicts.append(_verdict(d, ci))
        parts.append(f"{NAMES[m]} − STL = {d:+.3f} ± {fmt(ci, 3)} ({verdicts[-1]}; higher in {n}/{R} repeats)")
    out.append(f"1. **\"STL has the lowest training loss\"** — {_overall(verdicts)}. Final training "
               "cross-entropy, paired over repeats: " + "; ".join(parts) + ".")
    parts, verdicts = [], []
    for m in mtl:
        d, ci, n = _paired(_task_mean(res.accuracy[m]), stl_acc)
        verdicts.append(_verdict(d, ci))
        parts.append(f"{NAMES[m]} − STL = {d:+.2f} ± {fmt(ci)} points ({verdicts[-1]}; better in {n}/{R})")
    out.append(f"2. **\"STL has the worst test accuracy\"** (the paper: over-fitting, alleviated by the multi-task "
               f"regulariser) — {_overall(verdicts)}. Test accuracy, paired over repeats: " + "; ".join(parts) + ".")
    parts, verdicts, rel_parts = [], [], []
    for m in mtl:
        k = _own_kind(m)
        s = res.sharing[m][k]
        means = np.nanmean(s, axis=0)
        mono = bool(np.all(np.diff(means) < 0))
        d, ci, _ = _paired(s[:, 0], s[:, -1])
        verdicts.append(_verdict(d, ci))
        layer_means = ", ".join(f"{layer} {v:+.3f}" for layer, v in zip(res.layers, means, strict=True))
        parts.append(f"{NAMES[m]}: {layer_means}"
                     + f" ({'monotone' if mono else 'not monotone'}; {res.layers[0]} − {res.layers[-1]} = "
                       f"{d:+.3f} ± {fmt(ci, 3)}, {verdicts[-1]})")
        rel = s - res.sharing["stl-cnn"][k]
        dr, cir, _ = _paired(rel[:, 0], rel[:, -1])
        rel_parts.append(f"{NAMES[m]}: " + ", ".join(f"{v:+.3f}" for v in np.nanmean(rel, axis=0))
                         + f" ({res.layers[0]} − {res.layers[-1]} = {dr:+.3f} ± {fmt(cir, 3)}, {_verdict(dr, cir)})")
    stl_s = res.sharing["stl-cnn"]["laf"]
    stl = np.nanmean(stl_s, axis=0)
    d_stl, ci_stl, _ = _paired(stl_s[:, 0], stl_s[:, -1])
    stl_text = (f"But plain training orders {res.layers[0]} above {res.layers[-1]} too, without any sharing"
                if _verdict(d_stl, ci_stl) == "holds" else "For comparison, with no sharing")
    out.append(f"3. **\"Bottom layers share more\"** (sharing strength in the method's own norm, layer means over "
               f"repeats, bottom → top) — {_overall(verdicts)} as the paper measures it (bottom layer vs top "
               "layer): " + "; ".join(parts) + f". {stl_text} — STL (LAF norm): "
               + ", ".join(f"{v:+.3f}" for v in stl) + f" ({res.layers[0]} − {res.layers[-1]} = {d_stl:+.3f} ± "
               f"{fmt(ci_stl, 3)}): the sharing strength also measures how far each layer's weights grow from "
               "their initialisation in training. With STL's value subtracted (the part due to the penalty, "
               "= (‖θ_STL‖ − ‖θ_opt‖)/‖θ_init‖): " + "; ".join(rel_parts) + ".")
    parts, below_init, below_stl = [], [], []
    for m in mtl:
        own = _own_kind(m)
        for k in KINDS:
            if k == own:
                continue
            tot, stl_tot = _total_norm(res, m, k), _total_norm(res, "stl-cnn", k)
            r, r_stl = float(np.nanmean(tot[:, -1] / tot[:, 0])), float(np.nanmean(stl_tot[:, -1] / stl_tot[:, 0]))
            below_init.append(r < 1.0)
            below_stl.append(bool(np.all(tot[:, -1] < stl_tot[:, -1])))
            curve = np.nanmean(tot / tot[:, :1], axis=0)
            lo = int(np.nanargmin(curve))
            parts.append(f"optimising {KIND_NAMES[own]}: {KIND_NAMES[k]} ×{r:.3f} at the end (STL ×{r_stl:.3f}), "
                         f"lowest ×{curve[lo]:.3f} at epoch {lo}")
    verdict = ("HOLDS: every other norm ends below its initial value" if all(below_init) else
               "HOLDS RELATIVE TO STL: every other norm ends below STL's in every repeat, though not below its "
               "initial value" if all(below_stl) else "DOES NOT HOLD")
    out.append(f"4. **\"When optimising one norm, the other norms still reduce\"** — {verdict} (final / initial, "
               "summed over layers; epoch 0 = initialisation): " + "; ".join(parts) + ".")
    secs = ", ".join(f"{NAMES[m]} {res.seconds[m] / 60:.1f}" for m in res.methods)
    out += ["", f"Training time (minutes, all repeats): {secs}."]
    return out


# ---------------------------------------------------------------------- figures
COLORS = {"stl-cnn": "#555555", "trace-norm-laf": "#1b9e77", "trace-norm-tucker": "#d95f02",
          "trace-norm-tt": "#7570b3"}
KIND_COLORS = {"laf": "#1b9e77", "tucker": "#d95f02", "tt": "#7570b3"}


def _fig(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _band(ax: Any, x: np.ndarray, v: np.ndarray, color: str, label: str, style: str = "-") -> None:
    """Mean over repeats (rows of ``v``) as a line, the 95% CI as a band."""
    mean, ci = mean_ci(v, axis=0)
    mean, ci = np.asarray(mean), np.nan_to_num(np.asarray(ci))
    ax.plot(x, mean, style, color=color, label=label, lw=1.6)
    ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=0.18, lw=0)


def _figures(res: Results, out: Path) -> list[Path]:
    """The four figures of Fig. 1: accuracy bars, training-loss curves, sharing strength, norms over training."""
    from mtlkit.analysis.plots import save_figure

    paths: list[Path] = []
    names = [NAMES[m] for m in res.methods]
    R = res.accuracy[res.methods[0]].shape[0]

    fig = _fig(8.6, 3.4)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[4, 3])
    accs = [_task_mean(res.accuracy[m]) for m in res.methods]
    jitter = np.linspace(-0.2, 0.2, R) if R > 1 else np.zeros(1)
    for i, (m, a) in enumerate(zip(res.methods, accs, strict=True)):
        mean, ci = mean_ci(a)
        ax.bar(i, float(mean), yerr=np.nan_to_num(float(ci)), color=COLORS[m], alpha=0.85, capsize=4)
        ax.plot(i + jitter, a, "k.", ms=3)
    lo, hi = min(float(np.min(a)) for a in accs), max(float(np.max(a)) for a in accs)
    pad = max(1.0, 0.5 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"test accuracy % (mean over {len(res.task_names)} alphabets)")
    ax.set_title(f"Test accuracy, {R} repeats (bars: mean ± 95% CI; dots: repeats)", fontsize=9)
    for i, m in enumerate(res.methods[1:]):
        d = accs[i + 1] - accs[0]
        mean, ci = mean_ci(d)
        ax2.errorbar(i, float(mean), yerr=np.nan_to_num(float(ci)), fmt="o", color=COLORS[m], capsize=4, ms=6)
        ax2.plot(i + jitter, d, "k.", ms=3)
    ax2.axhline(0, color="black", lw=0.6)
    ax2.set_xticks(range(len(names) - 1), names[1:])
    ax2.set_xlim(-0.6, len(names) - 1.4)
    ax2.set_ylabel("accuracy − STL's, same repeat (points)")
    ax2.set_title("Paired difference vs STL (mean ± 95% CI)", fontsize=9)
    paths += save_figure(fig, out / "trace-norm-accuracy")

    fig = _fig(5.2, 3.6)
    ax = fig.add_subplot()
    for m in res.methods:
        c = res.curves[m]
        _band(ax, np.arange(1, c.shape[1] + 1), c, COLORS[m], NAMES[m])
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (task mean, log scale)")
    ax.set_title("Training loss (penalty excluded), mean ± 95% CI over repeats", fontsize=9)
    ax.legend(frameon=False)
    paths += save_figure(fig, out / "trace-norm-train-loss")

    fig = _fig(9.0, 3.4)
    axes = fig.subplots(1, 2)
    x = np.arange(len(res.layers))
    mtl = res.methods[1:]
    w = 0.8 / len(mtl)
    for i, m in enumerate(mtl):
        k = _own_kind(m)
        mean, ci = mean_ci(res.sharing[m][k], axis=0)
        stl_mean = np.asarray(mean_ci(res.sharing["stl-cnn"][k], axis=0)[0])
        pos = x - 0.4 + w * (i + 0.5)
        axes[0].bar(pos, mean, w, yerr=np.nan_to_num(ci), color=COLORS[m], capsize=3,
                    label=f"{NAMES[m]} ({KIND_NAMES[k]} norm)")
        axes[0].plot(pos, stl_mean, "_", color="black", ms=12, mew=2,
                     label="STL, same norm" if i == 0 else None)
    axes[0].set_title("Sharing strength 1 − ‖θ_opt‖/‖θ_init‖, own norm", fontsize=9)
    w = 0.8 / len(res.methods)
    for i, m in enumerate(res.methods):
        mean, ci = mean_ci(res.sharing[m]["fro"], axis=0)
        axes[1].bar(x - 0.4 + w * (i + 0.5), mean, w, yerr=np.nan_to_num(ci), color=COLORS[m], capsize=3,
                    label=NAMES[m])
    axes[1].set_title("The same with the Frobenius norm (plain shrinkage)", fontsize=9)
    for ax in axes:
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, res.layers)
        ax.set_xlabel("layer (bottom → top)")
        ax.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel("sharing strength")
    paths += save_figure(fig, out / "trace-norm-sharing")

    fig = _fig(11.0, 3.4)
    axes = fig.subplots(1, len(mtl), sharey=True)
    for ax, m in zip(axes, mtl, strict=True):
        for k in KINDS:
            tot = _total_norm(res, m, k)
            ep = np.arange(tot.shape[1])
            _band(ax, ep, tot / tot[:, :1], KIND_COLORS[k], f"{KIND_NAMES[k]} norm")
            stl = _total_norm(res, "stl-cnn", k)
            ax.plot(ep, np.nanmean(stl / stl[:, :1], axis=0), ":", color=KIND_COLORS[k], lw=1.2,
                    label=f"{KIND_NAMES[k]} norm under STL")
        ax.axhline(1, color="black", lw=0.6)
        ax.set_title(f"Optimising {NAMES[m]} (γ on every term)", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("norm / its value at initialisation\n(summed over conv1-3, fc1)")
    axes[0].legend(frameon=False, fontsize=7, loc="best")
    paths += save_figure(fig, out / "trace-norm-norms")
    return paths
