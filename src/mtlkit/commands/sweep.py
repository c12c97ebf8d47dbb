"""`mtlkit sweep`: hyper-parameter search for one method on one data set through Optuna, on one machine or
many (`--worker` processes sharing a PostgreSQL storage)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from mtlkit.errors import MtlkitError
from mtlkit.progress import QuietFlag

DESCRIPTION = """\
Search a method's hyper-parameters on one data set: every point of a grid of --param lists exactly once,
or a budget of --trials drawn by TPE or at random (default space: the method's declared tuning space,
`mtlkit methods NAME`; trial 0 is the method's defaults where the space holds them). Each trial is
trained on every split and scored by the validation primary metric (RMSE, error % or cross-entropy),
mean over splits. The best trial is then retrained on every split and tested; the runs go to
<out>/results.sqlite and the report to <out>/sweep-<method>-<dataset>.md.

The study lives in an Optuna storage: sqlite:///<out>/sweeps.sqlite by default, or a PostgreSQL URL that
any number of `mtlkit sweep --worker --storage URL --study NAME` processes on any machines share.
Trials that raise are recorded as failed with their error and never retried.

Search space syntax:
  --param lr=1e-3,1e-2          values (JSON where it parses: numbers, true/false, [64,32]; else text)
  --param hidden=[32],[64,64]   list values are separated by commas outside brackets
  --param lr=loguniform:1e-4:1e-1   ranges, with --trials only: uniform | loguniform | int | logint
  --set epochs=50               fixed for every trial
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `mtlkit sweep` on the CLI's sub-command parsers."""
    p = sub.add_parser("sweep", help="hyper-parameter search (Optuna grid or TPE), on one or many machines",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    role = p.add_mutually_exclusive_group()
    role.add_argument("--worker", action="store_true",
                      help="join an existing study (--storage, --study) as a worker only")
    role.add_argument("--finish", action="store_true",
                      help="retrain and test the best trial of a finished study and write the report")
    role.add_argument("--no-finish", action="store_true",
                      help="create the study and work through it, but leave finishing to `--finish`")
    role.add_argument("--create-only", action="store_true", help="create the study and exit (workers run it)")
    p.add_argument("--method", help="the method to tune (see `mtlkit methods`)")
    p.add_argument("--dataset", help="a data set name (see `mtlkit datasets`); default digits")
    p.add_argument("--data-dir", type=Path, help="data directory (default: $MTLKIT_DATA)")
    p.add_argument("--splits", type=int, default=3, help="splits each trial is averaged over (default 3)")
    p.add_argument("--seed", type=int, default=0, help="split i uses seed + i, for the data and the training")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUES",
                   help="a searched hyper-parameter (repeatable); default: the method's declared search space "
                        "(needs --trials N when it has ranges)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a fixed hyper-parameter (repeatable), e.g. --set epochs=50")
    p.add_argument("--trials", type=int, help="a budget of trials drawn by --sampler instead of a grid")
    p.add_argument("--sampler", choices=["tpe", "random"], default=None, help="with --trials (default tpe)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<out>/sweeps.sqlite)")
    p.add_argument("--study", help="study name (default <method>-<dataset>)")
    p.add_argument("--out", default="results", help="folder for the report, results.sqlite and the default "
                   "storage (default results/)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--wait", type=float, default=600.0,
                   help="seconds a worker waits for the study to be created (default 600)")
    p.add_argument("--quiet", action=QuietFlag)
    p.set_defaults(func=cmd_sweep)
    return p


def _command_line() -> str:
    return "mtlkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("mtlkit") else ""


def cmd_sweep(args: argparse.Namespace) -> int:
    """Create / resume a study and work through it, or act only as a worker or finisher."""
    from mtlkit._optional import require

    optuna = require("optuna", "mtlkit sweep")
    from mtlkit.experiments import sweep as sw

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = args.storage or sw.default_storage(args.out)
    if args.worker or args.finish:
        given = [f for f, v in (("--method", args.method), ("--dataset", args.dataset), ("--param", args.param),
                                ("--set", args.set), ("--trials", args.trials), ("--sampler", args.sampler)) if v]
        if given:
            raise MtlkitError(f"{', '.join(given)}: a worker or finisher reads the sweep's definition from the "
                              "study; give only --storage, --study (and --data-dir, --device)")
        if not args.study:
            raise MtlkitError("--worker and --finish need --study NAME (and --storage URL unless it is the "
                              "default SQLite file in --out)")
        if args.worker:
            summary = sw.run_worker(storage, args.study, data_dir=args.data_dir, device=args.device, wait=args.wait)
            print(f"worker: {summary.ran} trial(s) run, {len(summary.failed)} failed "
                          f"({args.study} in {sw.mask_url(storage)})")
            return 0
        return _finish(sw, storage, args)

    if not args.method:
        raise MtlkitError("--method is required to create a sweep (or use --worker / --finish with --study)")
    if args.sampler and args.trials is None:
        raise MtlkitError("--sampler needs a budget: --trials N (without it the sweep is a grid)")
    space = dict(sw.parse_param(item) for item in args.param) if args.param else None
    if args.param and len(space or {}) != len(args.param):
        raise MtlkitError("a hyper-parameter is given twice with --param")
    fixed = dict(sw.parse_assignment(item) for item in args.set)
    handle = sw.create_sweep(args.method, args.dataset or "digits", storage=storage, study=args.study,
                             n_splits=args.splits, seed=args.seed, space=space, fixed=fixed, n_trials=args.trials,
                             sampler=args.sampler or "tpe", out=args.out, data_dir=args.data_dir, wait=args.wait)
    spec = handle.spec
    what = "grid of" if spec.is_grid else f"{spec.sampler} budget of"
    print(f"sweep {handle.study!r} ({'created' if handle.created else 'resumed'}): {spec.method} on "
                  f"{spec.dataset}, {what} {spec.n_trials} trial(s) × {spec.n_splits} split(s), in "
                  f"{sw.mask_url(handle.storage)}")
    if args.create_only:
        print(f"start workers with: mtlkit sweep --worker --storage '{sw.mask_url(handle.storage)}' "
                      f"--study {handle.study}")
        return 0
    summary = sw.run_worker(handle.storage, handle.study, data_dir=args.data_dir, device=args.device, wait=0.0)
    print(f"this process ran {summary.ran} trial(s), {len(summary.failed)} failed")
    if args.no_finish:
        return 0
    return _finish(sw, handle.storage, args, study=handle.study)


def _finish(sw: Any, storage: str, args: argparse.Namespace, study: str | None = None) -> int:
    """Retrain + test the best trial, record it, write the report, print the outcome."""
    res = sw.finish_sweep(storage, study or args.study, data_dir=args.data_dir, device=args.device, out=args.out,
                          command=_command_line())
    spec = res.spec
    failed = sum(r.state == "FAIL" for r in res.trials)
    print(f"{len(res.trials)} trial(s), {failed} failed; best: trial {res.best.number} "
                  f"(val {spec.metric} {res.best.value:.4f}): "
                  + (", ".join(f"{k}={v}" for k, v in res.hparams.items()) or "the defaults"))
    from mtlkit.experiments.tables import mean_ci_text

    print(f"test {spec.metric}: {mean_ci_text(res.test_mean, res.test_ci, 4)} (95% CI over {len(res.test)} splits)")
    print(f"report: {res.report}; runs in {Path(args.out) / 'results.sqlite'} (experiment 'sweep')")
    return 0
