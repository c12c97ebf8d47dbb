"""The experiment: every method tuned with the same budget on repeat 0, the choice trained and recorded on every
repeat (a per-run cache beside the store), the γ = 0 ablation and the paper's setting, collected as `Results`; and
the level check against scikit-learn."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.data.splits import Split
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.trace_norm.recording import Recorded, train_recording
from mtlkit.experiments.reproduce.trace_norm.settings import (
    ABLATION_KEYS,
    EXPERIMENT,
    METHODS,
    PAPER_GAMMA,
    SEED,
    TEST,
    VAL,
    WIDEN,
    fixed_hparams,
)
from mtlkit.methods import registry
from mtlkit.methods.trace_norm import KINDS
from mtlkit.methods.trace_norm_mtl import sharing_strength


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
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: ** could bind allow_pickle
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
