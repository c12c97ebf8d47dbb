"""Start-up cost: wall time of `import mtlkit`, `import torch` and `mtlkit --help`, each in a fresh
subprocess (median of --repeat runs), and which heavy modules each one pulls in.

    python benchmarks/import_time.py [--repeat 5]

`import mtlkit` is lazy (PEP 562 `__getattr__`): torch, scipy, pandas, matplotlib and optuna are imported
on first use of `mtlkit.train`, `mtlkit.datasets`, ... For the per-module breakdown run
`python -X importtime -c "import mtlkit" 2>&1 | sort -t'|' -k2 -n | tail`."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "numpy", "scipy", "scipy.stats", "pandas", "matplotlib", "optuna", "sklearn", "rich",
         "safetensors")
# the interpreter of this environment; `mtlkit --help` runs the CLI's entry point through it
PY = sys.executable
CASES = {
    "import mtlkit": [PY, "-c", "import mtlkit"],
    "import torch": [PY, "-c", "import torch"],
    "mtlkit --help": [PY, "-c", "import sys; from mtlkit.cli import main; sys.argv[0] = 'mtlkit'; "
                                "sys.exit(main(['--help']))"],
}
PROBE = {  # the same work, then the heavy modules now in sys.modules
    "import mtlkit": "import mtlkit",
    "import torch": "import torch",
    "mtlkit --help": "from mtlkit.cli import build_parser; build_parser().format_help()",
}


def wall(cmd: list[str], repeat: int) -> float:
    """Median wall time of ``cmd`` in a fresh process."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_modules(code: str) -> list[str]:
    """The heavy modules loaded after ``code`` runs in a fresh process."""
    probe = f"{code}\nimport json, sys; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    out = subprocess.run([PY, "-c", probe], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per case; the median is reported (default 5)")
    args = ap.parse_args()
    baseline = wall([PY, "-c", "pass"], args.repeat)
    print(f"python {sys.version.split()[0]} ({Path(PY).name}); median of {args.repeat} fresh processes each; "
          f"bare interpreter start {baseline:.2f} s")
    print(f"{'case':<16} {'wall (s)':>9}  heavy modules loaded")
    for name, cmd in CASES.items():
        t = wall(cmd, args.repeat)
        mods = heavy_modules(PROBE[name])
        print(f"{name:<16} {t:>9.2f}  {', '.join(mods) or '-'}")


if __name__ == "__main__":
    main()
