"""The sweep's Markdown report: its definition, every trial, the best configuration and its test metric."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.sweep.storage import mask_url

if TYPE_CHECKING:
    from mtlkit.experiments.sweep.finish import SweepResult


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _dim_text(dim: Mapping[str, Any]) -> str:
    if "choice" in dim:
        return ", ".join(_fmt(v) for v in dim["choice"])
    kind = "float" if "float" in dim else "int"
    lo, hi = dim[kind]
    return (f"{kind} in [{_fmt(lo)}, {_fmt(hi)}]" + (", log scale" if dim.get("log") else "")
            + (f", or {_fmt(dim['off'])} (off)" if dim.get("off") is not None else ""))


def report_markdown(res: SweepResult, command: str = "", task_names: Sequence[str] = (),
                    per_task: np.ndarray | None = None) -> str:
    """The sweep's definition, every trial, the best configuration and its test metric (mean ± 95% CI)."""
    spec = res.spec
    arrow = "lower is better" if spec.direction == "minimize" else "higher is better"
    mode = (f"grid, every point once ({spec.n_trials} trials)" if spec.is_grid
            else f"{spec.sampler.upper() if spec.sampler == 'tpe' else spec.sampler} sampler, budget of "
                 f"{spec.n_trials} trials")
    out = [f"# mtlkit sweep: {spec.method} on {spec.dataset}", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += ["## Definition", "",
            f"- study: `{res.study}` in `{mask_url(res.storage)}`",
            f"- method: {spec.method}; data: {spec.dataset} ({spec.kind}), checksum `{spec.checksum}`",
            f"- splits: {spec.n_splits} ({', '.join(res.splits)}), seed {spec.seed} (split i trains with seed "
            f"{spec.seed} + i)",
            f"- search: {mode}",
            f"- objective: validation {spec.metric} ({arrow}), mean over tasks then over splits",
            "- fixed: " + (", ".join(f"{k}={_fmt(v)}" for k, v in spec.fixed.items()) or "none"), ""]
    out += ["| hyper-parameter | searched over |", "|---|---|"]
    out += [f"| {k} | {_dim_text(d)} |" for k, d in spec.space.items()]
    done = sum(r.state == "COMPLETE" for r in res.trials)
    failed = sum(r.state == "FAIL" for r in res.trials)
    out += ["", f"## Trials ({len(res.trials)}: {done} complete, {failed} failed)", "",
            f"| trial | params | val {spec.metric} | per split | state | error |", "|---|---|---|---|---|---|"]
    for r in res.trials:
        mark = " **best**" if r.number == res.best.number else ""
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()) or "–"
        err = (r.error or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {r.number}{mark} | {params} | {_fmt(r.value)} | "
                   f"{', '.join(_fmt(v) for v in r.per_split) or '–'} | {r.state} | {err} |")
    out += ["", "## Best configuration, retrained on every split and tested", "",
            f"Trial {res.best.number} (ties go to the lowest trial number): "
            + (", ".join(f"{k}={_fmt(v)}" for k, v in res.hparams.items()) or "the defaults"),
            "", f"**test {spec.metric}: {res.test_mean:.4f} ± "
            f"{'n/a' if math.isnan(res.test_ci) else f'{res.test_ci:.4f}'}** (mean ± 95% CI over "
            f"{len(res.test)} splits)", "", f"| split | val {spec.metric} | test {spec.metric} |", "|---|---|---|"]
    out += [f"| {s} | {v:.4f} | {t:.4f} |" for s, v, t in zip(res.splits, res.val, res.test, strict=True)]
    if per_task is not None and len(task_names):
        m, ci = mean_ci(per_task, axis=0)
        out += ["", f"Per task, test {spec.metric} (mean ± 95% CI over splits):", "", "| task | mean | ± |",
                "|---|---|---|"]
        out += [f"| {n} | {_fmt(float(a))} | {_fmt(float(b))} |"
                for n, a, b in zip(task_names, np.atleast_1d(m), np.atleast_1d(ci), strict=True)]
    return "\n".join(out) + "\n"


def write_report(res: SweepResult, out: str | Path, command: str = "", task_names: Sequence[str] = (),
                 per_task: np.ndarray | None = None) -> Path:
    """Write ``<out>/sweep-<method>-<dataset>.md``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"sweep-{res.spec.method}-{res.spec.dataset}.md"
    path.write_text(report_markdown(res, command, task_names, per_task))
    return path
