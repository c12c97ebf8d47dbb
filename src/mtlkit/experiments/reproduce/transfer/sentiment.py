"""The sentiment part of the transfer reproduction: STL vs hard-share tuned with equal budgets, covariance
alignment's second phase with and without R, the capacity sweep, pair similarities, transfer from SST, and the
scikit-learn level check."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.transfer.base import SEED, _slug, cached
from mtlkit.experiments.reproduce.transfer.data import _pair_split, _subset_split
from mtlkit.experiments.reproduce.transfer.solvers import (
    ALIGN_HP,
    TRANSFER_HP,
    best_where,
    embedding_alignment,
    embedding_transfer,
    pair_similarities,
    shared_inputs,
    stl_embeddings,
    tpe_search,
)
from mtlkit.hparams import Space

if TYPE_CHECKING:
    from mtlkit.experiments.reproduce.transfer.command import Settings


SENT_EMBED = 64
SENT_WIDTH = 200  # the paper's default capacity (App. C.3: hidden dimension 200): the equal-budget table's width
SENT_WIDTHS = (5, 10, 25, 50, 100, 200, 500)  # the capacity sweep (paper: 5 to 500)
SENT_TRAIN: dict[str, Any] = {"head_hidden": [], "epochs": 20, "patience": 3, "batch_size": 64}
TRANSFER_SOURCE = "SST"
PHASE2 = ("heads only (R = I)", "alignment")
TRANSFER_VARIANTS = ("fine-tune (no R)", "fine-tune + alignment")
SENT_METHODS = ("stl", "hard-share")
LEVEL_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # the level check's C values
LONG_FACTOR = 5  # diagnosis: the tuned runs trained with 5× the epochs and the patience


def _phase2_space(align: bool) -> dict[str, Space]:
    """The second phase's search space from the declarations: hard-share-align's lr, and for the alignment
    variant its ``align`` switch (True | False), so alignment is one choice, not a given."""
    from mtlkit.methods import registry

    sp = registry.search_space("hard-share-align", "binary")
    return {"lr": sp["lr"], **({"align": sp["align"]} if align else {})}


def _lr_bounds() -> dict[str, tuple[float | None, float | None]]:
    from mtlkit.methods import registry
    from mtlkit.train.config import method_params

    p = method_params(registry.get("hard-share-align"))["lr"]
    return {"lr": (p.low, p.high)}


@dataclass
class SentimentResult:
    """Everything the sentiment part measured, per split. ``acc``: method → ``[splits, T]`` test accuracy (%) —
    ``stl`` and ``hard-share`` tuned with the same budget, ``heads`` / ``align`` the two tuned second phases,
    ``align-on`` alignment at its best trial with the switch on; ``cap``: per split the capacity sweep's
    ``mv, mt, sv, st`` (``[widths, T]``: MTL / STL validation / test accuracy); ``sim``: ``before`` / ``after`` /
    ``stl`` / ``self_before`` / ``self_after`` → ``[splits, T, T]`` Eq. 5 scores of the 6-task models; ``pairs``:
    ``gain`` / ``before`` / ``after`` → ``[splits, T, T]`` of the 2-task models (NaN when not run); ``transfer``:
    variant → ``[splits, targets]`` test accuracy."""

    names: list[str]
    splits: list[str]
    width: int
    acc: dict[str, np.ndarray]
    tuning: dict[str, dict[str, Any]]
    phase2: dict[str, dict[str, Any]]
    widths: list[int]
    cap: list[dict[str, np.ndarray]]
    sim: dict[str, np.ndarray]
    pairs: dict[str, np.ndarray]
    r_change: np.ndarray
    fit: dict[str, np.ndarray]
    transfer: dict[str, np.ndarray] = field(default_factory=dict)
    transfer_targets: list[str] = field(default_factory=list)
    transfer_tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    level: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    epochs: dict[str, list[float]] = field(default_factory=dict)  # diagnosis: "method/protocol|long" -> run, best, acc
    transfer_matched: np.ndarray | None = None  # diagnosis: alignment at the no-R variant's lr, [splits, targets]
    default: dict[str, np.ndarray] = field(default_factory=dict)  # diagnosis: the second phase at its default lr


def _capacity_choice(widths: Sequence[int], cap: Mapping[str, Any]) -> tuple[int, list[int], float, float]:
    """From one split's sweep: the MTL width (best task-mean validation accuracy), the per-task STL widths (each
    task's best), and the test accuracies (task means) at those choices."""
    mv, mt, sv, st = (np.asarray(cap[k], dtype=np.float64) for k in ("mv", "mt", "sv", "st"))
    j = int(np.nanargmax(np.nanmean(mv, axis=1)))
    js = [int(np.nanargmax(np.where(np.isnan(sv[:, t]), -np.inf, sv[:, t]))) for t in range(sv.shape[1])]
    return (int(widths[j]), [int(widths[k]) for k in js], float(np.mean(mt[j])),
            float(np.mean([st[k, t] for t, k in enumerate(js)])))


def sentiment_experiment(data: Any, st: Settings, ctx: Context | None = None, device: Any = None) -> SentimentResult:
    """The sentiment part (see the module's doc); every expensive step is `cached` beside the results store."""
    from mtlkit.experiments.capacity import capacity_sweep
    from mtlkit.experiments.tuning import train_tuned, tune
    from mtlkit.train.run import train_one

    names = list(data.task_names)
    T = len(names)
    splits = [(f"seed-{SEED + i}", data.split(test=0.1, val=0.1 / 0.9, seed=SEED + i)) for i in range(st.splits)]
    fixed = {**SENT_TRAIN, **(st.sent_hp or {}), "hidden": [SENT_EMBED, st.sent_width]}
    base_key = {"data": data.checksum(), "splits": st.splits, "trials": st.trials, "fixed": fixed, "seed": SEED,
                "widen": st.widen}
    live: dict[tuple[str, int], Any] = {}
    # --- 1. STL and hard-share, the same budget each
    meth: dict[str, dict[str, Any]] = {}
    for m in SENT_METHODS:
        def compute(m: str = m) -> dict[str, Any]:
            res = tune(m, splits, trials=st.trials, seed=SEED, fixed=fixed, metric="accuracy", widen=st.widen,
                       device=device, progress=False)
            runs = train_tuned(res, splits, device=device, progress=False)
            acc = []
            for i, r in enumerate(runs):
                live[(m, i)] = r
                ev = r.evaluate("test")
                acc.append(ev.per_task["accuracy"])
                if ctx is not None:
                    ctx.store.add(r, "reproduce-transfer-sentiment", splits[i][0], r.evaluate("val"), ev)
            return {"tuning": res.to_json(), "hparams": res.hparams, "acc": acc}

        meth[m] = cached(ctx, f"sentiment-{m}", {**base_key, "method": m}, compute)

    def tuned_run(m: str, i: int) -> Any:
        if (m, i) not in live:
            live[(m, i)] = train_one(m, splits[i][1], meth[m]["hparams"][i], seed=SEED + i, device=device,
                                     progress=False)
        return live[(m, i)]

    # --- 2. Algorithm 1's second phase, with and without R, the same budget each (on split 0's validation rows)
    p2: dict[str, dict[str, Any]] = {}
    for v in PHASE2:
        def compute_p2(v: str = v) -> dict[str, Any]:
            base = tuned_run("hard-share", 0)
            first = {"lr": ALIGN_HP["lr"], **({"align": True} if v == "alignment" else {})}

            def objective(params: dict[str, Any]) -> float:
                r = embedding_alignment(base, bool(params.get("align", False)), {"lr": params["lr"]}, seed=SEED)
                return float(r.evaluate("val").mean["accuracy"])

            return tpe_search(objective, _phase2_space(v == "alignment"), st.trials, SEED, first, st.widen,
                              _lr_bounds())

        p2[v] = cached(ctx, f"sentiment-phase2-{_slug(v)}", {**base_key, "variant": v, "align_hp": ALIGN_HP},
                       compute_p2)
    lr_heads = float(p2[PHASE2[0]]["best_params"]["lr"])
    sel = p2[PHASE2[1]]["best_params"]
    on = best_where(p2[PHASE2[1]], align=True)
    lr_on = float(on["params"]["lr"]) if on is not None else ALIGN_HP["lr"]
    # --- 3. per split: the two phases, similarities, capacity sweep, pair models
    hs_train = {k: v for k, v in meth["hard-share"]["hparams"][0].items() if k != "hidden"}
    stl_train = {k: v for k, v in meth["stl"]["hparams"][0].items() if k != "hidden"}
    per: list[dict[str, Any]] = []
    for i, (label, split) in enumerate(splits):
        def compute_split(i: int = i, label: str = label, split: Any = split) -> dict[str, Any]:
            seed = SEED + i
            hs = tuned_run("hard-share", i)
            heads = embedding_alignment(hs, False, {"lr": lr_heads}, seed=seed)
            tuned = embedding_alignment(hs, bool(sel.get("align", False)), {"lr": float(sel["lr"])}, seed=seed)
            forced = tuned if sel.get("align", False) and float(sel["lr"]) == lr_on else \
                embedding_alignment(hs, True, {"lr": lr_on}, seed=seed)
            acc = {k: r.evaluate("test").per_task["accuracy"] for k, r in
                   (("heads", heads), ("align", tuned), ("align-on", forced))}
            if ctx is not None:
                for r in (heads, tuned):
                    ctx.store.add(r, "reproduce-transfer-sentiment", label, r.evaluate("val"), r.evaluate("test"))
            R = forced.model.alignment.R.detach().double()
            eye = torch.eye(R.shape[-1], dtype=R.dtype)
            r_change = float(((R - eye).flatten(1).norm(dim=1) / eye.norm()).mean())
            fit = {f"{k}_{part}": float(r.evaluate(part).mean["cross_entropy"]) for k, r in
                   (("heads", heads), ("align-on", forced)) for part in ("train", "val")}
            E, Z = shared_inputs(hs, split.train), shared_inputs(forced, split.train)
            cap = capacity_sweep(split, st.widths, hs_train, prefix=[SENT_EMBED], metric="accuracy", seed=seed,
                                 device=device, keep_runs=True, stl_hparams=stl_train)
            stl_run = cap.runs.get(("stl", st.sent_width)) or tuned_run("stl", i)
            sim = {"before": pair_similarities(E), "after": pair_similarities(Z),
                   "self_before": pair_similarities(E, "self"), "self_after": pair_similarities(Z, "self"),
                   "stl": pair_similarities(stl_embeddings(stl_run, split.train))}
            gain, pb, pa = (np.full((T, T), np.nan) for _ in range(3))
            if st.pairs:
                for a, b in itertools.combinations(range(T), 2):
                    ps = _pair_split(data, a, b, seed)
                    base = train_one("hard-share", ps, meth["hard-share"]["hparams"][i], seed=seed, device=device,
                                     progress=False)
                    al = embedding_alignment(base, True, {"lr": lr_on}, seed=seed)
                    nal = embedding_alignment(base, False, {"lr": lr_heads}, seed=seed)
                    gain[a, b] = gain[b, a] = float(np.mean(al.evaluate("test").per_task["accuracy"])
                                                    - np.mean(nal.evaluate("test").per_task["accuracy"]))
                    pb[a, b] = pb[b, a] = pair_similarities(shared_inputs(base, ps.train))[0, 1]
                    pa[a, b] = pa[b, a] = pair_similarities(shared_inputs(al, ps.train))[0, 1]
            return {"acc": acc, "r_change": r_change, "fit": fit, "sim": sim,
                    "cap": {"mv": cap.mtl_val, "mt": cap.mtl_test, "sv": cap.stl_val, "st": cap.stl_test},
                    "pairs": {"gain": gain, "before": pb, "after": pa}}

        per.append(cached(ctx, f"sentiment-split{i}", {**base_key, "split": i, "widths": list(st.widths),
                                                       "pairs": st.pairs, "phase2": [lr_heads, sel, lr_on],
                                                       "hs": meth["hard-share"]["hparams"][i],
                                                       "stl": meth["stl"]["hparams"][i]}, compute_split))
    acc = {m: np.asarray(meth[m]["acc"], dtype=np.float64) for m in SENT_METHODS}
    for k in ("heads", "align", "align-on"):
        acc[k] = np.asarray([p["acc"][k] for p in per], dtype=np.float64)
    res = SentimentResult(
        names, [s for s, _ in splits], st.sent_width, acc, {m: meth[m]["tuning"] for m in SENT_METHODS}, p2,
        list(st.widths), [{k: np.asarray(v, dtype=np.float64) for k, v in p["cap"].items()} for p in per],
        {k: np.asarray([p["sim"][k] for p in per], dtype=np.float64) for k in per[0]["sim"]},
        {k: np.asarray([p["pairs"][k] for p in per], dtype=np.float64) for k in per[0]["pairs"]},
        np.asarray([p["r_change"] for p in per]), {k: np.asarray([p["fit"][k] for p in per]) for k in per[0]["fit"]})
    # --- diagnosis: the second phase at its default lr (1e-3), where R moves, with and without R
    def compute_default(i: int) -> dict[str, Any]:
        hs, part = tuned_run("hard-share", i), splits[i][1].train
        runs = {k: embedding_alignment(hs, k == "align", {"lr": ALIGN_HP["lr"]}, seed=SEED + i)
                for k in ("heads", "align")}
        R = runs["align"].model.alignment.R.detach().double()
        eye = torch.eye(R.shape[-1], dtype=R.dtype)
        E, Z = shared_inputs(hs, part), shared_inputs(runs["align"], part)
        return {"acc_heads": runs["heads"].evaluate("test").mean["accuracy"],
                "acc_align": runs["align"].evaluate("test").mean["accuracy"],
                **{f"{k}_{p}": runs[k].evaluate(p).mean["cross_entropy"] for k in runs for p in ("train", "val")},
                "r_change": float(((R - eye).flatten(1).norm(dim=1) / eye.norm()).mean()),
                "sim_before": pair_similarities(E), "sim_after": pair_similarities(Z),
                "self_before": pair_similarities(E, "self"), "self_after": pair_similarities(Z, "self")}

    dflt = [cached(ctx, f"sentiment-align-default-split{i}", {**base_key, "split": i, "align_hp": ALIGN_HP,
                                                               "hs": meth["hard-share"]["hparams"][i]},
                   partial(compute_default, i)) for i in range(len(splits))]
    res.default = {k: np.asarray([d[k] for d in dflt], dtype=np.float64) for k in dflt[0]}
    # --- 4. transfer from SST (Fig. 5b), each fine-tuning variant with the same budget
    if st.transfer and TRANSFER_SOURCE in names:
        _transfer(res, data, splits, meth["stl"]["hparams"], st, base_key, ctx, device)
    res.level = cached(ctx, "sentiment-level", {"data": data.checksum(), "seed": SEED, "grid": list(LEVEL_GRID)},
                       lambda: {"rows": level_check(splits[0][1])})["rows"]

    # --- diagnosis: is the level under-training? The tuned runs of split 0 against 5× the epochs and patience
    long = {"epochs": LONG_FACTOR * int(fixed["epochs"]), "patience": LONG_FACTOR * int(fixed["patience"])}

    def compute_epochs() -> dict[str, Any]:
        out = {}
        for m in SENT_METHODS:
            for tag, extra in (("protocol", {}), ("long", long)):
                r = tuned_run(m, 0) if not extra else train_one(m, splits[0][1], {**meth[m]["hparams"][0], **extra},
                                                                 seed=SEED, device=device, progress=False)
                assert r.history is not None  # trained here
                out[f"{m}/{tag}"] = [len(r.history.val_loss), int(r.history.best_epoch),
                                     float(r.evaluate("test").mean["accuracy"])]
        return out

    res.epochs = cached(ctx, "sentiment-epochs", {**base_key, "long": long,
                                                  "hp": [meth[m]["hparams"][0] for m in SENT_METHODS]},
                        compute_epochs)
    return res


def _transfer(res: SentimentResult, data: Any, splits: Sequence[tuple[str, Any]], stl_hp: Sequence[dict[str, Any]],
              st: Settings, base_key: dict[str, Any], ctx: Context | None, device: Any) -> None:
    from mtlkit.train.run import train_one

    names = list(data.task_names)
    s = names.index(TRANSFER_SOURCE)
    targets = [t for t in range(len(names)) if t != s][: st.transfer_targets]
    cache: dict[int, tuple[Any, list[Any]]] = {}

    def setting(i: int) -> tuple[Any, list[Any]]:
        """Split i's source run (hard-share on SST alone at STL's tuned settings) and the target splits."""
        if i not in cache:
            src = train_one("hard-share", _subset_split(data, (s,), SEED + i), stl_hp[i], seed=SEED + i,
                            device=device, progress=False)
            cache[i] = (src, [_subset_split(data, (t,), SEED + i) for t in targets])
        return cache[i]

    def fine_tune(i: int, align: bool, lr: float, part: str) -> list[float]:
        src, tgts = setting(i)
        return [float(embedding_transfer(src, tg, align, {"lr": lr}, seed=SEED + i).evaluate(part).mean["accuracy"])
                for tg in tgts]

    key = {**base_key, "targets": targets, "transfer_hp": TRANSFER_HP, "stl": stl_hp[0]}
    tun: dict[str, dict[str, Any]] = {}
    for v in TRANSFER_VARIANTS:
        def compute(v: str = v) -> dict[str, Any]:
            al = v != TRANSFER_VARIANTS[0]
            first = {"lr": TRANSFER_HP["lr"], **({"align": True} if al else {})}
            return tpe_search(lambda p: float(np.mean(fine_tune(0, bool(p.get("align", False)), p["lr"], "val"))),
                              _phase2_space(al), st.trials, SEED, first, st.widen, _lr_bounds())

        tun[v] = cached(ctx, f"transfer-{_slug(v)}", {**key, "variant": v}, compute)
    out: dict[str, list[list[float]]] = {v: [] for v in TRANSFER_VARIANTS}
    for i in range(len(splits)):
        def compute_split(i: int = i) -> dict[str, Any]:
            return {v: fine_tune(i, bool(tun[v]["best_params"].get("align", False)), float(tun[v]["best_params"]["lr"]),
                                 "test") for v in TRANSFER_VARIANTS}

        got = cached(ctx, f"transfer-split{i}", {**key, "split": i, "best": [tun[v]["best_params"]
                                                                              for v in TRANSFER_VARIANTS]},
                     compute_split)
        for v in TRANSFER_VARIANTS:
            out[v].append(got[v])
    res.transfer = {v: np.asarray(out[v], dtype=np.float64) for v in TRANSFER_VARIANTS}
    res.transfer_targets = [names[t] for t in targets]
    res.transfer_tuning = tun
    lr0 = float(tun[TRANSFER_VARIANTS[0]]["best_params"]["lr"])  # diagnosis: alignment at the no-R variant's lr

    def matched(i: int) -> dict[str, Any]:
        return {"acc": fine_tune(i, True, lr0, "test")}

    res.transfer_matched = np.asarray(
        [cached(ctx, f"transfer-matched-split{i}", {**key, "split": i, "lr": lr0},
                partial(matched, i))["acc"] for i in range(len(splits))])


def level_check(split: Any, grid: Sequence[float] = LEVEL_GRID) -> list[list[str]]:
    """Our table's level against scikit-learn on the same split (split 0) and features: a logistic regression per
    task, C chosen on the task's validation rows. If it sits where our networks sit, the gap to the paper's level
    is the features (a 1,000-word bag of words, no GloVe, no LSTM), not our training."""
    from sklearn.linear_model import LogisticRegression

    rows = []
    accs = []
    for t, name in enumerate(split.train.task_names):
        xtr, ytr = split.train.task_arrays(t)
        xva, yva = split.val.task_arrays(t)
        xte, yte = split.test.task_arrays(t)
        best: tuple[float, float, float] | None = None
        for c in grid:
            m = LogisticRegression(C=c, max_iter=3000).fit(xtr, ytr)
            v, te = 100 * m.score(xva, yva), 100 * m.score(xte, yte)
            if best is None or v > best[0]:
                best = (v, te, c)
        assert best is not None
        accs.append(best[1])
        rows.append([name, f"{best[1]:.1f}", f"{best[2]:g}"])
    rows.append(["**mean**", f"{np.mean(accs):.2f}", "–"])
    return rows
