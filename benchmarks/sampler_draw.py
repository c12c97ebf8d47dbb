"""Seconds to draw one epoch's row indices (`TaskBatchSampler._index_blocks`: the permutations of every task, replayed
block by block) for the power-law task sizes of `scale.py` (T tasks, largest 100,000 rows, ~1M rows; each task's
64 % training share, B = 32), against the sampler of another commit (``--against REV``, loaded from ``git show``),
side by side in one process; both must leave the generator in the same state (the same draws).

Not a timed test. Run::

    python benchmarks/sampler_draw.py --against 4bcca86 --tasks 1000,10000
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import scale  # noqa: E402

from mtlkit.data import sampler as current  # noqa: E402


def load_at(rev: str) -> types.ModuleType:
    """``mtlkit/data/sampler.py`` as it was at commit ``rev``, as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:src/mtlkit/data/sampler.py"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent).stdout
    path = Path(tempfile.mkdtemp()) / "sampler_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sampler_at_rev", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def draw_seconds(mod: types.ModuleType, counts: np.ndarray, batch: int) -> tuple[float, dict]:
    data = types.SimpleNamespace(counts=counts, shared=False, n_rows=int(counts.max()))
    s = mod.TaskBatchSampler(data, batch, seed=0)
    t0 = time.perf_counter()
    for _ in s._index_blocks():
        pass
    return time.perf_counter() - t0, s.state()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="the commit whose sampler to compare with")
    ap.add_argument("--tasks", default="1000,10000")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    other = load_at(args.against)
    for T in (int(t) for t in args.tasks.split(",")):
        counts = np.maximum(1, (np.array(scale.power_law_sizes(T)) * 0.64).astype(np.int64))
        a, sa = draw_seconds(other, counts, args.batch)
        b, sb = draw_seconds(current, counts, args.batch)
        same = "same draws" if sa == sb else "DIFFERENT DRAWS"
        print(f"T = {T:,}: {args.against} {a:.1f} s, current {b:.1f} s ({a / b:.1f}x), {same}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
