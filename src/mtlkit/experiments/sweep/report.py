"""The sweep's Markdown report: its definition, every trial, the best configuration and its test metric."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlkit.experiments.stats import mean_ci
from mtlkit.experiments.sweep.storage import mask_url
from mtlkit.experiments.tables import fmt, markdown_table, mean_ci_text

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
    out += markdown_table(["hyper-parameter", "searched over"], [[k, _dim_text(d)] for k, d in spec.space.items()],
                          escape=True)
    done = sum(r.state == "COMPLETE" for r in res.trials)
    failed = sum(r.state == "FAIL" for r in res.trials)
    out += ["", f"## Trials ({len(res.trials)}: {done} complete, {failed} failed)", ""]
    out += markdown_table(
        ["trial", "params", f"val {spec.metric}", "per split", "state", "error"],
        [[f"{r.number}{' **best**' if r.number == res.best.number else ''}",
          ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()) or "–", _fmt(r.value),
          ", ".join(_fmt(v) for v in r.per_split) or "–", r.state, r.error or ""] for r in res.trials], escape=True)
    out += ["", "## Best configuration, retrained on every split and tested", "",
            f"Trial {res.best.number} (ties go to the lowest trial number): "
            + (", ".join(f"{k}={_fmt(v)}" for k, v in res.hparams.items()) or "the defaults"),
            "", f"**test {spec.metric}: {mean_ci_text(res.test_mean, res.test_ci, 4)}** ("
            + (f"mean ± 95% CI over {len(res.test)} splits)" if np.isfinite(res.test_ci) else
               f"mean over {len(res.test)} split{'s' * (len(res.test) > 1)}, no CI)"), ""]
    out += markdown_table(["split", f"val {spec.metric}", f"test {spec.metric}"],
                          [[s, fmt(v, 4), fmt(t, 4)] for s, v, t in zip(res.splits, res.val, res.test, strict=True)])
    if per_task is not None and len(task_names):
        m, ci = mean_ci(per_task, axis=0)
        out += ["", f"Per task, test {spec.metric} (mean ± 95% CI over splits):", ""]
        out += markdown_table(["task", "mean", "±"], [[n, _fmt(float(a)), _fmt(float(b))] for n, a, b in
                                                     zip(task_names, np.atleast_1d(m), np.atleast_1d(ci), strict=True)],
                              escape=True)
    return "\n".join(out) + "\n"


def write_report(res: SweepResult, out: str | Path, command: str = "", task_names: Sequence[str] = (),
                 per_task: np.ndarray | None = None) -> Path:
    """Write ``<out>/sweep-<method>-<dataset>.md``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"sweep-{res.spec.method}-{res.spec.dataset}.md"
    path.write_text(report_markdown(res, command, task_names, per_task))
    return path
