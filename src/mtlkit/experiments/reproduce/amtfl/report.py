"""The results file's text beyond the tables: the protocol paragraph and the Diagnosis section."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtlkit.experiments.claims import Claim, ours_text
from mtlkit.experiments.reproduce.amtfl.deep import DEEP_METHODS
from mtlkit.experiments.reproduce.amtfl.settings import CNN_ARCH, PAPER_TABLE1, SOURCE_DIGITS, SYN_SEED, TARGET_DIGITS
from mtlkit.experiments.reproduce.amtfl.synthetic import FEEDBACK_ACTIVE, SENS_ALPHAS, SENS_GAMMA, fig4h_effect
from mtlkit.experiments.reproduce.amtfl.table1 import SCHOOL_GAMMA_CHECK, T1_METHODS, _ranks
from mtlkit.experiments.reproduce.amtfl.tuned import Tuned, _cell, _g, _paired, _selected
from mtlkit.experiments.tables import fmt


def _protocol(args: argparse.Namespace, st: dict[str, Any], trials: int, syn_trials: int) -> list[str]:
    widen = ("no widening" if not st["widen"] else "one widening round of half the trials, counted in the budget, "
             "past a value selected on the edge of its space")
    lines = [
        f"**Equal budget**: every method of a table gets the same number of Optuna TPE trials ({syn_trials} in "
        f"the synthetic table, whose models train in about a second; {trials} in Table 1 and the deep tables) "
        "(seeded; trial 0 = "
        "the method's defaults with the protocol's fixed values; MedianPruner on the validation loss, pruned "
        f"trials counted; {widen}) "
        "over its declared search space (`mtlkit methods NAME`; each regulariser with 0 = off among its choices), "
        "scored on split 0's validation rows by the kind's primary metric (RMSE; mean one-vs-all binary error "
        "for MNIST's ten tasks; multi-class error for the softmax CNN); the chosen configuration is then trained "
        "on every split (training seed = split index) and tested. Values the protocol fixes (architecture, epochs) "
        "are the same for every method that has them and are listed per part. The paper tunes on validation too, "
        "over grids it does not list.",
        "SGD-trained models: at most the stated epochs, early stopping on the validation loss (patience below), "
        "the epoch with the lowest validation loss kept. Inputs standardised on the training rows (regression "
        "targets too).",
        f"**Synthetic (Fig. 4-5)**: `amtfl_synthetic(seed={SYN_SEED})`, the paper's sizes (6 easy tasks σ=1 with "
        "50/50/100 rows, 6 hard σ=2 with 25/25/100, d=30, 6 bases), its first "
        f"{args.splits} splits with the exact validation rows. STL = `stl-linear` (ridge); Go-MTL k=6 fixed, "
        f"{st['go_iters']} alternations; AMTL with `nonneg=false` (the paper removes B ≥ 0 for this data); AMTFL "
        "with no hidden non-linearity (`activation=identity`, the paper's choice here) and k=6 fixed; AMTL and "
        f"AMTFL batch 100 (full batch), {st['syn_epochs']} epochs max, patience 30. Our γ weighs the *mean* "
        "reconstruction error over rows on standardised targets, Eq. 6's a Frobenius *sum* over the N rows on raw "
        "targets: γ = N·γ_paper/y_std², ≈ 7·γ_paper here (see the Diagnosis). **Reductions**: the paper "
        "implements every baseline as a network and adds ℓ1 on L to all of them; we use the library's STL / "
        "Go-MTL / AMTL solvers without that ℓ1.",
        f"Fig. 5c: T ∈ {{{', '.join(map(str, st['scaling_T']))}}} tasks (half easy, half hard; pairs of bases "
        f"cycle), the first {min(args.splits, 3)} splits of each draw, each method's configuration tuned on the "
        "T=12 data; training time is wall-clock on this shared CPU (only the trend is meaningful). The paper goes "
        "to larger T.",
        f"**School (Table 1)**: Argyriou's splits 1-{args.splits} (the paper: the first 5 of 10), 20% of each "
        "split's training rows per task carved out as validation (the paper does not say how it validates), "
        "`tune_then_evaluate`. RMSE in exam-score units, averaged over the 139 schools. NN / MT-NN / AMTFL one "
        "hidden layer of 15 ReLU units fixed (the paper: 10 or 15); Go-MTL "
        f"{st['go_iters']} alternations of {st['go_inner']} inner steps; batch 64 rows per task, "
        f"{st['school_epochs']} epochs max, patience 10.",
        "**MNIST (Table 1)**: the split of Kang, Grauman & Sha (2011) that Go-MTL and the paper use: split 0 here "
        "*is* their split 1 as staged (1000/500/500 train/val/test rows, ≈100/50/50 per digit, the first 64 of "
        "its PCA scores = the paper's PCA-64); their splits 2-5 are not staged, so splits 1.. here are random "
        "re-partitions of the same 2000 rows with the same per-digit train/val/test counts (seed = split index). "
        "The re-drawn test sets overlap, so the CI over splits understates the paper's split-to-split spread; the "
        "Kang-split-1 column is the exact paper data. The 64 scores are standardised with one pooled mean and std "
        "(rows given as [1, 64]), not per feature: per-feature standardisation whitens PCA scores, blowing the "
        "noisy low-variance components up to the leading ones' scale (see the Diagnosis). Ten one-vs-all "
        "logistic tasks on shared input. Error % = "
        "multi-class error of the argmax over the ten task scores. Go-MTL "
        f"{max(1, st['go_iters'] // 4)} alternations of {max(1, st['go_inner'] // 2)} inner steps (cost); "
        f"NN / MT-NN / AMTFL 200 hidden ReLU units fixed (the paper's width), batch 64, {st['mnist_epochs']} "
        "epochs max, patience 15.",
        "**Deep (Table 2 / Fig. 6 analogue)**: CIFAR-100 / AWA / ImageNet-352 and their WRN / ResNet-50 networks "
        "are not available here; instead imbalanced MNIST as the authors' demo: "
        f"{', '.join(map(str, st['deep_counts']))} training images for digits 0..9, {st['deep_val']} validation "
        f"images per digit, every other staged test image as test; {args.deep_splits} random splits. Images "
        "averaged down to 14×14 (cost). Network for all four: a small LeNet-style CNN (5×5 conv "
        f"{CNN_ARCH['channels'][0]} → pool → 5×5 conv {CNN_ARCH['channels'][1]} → pool → fc ReLU = Z, its width "
        "tuned) instead of LeNet's 20/50/500, trained from scratch, batch 50, "
        f"{st['deep_epochs']} epochs max, patience 10 (cost; the authors' demo runs 1000 epochs). "
        "CNN: `stl-cnn` on one 10-class task (softmax). MT-CNN: ten one-vs-all sigmoid tasks, each task's loss "
        "its own mean and μ‖S‖₁ on the last layer = `deep-amtfl` with α=γ=δ=0 fixed (the paper's MT-CNN divides "
        "each class's softmax loss by its N_t; in one-vs-all form each class is its own task). Deep-AMTL: "
        "`deep-amtl` (AMTL's objective on the last layer). Deep-AMTFL: `deep-amtfl` (reconstruction from the "
        "sigmoid outputs). δ/√N_t with N_t = the digit's number of *positive* training images (`task_sizes`, as "
        "the authors' code). The paper fine-tunes its MTL models from MT-CNN; ours train from scratch. Metric: "
        "per-class error (1 − recall) averaged over the ten digits.",
        f"**Transfer (Table 3 analogue)**: AWA's 40→10 class split is not available; source = digits "
        f"{SOURCE_DIGITS[0]}-{SOURCE_DIGITS[-1]} with the imbalanced counts above, target = digits "
        f"{', '.join(map(str, TARGET_DIGITS))} with {st['transfer_train']} training images each. Each source "
        "network is trained with its Table-2 configuration (not re-tuned) and frozen; a softmax classifier "
        "(multinomial logistic regression, C=1, on standardised penultimate features Z) is fitted on the target "
        "training images and tested on all other staged images of the target digits.",
        "Each method's tuning and test outcome is cached beside the results store (`results/tuning/`), so a "
        "re-run reuses it: the minutes \"in this call\" above count only what was not cached (Fig. 5c, the "
        "checks of the Diagnosis), the recorded training time sums every tuning trial and training run.",
        "Every table: mean ± 95% Student-t CI over splits (t-based half-width, n−1 dof) of the task- or "
        "class-averaged metric; claims use differences paired over splits. The paper's ± is its \"standard error "
        "for 95% confidence interval\".",
    ]
    reduced = []
    if args.splits < 5:
        reduced.append(f"{args.splits} splits instead of the paper's 5")
    reduced.append(f"{trials} tuning trials per method in Table 1 and the deep tables, {syn_trials} in the "
                   "synthetic one (the paper's budget is not stated)")
    reduced.append(f"{args.deep_splits} imbalanced-MNIST splits")
    if args.quick:
        lines.insert(0, "**QUICK SMOKE RUN**: tiny data, a few epochs and trials; the numbers mean nothing.")
    else:
        lines.insert(0, "**Reduced protocol**: " + "; ".join(reduced) + "; the networks and data of Tables 2-3 "
                        "replaced by small CNNs on imbalanced MNIST (see below).")
    return lines


def _find(rows: Sequence[Claim], where: str, words: str) -> Claim | None:
    return next((c for c in rows if c.where == where and words in c.claim), None)


def _v(c: Claim | None) -> str:
    if c is None or c.ours is None:
        return "–"
    return f"{ours_text(c)} ({c.verdict})"


def _diagnosis(syn: Mapping[str, Any] | None, school: Mapping[str, Tuned] | None, school_x: Mapping[str, Any] | None,
               mnist: Mapping[str, Tuned] | None, mnist_x: Mapping[str, Any] | None, deep: Mapping[str, Any] | None,
               rows: Sequence[Claim]) -> list[str]:
    """The Diagnosis section: the γ scale, Fig. 4h under the tuned selection and its α sensitivity, the tables'
    level against scikit-learn on the same splits, and every claim that does not hold with what the checks say."""
    out = ["## Diagnosis", ""]
    # 1. γ scale
    g_lines = []
    if syn is not None:
        d = syn.get("fig4h")
        sh = ", ".join(f"{v:.2f}" for v in d["share"]) if d is not None else "–"
        g_lines.append(f"synthetic: selected {_selected(syn['tuned']['AMTFL'], ('alpha', 'gamma'))}, reconstruction "
                       f"share per split {sh}")
    if school is not None and school_x is not None:
        t = school["AMTFL"]
        sh = ", ".join("–" if v is None else f"{v:.2f}" for v in school_x["shares"])
        rk = _ranks(school)
        gc = school_x["gamma_check"]
        gsh = ", ".join("–" if v is None else f"{v:.2f}" for v in gc["share"])
        dm, dc = _paired(gc["rmse"], school["MT-NN"].per_split())
        state = ("active" if min(v or 0 for v in school_x["shares"]) >= FEEDBACK_ACTIVE else
                 "the feedback is off: this AMTFL is MT-NN with other settings")
        g_lines.append(f"School: selected {_selected(t, ('alpha', 'gamma'))}, reconstruction share per split {sh} "
                       f"({state}); "
                       f"AMTFL {_cell(t.per_split(), 3)} RMSE, rank {rk['AMTFL']} of 6 (Go-MTL "
                       f"{_cell(school['Go-MTL'].per_split(), 3)}, rank {rk['Go-MTL']}; MT-NN "
                       f"{_cell(school['MT-NN'].per_split(), 3)}, rank {rk['MT-NN']}; paper AMTFL 9.89, Go-MTL 9.87). "
                       f"Check: the selected AMTFL retrained on each split with γ = {SCHOOL_GAMMA_CHECK:g} (the "
                       f"value that switched the feedback on under the old grid) has shares {gsh} and RMSE "
                       f"{_cell(gc['rmse'], 3)}, {dm:+.3f} ± {fmt(dc, 3)} against the tuned MT-NN (paired) — a "
                       "configuration outside what the equal budget found, so not a result of the comparison")
    if mnist is not None:
        g_lines.append(f"MNIST: selected {_selected(mnist['AMTFL'], ('alpha', 'gamma'))}")
    out += ["**1. AMTFL's γ is on another scale than the paper's.** Ruled out: our objective was checked against "
            "Eq. 6/7 and the authors' code; nothing is transposed: row t of A is task t's outgoing transfer, scaled "
            "by (L_t + δ/√N_t), and (AS)ᵢⱼ is transfer from task i to task j; δ, μ, λ match; the deep version's "
            "transfer is feature-level as in the authors' code. Cause: Eq. 6 sums the reconstruction over the N raw "
            "rows, we average it over rows on standardised targets, so γ_ours ≈ N·γ_paper/y_std² (≈ 57× on School, "
            "≈ 7× on the synthetic data). The old grid γ ∈ {0.01, 0.1} left A in the ℓ1 dead zone (reconstruction "
            "share ≈ 0: AMTFL = MT-NN); the declared space is now log[1e-3, 1e3] ∪ {0} and the tuner searches it "
            "like every other method's space. Under the equal-budget tuning: " + "; ".join(g_lines) + ".", ""]
    # 2. Fig. 4h
    if syn is not None and syn.get("fig4h") is not None:
        d = syn["fig4h"]
        m, c, n = fig4h_effect(d)
        act = np.asarray(d["active"], dtype=bool)
        ratios = ", ".join(f"{r:.2f}" for r in np.asarray(d["ratio"])[act]) or "–"
        he_share = ", ".join(f"{100 * b['hard→easy'] / max(b['easy→hard'], 1e-12):.0f}%"
                             for b, a in zip(d["blocks"], act, strict=True) if a) or "–"
        text = ("**2. Fig. 4h (direction of transfer).** Judged as `fig4h_claim` does: only splits whose feedback "
                f"reconstructs the features (share ≥ {FEEDBACK_ACTIVE}) count; a dead feedback's AS is optimiser "
                "noise (the old selection α=1, γ=0.01 had shares 0.00-0.05 and a meaningless ratio 0.40). Under the "
                f"tuned selection {int(act.sum())} of {len(act)} splits are active")
        if n:
            text += (f"; their easy→hard / hard→easy ratios are {ratios}, hard→easy is {he_share} of easy→hard "
                     f"(effect 1 − h→e/e→h = {m:+.2f} ± {fmt(c)}; the paper's picture is +1). "
                     + ("Where the feedback works the direction matches the paper, but 'no hard→easy transfer' is "
                        "not reproduced: hard→easy stays substantial." if m > 0 else
                        "Where the feedback works, the transfer is not easy→hard-dominated here."))
        else:
            text += ": the tuned AMTFL does not use its feedback on this data, so Fig. 4h cannot be read off it."
        sens = syn.get("sensitivity")
        if sens is not None:
            sel_a = sens["selected"]["alpha"]
            parts = []
            for a in SENS_ALPHAS:
                em, ec, en = sens[a]["effect"]
                parts.append(f"α={a:g}: " + ("feedback off" if en == 0 else f"{em:+.2f} ± {fmt(ec)} on {en} active "
                                                                          f"split(s)")
                             + f", RMSE {_cell(sens[a]['rmse'], 2)}")
            sel_g = sens["selected"]["gamma"]
            if sel_g == 0:
                text += (" The tuning selected γ = 0: the reconstruction is switched off, A feels only its ℓ1 and "
                         "shrinks to optimiser noise; on this data the validation RMSE (the tuner's objective) is "
                         "no better with the feedback than without it.")
            elif sel_a is not None and float(sel_a) < 0.05:
                text += (f" The selected α = {_g(sel_a)} leaves the loss-weighted ℓ1 — the term meant to silence "
                         "the hard (high-loss) tasks' outgoing transfer — nearly inactive, so no asymmetry is "
                         "expected from it; validation RMSE, the tuner's objective, does not reward asymmetry.")
            text += (f" The deliberate α sweep at γ = {SENS_GAMMA:g} (table in Fig. 4: the feedback forced on) "
                     "gives for 1 − h→e/e→h: " + "; ".join(parts) + ".")
        out += [text, ""]
    # 3. levels
    lvl = []
    if syn is not None:
        g = syn["grp"]
        lvl.append(f"**Synthetic**: the noise floors are σ = 1 (easy) and σ = 2 (hard); the hard tasks have 25 "
                   f"training rows for d = 30 features, so a per-task ridge (STL) stays far above its floor "
                   f"(hard-task RMSE {_cell(g['STL']['hard'], 2)}), and any model that shares the six bases gains "
                   f"(Go-MTL {_cell(g['Go-MTL']['hard'], 2)}, AMTFL {_cell(g['AMTFL']['hard'], 2)}). The paper's "
                   "'Go-MTL above STL on the hard tasks' needs an STL that the hard tasks' own rows cannot give in "
                   "our reading of the generator (label noise ε ~ N(0, σ); the paper's words also allow noise on "
                   "w_t). Its baselines are networks with ℓ1 on L; ours are the library's solvers (Go-MTL's closed "
                   "form alternations are a strong baseline here).")
    if mnist is not None and mnist_x is not None:
        ours = {m: mnist[m].per_split()[0] for m in T1_METHODS}
        lv = mnist_x["level"]
        mlp = [v for k, v in lv.items() if k.startswith("MLP")]
        text = ("**MNIST, Kang split 1** (test error %): scikit-learn on the same 64 PCA scores: "
                + "; ".join(f"{k} {v:.1f}" for k, v in lv.items())
                + f". Ours on that split: STL {ours['STL']:.1f}, NN {ours['NN']:.1f}, MT-NN {ours['MT-NN']:.1f}, "
                f"AMTFL {ours['AMTFL']:.1f} (its tuning kept {_trial_of(mnist['AMTFL'])}); paper STL "
                f"{PAPER_TABLE1['STL']['mnist'][0]}, NN "
                f"{PAPER_TABLE1['NN']['mnist'][0]}, MT-NN {PAPER_TABLE1['MT-NN']['mnist'][0]}, AMTFL "
                f"{PAPER_TABLE1['AMTFL']['mnist'][0]} (their 5 splits).")
        if len(mlp) == 2:
            text += (f" Whitening the PCA scores (per-feature standardisation, what the library does to vector "
                     f"features) changes the scikit-learn MLP's error by {mlp[1] - mlp[0]:+.1f} points, which is why "
                     "this table feeds the scores with one pooled scale (see the protocol). The scikit-learn MLP "
                     f"with a small grid reaches {mlp[0]:.1f} on this split, our NN {ours['NN']:.1f}: "
                     + ("our networks are at the level this split allows a plain MLP." if ours["NN"] <= mlp[0] + 1.0
                        else "our NN stays above it (under-tuning with the equal budget)."))
        nn_l, mt_l = mnist["NN"].hparams[0].get("lam"), mnist["MT-NN"].hparams[0].get("lam")
        text += (" On these shared-input one-vs-all tasks every task has every row, so NN's pooled loss equals MT-NN's "
                 f"per-task means: the two differ only in their penalties (selected: NN λ = {_g(nn_l)}, MT-NN λ = "
                 f"{_g(mt_l)}, μ = {_g(mnist['MT-NN'].hparams[0].get('mu'))}), so the NN − MT-NN gap here is the "
                 "tuning's draw, not a difference of the models.")
        lvl.append(text)
    if school is not None and school_x is not None:
        lv = school_x["level"]
        ours = {m: float(np.mean(school[m].per_split())) for m in T1_METHODS}
        gap = {m: ours[m] - PAPER_TABLE1[m]["school"][0] for m in T1_METHODS}
        first = lv[next(iter(lv))]
        lvl.append("**School, Argyriou splits** (test RMSE, mean over our splits): scikit-learn ridge on raw features, "
                   "α chosen on the same validation rows: " + "; ".join(f"{k} {np.mean(v):.2f}" for k, v in lv.items())
                   + f". Ours: STL {ours['STL']:.2f}, Go-MTL {ours['Go-MTL']:.2f}, NN {ours['NN']:.2f}, MT-NN "
                   f"{ours['MT-NN']:.2f}, AMTFL {ours['AMTFL']:.2f}; ours − paper per model: "
                   + ", ".join(f"{m} {gap[m]:+.2f}" for m in T1_METHODS)
                   + f". scikit-learn's per-school ridge ({np.mean(first):.2f}) sits "
                   f"{np.mean(first) - PAPER_TABLE1['STL']['school'][0]:+.2f} from the paper's STL, ours "
                   f"{gap['STL']:+.2f}: the part of our level shift that a plain ridge shares is the data / split "
                   "handling (the paper does not say how it validates; we carve 20% of each school's training rows "
                   "out, the refitted rows show what that costs), the rest is our own solvers' and networks' "
                   "tuning and input scaling (our models standardise the features, scikit-learn's ridge here sees "
                   "them raw).")
        g = school_x.get("stl_grid")
        if g:
            sel = school["STL"]
            lvl.append(f"**School, the budget's reach**: our STL's {sel.tuning.get('budget')}-trial TPE chose "
                       f"{_selected(sel)} (validation "
                       f"RMSE {sel.tuning.get('best_value', math.nan):.3f} on split 0, test "
                       f"{sel.per_split()[0]:.3f}); a dense {g['points']}-point α grid over the same space picks α = "
                       f"{g['alpha']:.3g} (validation {g['val']:.3f}, test {g['test']:.3f}). So even in one "
                       "dimension the equal budget of this run leaves about "
                       f"{sel.per_split()[0] - g['test']:+.2f} RMSE to a dense search; every method has the same "
                       "budget, so the comparison stays fair, but the level is not the best each model can do.")
    if lvl:
        out += ["**3. Level checks** (is a gap to the paper's numbers the data, our training, or the measure?):", "",
                *(f"- {x}" for x in lvl), ""]
    # 4. claims that do not hold
    failed = [c for c in rows if c.verdict == "does not hold"]
    if failed:
        out += ["**4. Claims that do not hold here** (the checks above that bear on each):", ""]
        for claim in failed:
            why = _failure_note(claim, syn, deep)
            out.append(f"- {claim.where}: {claim.claim} — ours {_v(claim)}." + (f" {why}" if why else ""))
        out.append("")
    if deep is not None:
        out += ["**5. Deep tables.** Our analogue is small (a 2-conv CNN on 14×14 digits, 60 epochs from scratch, "
                f"{len(next(iter(deep['deep'].values())))} splits), while the paper fine-tunes its MTL models from "
                "MT-CNN on large networks; differences of a point or less between the four deep models are within "
                "the split-to-split spread here, so this analogue can show a direction at best.", ""]
    return out


def _trial_of(t: Tuned) -> str:
    """Which trial the tuning selected (0 = the method's defaults)."""
    best = next((s.get("best") for s in t.tuning.get("tuned", [])), None)
    return "its defaults (trial 0)" if best == 0 else f"trial {best}"


def _failure_note(c: Claim, syn: Mapping[str, Any] | None, deep: Mapping[str, Any] | None) -> str:
    """What the diagnosis found for one claim that does not hold, by the part it belongs to."""
    hp = (syn or {}).get("amtfl_hparams") or {}
    off = ("The selected AMTFL has γ = 0 (no reconstruction): it is a rank-6 linear factorisation trained by SGD, "
           "so it can at most match Go-MTL's alternating solver; see 2." if hp.get("gamma") == 0 else
           "See 2 and 3 (synthetic).")
    if c.where.startswith("Fig. 5a") and "Go-MTL has a higher" in c.claim:
        return "See 3 (synthetic): on this generator the hard tasks' STL is far above its noise floor."
    if c.where.startswith("Fig. 5b") and "no task worse" in c.claim and syn is not None:
        worse = syn.get("worse", {}).get("AMTFL", [])
        names = "; ".join(f"{n} ({', '.join(b)}{', only the shared bases' if only else ''})" for n, b, only in worse)
        every = all(only for _, _, only in worse) and worse
        return (f"The task(s) AMTFL makes worse (split means): {names or '–'}."
                + (" They use only the bases l3, l4 that the noisy hard tasks share — the negative transfer the "
                   "paper describes — and Go-MTL and AMTL hurt them too. " if every else " ") + off)
    if c.where.startswith(("Fig. 5a", "Fig. 5b", "Fig. 4c", "Fig. 4d")):
        return off
    if c.where.startswith("Fig. 4h"):
        return "See 2."
    if c.where.startswith("Fig. 5c"):
        return "Wall-clock on a shared CPU at T ≤ 48; both models go through the same SGD loop."
    if c.where == "Table 1, School":
        return ("See 1 (whether the equal budget switched AMTFL's feedback on, and what the γ = 100 check gives) "
                "and 3 (School level).")
    if c.where.startswith("Table 1, MNIST"):
        return "See 3 (MNIST)."
    if c.where.startswith(("Table 2", "Fig. 6", "Table 3")) and deep is not None:
        t = deep["tuned"]
        notes = [f"{m}: {_trial_of(t[m])}" for m in DEEP_METHODS]
        lam_b = t["Deep-AMTL"].hparams[0].get("lam_b")
        return ("See 5. Selected configurations: " + ", ".join(notes) + "."
                + (" The tuner switched Deep-AMTL's task-to-task transfer off (λ_B = 0): it is MT-CNN with AMTL's "
                   "loss weights." if lam_b == 0 and "Deep-AMTL" in c.claim else ""))
    return ""
