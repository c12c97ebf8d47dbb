"""The label-noise part of the transfer reproduction: SVD re-weighting (Algorithm 2) vs unweighted hard-share on
digit pairs with one task's labels partly flipped, each weighting tuned with the same trials."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.transfer.base import DEFAULT_TRIALS, SEED, _slug, cached
from mtlkit.experiments.reproduce.transfer.data import noise_pairs, noise_task
from mtlkit.experiments.reproduce.transfer.solvers import NOISE_VARIANTS, noise_weights

NOISE_FIXED: dict[str, Any] = {"epochs": 60, "patience": 10, "batch_size": 64}
NOISE_SHARES = (0.1, 0.25, 0.5, 0.75, 0.9)  # diagnosis: fixed weight share of the noisy task
R1_ARCH: dict[str, Any] = {"hidden": [1], "head_hidden": []}  # diagnosis: Proposition 3's capacity r = 1


@dataclass
class NoiseResult:
    """Clean-test AUC (%) per pair: ``auc [pairs, variants, 2 tasks (clean, noisy)]``, the weights used (shares
    summing to 1), each variant's tuning record, and the diagnosis runs: ``related_auc [digits, variants, 2]`` for
    pairs of a digit and its own noisy copy (Proposition 3's same-θ setting), ``share_auc [pairs, shares, 2]`` for
    fixed weight shares of the noisy task (unweighted's tuned configuration)."""

    pairs: list[tuple[int, int]]
    variants: tuple[str, ...]
    auc: np.ndarray
    weights: np.ndarray
    flip: float
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    related_digits: list[int] = field(default_factory=list)
    related_auc: np.ndarray | None = None
    related_weights: np.ndarray | None = None
    related_r1_auc: np.ndarray | None = None  # the same pairs at shared capacity r = 1 (hidden [1], linear heads)
    shares: tuple[float, ...] = ()
    share_auc: np.ndarray | None = None


def _auc(run: Any) -> np.ndarray:
    return 100.0 * np.asarray(run.evaluate("test").per_task["auc"], dtype=np.float64)


def _share(w: Any) -> list[float]:
    return [0.5, 0.5] if w is None else list(np.asarray(w, dtype=np.float64) / float(np.sum(w)))


def noise_experiment(n_pairs: int = 20, flip: float = 0.2, rank: int = 1, trials: int = DEFAULT_TRIALS,
                     fixed: Mapping[str, Any] | None = None, device: Any = None, seed: int = SEED,
                     ctx: Context | None = None, related: int = 10, shares: Sequence[float] = NOISE_SHARES,
                     share_pairs: int = 10, widen: int = 1) -> NoiseResult:
    """Algorithm 2 under label noise on the digits, every weighting tuned with the same budget: for each variant
    (unweighted, SVD with centred labels, SVD with 0/1 labels), ``trials`` TPE trials of hard-share over its
    declared search space (``fixed`` values aside) on the first pair's validation rows (noisy labels, AUC), then
    the chosen configuration trained on every pair with that pair's own weights. Diagnosis runs (each variant at
    its tuned configuration): ``related`` digits paired with their own noisy copy, and fixed weight shares of
    the noisy task on the first ``share_pairs`` pairs."""
    from mtlkit.experiments.tuning import tune
    from mtlkit.train.run import train_one

    fx = {**NOISE_FIXED, **(fixed or {})}
    pairs = noise_pairs(n_pairs, seed)
    tasks = [noise_task(a, b, i, flip, seed) for i, (a, b) in enumerate(pairs)]
    key = {"pairs": pairs, "flip": flip, "rank": rank, "trials": trials, "fixed": fx, "seed": seed, "widen": widen}
    out: dict[str, dict[str, Any]] = {}
    for v in NOISE_VARIANTS:
        def compute(v: str = v) -> dict[str, Any]:
            w0 = noise_weights(v, tasks[0].X, tasks[0].Y, rank)
            res = tune("hard-share", [(f"pair-{pairs[0][0]}-{pairs[0][1]}", tasks[0].split)], trials=trials,
                       seed=seed, fixed=fx, metric="auc", widen=widen, device=device, progress=False,
                       task_weights=w0)
            auc, wts = [], []
            for i, t in enumerate(tasks):
                w = w0 if i == 0 else noise_weights(v, t.X, t.Y, rank)
                run = res.runs[0] if i == 0 and res.runs and res.runs[0] is not None else None
                if run is None:
                    run = train_one("hard-share", t.split, res.hparams[0], seed=seed + i, device=device,
                                    progress=False, task_weights=w)
                auc.append(_auc(run))
                wts.append(_share(w))
                if ctx is not None:
                    ctx.store.add(run, f"reproduce-transfer-noise-{_slug(v)}", f"pair-{t.pair[0]}-{t.pair[1]}",
                                  run.evaluate("val"), run.evaluate("test"))
            return {"tuning": res.to_json(), "hparams": res.hparams[0], "auc": auc, "weights": wts}

        out[v] = cached(ctx, f"noise-{_slug(v)}", {**key, "variant": v}, compute)
    res = NoiseResult(pairs, NOISE_VARIANTS, np.stack([np.asarray(out[v]["auc"]) for v in NOISE_VARIANTS], axis=1),
                      np.stack([np.asarray(out[v]["weights"]) for v in NOISE_VARIANTS], axis=1), flip,
                      {v: out[v]["tuning"] for v in NOISE_VARIANTS})
    # --- diagnosis 1: a digit and its own noisy copy (the same θ: Proposition 3's setting), each variant tuned
    digits = list(range(min(related, 10)))
    if digits:
        def compute_related() -> dict[str, Any]:
            auc, wts = [], []
            for dg in digits:
                t = noise_task(dg, dg, dg, flip, seed)
                row_a, row_w = [], []
                for v in NOISE_VARIANTS:
                    w = noise_weights(v, t.X, t.Y, rank)
                    run = train_one("hard-share", t.split, out[v]["hparams"], seed=seed + dg, device=device,
                                    progress=False, task_weights=w)
                    row_a.append(_auc(run))
                    row_w.append(_share(w))
                auc.append(row_a)
                wts.append(row_w)
            return {"auc": auc, "weights": wts}

        rel = cached(ctx, "noise-related", {**key, "digits": digits}, compute_related)
        res.related_digits = digits
        res.related_auc, res.related_weights = np.asarray(rel["auc"]), np.asarray(rel["weights"])

        def compute_r1() -> dict[str, Any]:
            auc = []
            for dg in digits:
                t = noise_task(dg, dg, dg, flip, seed)
                auc.append([_auc(train_one("hard-share", t.split, {**out["unweighted"]["hparams"], **R1_ARCH},
                                           seed=seed + dg, device=device, progress=False,
                                           task_weights=noise_weights(v, t.X, t.Y, rank)))
                            for v in NOISE_VARIANTS])
            return {"auc": auc}

        res.related_r1_auc = np.asarray(cached(ctx, "noise-related-r1", {**key, "digits": digits, "arch": R1_ARCH,
                                                                          "config": "unweighted"}, compute_r1)["auc"])
    # --- diagnosis 2: fixed weight shares of the noisy task (does any weighting help these pairs?)
    sp = tasks[:min(share_pairs, len(tasks))]
    if sp and shares:
        def compute_shares() -> dict[str, Any]:
            auc = []
            for i, t in enumerate(sp):
                auc.append([_auc(train_one("hard-share", t.split, out["unweighted"]["hparams"], seed=seed + i,
                                           device=device, progress=False, task_weights=[1.0 - s, s]))
                            for s in shares])
            return {"auc": auc}

        sh = cached(ctx, "noise-shares", {**key, "shares": list(shares), "share_pairs": len(sp)}, compute_shares)
        res.shares, res.share_auc = tuple(float(s) for s in shares), np.asarray(sh["auc"])
    return res
