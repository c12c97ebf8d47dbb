"""The paper's claims this reproduction tests (`claim_rows`) and the measures behind them (paired differences over
repeats, sharing strength bottom vs top, norm reductions)."""

from __future__ import annotations

import numpy as np

from mtlkit.experiments.claims import Claim, verdict
from mtlkit.experiments.reproduce.trace_norm.experiment import Results
from mtlkit.experiments.reproduce.trace_norm.settings import KIND_NAMES, NAMES, PAPER
from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.tables import mean_ci_text
from mtlkit.methods.trace_norm import KINDS


def _task_mean(a: np.ndarray) -> np.ndarray:
    """``[R, T]`` → ``[R]``: the task-averaged value of every repeat."""
    return np.nanmean(a, axis=1)


def _mci(v: np.ndarray) -> tuple[float, float]:
    """Mean and 95% CI half-width over repeats of ``v`` ``[R]``."""
    mean, ci = mean_ci(np.asarray(v, dtype=float))
    return float(mean), float(ci)


def _cell(values: np.ndarray, decimals: int = 2) -> str:
    """``mean ± CI`` over repeats of a ``[R]`` array."""
    return mean_ci_text(*_mci(values), decimals)


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
