"""`mtlkit reproduce trace-norm`: Yang & Hospedales' Omniglot experiment (Trace Norm Regularised Deep MTL, Fig. 1):
STL vs the LAF / Tucker / TT tensor-trace-norm networks — test accuracy, training-loss curves, the three norms of
every shareable layer over training, and sharing strength by layer — under the equal-budget protocol: every method
tuned with the same number of Optuna TPE trials over its declared search space (γ = 0 among the trace-norm
methods' choices; STL tunes its optimiser) on split 0's validation rows, the choice then trained on every split with
its training curves and norms recorded, and the paper's claims judged by `mtlkit.experiments.claims.verdict`."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.normalize import Normalizer
from mtlkit.data.splits import Split
from mtlkit.errors import MtlkitError
from mtlkit.experiments.claims import Claim, verdict, write_claims
from mtlkit.experiments.reproduce.common import Context, fmt, markdown_table, provenance
from mtlkit.experiments.reproduce.protocol import budget_lines, edge_warnings
from mtlkit.experiments.stats import mean_ci
from mtlkit.methods import registry
from mtlkit.methods.trace_norm import KINDS
from mtlkit.methods.trace_norm_mtl import layer_norms, sharing_strength
from mtlkit.train.config import merge_hparams, method_defaults, method_params
from mtlkit.train.losses import TaskLoss
from mtlkit.train.run import Run, build_method, resolve_device
from mtlkit.train.trainer import fit_sgd

DESCRIPTION = ("Trace-norm deep MTL (Yang & Hospedales, ICLR-W 2017) Fig. 1 on Omniglot: STL vs LAF / Tucker / TT "
               "(equal-budget tuning), test accuracy, training loss, norms over training, sharing strength by layer")

# Fig. 1's methods, in the paper's order, with the paper's names.
METHODS: list[tuple[str, str]] = [("stl-cnn", "STL"), ("trace-norm-laf", "LAF"), ("trace-norm-tucker", "Tucker"),
                                  ("trace-norm-tt", "TT")]
NAMES = dict(METHODS)
KIND_NAMES = {"laf": "LAF", "tucker": "Tucker", "tt": "TT"}
PAPER_GAMMA = 0.01  # the paper: "we set all γ = 0.01" (here the defaults trial of every trace-norm method)
PAPER = "Trace norm deep MTL (Yang & Hospedales, ICLR-W 2017)"
SEED = 0
EXPERIMENT = "reproduce-trace-norm"
# Per character (20 drawers): 10% training (the paper's 2 images), 10% validation (tuning and the best epoch;
# the paper has none), 80% test (the paper: 90%). `Split`: test first, then `VAL` of the rest.
TEST, VAL = 0.8, 0.5
# Training choices where the paper is silent (see `_protocol`), and the equal-budget tuning's trials.
DEFAULTS: dict[str, Any] = {"repeats": 5, "size": 35, "epochs": 50, "trials": 8, "batch_size": 32}
ABLATION_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "lr_decay", "decay_steps")  # a method's optimiser
WIDEN = 1  # one more round (trials // 2, counted) past a selected value on the edge of its space
QUICK: dict[str, Any] = {"repeats": 2, "size": 24, "epochs": 3, "trials": 2}
QUICK_ALPHABETS = ["Greek", "Latin", "Tagalog"]  # the smallest three: a fast smoke run


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The reproduction's own options."""
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                   help=f"random splits (paper: 10; default {DEFAULTS['repeats']}, which with the tuning fits about "
                        "35 minutes on a shared 2-core CPU)")
    p.add_argument("--trials", type=int, default=DEFAULTS["trials"],
                   help=f"tuning trials per method, the same for every method (default {DEFAULTS['trials']}; "
                        f"--quick: {QUICK['trials']})")
    p.add_argument("--size", type=int, default=DEFAULTS["size"],
                   help=f"image side after area downsampling from 105 (paper: 105; default {DEFAULTS['size']}, "
                        "exactly 3x3 block means, about 9x less compute per image on a CPU)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help=f"training epochs of every run, tuning trials included; no early stopping, the epoch with "
                        f"the lowest validation loss is kept (default {DEFAULTS['epochs']})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {', '.join(QUICK_ALPHABETS)}, {QUICK['repeats']} repeats, "
                        f"{QUICK['size']}x{QUICK['size']} images, {QUICK['epochs']} epochs, {QUICK['trials']} "
                        "trials (numbers are meaningless; for testing)")


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


# ---------------------------------------------------------------------- the experiment
@dataclass
class Results:
    """Everything the results file shows, per method: arrays over repeats. ``*_last``: the last epoch's model (the
    paper's protocol); the others: the model the Trainer keeps (lowest validation loss), which the tuning scored."""

    methods: list[str]
    task_names: list[str]
    layers: list[str]
    accuracy: dict[str, np.ndarray]          # [R, T] test accuracy %
    test_ce: dict[str, np.ndarray]           # [R, T] test cross-entropy
    train_ce: dict[str, np.ndarray]          # [R, T] training cross-entropy (whole training set)
    accuracy_last: dict[str, np.ndarray]     # [R, T] the same three for the last epoch's model
    test_ce_last: dict[str, np.ndarray]
    train_ce_last: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]            # [R, E] task-mean training loss per epoch (mini-batch mean)
    val_curves: dict[str, np.ndarray]        # [R, E] task-mean validation loss per epoch
    best_epoch: dict[str, np.ndarray]        # [R] the kept epoch (0-based)
    norms: dict[str, dict[str, dict[str, np.ndarray]]]  # method -> layer -> kind -> [R, E+1]
    sharing: dict[str, dict[str, np.ndarray]]           # method -> norm -> [R, L], last epoch (laf/tucker/tt/fro)
    sharing_sel: dict[str, dict[str, np.ndarray]]       # the same for the kept epoch's model
    seconds: dict[str, float]
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)   # method -> the configuration trained
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)    # method -> `TuningResult.to_json()`
    epochs: int = 0
    reused: int = 0                          # runs read back from the cache instead of trained
    cache: str = ""
    # the γ = 0 ablation: trace-norm method -> STL trained with that method's tuned optimiser settings, arrays over
    # repeats (accuracy, accuracy_last, train_ce_last [R, T]; best_epoch [R]; sharing/<norm> [R, L];
    # norm/<layer>/<kind> [R, E+1])
    ablation: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    runs: int = 0                            # final runs asked for (the table's and the diagnostics')
    # the paper's setting (defaults, γ = 0.01) on repeat 0: trace-norm method -> the run's arrays (`_arrays`)
    paper_setting: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """repeats, size, epochs, trials after ``--quick``; validated (a `MtlkitError` names the bad option)."""
    s = {"repeats": args.repeats, "size": args.size, "epochs": args.epochs, "trials": args.trials}
    if args.quick:
        s.update({k: min(s[k], v) for k, v in QUICK.items()})
    if s["repeats"] < 1 or s["epochs"] < 1 or s["trials"] < 1:
        raise MtlkitError(f"--repeats, --epochs and --trials must be >= 1, got {s['repeats']}, {s['epochs']} and "
                          f"{s['trials']}")
    if not 24 <= s["size"] <= 105:
        raise MtlkitError(f"--size must be in 24..105 (the paper's CNN needs at least 24x24 images), got {s['size']}")
    return s


def fixed_hparams(method: str, epochs: int) -> dict[str, Any]:
    """What every method of the table trains with and does not tune: the paper's CNN (fc 64; ``hidden`` is the mlp
    backbone's and unused), ``epochs`` epochs with no early stopping (``patience`` 0: the Trainer keeps the epoch
    with the lowest validation loss), batch 32 rows per task. The rest of the method's declared space is tuned."""
    from mtlkit.methods.trace_norm_mtl import ARCH_DEFAULTS

    known = set(method_defaults(registry.get(method)))
    hp = {"epochs": int(epochs), "patience": 0, "batch_size": DEFAULTS["batch_size"],
          "fc": list(ARCH_DEFAULTS["fc"]), "hidden": list(ARCH_DEFAULTS["hidden"])}
    return {k: v for k, v in hp.items() if k in known}


def make_splits(data: MultiTaskData, repeats: int, seed: int = SEED) -> list[Split]:
    """``repeats`` random per-task stratified splits (seed ``seed + r``): per character 10% training (2 of the 20
    drawers, as the paper), 10% validation, 80% test."""
    return [data.split(test=TEST, val=VAL, seed=seed + r) for r in range(repeats)]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, rec: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, default=str))
    tmp.replace(path)


def tune_methods(ctx: Context, data: MultiTaskData, split0: Split, methods: Sequence[str], trials: int,
                 epochs: int) -> dict[str, dict[str, Any]]:
    """Every method tuned with ``trials`` TPE trials (plus one widening round past an edge, counted) over its declared
    search space less `fixed_hparams`, on ``split0``'s validation rows (`mtlkit.experiments.tuning.tune`, seed
    `SEED`); per method the `TuningResult.to_json()` record. Each record is cached beside the results store, keyed by
    the data, the fixed values, the space and the budget, so a stopped reproduction continues."""
    from mtlkit.experiments.tuning import tune

    folder = Path(ctx.store.path).parent / "tuning"
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        fixed = fixed_hparams(m, epochs)
        space = {k: v.text() for k, v in registry.search_space(m, data.kind).items()}
        key = _key(fixed, space, trials, WIDEN, SEED, TEST, VAL)
        path = folder / f"trace-norm-{data.checksum()[:12]}-{m}-t{trials}-{key}.json"
        rec = _read_json(path)
        if rec is None or rec.get("format") != "mtlkit-tune/1":
            t0 = time.perf_counter()
            res = tune(m, [("repeat0", split0)], trials=trials, seed=SEED, fixed=fixed, widen=WIDEN,
                       device=ctx.device, progress=ctx.progress)
            rec = json.loads(json.dumps(res.to_json(), default=str))
            _write_json(path, rec)
            print(f"trace-norm: {m} tuned in {time.perf_counter() - t0:.0f} s ({res.budget_text()}): "
                  f"{res.best_params}", file=sys.stderr, flush=True)
        out[m] = rec
    return out


def _selection_records(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trials behind a tuned configuration, as a `Run.selection` list (what the results store keeps)."""
    trials = rec.get("tuned", [{}])[0].get("trials", [])
    return [{"hparams": t["params"], f"val_{rec.get('metric', 'error')}": t["value"], "trial": t["number"],
             "round": t["round"], "state": t["state"], "seconds": t["seconds"]} for t in trials]


def _arrays(rec: Recorded, epochs: int) -> dict[str, np.ndarray]:
    """What the results file needs of one recorded run, as arrays for the run cache."""
    test, train = rec.run.evaluate("test"), rec.run.evaluate("train")
    test_l, train_l = rec.last.evaluate("test"), rec.last.evaluate("train")
    arrays = {"accuracy": test.per_task["accuracy"], "test_ce": test.per_task["cross_entropy"],
              "train_ce": train.per_task["cross_entropy"], "accuracy_last": test_l.per_task["accuracy"],
              "test_ce_last": test_l.per_task["cross_entropy"], "train_ce_last": train_l.per_task["cross_entropy"],
              "curve": _pad(rec.train_loss.mean(1), epochs), "val_curve": _pad(rec.val_loss.mean(1), epochs),
              "best_epoch": np.array(rec.best_epoch), "seconds": np.array(rec.seconds)}
    for layer, kinds in rec.norms.items():
        for k, v in kinds.items():
            arrays[f"norm/{layer}/{k}"] = _pad(v, epochs + 1)
    for k in (*KINDS, "fro"):
        st = sharing_strength(rec.init_model, rec.last.model, norm=k)
        arrays["layers"] = np.array(list(st))
        arrays[f"sharing/{k}"] = np.array(list(st.values()))
        arrays[f"sharing_sel/{k}"] = np.array(list(sharing_strength(rec.init_model, rec.run.model, norm=k).values()))
    return arrays


def _experiment(ctx: Context, data: MultiTaskData, splits: list[Split], epochs: int, trials: int) -> Results:
    """Tune the four methods on repeat 0's validation rows (the same budget each), then train each choice on every
    split recording its curves and norms; collect accuracies, losses, norm traces and sharing strengths.

    Each (method, repeat) is cached as an ``.npz`` in a folder beside the results store, keyed by the configuration
    and the data checksum, so a stopped reproduction continues where it stopped (delete the folder to retrain)."""
    methods = [m for m, _ in METHODS]
    tuning = tune_methods(ctx, data, splits[0], methods, trials, epochs)
    hparams = {m: dict(tuning[m]["hparams"][0]) for m in methods}
    cache = ctx.store.path.parent / f"{ctx.store.path.stem}-traces"
    checksum = data.checksum()[:12]
    one: dict[str, list[dict[str, np.ndarray]]] = {m: [] for m in methods}
    reused = total = 0

    def recorded(m: str, r: int, split: Split, hp: dict[str, Any], experiment: str) -> dict[str, np.ndarray]:
        nonlocal reused, total
        total += 1
        path = cache / f"{m}-r{r}-{_key(hp, TEST, VAL, SEED)}-{checksum}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                reused += 1
                return {k: z[k] for k in z.files}
        rec = train_recording(m, split, hp, seed=SEED + r, device=ctx.device)
        if m in tuning and hp == hparams[m]:
            rec.run.selection = _selection_records(tuning[m])
        ctx.store.add(rec.run, experiment, f"repeat{r}", rec.run.evaluate("val"), rec.run.evaluate("test"))
        arrays = _arrays(rec, epochs)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return arrays

    for r, split in enumerate(splits):
        for m in methods:
            one[m].append(recorded(m, r, split, hparams[m], EXPERIMENT))
    # the γ = 0 ablation (a diagnostic, outside the budget): STL's network trained with each trace norm's tuned
    # optimiser settings, so that the penalty is the only difference (same initial weights, batches and optimiser)
    ablation: dict[str, dict[str, np.ndarray]] = {}
    if "stl-cnn" in methods:
        for m in methods:
            if m == "stl-cnn":
                continue
            hp = {**hparams["stl-cnn"], **{k: hparams[m][k] for k in ABLATION_KEYS if k in hparams[m]}}
            runs = [recorded("stl-cnn", r, split, hp, EXPERIMENT + "-ablation") for r, split in enumerate(splits)]
            ablation[m] = {k: np.stack([d[k] for d in runs]) for k in
                           ("accuracy", "accuracy_last", "train_ce_last", "best_epoch",
                            *(f"sharing/{k}" for k in (*KINDS, "fro")),
                            *(k for k in runs[0] if k.startswith("norm/")))}
    # the paper's setting on repeat 0 (a diagnostic, outside the budget): every trace norm with its defaults — Adam,
    # learning rate 0.001, the paper's γ = 0.01 — for the norm curves at the paper's γ
    paper_setting: dict[str, dict[str, np.ndarray]] = {}
    for m in methods:
        if m == "stl-cnn":
            continue
        hp = {**fixed_hparams(m, epochs), "gamma": PAPER_GAMMA}
        paper_setting[m] = recorded(m, 0, splits[0], hp, EXPERIMENT + "-paper-setting")
    layers = [str(v) for v in one[methods[0]][0]["layers"]]

    def stack(m: str, key: str) -> np.ndarray:
        return np.stack([d[key] for d in one[m]])

    return Results(
        methods, list(data.task_names), layers,
        {m: stack(m, "accuracy") for m in methods}, {m: stack(m, "test_ce") for m in methods},
        {m: stack(m, "train_ce") for m in methods}, {m: stack(m, "accuracy_last") for m in methods},
        {m: stack(m, "test_ce_last") for m in methods}, {m: stack(m, "train_ce_last") for m in methods},
        {m: stack(m, "curve") for m in methods}, {m: stack(m, "val_curve") for m in methods},
        {m: stack(m, "best_epoch") for m in methods},
        {m: {layer: {k: stack(m, f"norm/{layer}/{k}") for k in KINDS} for layer in layers} for m in methods},
        {m: {k: stack(m, f"sharing/{k}") for k in (*KINDS, "fro")} for m in methods},
        {m: {k: stack(m, f"sharing_sel/{k}") for k in (*KINDS, "fro")} for m in methods},
        {m: float(stack(m, "seconds").sum()) for m in methods}, hparams, tuning, epochs, reused, str(cache),
        ablation, total, paper_setting)


def _pad(v: np.ndarray, n: int) -> np.ndarray:
    """``v`` padded with NaN to length ``n``."""
    out = np.full(n, np.nan)
    out[:len(v)] = v[:n]
    return out


# ---------------------------------------------------------------------- claims
def _task_mean(a: np.ndarray) -> np.ndarray:
    """``[R, T]`` → ``[R]``: the task-averaged value of every repeat."""
    return np.nanmean(a, axis=1)


def _mci(v: np.ndarray) -> tuple[float, float]:
    """Mean and 95% CI half-width over repeats of ``v`` ``[R]``."""
    mean, ci = mean_ci(np.asarray(v, dtype=float))
    return float(mean), float(ci)


def _cell(values: np.ndarray, decimals: int = 2) -> str:
    """``mean ± CI`` over repeats of a ``[R]`` array."""
    mean, ci = _mci(values)
    return f"{fmt(mean, decimals)} ± {fmt(ci, decimals)}"


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Mean ± CI over repeats of ``a − b`` (``[R]`` each) and the number of repeats where a > b."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, ci = _mci(d)
    return mean, ci, int(np.sum(d > 0))


def _total_norm(res: Results, m: str, kind: str) -> np.ndarray:
    """``[R, E+1]``: the ``kind`` norm summed over the shareable layers, per repeat and epoch."""
    return np.sum([res.norms[m][layer][kind] for layer in res.layers], axis=0)


def _last_value(a: np.ndarray) -> np.ndarray:
    """``[R, N]`` → ``[R]``: each row's last finite value (a run that stopped early is NaN-padded)."""
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        ok = np.flatnonzero(np.isfinite(row))
        if ok.size:
            out[i] = row[ok[-1]]
    return out


def _own_kind(m: str) -> str:
    """The norm a method optimises (LAF for STL, the sharing-strength default)."""
    return m.rsplit("-", 1)[-1] if m.startswith("trace-norm-") else "laf"


def bottom_minus_top(s: np.ndarray) -> np.ndarray:
    """``[R, L]`` sharing strengths (bottom → top) → ``[R]``: mean of the bottom half of the layers minus mean of the
    top half (conv1-2 vs conv3 and fc1 for the paper's CNN): "bottom layers share more compared to the top ones"."""
    h = s.shape[1] // 2
    return np.nanmean(s[:, :h], axis=1) - np.nanmean(s[:, s.shape[1] - h:], axis=1)


def norm_reduction(res: Results, m: str, kind: str) -> np.ndarray:
    """``[R]``: 1 − (the ``kind`` norm summed over the shareable layers after the last epoch) / (at initialisation);
    > 0: the norm went down over training."""
    tot = _total_norm(res, m, kind)
    return 1.0 - _last_value(tot) / tot[:, 0]


def claim_rows(res: Results) -> list[Claim]:
    """The paper's claims this reproduction tests (every one of Fig. 1 and its text), each with our effect ± 95% CI
    over repeats (paired differences where methods are compared) and a verdict by `mtlkit.experiments.claims.verdict`.
    The paper gives no numbers (Fig. 1 has no values on its axes), so every paper value is qualitative."""
    stl = "stl-cnn"
    mtl = [m for m in res.methods if m != stl]
    rows: list[Claim] = []

    def add(where: str, claim: str, paper_value: str, effect: np.ndarray, unit: str) -> None:
        mean, ci = _mci(effect)
        if not np.isfinite(effect).any():
            rows.append(Claim(PAPER, where, claim, paper_value, None, None, unit, "not testable here",
                              "no finite measurement", "trace-norm.md"))
            return
        v, why = verdict(mean, ci, 1)
        rows.append(Claim(PAPER, where, claim, paper_value, mean, ci, unit, v, why, "trace-norm.md"))

    if stl in res.methods:
        acc0, acc0_last = _task_mean(res.accuracy[stl]), _task_mean(res.accuracy_last[stl])
        tr0 = _task_mean(res.train_ce_last[stl])
        for m in mtl:
            x = NAMES[m]
            add("Fig. 1 top left; text: STL has the worst testing performance", f"{x} has a higher test accuracy "
                "than STL", "STL's bar lowest (no numbers)", _task_mean(res.accuracy[m]) - acc0,
                f"test accuracy % points, {x} − STL, paired over repeats (each run's lowest-validation-loss epoch)")
        for m in mtl:
            x = NAMES[m]
            add("Fig. 1 top left, the paper's protocol (last epoch's model, no validation)", f"{x} has a higher test "
                "accuracy than STL", "STL's bar lowest (no numbers)", _task_mean(res.accuracy_last[m]) - acc0_last,
                f"test accuracy % points, {x} − STL, paired over repeats (the last epoch's model)")
        for m in mtl:
            x = NAMES[m]
            add("Fig. 1 top middle; text: STL has the lowest training loss", f"STL ends with a lower training loss "
                f"than {x}", "STL's curve lowest (no numbers)", _task_mean(res.train_ce_last[m]) - tr0,
                f"training cross-entropy, {x} − STL, whole training set after the last epoch, paired over repeats")
    for m in mtl:
        x, k = NAMES[m], _own_kind(m)
        add("Fig. 1 top right; text: bottom layers share more compared to the top ones", f"{x}: the bottom layers "
            "share more than the top ones", "bars fall from bottom to top (no numbers)",
            bottom_minus_top(res.sharing[m][k]),
            f"sharing strength 1 − ‖θ_opt‖/‖θ_init‖ in the {KIND_NAMES[k]} norm, mean over "
            f"{', '.join(res.layers[:len(res.layers) // 2])} minus mean over "
            f"{', '.join(res.layers[len(res.layers) - len(res.layers) // 2:])}, last epoch")
    for m in mtl:  # the penalty alone: each tuned configuration against itself with γ = 0 (STL's network)
        x, ab = NAMES[m], res.ablation.get(m, {})
        if "accuracy" in ab:
            add("Fig. 1 top left, the penalty alone (the tuned configuration vs the same with γ = 0)",
                f"{x} has a higher test accuracy than its configuration without the penalty",
                "STL's bar lowest (no numbers)", _task_mean(res.accuracy[m]) - _task_mean(ab["accuracy"]),
                f"test accuracy % points, {x} − the same with γ = 0, paired over repeats (kept epochs)")
        if "train_ce_last" in ab:
            add("Fig. 1 top middle, the penalty alone (the tuned configuration vs the same with γ = 0)",
                f"without the penalty the network ends with a lower training loss than {x}",
                "STL's curve lowest (no numbers)", _task_mean(res.train_ce_last[m]) - _task_mean(ab["train_ce_last"]),
                f"training cross-entropy, {x} − the same with γ = 0, whole training set after the last epoch, paired "
                "over repeats")
    for m in mtl:
        x, k = NAMES[m], _own_kind(m)
        abl = res.ablation.get(m, {}).get(f"sharing/{k}")
        if abl is None and stl not in res.methods:
            continue
        ref, what = ((abl, f"{x}'s tuned configuration with γ = 0") if abl is not None
                     else (res.sharing[stl][k], "STL"))
        add("Fig. 1 top right, the penalty's part (plain training's sharing strength subtracted)",
            f"{x}: the bottom layers share more than the top ones beyond what plain training does",
            "bars fall from bottom to top (no numbers)", bottom_minus_top(res.sharing[m][k] - ref),
            f"({x} − {what}) sharing strength in the {KIND_NAMES[k]} norm, bottom half minus top half of the "
            "layers, last epoch, paired over repeats")
    for m in mtl:
        x, k = NAMES[m], _own_kind(m)
        add("Fig. 1 bottom (the optimised norm's curve)", f"optimising {x}, the {KIND_NAMES[k]} norm decreases over "
            "training", "curve falls (no numbers)", norm_reduction(res, m, k),
            "1 − final/initial of the norm summed over the shareable layers")
    for m in mtl:
        x, own = NAMES[m], _own_kind(m)
        for k in KINDS:
            if k != own:
                add("Fig. 1 bottom; text: when optimising one, the other norms still reduce", f"optimising {x}, the "
                    f"{KIND_NAMES[k]} norm decreases over training", "curve falls (no numbers)",
                    norm_reduction(res, m, k), "1 − final/initial of the norm summed over the shareable layers")
    for m in mtl:  # the weaker reading: lower than without the penalty (the same configuration with γ = 0)
        x, own, ab = NAMES[m], _own_kind(m), res.ablation.get(m, {})
        for k in KINDS:
            if k == own or not all(f"norm/{layer}/{k}" in ab for layer in res.layers):
                continue
            off = np.sum([ab[f"norm/{layer}/{k}"] for layer in res.layers], axis=0)
            add("Fig. 1 bottom, against the same configuration with γ = 0; text: when optimising one, the other "
                "norms still reduce", f"optimising {x} keeps the {KIND_NAMES[k]} norm below its value without the "
                "penalty", "curve falls (no numbers)", norm_reduction(res, m, k) - (1.0 - _last_value(off) / off[:, 0]),
                f"final/initial of the {KIND_NAMES[k]} norm summed over the shareable layers, γ = 0 minus {x}, "
                "paired over repeats")
    return rows


# ---------------------------------------------------------------------- the run
def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Run the experiment; write ``trace-norm.md``, ``trace-norm.csv``, the figures and ``claims/trace-norm.csv``
    into ``ctx.out``."""
    from mtlkit.datasets import load

    s = _settings(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny SVDs of the penalty are ~100x slower multi-threaded on a busy CPU
    try:
        data = load("omniglot", args.data_dir, size=s["size"], alphabets=QUICK_ALPHABETS if args.quick else None)
        ctx.record(data)
        splits = make_splits(data, s["repeats"])
        res = _experiment(ctx, data, splits, s["epochs"], s["trials"])
        level = level_check(splits[0])
    finally:
        torch.set_num_threads(threads)
    figs = _figures(res, ctx.out)
    rows = claim_rows(res)
    claims_csv = write_claims(rows, ctx.out / "claims" / "trace-norm.csv")
    lines = ["# Trace norm regularised deep MTL (Yang & Hospedales, ICLR-W 2017): Omniglot, Fig. 1 reproduced", ""]
    protocol = _protocol(args, s, data.notes)
    if res.reused:
        protocol.insert(1, f"{res.reused} of {res.runs} final runs (the table's and the diagnostics') were read "
                           f"back from the run cache `{res.cache}` (written by an earlier invocation with the same "
                           "configuration and data; tunings likewise from `tuning/` beside the store); the time "
                           "above counts this invocation only, the training time of every run is at the end.")
    seeds = (f"splits {SEED}..{SEED + s['repeats'] - 1} (`Split` seed r for repeat r); every network of repeat r "
             "initialised with torch seed r (the four methods start from identical weights; tuning trials on repeat 0 "
             f"with seed {SEED}); TPE seeded with {SEED}")
    lines += provenance(ctx, seeds, protocol)
    lines += ["", *_budget_section(res), "", *_accuracy_section(res), "", *_loss_section(res), "",
              *_norm_section(res), "", *_sharing_section(res), "", *_claims_section(rows), "",
              *_diagnosis(res, level, rows)]
    secs = ", ".join(f"{NAMES[m]} {res.seconds[m] / 60:.1f}" for m in res.methods)
    tune_secs = ", ".join(f"{NAMES[m]} {float(res.tuning[m].get('seconds', 0.0)) / 60:.1f}" for m in res.methods
                          if m in res.tuning)
    lines += ["", f"Training time of the final runs (minutes, all repeats): {secs}. Tuning (minutes): {tune_secs}."]
    md = ctx.out / "trace-norm.md"
    md.write_text("\n".join(lines) + "\n")
    csv = ctx.out / "trace-norm.csv"
    out = ["method,repeat,task,test_accuracy,test_cross_entropy,train_cross_entropy,test_accuracy_last_epoch,"
           "train_cross_entropy_last_epoch,best_epoch"]
    for m in res.methods:
        for r in range(res.accuracy[m].shape[0]):
            for t, name in enumerate(res.task_names):
                out.append(f"{m},{r},{name},{res.accuracy[m][r, t]:.6g},{res.test_ce[m][r, t]:.6g},"
                           f"{res.train_ce[m][r, t]:.6g},{res.accuracy_last[m][r, t]:.6g},"
                           f"{res.train_ce_last[m][r, t]:.6g},{int(res.best_epoch[m][r])}")
    csv.write_text("\n".join(out) + "\n")
    return [md, csv, claims_csv, *figs]


def level_check(split: Split) -> dict[str, np.ndarray]:
    """scikit-learn on the same split (repeat 0), per task, on the pixels standardised with the training rows as our
    networks see them: multinomial logistic regression with C ∈ {0.01, 0.1, 1, 10} chosen on the validation rows, and
    1-nearest-neighbour. Returns name → ``[T]`` test accuracy %. If these match our CNNs, the level is the data's
    (2 training images per character); if they beat them, our networks are under-trained."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    tr, va, te = split.train, split.part("val"), split.part("test")
    assert tr.xs is not None and va.xs is not None and te.xs is not None
    assert tr.ys is not None and va.ys is not None and te.ys is not None
    flat = [[np.asarray(x, dtype=np.float64).reshape(len(x), -1) for x in p.xs] for p in (tr, va, te)]  # type: ignore[union-attr]
    pooled = np.concatenate(flat[0])
    mu, sd = pooled.mean(0), pooled.std(0)
    sd[sd == 0] = 1.0
    xtr, xva, xte = ([(x - mu) / sd for x in xs] for xs in flat)
    lr_acc, nn_acc = [], []
    for t in range(len(xtr)):
        ytr, yva, yte = (np.asarray(p.ys[t]).astype(int) for p in (tr, va, te))  # type: ignore[index]
        best: tuple[float, float] | None = None
        for c in (0.01, 0.1, 1.0, 10.0):
            mdl = LogisticRegression(C=c, max_iter=500).fit(xtr[t], ytr)
            v, a = float(np.mean(mdl.predict(xva[t]) == yva)), float(np.mean(mdl.predict(xte[t]) == yte))
            if best is None or v > best[0]:
                best = (v, a)
        assert best is not None
        lr_acc.append(100 * best[1])
        knn = KNeighborsClassifier(n_neighbors=1).fit(xtr[t], ytr)
        nn_acc.append(100 * float(np.mean(knn.predict(xte[t]) == yte)))
    return {"logistic regression per task, C ∈ {0.01, 0.1, 1, 10} on validation": np.array(lr_acc),
            "1-nearest-neighbour per task (pixels)": np.array(nn_acc)}


# ---------------------------------------------------------------------- the results file
def _protocol(args: argparse.Namespace, s: dict[str, Any], notes: Sequence[str]) -> list[str]:
    lines = [
        *notes,
        f"Tasks: {'3 of ' if args.quick else ''}the 8 staged alphabets (the paper uses all 50; only the two "
        "'background small' subsets are staged here), one multiclass task each. Network per task: the paper's CNN — "
        "conv 8@5x5, conv 12@3x3, conv 16@3x3, each followed by 2x2 max-pooling, fc 64, fc #classes, tanh; 'valid' "
        "convolutions (the paper is silent). Shareable (penalised) layers: conv1-conv3 and fc1; biases and output "
        "layers are not penalised.",
        f"Images {s['size']}x{s['size']} instead of the paper's 105x105"
        + (" (area-downsampled: exact 3x3 block means): a 105x105 run costs about 9x more per image and does not "
           "fit this 2-core shared CPU's budget; `--size 105` runs the paper's size." if s["size"] == 35 else "."),
        f"{s['repeats']} repeats (paper: 10), each a new random per-task stratified split, per character: 10% of the "
        "images for training (2 of the 20 drawers, as the paper), 10% for validation, 80% for testing (the paper: "
        "90% testing and no validation set; the equal-budget tuning and the choice of epoch need validation rows, "
        "taken from the paper's test part so that the training part stays the paper's).",
        f"Equal budget: each of the four methods is tuned with {s['trials']} trials of Optuna TPE (plus one widening "
        "round of half as many if a selected value lies on the edge of its space, counted in the budget table) over "
        "its declared search space (`mtlkit methods NAME`) on repeat 0's validation rows, scored by the task-mean "
        "validation error; the selected configuration is then trained on every repeat. The trace-norm methods' "
        "space holds γ = 0 (off) beside log[1e-4, 1]; STL has no γ and tunes the rest of the same space (optimiser, "
        "learning rate, momentum). The paper sets every γ = 0.01 with no tuning: that setting (with Adam, learning "
        "rate 0.001) is each method's first trial.",
        f"Fixed for every method (not tuned): the paper's architecture (fc 64), batch 32 rows per task, "
        f"{s['epochs']} epochs (an epoch = ceil(largest task's training rows / 32) steps; the paper gives no epoch "
        "count), no early stopping; the Trainer keeps the epoch with the lowest validation loss (the model every "
        "tuning trial was scored with), and the last epoch's model — the paper's protocol — is evaluated too. "
        "Pixels standardised with the training rows' mean and std. The four methods of a repeat start from the "
        "same initial weights (same torch seed, same architecture) and see the same batches.",
        "Penalty: γ on every norm term of every shareable layer (Eq. 1-3: LAF one term per layer, Tucker N = 5 "
        "(conv) or 3 (fc) terms, TT N − 1 terms), weighed against the SUM over tasks of the per-task mean "
        "cross-entropies (`trace-norm-*`'s convention: it adds (1/T)·γ·Σ norms to the task-mean loss the Trainer "
        "minimises; the paper's objective Σ_t L_t + γ·Σ norms). The tuned γ range spans both readings of the "
        "paper's scale. Gradients: the SVD subgradient U Vᵀ.",
        "Training loss: the per-task cross-entropy only (the penalty excluded), averaged over tasks; the curves are "
        "the mean over each epoch's mini-batches, the tables' values are evaluated on the whole training set.",
        "Sharing strength (paper: 1 − ‖optimised param‖ / ‖initialised param‖) per shareable layer, θ the layer's "
        "weights stacked over the tasks (paper layout, task axis last), θ_opt the last epoch's weights (the end of "
        "the optimisation the norm curves show), θ_init the random initialisation — the same for all four methods — "
        "and ‖·‖ the method's own tensor trace norm (STL is reported under each of the three norms) and, as a "
        "plain-shrinkage reference, the Frobenius norm.",
        "Diagnostic outside the budget (the γ = 0 ablation): each trace-norm method's tuned configuration is also "
        "trained with γ = 0 on every repeat — STL's network with that method's optimiser settings — so that the "
        "penalty's own effect can be separated from the optimiser's (Diagnosis, item 8; the sharing claim's "
        "'penalty's part' subtracts it); and each trace norm at the paper's setting (Adam, learning rate 0.001, "
        "γ = 0.01) on repeat 0, for its norm curves (Diagnosis, item 7).",
        "Means are over repeats with 95% Student-t intervals; test metrics are averaged over the tasks first.",
    ]
    if args.quick:
        lines.insert(0, f"**QUICK SMOKE RUN**: {', '.join(QUICK_ALPHABETS)} only, tiny images, few epochs, trials "
                        "and repeats; the numbers mean nothing.")
    else:
        short = [f"{s['repeats']} repeats instead of the paper's 10"] if s["repeats"] < 10 else []
        short += [f"{s['trials']} tuning trials per method (the paper tunes nothing: γ = 0.01)",
                  f"{s['epochs']} epochs (the paper does not say)"]
        if s["size"] < 105:
            short.append(f"{s['size']}x{s['size']} images instead of 105x105")
        lines.insert(0, "**Reduced protocol** (sized for about 35 minutes on a shared 2-core CPU; the recorded tuning "
                        "and training times, which grow when other jobs share the CPU, are at the end): "
                     + "; ".join(short) + "; 8 alphabets instead of 50.")
    return lines


def _budget_section(res: Results) -> list[str]:
    out = ["## Tuning budget and selected hyper-parameters (repeat 0's validation rows)", "",
           *budget_lines(res.tuning), ""]
    warn = edge_warnings(res.tuning)
    out += [f"- {w}" for w in warn] or ["No selected value lies on the edge of its search space."]
    out += ["", "The configuration trained on every repeat (the tuned values; the fixed ones are in the protocol):",
            ""]
    rows = []
    for m in res.methods:
        hp = res.hparams.get(m, {})
        keys = [k for k in ("optimizer", "lr", "momentum", "gamma") if k in hp
                and (k != "momentum" or hp.get("optimizer") == "sgd")]  # momentum acts with sgd only
        rows.append([NAMES[m], ", ".join(f"{k}={_fmt_value(hp[k])}" for k in keys)
                     + (" (γ off: no penalty)" if hp.get("gamma", None) == 0 else "")])
    out += markdown_table(["method", "configuration"], rows)
    return out


def _fmt_value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _accuracy_section(res: Results) -> list[str]:
    stl = _task_mean(res.accuracy["stl-cnn"])
    stl_last = _task_mean(res.accuracy_last["stl-cnn"])
    out = ["## Test accuracy (Fig. 1, top left)", "",
           f"Task-averaged test accuracy (%) on the 80% test part. The paper reports no numbers (Fig. 1 plots bars; "
           "its text: STL has the worst testing performance). Δ vs STL is paired over repeats. 'Kept epoch': the "
           f"epoch with the lowest validation loss (what the tuning scored); 'last epoch': after all {res.epochs} "
           "epochs (the paper's protocol).", ""]
    rows = []
    for m in res.methods:
        a, al = _task_mean(res.accuracy[m]), _task_mean(res.accuracy_last[m])
        if m == "stl-cnn":
            delta = delta_l = "–"
        else:
            d, ci, n = _paired(a, stl)
            delta = f"{d:+.2f} ± {fmt(ci)} (better in {n}/{len(a)})"
            d, ci, n = _paired(al, stl_last)
            delta_l = f"{d:+.2f} ± {fmt(ci)} (better in {n}/{len(a)})"
        rows.append([f"{NAMES[m]} (`{m}`)", "STL lowest (bars only)" if m == "stl-cnn" else "above STL (bars only)",
                     _cell(a), delta, _cell(_task_mean(res.test_ce[m]), 3), _cell(al), delta_l,
                     fmt(float(np.mean(res.best_epoch[m])) + 1, 1)])
    out += markdown_table(["method", "paper", "ours: accuracy % (kept epoch)", "Δ vs STL (points)",
                           "test cross-entropy", "accuracy % (last epoch)", "Δ vs STL, last epoch",
                           "kept epoch (mean, 1-based)"], rows)
    out += ["", "![test accuracy](trace-norm-accuracy.png)", "",
            "Per task (mean test accuracy % over repeats, kept epoch):", ""]
    rows = [[name, *[fmt(float(np.mean(res.accuracy[m][:, t]))) for m in res.methods]]
            for t, name in enumerate(res.task_names)]
    out += markdown_table(["alphabet", *[NAMES[m] for m in res.methods]], rows)
    return out


def _loss_section(res: Results) -> list[str]:
    out = ["## Training loss (Fig. 1, top middle)", "",
           "Cross-entropy on the training part (penalty excluded), task-averaged: on the whole training set after the "
           "last epoch, the last epoch's mini-batch mean, and on the whole training set for the kept epoch's model. "
           "Each method trains with its own tuned optimiser settings (see the budget table).", ""]
    rows = [[NAMES[m], _cell(_task_mean(res.train_ce_last[m]), 3), _cell(_last_value(res.curves[m]), 3),
             _cell(_task_mean(res.train_ce[m]), 3)] for m in res.methods]
    out += markdown_table(["method", "training cross-entropy, last epoch", "last epoch's mini-batch mean",
                           "training cross-entropy, kept epoch"], rows)
    out += ["", "![training loss](trace-norm-train-loss.png)"]
    return out


def _norm_section(res: Results) -> list[str]:
    out = ["## The three norms over training (Fig. 1, bottom)", "",
           "Each norm summed over the four shareable layers, after the last epoch relative to its value at "
           "initialisation (mean ± CI over repeats; < 1: the norm went down). One row per optimised norm; STL "
           "optimises none.", ""]
    rows = []
    for m in res.methods:
        row = [NAMES[m] + (" (γ off)" if res.hparams.get(m, {}).get("gamma", None) == 0 else "")]
        for k in KINDS:
            tot = _total_norm(res, m, k)
            row.append(_cell(_last_value(tot) / tot[:, 0], 3))
        rows.append(row)
    out += markdown_table(["optimised", *[f"{KIND_NAMES[k]} norm: final / initial" for k in KINDS]], rows)
    out += ["", "Per layer, final / initial of the optimised norm (STL: LAF):", ""]
    rows = []
    for m in res.methods:
        k = _own_kind(m)
        rows.append([f"{NAMES[m]} ({KIND_NAMES[k]})",
                     *[fmt(float(np.nanmean(_last_value(res.norms[m][layer][k]) / res.norms[m][layer][k][:, 0])), 3)
                       for layer in res.layers]])
    out += markdown_table(["method (norm)", *res.layers], rows)
    out += ["", "![norms over training](trace-norm-norms.png)"]
    return out


def _sharing_section(res: Results) -> list[str]:
    out = ["## Sharing strength by layer (Fig. 1, top right)", "",
           "1 − ‖θ_opt‖/‖θ_init‖ per shareable layer (bottom → top), θ_opt the last epoch's weights, mean ± 95% CI "
           "over repeats. Higher = the stack of the tasks' copies of that layer shrank more in that norm (towards a "
           "low-rank, shared stack). STL rows show how much plain training changes the same norm (negative: it "
           "grew).", ""]
    rows = []
    mtl = [m for m in res.methods if m != "stl-cnn"]
    for m in mtl:
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
    out += ["", "The same for the kept epoch's model (the one whose accuracy is reported), own norm:", ""]
    rows = [[f"{NAMES[m]} ({KIND_NAMES[_own_kind(m)]} norm)",
             *[_cell(res.sharing_sel[m][_own_kind(m)][:, i], 3) for i in range(len(res.layers))]]
            for m in res.methods]
    out += markdown_table(["method (norm)", *res.layers], rows)
    out += ["", "![sharing strength by layer](trace-norm-sharing.png)"]
    return out


def _claims_section(rows: Sequence[Claim]) -> list[str]:
    out = ["## The paper's claims, checked here", "",
           "One row per claim (also in `claims/trace-norm.csv` and the project's claims ledger). Verdict by the "
           "project's one rule (`mtlkit.experiments.claims.verdict`): **holds** when the 95% CI over repeats lies on "
           "the claimed side of 0, **holds in direction only** when the mean does but the CI includes 0, **does not "
           "hold** otherwise. The paper gives no numbers, so no effect size is required.", ""]
    table = [[c.where, c.claim, c.paper_value, "–" if c.ours is None else
              f"{c.ours:+.3g} ± {c.ci95:.2g}" if c.ci95 is not None and math.isfinite(c.ci95) else f"{c.ours:+.3g}",
              c.unit, f"**{c.verdict}**"] for c in rows]
    out += markdown_table(["where", "claim", "paper", "ours (mean ± 95% CI)", "measure", "verdict"], table)
    return out


def _trial0(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The tuning's first trial (the method's defaults: the paper's setting)."""
    for t in rec.get("tuned", [{}])[0].get("trials", []):
        if t.get("number") == 0:
            return t
    return None


def _verdicts(rows: Sequence[Claim], where: str) -> dict[str, str]:
    """claim text → verdict for the rows whose ``where`` starts with ``where``."""
    return {c.claim: c.verdict for c in rows if c.where.startswith(where)}


def _diagnosis(res: Results, level: Mapping[str, np.ndarray], rows: Sequence[Claim]) -> list[str]:
    """Why each claim fails or shifts, from cheap checks on what was measured: the tuning's own trials (the paper's
    setting against the selected one, on the same validation rows), where the kept epoch lies, scikit-learn on the
    same split, STL's own sharing pattern, and the norms relative to STL's."""
    stl, mtl = "stl-cnn", [m for m in res.methods if m != "stl-cnn"]
    out = ["## Diagnosis", ""]

    # 1. the tuning: the paper's setting (trial 0) against the selection, on repeat 0's validation rows
    out += ["**1. What the equal budget chose, against the paper's setting.** Trial 0 of every tuning is the "
            f"method's defaults — Adam, learning rate 0.001 and, for the trace norms, the paper's γ = {PAPER_GAMMA} — "
            "so the first column compares the four methods at the paper's setting with an identical optimiser (the "
            "penalty alone differs), the second at their tuned settings. Validation error % (task mean), repeat 0:", ""]
    table, at_paper = [], {}
    for m in res.methods:
        rec = res.tuning.get(m, {})
        t0 = _trial0(rec)
        v0 = t0.get("value") if t0 else None
        at_paper[m] = v0
        best = rec.get("best_value")
        table.append([NAMES[m], "–" if v0 is None else fmt(float(v0)), "–" if best is None else fmt(float(best)),
                      ", ".join(f"{k}={_fmt_value(v)}" for k, v in (rec.get("best_params") or {}).items()) or "–"])
    out += markdown_table(["method", "paper's setting (trial 0)", "selected", "selected values"], table)
    gam = {m: res.hparams.get(m, {}).get("gamma") for m in mtl}
    off = [NAMES[m] for m in mtl if gam[m] == 0]
    notes = []
    if off:
        notes.append(f"The tuning switched the penalty off (γ = 0) for {', '.join(off)}: there the method is STL's "
                     "network with other optimiser settings, and any difference to STL is the optimiser's, not the "
                     "trace norm's.")
    chosen = [json.dumps(res.tuning.get(m, {}).get("best_params"), sort_keys=True) for m in mtl]
    if len(mtl) > 1 and len(set(chosen)) == 1:
        notes.append("The tuner's sampler is seeded per trial number, so methods with the same search space are "
                     "offered the same candidates while their scores agree: the three trace norms were tried at "
                     "largely the same points and selected the same configuration, so their differences below are "
                     "the norms' alone.")
    on = [f"{NAMES[m]} γ = {_fmt_value(gam[m])}" for m in mtl if gam[m] not in (None, 0)]
    if on:
        notes.append(f"Selected γ: {', '.join(on)} (paper: {PAPER_GAMMA} for all).")
    if at_paper.get(stl) is not None:
        better = [NAMES[m] for m in mtl if at_paper.get(m) is not None and at_paper[m] < at_paper[stl]]
        notes.append(f"At the paper's setting the penalty lowers the validation error below STL's "
                     f"({fmt(float(at_paper[stl]))} %) for {', '.join(better) if better else 'none of the three'} "
                     "(one split, no interval: an indication, not a test).")
    out += ["", *notes] if notes else []

    # 2. under-training: where the kept epoch lies
    late = {m: float(np.mean(res.best_epoch[m] >= 0.9 * res.epochs - 1)) for m in res.methods}
    epochs_txt = ", ".join(f"{NAMES[m]} {float(np.mean(res.best_epoch[m])) + 1:.1f} ({late[m] * 100:.0f}% of "
                           "repeats in the last tenth)" for m in res.methods)
    under = [NAMES[m] for m in res.methods if late[m] >= 0.5]
    out += ["", f"**2. Under-training?** The kept epoch (lowest validation loss, mean over repeats, of "
                f"{res.epochs}): {epochs_txt}. "
            + (f"For {', '.join(under)} the validation loss was still falling at the end in most repeats: these "
               "runs may be under-trained at this epoch count, and their accuracies are lower bounds."
               if under else "Every method reached its validation minimum well before the last epoch in most "
                             "repeats: the epoch count does not cut training short.")]

    # 3. the level: scikit-learn on the same split
    ours0 = {m: float(np.nanmean(res.accuracy[m][0])) for m in res.methods}
    lv = [[name, fmt(float(np.mean(v)))] for name, v in level.items()]
    lv += [[f"ours: {NAMES[m]} (kept epoch)", fmt(ours0[m])] for m in res.methods]
    best_sk = max(float(np.mean(v)) for v in level.values()) if level else math.nan
    out += ["", "**3. The level.** The paper gives no accuracies, so the level is checked against scikit-learn on "
                "the same split (repeat 0), same standardised pixels, 2 training images per character:", ""]
    out += markdown_table(["model (repeat 0)", "test accuracy % (task mean)"], lv)
    gap = ours0.get(stl, math.nan) - best_sk
    out += ["", f"STL's CNN is {abs(gap):.1f} points {'above' if gap >= 0 else 'below'} the best scikit-learn model. "
            + ("The CNNs learn more than pixel templates, so the low absolute accuracy is the data's (2 training "
               "images for 14-55 classes per task, and 8 of the paper's 50 alphabets), not a training failure."
               if gap >= 0 else "A CNN below a linear model on the same pixels points to under-training or "
                                "over-fitting of the networks rather than to the data.")]

    # 4. test accuracy vs STL
    acc = _verdicts(rows, "Fig. 1 top left;")
    acc_last = _verdicts(rows, "Fig. 1 top left, the paper's")
    a0 = _task_mean(res.accuracy[stl])
    sd = float(np.std(a0, ddof=1)) if len(a0) > 1 else math.nan
    parts = []
    for m in mtl:
        d, ci, n = _paired(_task_mean(res.accuracy[m]), a0)
        dl, cil, _ = _paired(_task_mean(res.accuracy_last[m]), _task_mean(res.accuracy_last[stl]))
        parts.append(f"{NAMES[m]} {d:+.2f} ± {fmt(ci)} (better in {n}/{len(a0)}; last epoch {dl:+.2f} ± {fmt(cil)})")
    n_hold = sum(v == "holds" for v in acc.values())
    out += ["", f"**4. Test accuracy vs STL** ({n_hold} of {len(acc)} hold at the kept epoch, "
                f"{sum(v == 'holds' for v in acc_last.values())} of {len(acc_last)} at the last epoch): "
            + "; ".join(parts) + f" points. STL's accuracy varies by {fmt(sd)} points (sd) between repeats; the "
            "paired differences remove most of that. "
            + ("The last-epoch comparison (the paper's protocol) favours the trace norms more than the kept-epoch one."
               if sum(v == "holds" for v in acc_last.values()) > n_hold else
               "Choosing the epoch on validation does not change the picture much.")]
    gain = {m: _paired(_task_mean(res.accuracy_last[m]), _task_mean(res.accuracy[m])) for m in res.methods}
    rising = [m for m in res.methods if gain[m][0] - gain[m][1] > 0]
    out[-1] += (" From the kept epoch to the last the accuracy changes by " + ", ".join(
        f"{NAMES[m]} {gain[m][0]:+.2f} ± {fmt(gain[m][1])}" for m in res.methods) + " points. "
        + (f"For {', '.join(NAMES[m] for m in rising)} the accuracy keeps rising after the kept epoch: the epoch is "
           "chosen by the validation cross-entropy (the Trainer's rule, also inside every tuning trial), which rises "
           "once wrong predictions grow over-confident while the error still falls — the selection measure and the "
           "claim's measure disagree, and the kept-epoch comparison handicaps the runs that fit fastest."
           if rising else "The kept epoch is not worse than the last one for any method."))

    # 5. training loss
    tl = _verdicts(rows, "Fig. 1 top middle")
    lrs = ", ".join(f"{NAMES[m]} {res.hparams.get(m, {}).get('optimizer', '?')} lr "
                    f"{_fmt_value(res.hparams.get(m, {}).get('lr'))}" for m in res.methods)
    failing = [NAMES[m] for m in mtl if tl.get(f"STL ends with a lower training loss than {NAMES[m]}") != "holds"]
    out += ["", f"**5. Training loss** ({sum(v == 'holds' for v in tl.values())} of {len(tl)} hold). Each method "
                f"trains with its own tuned optimiser ({lrs}), so the training loss after {res.epochs} epochs mixes "
                "the penalty's effect with the optimiser's. "
            + (f"STL does not end lowest against {', '.join(failing)}: compare the learning rates — a larger step "
               "fits the training set faster within the fixed epochs, penalty or not; item 8 compares at the same "
               "optimiser." if failing else "STL ends lowest against every trace norm despite the different "
                                            "optimisers.")]

    # 6. sharing by layer: STL's own pattern
    sh = _verdicts(rows, "Fig. 1 top right;")
    sh_pen = _verdicts(rows, "Fig. 1 top right, the penalty's")
    stl_parts = []
    for k in KINDS:
        mean, ci = _mci(bottom_minus_top(res.sharing[stl][k]))
        stl_parts.append(f"{KIND_NAMES[k]} {mean:+.3f} ± {fmt(ci, 3)}")
    out += ["", f"**6. Sharing by layer.** As the paper measures it, {sum(v == 'holds' for v in sh.values())} of "
                f"{len(sh)} variants share more in the bottom layers. The same measure on STL, which shares nothing "
                f"(bottom half − top half): {', '.join(stl_parts)}. "
            + ("Plain training already orders the layers this way — the measure also reflects how far each layer's "
               "weights grow from their initialisation, which is larger for the top layers — so the raw pattern is "
               "not evidence of learned sharing by itself. "
               if any(_mci(bottom_minus_top(res.sharing[stl][k]))[0] - _mci(bottom_minus_top(res.sharing[stl][k]))[1]
                      > 0 for k in KINDS) else "Plain training does not produce the pattern by itself. ")
            + ("With the same network and optimiser at γ = 0 subtracted (the penalty's part alone, item 8), "
               if res.ablation else "With STL's same-norm value subtracted (the penalty's part; STL trains with its "
                                    "own tuned optimiser, so this difference also carries the optimiser's), ")
            + f"{sum(v == 'holds' for v in sh_pen.values())} of {len(sh_pen)} hold."]

    # 7. norms over training
    own = _verdicts(rows, "Fig. 1 bottom (the optimised")
    other = _verdicts(rows, "Fig. 1 bottom;")
    rel = []
    for m in mtl:
        for k in KINDS:
            if k == _own_kind(m):
                continue
            r_m = _last_value(_total_norm(res, m, k)) / _total_norm(res, m, k)[:, 0]
            r_s = _last_value(_total_norm(res, stl, k)) / _total_norm(res, stl, k)[:, 0]
            rel.append(bool(np.all(r_m < r_s)))
    vs_off = []
    for m in mtl:
        ab = res.ablation.get(m, {})
        if not all(f"norm/{layer}/{k}" in ab for layer in res.layers for k in KINDS):
            continue
        for k in KINDS:
            off_tot = np.sum([ab[f"norm/{layer}/{k}"] for layer in res.layers], axis=0)
            d, ci, n = _paired(_last_value(_total_norm(res, m, k)) / _total_norm(res, m, k)[:, 0],
                               _last_value(off_tot) / off_tot[:, 0])
            vs_off.append(f"{NAMES[m]}/{KIND_NAMES[k]} {d:+.3f} ± {fmt(ci, 3)}")
    out += ["", f"**7. Norms over training.** The optimised norm falls below its initial value for "
                f"{sum(v == 'holds' for v in own.values())} of {len(own)} variants, the other norms in "
                f"{sum(v == 'holds' for v in other.values())} of {len(other)} cases. Relative to STL (which grows "
                f"every norm) the other norms end lower in every repeat in {sum(rel)} of {len(rel)} cases. "
            + ("A norm that grows although its method penalises it means γ is too small (or off) against the "
               "growth of plain training at the tuned learning rate: the tuning preferred fitting to shrinking."
               if any(v != "holds" for v in own.values()) else "")
            + (" Against the same network and optimiser at γ = 0 (item 8), final/initial of each norm, trace norm "
               "minus γ = 0 (negative: the penalty kept the norm smaller): " + ", ".join(vs_off) + "."
               if vs_off else "")]
    if res.paper_setting:
        parts, ends, dips = [], [], []
        for m in mtl:
            arr = res.paper_setting.get(m)
            if arr is None:
                continue
            k = _own_kind(m)
            tot = np.sum([arr[f"norm/{layer}/{k}"] for layer in res.layers], axis=0)
            curve = tot / tot[0]
            lo = int(np.nanargmin(curve))
            ends.append(float(curve[np.flatnonzero(np.isfinite(curve))[-1]]))
            dips.append(float(curve[lo]))
            parts.append(f"{NAMES[m]} ×{ends[-1]:.3f} at the end (lowest ×{dips[-1]:.3f} at epoch {lo})")
        grows = bool(ends) and all(e > 1 for e in ends)
        out += ["", f"At the paper's setting (γ = {PAPER_GAMMA}, Adam, learning rate 0.001; repeat 0 only) the "
                    "optimised norm, summed over the layers, relative to its initial value: " + "; ".join(parts)
                + ". " + ("Even the paper's γ does not make the norms fall over the whole training here"
                          + (": they dip in the first epochs and then grow with the fit." if all(d < 1 for d in dips)
                             else ".") if grows else "At the paper's γ the norms do fall: the tuned γ is too small "
                                                     "to make them fall.")]

    # 8. the penalty alone: the γ = 0 ablation (same network, initial weights, batches and optimiser)
    if res.ablation:
        table = []
        for m in mtl:
            ab = res.ablation.get(m)
            if ab is None:
                continue
            cells = []
            for ours, ref, dec in ((res.accuracy[m], ab["accuracy"], 2), (res.accuracy_last[m], ab["accuracy_last"], 2),
                                   (res.train_ce_last[m], ab["train_ce_last"], 3)):
                d, ci, n = _paired(_task_mean(ours), _task_mean(ref))
                cells.append(f"{d:+.{dec}f} ± {fmt(ci, dec)} ({n}/{ours.shape[0]} > 0)")
            table.append([NAMES[m], *cells, _cell(_task_mean(ab["accuracy"])),
                          fmt(float(np.mean(ab["best_epoch"])) + 1, 1)])
        out += ["", "**8. The penalty alone (γ = 0 ablation, outside the budget).** The tuned methods differ from STL "
                    "in their optimiser settings too, so each trace-norm method's tuned configuration was also trained "
                    "with γ = 0 on every repeat (STL's network, the same initial weights, batches and optimiser): the "
                    "differences below are the penalty's alone, paired over repeats.", ""]
        out += markdown_table(["method", "Δ accuracy, kept epoch (points)", "Δ accuracy, last epoch (points)",
                               "Δ training cross-entropy, last epoch", "γ = 0 accuracy % (kept epoch)",
                               "γ = 0 kept epoch (mean, 1-based)"], table)
        stl_acc = _task_mean(res.accuracy[stl])
        for m in mtl[:1]:
            ab = res.ablation.get(m)
            if ab is None:
                continue
            d, ci, _ = _paired(_task_mean(ab["accuracy"]), stl_acc)
            dl, cil, _ = _paired(_task_mean(ab["accuracy_last"]), _task_mean(res.accuracy_last[stl]))
            out += ["", f"The γ = 0 run against the tuned STL (same network, different optimiser settings): "
                        f"{d:+.2f} ± {fmt(ci)} points at the kept epoch, {dl:+.2f} ± {fmt(cil)} at the last epoch — "
                        "the part of the table's 'vs STL' differences that is the optimiser's, not the penalty's."]
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
    ax.set_title(f"Test accuracy, {R} repeats, kept epoch (bars: mean ± 95% CI; dots: repeats)", fontsize=9)
    for i, m in enumerate(res.methods[1:]):
        d = accs[i + 1] - accs[0]  # paired with STL (the first method), kept epoch
        mean, ci = mean_ci(d)
        ax2.errorbar(i, float(mean), yerr=np.nan_to_num(float(ci)), fmt="o", color=COLORS[m], capsize=4, ms=6)
        ax2.plot(i + jitter, d, "k.", ms=3)
    ax2.axhline(0, color="black", lw=0.6)
    ax2.set_xticks(range(len(names) - 1), names[1:])
    ax2.set_xlim(-0.6, len(names) - 1.4)
    ax2.set_ylabel("accuracy − STL's, same repeat (points)")
    ax2.set_title("Paired difference vs STL (mean ± 95% CI)", fontsize=9)
    paths += save_figure(fig, out / "trace-norm-accuracy")

    fig = _fig(9.6, 3.6)
    axes = fig.subplots(1, 2)
    for ax, curves, what in ((axes[0], res.curves, "training"), (axes[1], res.val_curves, "validation")):
        for m in res.methods:
            c = curves[m]
            _band(ax, np.arange(1, c.shape[1] + 1), c, COLORS[m], NAMES[m])
            if what == "validation":
                ax.plot(float(np.mean(res.best_epoch[m])) + 1, float(np.nanmin(np.nanmean(c, axis=0))), "v",
                        color=COLORS[m], ms=6)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} cross-entropy (task mean, log scale)")
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_title("Training loss (penalty excluded; epoch's mini-batch mean)", fontsize=9)
    axes[1].set_title("Validation loss (▼: mean kept epoch)", fontsize=9)
    paths += save_figure(fig, out / "trace-norm-train-loss")

    fig = _fig(9.0, 3.4)
    axes = fig.subplots(1, 2)
    x = np.arange(len(res.layers))
    mtl = [m for m in res.methods if m != "stl-cnn"]
    w = 0.8 / len(mtl)
    for i, m in enumerate(mtl):
        k = _own_kind(m)
        mean, ci = mean_ci(res.sharing[m][k], axis=0)
        ab = res.ablation.get(m, {}).get(f"sharing/{k}")
        stl_mean = np.asarray(mean_ci(ab if ab is not None else res.sharing["stl-cnn"][k], axis=0)[0])
        pos = x - 0.4 + w * (i + 0.5)
        axes[0].bar(pos, mean, w, yerr=np.nan_to_num(ci), color=COLORS[m], capsize=3,
                    label=f"{NAMES[m]} ({KIND_NAMES[k]} norm)")
        axes[0].plot(pos, stl_mean, "_", color="black", ms=12, mew=2,
                     label=("the same configuration with γ = 0, same norm" if res.ablation else "STL, same norm")
                     if i == 0 else None)
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
        ax.legend(frameon=False, fontsize=7, loc="lower left")
    axes[0].set_ylabel("sharing strength")
    paths += save_figure(fig, out / "trace-norm-sharing")

    fig = _fig(11.0, 3.4)
    axes = fig.subplots(1, len(mtl), sharey=True)
    for ax, m in zip(axes, mtl, strict=True):
        for k in KINDS:
            tot = _total_norm(res, m, k)
            ep = np.arange(tot.shape[1])
            _band(ax, ep, tot / tot[:, :1], KIND_COLORS[k], f"{KIND_NAMES[k]} norm")
            ab = res.ablation.get(m, {})
            if all(f"norm/{layer}/{k}" in ab for layer in res.layers):  # the same configuration with γ = 0
                stl, ref = np.sum([ab[f"norm/{layer}/{k}"] for layer in res.layers], axis=0), "γ = 0"
            else:
                stl, ref = _total_norm(res, "stl-cnn", k), "STL"
            ax.plot(ep, np.nanmean(stl / stl[:, :1], axis=0), ":", color=KIND_COLORS[k], lw=1.2,
                    label=f"{KIND_NAMES[k]} norm, {ref}")
        ax.axhline(1, color="black", lw=0.6)
        g = res.hparams.get(m, {}).get("gamma")
        ax.set_title(f"Optimising {NAMES[m]} (tuned γ = {_fmt_value(g) if g is not None else '?'})", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("norm / its value at initialisation\n(summed over conv1-3, fc1)")
    axes[0].legend(frameon=False, fontsize=7, loc="best")
    paths += save_figure(fig, out / "trace-norm-norms")
    return paths
