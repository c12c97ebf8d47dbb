"""`mtlkit reproduce affinity`: does task affinity find the structure planted in data (issue 14)?

On generated data whose task structure is known — a planted mixture of two unrelated task families, SRDML's
synthetic tasks (two bases; and the contradicting variant), Deep-AMTFL's synthetic tasks (easy and hard bases) and
TOMATO's synthetic tasks (topics) — every affinity measure of `mtlkit.experiments.affinity` (lookahead, gradient,
pairs, learned) is computed on one split's training and validation rows, the tasks are grouped
(`mtlkit.analysis.grouping.group_tasks`), and we report

* the adjusted Rand index (scikit-learn) of the recovered groups against the planted ones, with the number of
  groups chosen by the grouping (auto) and with the true number given;
* the Spearman rank correlation (scipy) of each predicted affinity with the measured pair transfer on the *test*
  rows (every task trained alone and with every other task: ``1 − m_j(with i) / m_j(alone)``), pooled over ordered
  pairs, and per target task (the ranking of the sources that help each task most), averaged;
* for TOMATO (no planted partition: its special weights are drawn independently per task and topic), the rank
  correlation with the truth's task similarity instead;
* grouped training against all-in-one and STL (`mtlkit bench --groups auto`) on the planted mixture.

Results go to ``docs/results/affinity.md`` and ``affinity.csv``; each data set's measurements are cached as JSON
beside the store, so a stopped run continues."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.data.multitask import MultiTaskData
from mtlkit.experiments.reproduce.common import Context, markdown_table, provenance

DESCRIPTION = ("task affinity (lookahead, gradient, pairs, learned) against the structure planted in synthetic data: "
               "adjusted Rand index of the groups, rank correlation with measured pair transfer")
FORMAT = "affinity-1"
HOWS = ("lookahead", "gradient", "pairs", "learned")


# ---------------------------------------------------------------------------------------------- data with known groups
def planted_mixture(n_a: int = 6, n_b: int = 6, n: int = 150, d: int = 20, spread: float = 0.3, noise: float = 0.5,
                    shift: float = 1.5, seed: int = 0) -> tuple[MultiTaskData, np.ndarray]:
    """Two unrelated families of regression tasks, each on its own inputs: family A ``x ~ N(0, I)``, family B
    ``x ~ N(shift, I)``; task t of a family ``y = x·(w_F + spread·ε_t) + noise·ε``, with ``w_A``, ``w_B`` drawn
    independently (``N(0, I_d)``). Returns the data and each task's family (0 = A, 1 = B)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, d))
    fam = np.array([0] * n_a + [1] * n_b)
    Xs, ys = [], []
    for f in fam:
        X = rng.normal(size=(n, d)) + shift * f
        Xs.append(X)
        ys.append(X @ (w[f] + spread * rng.normal(size=d)) + noise * rng.normal(size=n))
    names = [f"A{t + 1}" for t in range(n_a)] + [f"B{t + 1}" for t in range(n_b)]
    notes = [f"planted mixture: {n_a} tasks of family A on x ~ N(0, I) and {n_b} of family B on x ~ N({shift}, I), "
             f"d={d}, {n} rows per task; y = x (w_F + {spread} e_t) + N(0, {noise}^2), w_A, w_B ~ N(0, I) "
             f"independent; seed {seed}"]
    return MultiTaskData.from_tasks(Xs, ys, kind="regression", names=names, name="planted-mixture",
                                    notes=notes), fam


def tomato_similarity(data: MultiTaskData, truth: Any) -> np.ndarray:
    """TOMATO's true task similarity ``−Σ_k p_k ‖w^s_kt − w^s_ku‖²``, ``p_k`` the share of rows whose topic weight
    ``h`` puts topic k first (tasks share ``w0``; they differ only by their special parts, drawn per task)."""
    from mtlkit.datasets.synthetic import topic_weights

    X = np.concatenate([data.task_arrays(t)[0] for t in range(data.n_tasks)])
    p = np.bincount(topic_weights(X, truth.centres, truth.params["sigma_xg"],
                                  truth.params["negative_distance"]).argmax(1), minlength=truth.ws.shape[0])
    p = p / p.sum()
    ws = truth.ws.reshape(truth.ws.shape[0], truth.ws.shape[1], -1)  # [K, T, d·p]
    diff = ((ws[:, :, None, :] - ws[:, None, :, :]) ** 2).sum(-1)  # [K, T, T]
    return -np.einsum("k,ktu->tu", p, diff)


def cases(quick: bool) -> list[dict[str, Any]]:
    """The data sets: name, data, true groups (None: no partition), the learned-relation method, truth similarity."""
    from mtlkit.datasets.amtfl_synthetic import amtfl_synthetic
    from mtlkit.datasets.srdml_synthetic import srdml_synthetic
    from mtlkit.datasets.synthetic import tomato_synthetic

    out: list[dict[str, Any]] = []
    data, fam = planted_mixture(n_a=3 if quick else 6, n_b=3 if quick else 6, n=60 if quick else 150)
    out.append(dict(name="planted mixture", data=data, truth=fam, truth_text="family A / B", learned="srdml"))
    if quick:
        return out
    d, tr = srdml_synthetic()
    out.append(dict(name="SRDML synthetic", data=d, truth=tr.base, truth_text="base w1 / w2", learned="srdml"))
    d, tr = srdml_synthetic(contradicting=True)
    d.name = "srdml-synthetic-contradicting"
    out.append(dict(name="SRDML contradicting", data=d, truth=tr.base, truth_text="base w1 / w2 (twins opposite)",
                    learned="srdml", twins=tr.twin))
    d, amtfl_truth = amtfl_synthetic()
    out.append(dict(name="AMTFL synthetic", data=d, truth=(~amtfl_truth.easy).astype(np.int64),
                    truth_text="easy (l1-l4) / hard (l3-l6)", learned="amtfl"))
    d, tomato_truth = tomato_synthetic(n_per_task=300)
    out.append(dict(name="TOMATO synthetic", data=d, truth=None, truth_text="none (task similarity)",
                    learned="tomato-el", similarity=tomato_similarity(d, tomato_truth)))
    return out


# ---------------------------------------------------------------------------------------------- measurements
def measure(case: dict[str, Any], hp: dict[str, Any], seed: int, every: int | None, ctx: Context,
            cache: Path) -> dict[str, Any]:
    """Every affinity of one data set on its first split, the measured pair transfer and their timings (cached)."""
    from mtlkit.experiments.affinity import affinity, first_split, joint_affinity, pair_transfer

    data: MultiTaskData = case["data"]
    ctx.record(data)
    key = hashlib.sha256(json.dumps([FORMAT, data.checksum(), hp, seed, every, case["learned"]],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{data.name}-{key}.json"
    from mtlkit.experiments.reproduce.protocol import read_record, write_record

    rec = read_record(path, FORMAT)
    if rec is not None:
        return rec
    split = first_split(data, seed, test=0.3, val=0.2)
    T = data.n_tasks
    t0 = time.perf_counter()
    joint = joint_affinity(split, "hard-share", hp, seed, lookahead=True, every=every, device=ctx.device,
                           progress=False)
    la, gr = joint.affinity("lookahead"), joint.affinity("gradient", "cosine")
    t1 = time.perf_counter()
    learned = affinity(split, case["learned"], "learned", hparams={"epochs": hp.get("epochs", 100)}, seed=seed,
                       device=ctx.device, progress=False)
    t2 = time.perf_counter()
    pt = pair_transfer(split, "hard-share", hp, seed, pairs_limit=T, device=ctx.device, progress=False)
    rec = {"format": FORMAT, "name": case["name"], "data": data.name, "tasks": list(data.task_names),
           "matrices": {"lookahead": la.matrix.tolist(), "gradient": gr.matrix.tolist(),
                        "pairs": pt.gain("val").tolist(), "learned": learned.matrix.tolist()},
           "transfer_test": pt.gain("test").tolist(), "metric": pt.metric, "relation": learned.normalize,
           "seconds": {"joint": t1 - t0, "joint_probes": joint.probe_seconds, "learned": t2 - t1, "pairs": pt.seconds,
                       "pair_runs": pt.runs},
           "joint": {"every": joint.every, "steps_probed": joint.recorder.steps, "cost": joint.cost,
                     "epochs_run": joint.details["epochs_run"]}}
    return write_record(path, rec)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def scores(case: dict[str, Any], rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per affinity measure: groups (auto and with the true number), ARI, rank correlations."""
    from sklearn.metrics import adjusted_rand_score

    from mtlkit.analysis.affinity import Affinity
    from mtlkit.analysis.grouping import group_tasks

    names = tuple(rec["tasks"])
    T = len(names)
    off = ~np.eye(T, dtype=bool)
    truth = case.get("truth")
    transfer = np.asarray(rec["transfer_test"], dtype=np.float64)
    rows = []
    for how in HOWS:
        M = np.asarray(rec["matrices"][how], dtype=np.float64)
        aff = Affinity(M, names, how, rec["relation"] if how == "learned" else "")
        auto = group_tasks(aff)
        row: dict[str, Any] = {"data": rec["name"], "how": how, "groups_auto": len(auto.groups),
                               "grouping": " | ".join(", ".join(g) for g in auto.named_groups())}
        if truth is not None:
            k = len(set(truth.tolist()))
            row["ari_auto"] = float(adjusted_rand_score(truth, auto.labels()))
            row["ari_k"] = float(adjusted_rand_score(truth, group_tasks(aff, k=k).labels()))
        row["rho_transfer"] = _spearman(M[off], transfer[off])  # pairs: validation against test gain (noise floor)
        per = [_spearman(np.delete(M[:, j], j), np.delete(transfer[:, j], j)) for j in range(T)]
        row["rho_transfer_target"] = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
        if case.get("similarity") is not None:
            row["rho_truth"] = _spearman(M[off], np.asarray(case["similarity"])[off])
        if case.get("twins") is not None:
            tw = case["twins"]
            row["twins_negative"] = int(sum((M[t, tw[t]] + M[tw[t], t]) < 0 for t in range(T)) // 2)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- the command
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `mtlkit reproduce affinity`."""
    p.add_argument("--epochs", type=int, default=100, help="epochs of every hard-share run (default 100, patience 20)")
    p.add_argument("--every", type=int, default=1, help="probe the joint run every N steps (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench-splits", type=int, default=3,
                   help="splits of the grouped vs all-in-one vs STL comparison on the planted mixture (0: skip)")
    p.add_argument("--real", default="digits",
                   help="real data sets for grouped vs all-in-one vs STL (comma-separated; default digits, embedded)")
    p.add_argument("--no-school", dest="school", action="store_false",
                   help="skip the lookahead's cost at T = 139 on School (read from --data-dir / $MTLKIT_DATA)")
    p.add_argument("--quick", action="store_true", help="a smoke run (3+3 planted tasks, 3 epochs; numbers "
                                                        "meaningless)")


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def run(args: argparse.Namespace, ctx: Context) -> list[Path]:
    """Measure every data set, write docs/results/affinity.md and affinity.csv."""
    import pandas as pd

    quick = bool(args.quick)
    hp = {"epochs": 3 if quick else int(args.epochs)}
    store_dir = Path(getattr(ctx.store, "path", "results/x")).parent
    cache = store_dir / "affinity-cache"
    all_rows: list[dict[str, Any]] = []
    recs = []
    for case in cases(quick):
        rec = measure(case, hp, int(args.seed), args.every, ctx, cache)
        recs.append((case, rec))
        all_rows += scores(case, rec)
    school = None if quick or not args.school else school_cost(hp, int(args.seed), ctx, cache, args.data_dir)
    benches = []
    if args.bench_splits > 0:
        from mtlkit import datasets
        from mtlkit.experiments.bench import run_bench

        sets = [recs[0][0]["data"]]
        for name in [] if quick else [n.strip() for n in args.real.split(",") if n.strip()]:
            sets.append(datasets.load(name, data_dir=args.data_dir))
        for data in sets:
            ctx.record(data)
            benches.append(run_bench(data, ["stl", "hard-share"], n_splits=args.bench_splits, seed=int(args.seed),
                                     device=ctx.device, store=ctx.store, select=False, hparams=hp, progress=False,
                                     groups="auto", experiment="affinity-bench", reuse=True))
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "affinity.csv"
    pd.DataFrame(all_rows).to_csv(csv, index=False, float_format="%.4g")
    md = out / "affinity.md"
    md.write_text(_markdown(ctx, args, hp, recs, all_rows, benches, school))
    return [md, csv]


def _real(args: argparse.Namespace) -> list[str]:
    """The real data sets of the grouped vs all-in-one comparison (``--real``)."""
    return [n.strip() for n in (args.real or "").split(",") if n.strip()]


def _skipped(args: argparse.Namespace) -> str:
    """The protocol's note on the real data sets the comparison did not run."""
    left = [name for name in ("school", "sentiment", "mnist-mtl") if name not in _real(args)]
    text = f"; {', '.join(left)} not run (pass them with --real; School's lookahead cost is measured either way)" \
        if left else ""
    return text + "; the AMTFL MNIST split not run (not a named data set)"


def school_cost(hp: dict[str, Any], seed: int, ctx: Context, cache: Path, data_dir: Any) -> dict[str, Any]:
    """The lookahead's cost at T = 139 (School, its first Argyriou split): one joint hard-share run probed every
    ⌈T/8⌉ steps (the default), its time against the same run's probe-free time, and the auto grouping (cached)."""
    from mtlkit import datasets
    from mtlkit.errors import MtlkitError
    from mtlkit.experiments.affinity import first_split, joint_affinity
    from mtlkit.experiments.reproduce.protocol import read_record, write_record

    try:
        data = datasets.load("school", data_dir=data_dir)
    except MtlkitError as e:
        return {"error": str(e).splitlines()[0]}
    ctx.record(data)
    path = cache / f"school-cost-{data.checksum()}-{seed}-{hp['epochs']}.json"
    rec = read_record(path, FORMAT)
    if rec is not None:
        return rec
    from mtlkit.analysis.grouping import group_tasks

    joint = joint_affinity(first_split(data, seed), "hard-share", hp, seed, lookahead=True, device=ctx.device,
                           progress=False)
    g = group_tasks(joint.affinity("lookahead"))
    return write_record(path, {"format": FORMAT, "tasks": data.n_tasks, "every": joint.every,
                               "steps_probed": joint.recorder.steps, "probe_seconds": joint.probe_seconds,
                               "total_seconds": joint.total_seconds, "cost": joint.cost,
                               "epochs_run": joint.details["epochs_run"], "groups": len(g.groups),
                               "largest_group": max(len(x) for x in g.groups), "search": g.search})


def _markdown(ctx: Context, args: argparse.Namespace, hp: dict[str, Any], recs: Sequence[tuple[dict, dict]],
              rows: list[dict[str, Any]], benches: Sequence[Any], school: dict[str, Any] | None = None) -> str:
    from mtlkit.experiments.bench import leaderboard

    protocol = [
        "One split per data set (seed {s}: 30 % of each task's rows for test, 20 % of the rest for validation; "
        "AMTFL: its predefined split 1, 20 % of its training rows for validation); hard-share with its defaults "
        "(MLP bottom [64], heads [32], Adam 1e-3, batch 32), {e} epochs, early stopping (patience 20) on "
        "validation.".format(s=args.seed, e=hp["epochs"]),
        f"lookahead and gradient (cosine): one joint hard-share run, probed every {args.every} step(s) before the "
        "step on its batch (TAG's Z_{i→j} = 1 − L_j(θ − lr·∇L_i)/L_j(θ) with lr the run's learning rate, for all "
        "sources in one vmapped forward; the cosine of the per-task gradients of the shared bottom), averaged.",
        "pairs: hard-share on every task alone and on every pair (T + T(T−1)/2 runs); affinity = the validation gain "
        "1 − m_j(with i)/m_j(alone), m = RMSE (regression) or cross-entropy (TOMATO's soft labels). The same runs' "
        "*test* gain is the measured transfer every measure is rank-correlated with (for pairs itself, ρ is its "
        "validation–test agreement: the noise floor of one seed's pair runs).",
        "learned: the relation the data set's own paper method learns (SRDML ω; AMTFL AS; TOMATO-EL ‖θˢ_kt‖ as the "
        "cosine of the tasks' topic columns), same epochs; centred (off-diagonal mean subtracted) before grouping, "
        "since its zero means nothing.",
        "Grouping: `group_tasks`, exact (dynamic programming over all partitions), objective = total within-group "
        "affinity (sum); auto = the best number of groups, k = the true number. ARI = scikit-learn's adjusted Rand "
        "index against the planted groups (1 = recovered exactly, ~0 = chance).",
        "ρ(transfer): Spearman over the T(T−1) ordered pairs; ρ per target: for each target task, Spearman over its "
        "T−1 sources (which partners help it most), averaged over targets.",
        "Reductions: one seed and one split (no CI on ARI/ρ); TOMATO with 300 rows per task instead of 2000 (d = 64, "
        "12 tasks, 4 topics); epochs as above. Real data: grouped vs all-in-one vs STL on {r} only, without "
        "selection (defaults){skipped}.".format(r=", ".join(_real(args)) or "none", skipped=_skipped(args)),
    ]
    out = ["# Task affinity against planted structure (issue 14)", ""]
    out += provenance(ctx, f"split and training seed {args.seed}", protocol)
    out += ["", "## Recovered groups and rank correlation with measured transfer", ""]
    header = ["data (true groups)", "affinity", "ARI auto (groups)", "ARI k = true", "ρ(transfer)", "ρ per target",
              "ρ(truth similarity)"]
    truth_text = {c["name"]: c["truth_text"] for c, _ in recs}
    table = []
    for r in rows:
        table.append([f"{r['data']} ({truth_text[r['data']]})", r["how"],
                      f"{_fmt(r.get('ari_auto'))} ({r['groups_auto']})", _fmt(r.get("ari_k")),
                      _fmt(r["rho_transfer"]), _fmt(r["rho_transfer_target"]), _fmt(r.get("rho_truth"))])
    out += markdown_table(header, table)
    out += ["", "## Groups found (auto)", ""]
    out += [f"- {r['data']}, {r['how']}: {r['grouping']}" for r in rows]
    twin = [r for r in rows if "twins_negative" in r]
    if twin:
        out += ["", "SRDML contradicting: twin pairs (opposite weights) with a negative affinity (sum of both "
                "directions), of 6: " + ", ".join(f"{r['how']} {r['twins_negative']}" for r in twin) + "."]
    out += ["", "## Cost of the joint run", "",
            *markdown_table(["data", "tasks", "steps probed (every)", "epochs run", "joint run (s)", "of it probes (s)",
                             "× one training run", "pair runs", "pairs (s)"],
                            [[rec["name"], str(len(rec["tasks"])),
                              f"{rec['joint']['steps_probed']} ({rec['joint']['every']})",
                              str(rec["joint"]["epochs_run"]), _fmt(rec["seconds"]["joint"], ".1f"),
                              _fmt(rec["seconds"]["joint_probes"], ".1f"), _fmt(rec["joint"]["cost"]),
                              str(rec["seconds"]["pair_runs"]), _fmt(rec["seconds"]["pairs"], ".0f")]
                             for _, rec in recs])]
    if school is not None:
        out += ["", "### At T = 139: School", ""]
        if "error" in school:
            out.append(f"Not run: {school['error']}")
        else:
            out.append(f"One joint hard-share run on School's first Argyriou split ({school['epochs_run']} epochs "
                       f"run), the lookahead probed every {school['every']} steps (the default ⌈T/8⌉): "
                       f"{school['steps_probed']} probes took {school['probe_seconds']:.1f} s of a "
                       f"{school['total_seconds']:.1f} s run, **{school['cost']:.2f}× one training run** (the same "
                       f"run without probes), not T = {school['tasks']} runs. The auto grouping ({school['search']}) "
                       f"found {school['groups']} groups, the largest of {school['largest_group']} tasks.")
    for bench in benches:
        out += ["", f"## Grouped vs all-in-one vs STL: {bench.dataset}", "",
                f"`run_bench(..., groups='auto')` over {len(bench.splits)} splits, defaults ({hp['epochs']} epochs), "
                "no selection; on each split the groups come from the lookahead affinity of that split's training "
                f"rows. Test {bench.metric}, mean ± 95% CI over splits; Δ vs STL in %.", ""]
        lb = leaderboard(bench)
        out += markdown_table(["model", f"test {bench.metric}", "Δ vs STL (%)", "tasks hurt"],
                              [[r.method, f"{r.mean:.3f} ± {_fmt(r.ci, '.3f')}", _fmt(r.improvement),
                                "–" if r.hurt is None else f"{r.hurt}/{len(bench.task_names)}"] for r in lb])
        out += [""] + [f"- {n}" for n in bench.notes if n.startswith("groups on")]
    out += ["", "## Reading (computed from the tables above)", ""] + _reading(rows, recs, benches)
    return "\n".join(out).rstrip() + "\n"


def _reading(rows: list[dict[str, Any]], recs: Sequence[tuple[dict, dict]], benches: Sequence[Any]) -> list[str]:
    """Plain statements computed from the numbers, so the file never says more than it measured."""
    out = []
    for how in HOWS:
        rs = [r for r in rows if r["how"] == how and "ari_k" in r]
        exact = [r["data"] for r in rs if r["ari_k"] >= 0.999]
        auto = [r["data"] for r in rs if r.get("ari_auto", 0) >= 0.999]
        rho = [r["rho_transfer"] for r in rows if r["how"] == how and np.isfinite(r["rho_transfer"])]
        what = ("of its validation gain against the same runs' test gain (the noise floor of one seed's pair runs)"
                if how == "pairs" else "with the measured test transfer")
        out.append(f"- **{how}**: planted groups recovered exactly with the true number of groups on "
                   f"{len(exact)} of {len(rs)} data sets ({', '.join(exact) or 'none'}), with the number chosen "
                   f"by the grouping on {len(auto)} ({', '.join(auto) or 'none'}); Spearman ρ {what} from "
                   f"{_fmt(min(rho) if rho else None)} to {_fmt(max(rho) if rho else None)}.")
    twin = [r for r in rows if "twins_negative" in r]
    if twin:
        out.append("- SRDML contradicting twins (opposite weights) flagged by a negative affinity: "
                   + ", ".join(f"{r['how']} {r['twins_negative']} of 6" for r in twin) + ".")
    spent = sum(rec["seconds"][k] for _, rec in recs for k in ("joint", "learned", "pairs"))
    out.append(f"- The measurements (joint, learned and pair runs) took {spent / 60:.1f} min in all, summed from "
               "their cache (a call that finds them cached only re-runs the grouped comparisons).")
    costs = [rec["joint"]["cost"] for _, rec in recs]
    out.append(f"- The joint run with a lookahead probe at every step cost {_fmt(min(costs))}–{_fmt(max(costs))}× a "
               f"plain training run here (T = {', '.join(sorted({str(len(r['tasks'])) for _, r in recs}))}); pairs "
               f"took {', '.join(str(r['seconds']['pair_runs']) for _, r in recs)} training runs.")
    for bench in benches:
        lb = {r.method: r for r in leaderboard_rows(bench)}
        g, a = lb.get("hard-share@groups"), lb.get("hard-share")
        if g is not None and a is not None:
            within = np.isfinite(g.ci) and np.isfinite(a.ci) and abs(g.mean - a.mean) < max(g.ci, a.ci)
            out.append(f"- Grouped hard-share vs all-in-one on {bench.dataset}: test {bench.metric} "
                       f"{g.mean:.3f} ± {_fmt(g.ci, '.3f')} vs {a.mean:.3f} ± {_fmt(a.ci, '.3f')} "
                       f"({'lower' if bench.lower_is_better else 'higher'} is better; Δ vs STL "
                       f"{_fmt(g.improvement)} % vs {_fmt(a.improvement)} %)"
                       + (": the difference lies within the 95 % CIs, no evidence either way." if within else "."))
    return out


def leaderboard_rows(bench: Any) -> list[Any]:
    from mtlkit.experiments.bench import leaderboard

    return leaderboard(bench)
