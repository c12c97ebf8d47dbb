"""`mtlkit affinity`: which tasks should share a model? Measures a task-affinity matrix (`mtlkit.experiments.affinity`),
groups the tasks (`mtlkit.analysis.grouping`) and writes the matrix (CSV), a heatmap ordered by group with the
boundaries drawn (PNG + SVG), the grouping (JSON, which `mtlkit bench --groups FILE` reads) and prints the advice."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mtlkit.commands.common import add_data_arguments, check_output_path, load_data_from_args, parse_hparams
from mtlkit.errors import MtlkitError

HOW_HELP = ("lookahead: TAG's lookahead over one joint run (default); gradient: cosine of the per-task gradients "
            "over the same run; pairs: train every task alone and every pair (T ≤ 10 unless --max-pairs); learned: "
            "the method's own task relation (srdml, amtfl, mrn, tomato-el, ...)")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit affinity` on the CLI's sub-parsers."""
    p = sub.add_parser("affinity", help="which tasks to train together: a task-affinity map and grouping advice",
                       description="Measure how much training on each task helps each other task, group the tasks "
                                   "and advise which to train together. Only training and validation rows are read.")
    add_data_arguments(p)
    p.add_argument("--method", default="hard-share", help="the model the affinity is measured with "
                                                           "(default hard-share)")
    p.add_argument("--how", default="lookahead", choices=["lookahead", "gradient", "pairs", "learned"], help=HOW_HELP)
    p.add_argument("--normalize", default="cosine", choices=["cosine", "gram", "first-order"],
                   help="--how gradient: cosine (default), the raw Gram matrix, or lr·<g_i, g_j>/L_j (TAG's "
                        "first-order form)")
    p.add_argument("--groups", default="auto", metavar="auto|K",
                   help="auto: the number of groups with the best predicted gain (default); K: exactly K groups")
    p.add_argument("--objective", default="sum", choices=["sum", "mean"],
                   help="a task's predicted gain in its group: the sum of the affinities onto it from the other "
                        "members (default: total within-group affinity) or their mean (TAG)")
    p.add_argument("--every", type=int, metavar="N", help="lookahead / gradient: probe every N steps of the joint run "
                                                           "(default: ⌈T/8⌉ for lookahead, 1 for gradient)")
    p.add_argument("--max-pairs", type=int, metavar="N", help="--how pairs: train only N random pairs (above 10 tasks)")
    p.add_argument("--relation", help="--how learned: which learned matrix (default: the method's first)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of --method, e.g. --set epochs=50")
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for the files (default results/)")
    p.add_argument("--quiet", action=_quiet())
    p.set_defaults(func=run)
    return p


def _quiet() -> Any:
    from mtlkit.progress import QuietFlag

    return QuietFlag


def _groups_arg(text: str, n_tasks: int) -> int | None:
    if text == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise MtlkitError(f"--groups must be auto or a number of groups, got {text!r}") from None
    if not 1 <= k <= n_tasks:
        raise MtlkitError(f"--groups {k}: must be between 1 and the number of tasks ({n_tasks})")
    return k


def run(args: argparse.Namespace) -> int:
    """Measure, group, write and advise; returns 0."""
    from mtlkit.analysis.affinity import affinity_figure
    from mtlkit.analysis.grouping import group_tasks
    from mtlkit.analysis.plots import save_figure
    from mtlkit.experiments.affinity import PAIRS_LIMIT, affinity

    check_output_path(args.out, "--out")
    data = load_data_from_args(args)
    k = _groups_arg(args.groups, data.n_tasks)
    if args.how == "pairs" and data.n_tasks > PAIRS_LIMIT and args.max_pairs is None:  # before loading torch models
        raise MtlkitError(f"--how pairs trains {data.n_tasks} + {data.n_tasks * (data.n_tasks - 1) // 2} models for "
                          f"{data.n_tasks} tasks (limit {PAIRS_LIMIT}): use --how lookahead (one run), or sample "
                          "pairs with --max-pairs N")
    aff = affinity(data, args.method, args.how, hparams=parse_hparams(args.set), seed=args.seed,
                   normalize=args.normalize, every=args.every, relation=args.relation, max_pairs=args.max_pairs,
                   device=args.device, progress=False if args.quiet else None)
    grouping = group_tasks(aff, k=k, objective=args.objective)
    stem = f"affinity-{data.name}-{args.how}"
    args.out.mkdir(parents=True, exist_ok=True)
    files = [aff.write_csv(args.out / f"{stem}.csv"), grouping.write_json(args.out / f"{stem}-groups.json")]
    summary = aff.summary()
    summary["group"] = grouping.labels() + 1
    summary["predicted_gain"] = grouping.gain
    summary.to_csv(args.out / f"{stem}-tasks.csv", float_format="%.6g")
    files.append(args.out / f"{stem}-tasks.csv")
    fig = affinity_figure(aff, grouping.groups, f"{data.name}: {aff.label} affinity with {args.method} "
                                                "(row: source, column: target; self grey)")
    files += save_figure(fig, args.out / stem)
    d = aff.details
    print(f"{data.name}: {data.n_tasks} tasks, {aff.label} affinity measured with {args.method}")
    if "cost" in d:
        print(f"cost: {d['steps_probed']} steps probed (every {d['every']}), {d['probe_seconds']:.1f} s of probes "
              f"in a {d['total_seconds']:.1f} s joint run: {d['cost']:.2f}× one training run")
    elif "runs" in d:
        print(f"cost: {d['runs']} training runs ({d['pairs_run']} pairs), {d['total_seconds']:.1f} s")
    print(f"advice: {grouping.advice()}")
    for p in files:
        print(f"wrote {p}", file=sys.stderr)
    return 0
