"""The synthetic part of the SRDML reproduction (Fig. 4b-d, Table 3): learned ω, per-task improvement over STL
under equal budgets, λ sensitivity, contradicting tasks, and its diagnosis (noise floor, least squares, m = 20)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from scipy import stats

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.bench import BenchResult
from mtlkit.experiments.reproduce.common import Context
from mtlkit.experiments.reproduce.protocol import edge_warnings, tune_then_evaluate
from mtlkit.experiments.reproduce.srdml.base import (
    CONTRA_GROUPS,
    EXP_SYN,
    GROUPS,
    PAPER_TABLE3,
    SEED,
    SMALL_M,
    SYN_SEED,
)
from mtlkit.experiments.reproduce.srdml.helpers import (
    _budget_section,
    _csv_rows,
    _figure,
    _group_table,
    _omega,
    _sweep,
    contradicting_groups,
    paired,
    store_scores,
)
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.stats import mean_ci, taskwise_improvement
from mtlkit.experiments.tables import fmt, markdown_table, mean_ci_cell, mean_ci_text


def _synthetic(ctx: Context, args: argparse.Namespace, st: dict[str, Any]
               ) -> tuple[list[str], list[list[str]], list[Path], dict[str, Any], list[str], list[str]]:
    from mtlkit.analysis.plots import plot_relation_matrix, save_figure
    from mtlkit.datasets.srdml_synthetic import srdml_synthetic

    n = args.splits
    data, truth = srdml_synthetic(seed=SYN_SEED)
    ctx.record(data)
    names = list(data.task_names)
    T = len(names)
    # Fig. 4c: STL and SRDML, the same tuning budget
    res, tuning = tune_then_evaluate(ctx, data, ["stl", "srdml"], n, st["trials"], EXP_SYN, metric="rmse",
                                     hparams=st["syn_fixed"], seed=SEED)
    mae = store_scores(ctx, EXP_SYN, data, res, "mae")
    st["seconds"].append(sum(float(np.sum(v)) for v in res.seconds.values()))
    tuned = {m: {"rmse": res.scores[m], "mae": mae[m]} for m in ("stl", "srdml")}
    srd_hp = dict(res.hparams["srdml"][0])
    lam_tuned = float(srd_hp["lam"])
    base = {k: v for k, v in srd_hp.items() if k != "lam"}
    # Fig. 4d: λ around the tuned configuration
    sweep = {lam: _sweep(ctx, data, base, lam, n, "synthetic-sweep") for lam in st["lambdas"]}
    st["seconds"].append(sum(s["seconds"] for s in sweep.values()))
    pos = {lam: s["val"] for lam, s in sweep.items() if lam > 0}
    lam_star = min(pos, key=lambda k: (np.nan_to_num(pos[k], nan=np.inf), k))
    lam_omega = lam_tuned if lam_tuned > 0 else lam_star
    omegas, re_rmse = _omega(ctx, data, {**base, "lam": lam_omega}, n)
    ref = tuned["srdml"]["rmse"] if lam_tuned > 0 else sweep[lam_star]["rmse"]
    same = float(np.max(np.abs(np.array(re_rmse) - np.nanmean(ref, axis=1))))
    rel = truth.relation()
    group_lines, garr = _group_table(omegas, rel, GROUPS)
    iu = np.triu_indices(T, 1)
    rhos = np.array([stats.spearmanr(o[iu], rel[iu]).statistic for o in omegas])
    rho_m, rho_ci = mean_ci(rhos)
    low = truth.magnitude == truth.magnitude.min()
    small_cross = (rel == 0) & low[:, None] & low[None, :]
    other_cross = (rel == 0) & ~small_cross
    sc = np.mean([(o / o[iu].mean())[np.triu(small_cross, 1)].mean() for o in omegas])
    oc = np.mean([(o / o[iu].mean())[np.triu(other_cross, 1)].mean() for o in omegas])

    figs: list[Path] = []
    figs += plot_relation_matrix(truth.W, names, [f"x{j + 1}" for j in range(truth.W.shape[1])],
                                 "Fig. 4a: generating feature weights w_t (task × feature)",
                                 ctx.out / "srdml-synthetic-weights", "w")
    om0 = omegas[0] / omegas[0][iu].mean()
    np.fill_diagonal(om0, np.nan)  # no self pairs: grey, and the colour scale spans the pairs only
    figs += plot_relation_matrix(om0, names, names, f"Fig. 4b: SRDML's learned ω (split 0, λ = {lam_omega:.3g}; "
                                 "pair mean = 1)", ctx.out / "srdml-synthetic-omega", "ω")
    imp = {m: taskwise_improvement(np.nanmean(tuned["srdml"][m], 0), np.nanmean(tuned["stl"][m], 0), True)
           for m in ("rmse", "mae")}
    figs += save_figure(_improvement_figure(imp, names, lam_tuned), ctx.out / "srdml-synthetic-improvement")

    # Table 3: contradicting tasks, λ swept around the same configuration
    cdata, ctruth = srdml_synthetic(seed=SYN_SEED, contradicting=True)
    ctx.record(cdata)
    csweep = {lam: _sweep(ctx, cdata, base, lam, n, "contradicting-sweep") for lam in st["table3"]}
    st["seconds"].append(sum(s["seconds"] for s in csweep.values()))
    comegas, _ = _omega(ctx, cdata, {**base, "lam": lam_omega}, n)
    cgroups = contradicting_groups(ctruth.base, ctruth.sign)
    cgroup_lines, carr = _group_table(comegas, cgroups, CONTRA_GROUPS)
    figs += save_figure(_lambda_figure(sweep, csweep, tuned["stl"]), ctx.out / "srdml-synthetic-lambda")

    out = ["## Synthetic data (Fig. 4, Table 3)", "",
           f"### Fig. 4b: the learned task relation ω (SRDML, λ = {lam_omega:.3g})", "",
           ("λ is the tuned one." if lam_tuned > 0 else
            f"Tuning switched the regulariser off (λ = 0), which learns no ω; ω is shown at λ* = {lam_star:g}, the "
            "λ > 0 of the sweep with the lowest validation RMSE on split 0."), "",
           "Ground truth: tasks 2k-1 and 2k are twins (same base, same magnitude); tasks 1-6 use base 1, 7-12 "
           "base 2. The paper's Fig. 4b shows twins brightest, same-base pairs lighter, cross-base pairs dark.", "",
           *group_lines, "",
           f"Spearman ρ between ω and the truth level (twin 2 > same base 1 > cross base 0) over the 66 pairs: "
           f"{mean_ci_text(float(rho_m), float(rho_ci), 3)}. (The retrained runs reproduce the recorded ones: "
           f"largest difference in mean test RMSE {same:.2g}.)", "",
           f"The ℓ1 distance is not normalised (the paper's default; its App. C), so two tasks with small weights are "
           f"close whatever their bases: the {int(np.triu(small_cross, 1).sum())} cross-base pairs whose tasks both "
           f"have the lowest magnitude get mean ω {sc:.2f}, the other cross-base pairs {oc:.2f}.", "",
           "![Fig. 4a: generating weights](srdml-synthetic-weights.png)", "",
           "![Fig. 4b: learned omega](srdml-synthetic-omega.png)", ""]
    out += [f"### Fig. 4c: SRDML vs STL, per task (both tuned with {st['trials']} trials; SRDML's λ = "
            f"{lam_tuned:.3g})", "",
            "Improvement = 100·(STL − SRDML)/STL of the split-averaged test metric (positive = SRDML better); "
            "the paper shows it as bars (no numbers).", ""]
    rows = []
    for m in ("rmse", "mae"):
        a, b = tuned["srdml"][m], tuned["stl"][m]
        d, ci = paired(b, a)
        rows.append([m.upper(), mean_ci_cell(b, 3), mean_ci_cell(a, 3), mean_ci_text(d, ci, "+.3f"),
                     f"{float(np.nanmean(imp[m])):+.2f}", f"{int((imp[m] < 0).sum())}/{T}"])
    out += markdown_table(["metric", "STL", "SRDML", "STL − SRDML (paired)", "mean per-task improvement (%)",
                           "tasks hurt"], rows)
    out += ["", *markdown_table(["task", *names], [[f"{m.upper()} improvement (%)", *(f"{x:+.1f}" for x in imp[m])]
                                                   for m in ("rmse", "mae")])]
    out += ["", "![Fig. 4c: per-task improvement](srdml-synthetic-improvement.png)", ""]
    out += ["### Fig. 4d: λ sensitivity (test RMSE / MAE, mean ± 95% CI over splits)", "",
            "SRDML's tuned configuration with λ set to each value (every other hyper-parameter as tuned). The "
            "paper: a U shape with its optimum near λ = 0.5. Our λ is not on the paper's scale (see the "
            "diagnosis).", ""]
    rows = [[f"{lam:g}", mean_ci_cell(sweep[lam]["rmse"], 3), mean_ci_cell(sweep[lam]["mae"], 3),
             fmt(sweep[lam]["val"], 3)] for lam in st["lambdas"]]
    out += markdown_table(["λ", "RMSE", "MAE", "val RMSE, split 0"], rows)
    out += ["", f"STL (tuned): RMSE {mean_ci_cell(tuned['stl']['rmse'], 3)}, MAE "
                f"{mean_ci_cell(tuned['stl']['mae'], 3)}. λ* (lowest split-0 validation RMSE among λ > 0) = "
                f"{lam_star:g}.", "", "![Fig. 4d: lambda sensitivity](srdml-synthetic-lambda.png)", ""]
    out += ["### Table 3: contradicting tasks", "",
            "Every second twin has negated weights, so half of each base's tasks oppose the other half. SRDML's "
            "tuned configuration (from the related data) with λ set to each value.", ""]
    rows = [[f"{lam:g}", fmt(PAPER_TABLE3[lam][0], 3), mean_ci_cell(csweep[lam]["rmse"], 3),
             fmt(PAPER_TABLE3[lam][1], 3), mean_ci_cell(csweep[lam]["mae"], 3)] for lam in st["table3"]]
    out += markdown_table(["λ", "RMSE paper", "RMSE ours", "MAE paper", "MAE ours"], rows)
    out += ["", f"Learned ω on the contradicting data (λ = {lam_omega:.3g}), by pair type:", "", *cgroup_lines, ""]

    csv = []
    for m in ("rmse", "mae"):
        csv += _csv_rows("synthetic", data.name, res.splits, {k: v[m] for k, v in tuned.items()}, m)
        for lam in st["lambdas"]:
            csv += _csv_rows("synthetic", data.name, res.splits, {"srdml": sweep[lam][m]}, m,
                             label=f"srdml(lam={lam:g})")
        for lam in st["table3"]:
            csv += _csv_rows("contradicting", cdata.name, res.splits, {"srdml": csweep[lam][m]}, m,
                             label=f"srdml(lam={lam:g})")
    budget = _budget_section(f"Fig. 4c, synthetic: STL vs SRDML ({data.name})", tuning)
    syn = {"stl": tuned["stl"], "srdml": tuned["srdml"], "sweep": {k: v["rmse"] for k, v in sweep.items()},
           "lam_star": lam_star, "lam_tuned": lam_tuned, "csweep": {k: v["rmse"] for k, v in csweep.items()},
           "omega": garr, "comega": carr, "small_cross": float(sc), "other_cross": float(oc),
           "n_small_cross": int(np.triu(small_cross, 1).sum())}
    diag = _synthetic_diagnosis(ctx, args, st, data, truth, res, base, syn)
    # the three synthetic draws share a name: label their checksums in the provenance
    small = ctx.datasets.pop(f"srdml-synthetic, m = {SMALL_M} (diagnosis)", None)
    ctx.datasets.pop(data.name, None)
    ctx.datasets["srdml-synthetic (Fig. 4, m = 100)"] = data.checksum()
    ctx.datasets["srdml-synthetic, contradicting (Table 3)"] = cdata.checksum()
    if small is not None:
        ctx.datasets[f"srdml-synthetic, m = {SMALL_M} (diagnosis)"] = small
    return out, csv, figs, syn, budget, diag


def _improvement_figure(imp: dict[str, np.ndarray], names: list[str], lam: float) -> Figure:
    """Fig. 4c: per-task improvement of SRDML over STL in RMSE and MAE, grouped bars in task order."""
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for k, (m, c) in enumerate((("rmse", "#2c7bb6"), ("mae", "#1a9850"))):
        ax.bar(x + (k - 0.5) * 0.38, imp[m], width=0.38, color=c,
               label=f"{m.upper()} (mean {float(np.nanmean(imp[m])):+.1f} %)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_ylabel("improvement over STL (%)")
    ax.set_xlabel("task (base-magnitude, twins a/b)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=9, frameon=False)
    ax.set_title(f"Fig. 4c: tuned SRDML (λ = {lam:.3g}) vs tuned STL per task\n100·(STL − SRDML)/STL of the "
                 "split-averaged test error", fontsize=10)
    return fig


def _lambda_figure(sweep: dict[float, dict[str, Any]], csweep: dict[float, dict[str, Any]],
                   stl: dict[str, np.ndarray]) -> Figure:
    """Fig. 4d: test RMSE vs λ (log axis; λ = 0 as a dotted level) on the related and the contradicting tasks."""
    fig = _figure(9.0, 4.6)
    axes = fig.subplots(1, 2)
    for ax, sw, title in ((axes[0], sweep, "related tasks (Fig. 4d)"), (axes[1], csweep, "contradicting (Table 3)")):
        lams = sorted(lam for lam in sw if lam > 0)
        for m, c in (("rmse", "#2c7bb6"), ("mae", "#1a9850")):
            mc = [mean_ci(np.nanmean(sw[lam][m], axis=1)) for lam in lams]
            mu = np.array([a for a, _ in mc], dtype=float)
            ci = np.nan_to_num(np.array([b for _, b in mc], dtype=float))
            ax.plot(lams, mu, "o-", color=c, label=f"SRDML {m.upper()}")
            ax.fill_between(lams, mu - ci, mu + ci, color=c, alpha=0.2, linewidth=0)
            if 0.0 in sw:
                ax.axhline(float(np.nanmean(sw[0.0][m])), color=c, linestyle=":", linewidth=1.2,
                           label=f"λ = 0 {m.upper()}")
            if sw is sweep:
                ax.axhline(float(np.nanmean(stl[m])), color=c, linestyle="--", linewidth=1.0,
                           label=f"STL {m.upper()}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("λ (log scale)")
        ax.set_ylabel("test error (log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle("SRDML λ sensitivity around its tuned configuration: test error, mean ± 95% CI over splits "
                 "(dotted: λ = 0, dashed: tuned STL)", fontsize=10)
    return fig


def noise_floor(data: MultiTaskData, W: np.ndarray, n_splits: int) -> dict[str, np.ndarray]:
    """Per split, the task-mean test RMSE of the generating weights (the noise floor no model can beat) and of
    ordinary least squares per task on the training rows (minimum-norm when a task has fewer rows than
    features): [splits] each."""
    oracle, ols = [], []
    for _, split in make_splits(data, n_splits, SEED):
        o, s = [], []
        for t in range(data.n_tasks):
            xtr, ytr = split.train.task_arrays(t)
            xte, yte = split.part("test").task_arrays(t)
            xtr, xte = np.asarray(xtr, dtype=np.float64), np.asarray(xte, dtype=np.float64)
            o.append(float(np.sqrt(np.mean((np.asarray(yte) - xte @ W[t]) ** 2))))
            A = np.hstack([xtr, np.ones((len(xtr), 1))])
            coef = np.linalg.lstsq(A, np.asarray(ytr, dtype=np.float64), rcond=None)[0]
            pred = np.hstack([xte, np.ones((len(xte), 1))]) @ coef
            s.append(float(np.sqrt(np.mean((np.asarray(yte) - pred) ** 2))))
        oracle.append(np.mean(o))
        ols.append(np.mean(s))
    return {"oracle": np.array(oracle), "ols": np.array(ols)}


def _synthetic_diagnosis(ctx: Context, args: argparse.Namespace, st: dict[str, Any], data: MultiTaskData,
                         truth: Any, res: BenchResult, base: dict[str, Any], syn: dict[str, Any]) -> list[str]:
    """Cheap checks behind the synthetic claims: the noise floor and OLS on the same splits; the paper's λ scale;
    the under-determined regime of the authors' script (m = 10 rows per task) at m = SMALL_M."""
    from mtlkit.datasets.srdml_synthetic import srdml_synthetic

    n = args.splits
    fl = noise_floor(data, truth.W, n)
    split0 = make_splits(data, 1, SEED)[0][1]
    ys = np.concatenate([np.asarray(split0.train.task_arrays(t)[1], dtype=np.float64) for t in range(data.n_tasks)])
    sigma = float(ys.std())
    stl, srd = syn["stl"]["rmse"], syn["srdml"]["rmse"]
    floor, stl_m, srd_m = float(np.mean(fl["oracle"])), float(np.nanmean(stl)), float(np.nanmean(srd))
    room = 100 * (stl_m - floor) / stl_m
    gain = 100 * (stl_m - srd_m) / stl_m
    d_ols, ci_ols = paired(srd, fl["ols"])
    n_train = int(round(np.mean([len(split0.train.task_arrays(t)[1]) for t in range(data.n_tasks)])))
    out = ["### Synthetic data", "",
           "**How much room is there for SRDML to beat STL?** The labels carry noise of variance 0.1, so no model "
           "can reach a test RMSE much below √0.1 ≈ 0.316. On the same splits:", "",
           *markdown_table(["model", "test RMSE (mean ± 95% CI over splits)"],
                           [["generating weights w_t (the noise floor)", mean_ci_cell(fl["oracle"][:, None], 3)],
                            ["ordinary least squares per task (numpy)", mean_ci_cell(fl["ols"][:, None], 3)],
                            ["our STL (tuned)", mean_ci_cell(stl, 3)], ["our SRDML (tuned)", mean_ci_cell(srd, 3)]]),
           "", f"With ≈ {n_train} training rows per task for d = 20 features every task is determined on its own: "
           f"even a perfect sharing method could lower STL's RMSE by at most {room:.1f} % (down to the floor); "
           f"tuned SRDML lowers it by {gain:+.1f} %. Plain least squares per task, an STL without tuning, "
           f"lowers it by {100 * (stl_m - float(np.mean(fl['ols']))) / stl_m:+.1f} % (SRDML − least squares = "
           f"{mean_ci_text(d_ols, ci_ols, '+.3f')}, paired): "
           + ("SRDML's gain over our STL is no larger than a closed-form STL's, so it does not show sharing at "
              "work. " if d_ols + ci_ols >= 0 else "SRDML also beats it. ")
           + "A \"large margin\" over STL (Fig. 4c) needs more room than the "
           "paper's stated sizes (m = 100 rows per task) leave. The paper's Table 3 level (RMSE 1.392 at λ = 0) is "
           f"{PAPER_TABLE3[0.0][0] / floor:.1f}× this noise floor, so its models were far from a well-fitted one on "
           "data generated as §5.1 states; the authors' synthetic script uses m = 10 rows per task for d = 20 "
           "features (METHOD_NOTES §3), where every task is under-determined.", ""]
    om = np.asarray(syn["omega"], dtype=float)
    out += [f"**Fig. 4b's same-base vs cross-base pairs.** Twins get by far the largest ω ({np.mean(om[:, 0]):.2f} "
            f"vs pair mean 1), but same-base pairs ({np.mean(om[:, 1]):.2f}) are not above cross-base pairs "
            f"({np.mean(om[:, 2]):.2f}). The measure explains it: the ℓ1 distance between saliencies is not "
            "normalised (the paper's default, App. C), and with linear heads a saliency is the task's weight "
            f"vector, whose size grows with the task's magnitude; the {syn['n_small_cross']} cross-base pairs "
            f"of two magnitude-1 tasks are close in ℓ1 whatever their bases and get mean ω {syn['small_cross']:.2f}, "
            f"the other cross-base pairs {syn['other_cross']:.2f}. ω follows saliency size as much as task "
            "relation.", ""]
    # the under-determined regime: the same equal-budget comparison, then λ around the tuned SRDML
    small, struth = srdml_synthetic(seed=SYN_SEED, m=SMALL_M)
    sres, stune = tune_then_evaluate(ctx, small, ["stl", "srdml"], n, st["trials"], f"{EXP_SYN}-m{SMALL_M}",
                                     metric="rmse", hparams=st["syn_fixed"], seed=SEED)
    st["seconds"].append(sum(float(np.sum(v)) for v in sres.seconds.values()))
    sbase = {k: v for k, v in sres.hparams["srdml"][0].items() if k != "lam"}
    s_srd = {lam: _sweep(ctx, small, sbase, lam, n, f"diag-m{SMALL_M}-sweep") for lam in st["small_m_lambdas"]}
    st["seconds"].append(sum(x["seconds"] for x in s_srd.values()))
    sfl = noise_floor(small, struth.W, n)
    ctx.datasets[f"srdml-synthetic, m = {SMALL_M} (diagnosis)"] = small.checksum()
    s_stl, s_tuned = sres.scores["stl"], sres.scores["srdml"]
    d_t, ci_t = paired(s_tuned, s_stl)
    d_ls, ci_ls = paired(s_tuned, sfl["ols"])
    rows = [["generating weights (noise floor)", mean_ci_cell(sfl["oracle"][:, None], 3), "–"],
            ["least squares per task (minimum norm, no tuning)", mean_ci_cell(sfl["ols"][:, None], 3), "–"],
            ["STL (tuned)", mean_ci_cell(s_stl, 3), "–"],
            [f"SRDML (tuned, λ = {sres.hparams['srdml'][0]['lam']:.3g})", mean_ci_cell(s_tuned, 3),
             mean_ci_text(d_t, ci_t, "+.3f")]]
    for lam, x in s_srd.items():
        d, ci = paired(x["rmse"], s_stl)
        rows.append([f"SRDML's tuned configuration, λ = {lam:g} (split-0 val RMSE {x['val']:.3f})",
                     mean_ci_cell(x["rmse"], 3), mean_ci_text(d, ci, "+.3f")])
    small_gain = -100 * d_t / float(np.nanmean(s_stl))
    sel = "; ".join(f"{m}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in (t.get("best_params") or {}).items())
                    for m, t in stune.items())
    edges = edge_warnings(stune)
    if d_t + ci_t < 0 and small_gain > gain:
        verdict_text = (f"With the same tuning budget, SRDML beats STL by {small_gain:.1f} % here (CI excludes 0), "
                        f"against {gain:+.1f} % at m = 100: where tasks cannot be fitted alone the saliency penalty "
                        "has room to help. This supports the under-determined setting of the authors' script as the "
                        "reason for the paper's large Fig. 4c margin")
        verdict_text += ("; tuned SRDML also beats plain least squares per task "
                         f"({mean_ci_text(d_ls, ci_ls, '+.3f')})." if d_ls + ci_ls < 0 else
                         f"; but it does not clearly beat plain least squares per task ({d_ls:+.3f} ± "
                         f"{fmt(ci_ls, 3)}), so part of the margin is STL's own fit.")
    else:
        verdict_text = (f"With the same tuning budget SRDML − STL = {mean_ci_text(d_t, ci_t, '+.3f')} "
                        f"({small_gain:+.1f} %): the under-determined regime does not, by itself, produce a large "
                        "SRDML margin over STL here.")
    out += [f"**The under-determined regime.** The same generator with m = {SMALL_M} rows per task (≈ "
            f"{int(round(SMALL_M * 0.64))} training rows < d = 20), STL and SRDML tuned with the same budget as above "
            f"({st['trials']} trials each; selected {sel}"
            + (f"; {'; '.join(edges)}" if edges else "") + f"), {n} splits, then λ swept around the tuned SRDML:",
            "", *markdown_table(["model", "test RMSE", "SRDML − STL (paired)"], rows), "", verdict_text, "",
            f"**λ's scale.** Our regression targets are standardised (pooled training σ_y = {sigma:.2f} on split "
            "0), so the loss is the raw one / σ_y² and each saliency the raw one / σ_y; the regulariser is averaged "
            "over the batch (`reduction=\"mean\"`) while the authors' code sums it over the batch's B rows and "
            "halves the squared error. Our λ therefore corresponds to the paper's λ_p ≈ λ·σ_y / (2B): the paper's "
            f"λ_p = 0.5 with B = 32 is our λ ≈ {2 * 32 * 0.5 / sigma:.1f}, and our λ = 1 its λ_p ≈ "
            f"{sigma / 64:.3f}. Comparing λ values across the two tables is therefore only meaningful in order, "
            "not in value.", ""]
    return out
