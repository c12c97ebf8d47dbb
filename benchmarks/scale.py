"""Memory and time of training on unbalanced heterogeneous tasks (issue 18): peak RSS and seconds per epoch.

Cases (regression, d = 100 features, y = X·w_t + noise, `split(test=0.2, val=0.2, seed=0)`):

* ``issue-400``:    200 tasks of 40 rows + one task of 400 rows (8,400 rows);
* ``issue-20000``:  200 tasks of 40 rows + one task of 20,000 rows (28,000 rows: the issue's second example);
* ``power-100``:    T = 100, power-law task sizes n_t = round(100,000 · t^-a), a chosen so that Σ n_t ≈ 1M;
* ``power-1000``:   T = 1,000, the same with its own exponent (sizes floored at 10 rows).

Each (case, method) runs in its own subprocess (so one case's high-water mark cannot leak into the next):
it imports torch and mtlkit's training modules, trains hard-share for one epoch on 40 rows (so that what torch
loads on first use counts in the baseline) and records the interpreter's baseline RSS, builds the data
and the split (recording RSS again), then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``,
Linux) and runs ``mtlkit.train(method, split, hparams={"epochs": E, "patience": 0}, seed=0)``. Reported:

* ``raw MB``: the data's own size, all rows x (d features + 1 label) as float32;
* ``model MB``: the model's parameters (float32);
* ``base MB``: RSS after the imports and the warm-up; ``data MB``: RSS after building data and split (the
  generated float32 features are kept as given, the split's parts index into them);
* ``peak MB``: ``ru_maxrss``, the whole process's high-water mark; ``train peak MB``: the high-water mark
  while training (after the reset), ``train Δ MB`` = train peak - data MB: what training itself adds;
* ``s/epoch``: `Run.train_seconds` / epochs (every epoch includes the validation pass); ``CPU s/epoch``: the
  process's CPU time (user + system, all threads) over the same span, less sensitive to other jobs.

``--steps K`` (for the large cases, whose epoch is ``ceil(0.6·largest / B)`` steps of T x B rows): instead of
``mtlkit.train``, the same set-up and functions (`Normalizer`, `TaskBatchSampler`, `training_step`,
`mean_task_loss`) run K steps of the first epoch and one full validation pass; the epoch's time is extrapolated
(first step, which draws the epoch's indices, + the rest at the mean step time + the validation pass) and the
memory is the high-water mark of that span.

``--parquet FOLDER``: data larger than memory. Writes a Parquet folder (``--rows`` x 100 float64 features,
``--tasks`` tasks, 8 files) unless it exists, then runs ``mtlkit bench --data FOLDER`` (hard-share, one split,
default hyper-parameters, ``--epochs``) in a subprocess whose private writable memory is capped with
``RLIMIT_DATA`` (what ``prlimit --data`` sets: heap and anonymous maps; memory-mapped files are the kernel's page
cache and do not count; ``RLIMIT_AS``/``ulimit -v`` would count the mapped files and torch's 2 GB of reserved
address space) and reports the highest VmData, RssAnon and RssFile polled from /proc; ``--control`` runs the same
command reading the folder into memory (it should fail under the cap). pyarrow's mimalloc pool reserves ~1 GB of
address space, so the run sets ``ARROW_DEFAULT_MEMORY_POOL=system``.

``--parquet FOLDER --ranks K``: ``mtlkit train hard-share --data FOLDER`` alone, then under ``torchrun
--nproc_per_node=K ... --distributed`` with the ranks reading the folder together (each the features of its share
of the row groups, into one file per machine) and with every rank reading all of it (the behaviour before); the
peak sums over the ranks of Pss (shared pages split between the ranks that map them: what the ranks cost the
machine), Pss_File, Pss_Anon and Rss, from /proc/PID/smaps_rollup every 0.2 s.

Not a timed test: on a shared machine the seconds move with the load (printed at the end). Run::

    python benchmarks/scale.py                                  # every case, hard-share and tomato-el
    python benchmarks/scale.py --cases issue-20000 --methods hard-share --epochs 2
    python benchmarks/scale.py --cases power-100,power-1000 --steps 100     # extrapolated epochs
    python benchmarks/scale.py --markdown                       # the table as Markdown
    python benchmarks/scale.py --parquet /tmp/pq --cap-mb 800 --control --epochs 1    # a folder under a cap
    python benchmarks/scale.py --parquet /tmp/pq --ranks 2 --epochs 1 --threads 1    # ranks reading together
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

D = 100
CASES = ("issue-400", "issue-20000", "power-100", "power-1000")
METHODS = ("hard-share", "tomato-el")


def power_law_sizes(T: int, largest: int = 100_000, total: int = 1_000_000, floor: int = 10) -> list[int]:
    """``round(largest · t^-a)`` for t = 1..T (at least ``floor``), with ``a`` bisected so the sizes sum to
    about ``total``."""
    import numpy as np

    t = np.arange(1, T + 1, dtype=np.float64)
    lo, hi = 0.0, 5.0
    for _ in range(100):
        a = (lo + hi) / 2
        s = np.maximum(np.round(largest * t ** -a), floor).sum()
        lo, hi = (a, hi) if s > total else (lo, a)
    return [int(v) for v in np.maximum(np.round(largest * t ** -((lo + hi) / 2)), floor)]


def case_sizes(case: str) -> list[int]:
    if case == "issue-400":
        return [40] * 200 + [400]
    if case == "issue-20000":
        return [40] * 200 + [20_000]
    if case.startswith("power-"):
        return power_law_sizes(int(case.split("-")[1]))
    raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")


def _rss_mb() -> float:
    """Current resident set size (MB) from /proc/self/status; 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(case: str, method: str, epochs: int, threads: int, steps: int = 0) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import mtlkit
    import mtlkit.train.run  # noqa: F401  (the training modules and every method: part of the baseline)
    from mtlkit.methods import registry  # noqa: F401

    _warm_up(mtlkit)
    base = _rss_mb()
    sizes = case_sizes(case)
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(D, dtype=np.float32)
    Xs, ys = [], []
    for n in sizes:
        X = rng.standard_normal((n, D), dtype=np.float32)
        w = w0 + 0.3 * rng.standard_normal(D, dtype=np.float32)
        Xs.append(X)
        ys.append(X @ w + 0.3 * rng.standard_normal(n, dtype=np.float32))
    data = mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression", name=case)
    del Xs, ys
    split = data.split(test=0.2, val=0.2, seed=0)
    del data
    after_data = _rss_mb()
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    if steps:
        model, timing = _partial_epoch(method, split, steps)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:
        run = mtlkit.train(method, split, hparams={"epochs": epochs, "patience": 0}, seed=0, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        model = run.model
        timing = {"epochs": epochs, "s_per_epoch": run.train_seconds / epochs, "cpu_s_per_epoch": cpu / epochs}
    train_peak = _hwm_mb() if reset else None
    n = sum(sizes)
    model_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    return {"case": case, "method": method, "tasks": len(sizes), "rows": n, "largest": max(sizes),
            "padded_rows": len(sizes) * max(sizes), "raw_mb": n * (D + 1) * 4 / 2**20, "model_mb": model_mb,
            "base_mb": base, "data_mb": after_data,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "train_peak_mb": train_peak, "train_delta_mb": None if train_peak is None else train_peak - after_data,
            **timing, "wall_s": wall}


def _warm_up(mtlkit) -> None:
    """Train hard-share for one epoch on 2 x 20 rows, so that what torch loads on first use (the optimizer's
    and autograd's modules, ~75 MB) counts in the interpreter's baseline, not in the data's memory."""
    import numpy as np

    rng = np.random.default_rng(1)
    Xs = [rng.standard_normal((20, D), dtype=np.float32) for _ in range(2)]
    tiny = mtlkit.MultiTaskData.from_tasks(Xs, [X[:, 0] for X in Xs], kind="regression")
    mtlkit.train("hard-share", tiny.split(test=0.2, val=0.2, seed=0), hparams={"epochs": 1, "patience": 0}, seed=0,
                 progress=False)


def _partial_epoch(method: str, split, steps: int):
    """What `train_one` + `fit_sgd` do for one epoch, stopped after ``steps`` steps: the same data set-up
    (standardisation, device stores), the same `TaskBatchSampler` epoch, `training_step` and one full validation
    pass (`mean_task_loss`). Returns the model and the timing, the epoch extrapolated from the steps run."""
    import torch

    from mtlkit.data import Normalizer, TaskBatchSampler
    from mtlkit.methods import registry
    from mtlkit.train import TaskLoss
    from mtlkit.train.config import merge_hparams, method_defaults, method_params
    from mtlkit.train.run import build_method
    from mtlkit.train.trainer import make_optimizer, mean_task_loss, training_step

    entry = registry.get(method)
    hp = merge_hparams(method_defaults(entry), {"epochs": 1, "patience": 0}, method, method_params(entry))
    info = split.train.info()
    norm = Normalizer.fit(split.train)
    torch.manual_seed(0)
    parts = build_method(entry, info, hp)
    loss = TaskLoss(info.spec)
    train, val = norm.apply(split.train).tensors(), norm.apply(split.val).tensors()
    model = parts.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    w = torch.full((info.n_tasks,), 1.0 / info.n_tasks)
    sampler = TaskBatchSampler(train, hp["batch_size"], seed=0)
    stamps, cpu = [time.perf_counter()], [time.process_time()]
    model.train()
    for i, batch in enumerate(sampler.epoch()):
        training_step(parts, model, loss, batch, w, opt, shared)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
        if i + 1 == steps:
            break
    model.eval()
    v0, cv0 = time.perf_counter(), time.process_time()
    mean_task_loss(model, loss, val, val.chunk_width(at_least=hp["batch_size"]))  # as fit_sgd chunks validation
    val_s, val_cpu = time.perf_counter() - v0, time.process_time() - cv0
    done = len(stamps) - 1
    first = stamps[1] - stamps[0]  # includes drawing the epoch's indices
    per_step = (stamps[-1] - stamps[1]) / max(1, done - 1)
    cpu_first, cpu_per_step = cpu[1] - cpu[0], (cpu[-1] - cpu[1]) / max(1, done - 1)  # as the seconds: first apart
    return model, {"epochs": f"{done} of {len(sampler)} steps",
                   "s_per_epoch": first + (len(sampler) - 1) * per_step + val_s,
                   "cpu_s_per_epoch": cpu_first + (len(sampler) - 1) * cpu_per_step + val_cpu, "first_step_s": first,
                   "steps_per_epoch": len(sampler), "s_per_step": per_step, "val_s": val_s}


def run_case(case: str, method: str, epochs: int, threads: int, steps: int = 0) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", case, method, "--epochs", str(epochs), "--threads", str(threads),
           "--steps", str(steps)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"case": case, "method": method, "error": (res.stderr.strip().splitlines() or ["?"])[-1],
                "returncode": res.returncode}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(v: object, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


COLUMNS = [("case", "case", 0), ("method", "method", 0), ("T", "tasks", 0), ("rows", "rows", 0),
           ("largest", "largest", 0), ("T x largest", "padded_rows", 0), ("raw MB", "raw_mb", 1),
           ("model MB", "model_mb", 2), ("base MB", "base_mb", 0), ("data MB", "data_mb", 0),
           ("peak MB", "peak_mb", 0), ("train peak MB", "train_peak_mb", 0), ("train Δ MB", "train_delta_mb", 0),
           ("epochs run", "epochs", 0), ("s/epoch", "s_per_epoch", 2), ("CPU s/epoch", "cpu_s_per_epoch", 2)]


def table(rows: list[dict], markdown: bool) -> str:
    head = [c[0] for c in COLUMNS]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["case"], r["method"], f"failed: {r['error']}"] + [""] * (len(head) - 3))
        else:
            body.append([fmt(r.get(k), dg) for _, k, dg in COLUMNS])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body])


# ---------------------------------------------------------------------- a Parquet folder under a memory cap
def write_parquet_folder(folder: Path, rows: int, tasks: int, files: int = 8, seed: int = 0) -> int:
    """``rows`` rows of ``tasks`` balanced regression tasks (d = 100 float64 features, a ``task`` and a ``y``
    column) shuffled over ``files`` Parquet files in ``folder``; returns the folder's size in bytes. Written file
    by file, so the writer never holds more than one file's rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w = rng.standard_normal((tasks, D)) * 0.3 + rng.standard_normal(D)
    per = -(-rows // files)
    for i in range(files):
        n = min(per, rows - i * per)
        t = rng.integers(0, tasks, n)
        X = rng.standard_normal((n, D))
        y = np.einsum("nd,nd->n", X, w[t]) + 0.3 * rng.standard_normal(n)
        cols = {"task": pa.array([f"t{k}" for k in t]), "y": pa.array(y)}
        cols.update({f"f{j}": pa.array(X[:, j]) for j in range(D)})
        pq.write_table(pa.table(cols), folder / f"part-{i:03d}.parquet", row_group_size=16384)
        del X, cols
    return sum(f.stat().st_size for f in folder.glob("*.parquet"))


#: What `run_capped` polls: /proc/PID/status, the highest VmData (what RLIMIT_DATA caps), RssAnon and RssFile.
STATUS_KEYS = {"VmData": "vmdata_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb", "VmHWM": "peak_rss_mb"}
#: What `run_ranks` polls: /proc/PID/smaps_rollup, whose Pss splits shared pages between their sharers, so the sum
#: over processes is what they cost the machine.
ROLLUP_KEYS = {"Pss": "pss_mb", "Pss_File": "pss_file_mb", "Pss_Anon": "pss_anon_mb", "Rss": "rss_mb"}


def _watch(pids, source: str, keys: dict, every: float, peaks: dict, stop) -> None:
    """Until ``stop``: every ``every`` s, sum ``keys`` (kB lines of /proc/PID/``source``) over the processes
    ``pids()`` and keep each sum's highest value (MB) in ``peaks``."""
    while not stop.is_set():
        total: dict = {}
        for pid in pids():
            try:
                for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                    k = line.split(":")[0]
                    if k in keys:
                        total[keys[k]] = total.get(keys[k], 0.0) + int(line.split()[1]) / 1024
            except OSError:
                continue
        for k, v in total.items():
            peaks[k] = max(peaks.get(k, 0.0), v)
        stop.wait(every)


def _run_watched(cmd: list[str], env: dict, watch: tuple, **popen) -> tuple:
    """Run ``cmd`` to its end while `_watch` polls it (``watch``: pids-of-the-process function, source, keys,
    interval); returns the process, its stdout and stderr, the peaks and the wall seconds."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    pids, source, keys, every = watch
    peaks: dict = {}
    stop = threading.Event()
    th = threading.Thread(target=_watch, args=(lambda: pids(proc.pid), source, keys, every, peaks, stop),
                          daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    stop.set()
    th.join()
    return proc, stdout, stderr, peaks, time.perf_counter() - t0


def run_capped(folder: Path, cap_mb: int, stream: bool, out: Path, threads: int, epochs: int) -> dict:
    """`mtlkit bench --data FOLDER` (hard-share, 1 split, no selection) in a subprocess whose private writable
    memory (heap, anonymous maps: RLIMIT_DATA, as `prlimit --data`) is capped at ``cap_mb``; ``stream=False``
    reads the folder into memory instead (the control: it should not fit)."""
    code = ("import sys; from mtlkit.cli import main; sys.exit(main(sys.argv[1:]))" if stream else
            "import sys, mtlkit.data.multitask as m; f = m.MultiTaskData.from_table; "
            "m.MultiTaskData.from_table = classmethod(lambda c, *a, **k: f.__func__(c, *a, stream=False, **k)); "
            "from mtlkit.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "bench", "--data", str(folder), "--task", "task", "--target", "y",
           "--methods", "hard-share", "--splits", "1", "--no-select", "--set", f"epochs={epochs}", "--out", str(out),
           "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ARROW_DEFAULT_MEMORY_POOL": "system",
           "MTLKIT_SPILL_DIR": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    cap = cap_mb * 2**20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    proc, stdout, stderr, peaks, secs = _run_watched(cmd, env, (lambda pid: [pid], "status", STATUS_KEYS, 0.1),
                                                     preexec_fn=limit)
    tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["?"])[-1]
    return {"read": "streamed" if stream else "in memory", "cap_mb": cap_mb, "returncode": proc.returncode,
            "seconds": secs, **{k: round(v) for k, v in peaks.items()}, "last_line": tail[:200]}


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's ranks)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def run_ranks(folder: Path, ranks: int, shared: bool, out: Path, threads: int, epochs: int) -> dict:
    """`mtlkit train hard-share --data FOLDER` alone (``ranks`` = 1) or under ``torchrun --nproc_per_node=ranks
    ... --distributed``, the ranks reading the folder together (``shared``) or each all of it (what every rank did
    before they shared the reading); wall seconds and the peak sums over the ranks of `ROLLUP_KEYS`."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / "train.py"
    patch = "" if shared else (
        "import mtlkit.data.multitask as m; f = m.MultiTaskData.from_table\n"
        "m.MultiTaskData.from_table = classmethod(lambda c, *a, **k: f.__func__(c, *a, **{**k, 'distributed': "
        "False}))\n")
    script.write_text(patch + "import os, sys\nfrom mtlkit.cli import main\ncode = main(sys.argv[1:])\n"
                      "sys.stdout.flush(); sys.stderr.flush(); os._exit(code)\n")
    args = ["train", "hard-share", "--data", str(folder), "--task", "task", "--target", "y", "--device", "cpu",
            "--set", f"epochs={epochs}", "--quiet"]
    launch = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc_per_node={ranks}"]
    cmd = [*launch, str(script), *args, *([] if ranks == 1 else ["--distributed"])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ARROW_DEFAULT_MEMORY_POOL": "system",
           "MTLKIT_SPILL_DIR": str(out)}
    pids = (lambda pid: [pid]) if ranks == 1 else _children  # the ranks, not torchrun's agent
    proc, stdout, stderr, peaks, secs = _run_watched(cmd, env, (pids, "smaps_rollup", ROLLUP_KEYS, 0.2))
    last = [ln for ln in stdout.splitlines() if ln.startswith("mean test")] or stderr.strip().splitlines()[-1:] or ["?"]
    return {"ranks": ranks, "read": "shared" if shared or ranks == 1 else "each rank all",
            "returncode": proc.returncode, "seconds": round(secs, 1),
            **{k: round(v) for k, v in peaks.items()}, "last_line": last[-1][:200]}


def parquet_main(args: argparse.Namespace) -> None:
    folder = Path(args.parquet)
    if not folder.exists() or not any(folder.glob("*.parquet")):
        t0 = time.perf_counter()
        size = write_parquet_folder(folder, args.rows, args.tasks)
        print(f"wrote {folder}: {args.rows:,} rows, {args.tasks} tasks, {size / 2**20:,.0f} MB "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    size = sum(f.stat().st_size for f in folder.glob("*.parquet"))
    raw = args.rows * D * 8 / 2**20
    rows = []
    if args.ranks > 1:
        for r, shared in ((1, True), (args.ranks, True), (args.ranks, False)):
            row = run_ranks(folder, r, shared, Path(args.out) / f"ranks-{r}-{shared}", args.threads, args.epochs)
            row.update(folder_mb=round(size / 2**20), features_mb=round(raw))
            rows.append(row)
            print(json.dumps(row), flush=True)
    for stream in () if args.ranks > 1 else (True, False) if args.control else (True,):
        r = run_capped(folder, args.cap_mb, stream, Path(args.out) / ("stream" if stream else "memory"), args.threads,
                       args.epochs)
        r.update(folder_mb=round(size / 2**20), features_mb=round(raw))
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0,
                    help="instead of whole epochs, time this many steps of one epoch + one validation pass and "
                         "extrapolate the epoch (large cases)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--parquet", metavar="FOLDER", help="instead: `mtlkit bench --data FOLDER` under a memory cap "
                    "(the folder is written first when it holds no .parquet files)")
    ap.add_argument("--rows", type=int, default=1_200_000, help="--parquet: rows to write (d = 100 float64)")
    ap.add_argument("--tasks", type=int, default=20, help="--parquet: tasks to write")
    ap.add_argument("--cap-mb", type=int, default=800, help="--parquet: RLIMIT_DATA of the bench process (MB)")
    ap.add_argument("--control", action="store_true", help="--parquet: also read the folder into memory (should fail)")
    ap.add_argument("--out", default="/tmp/mtlkit-scale-parquet", help="--parquet: bench results and spill files")
    ap.add_argument("--ranks", type=int, default=1, help="--parquet: instead of the cap, `mtlkit train --data FOLDER` "
                    "alone and under torchrun with this many ranks, reading together and each alone")
    args = ap.parse_args()
    if args.parquet:
        parquet_main(args)
        return
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.epochs, args.threads, args.steps)))
        return
    import torch

    rows = []
    for case in args.cases.split(","):
        for method in args.methods.split(","):
            r = run_case(case, method, args.epochs, args.threads, args.steps)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    print(table(rows, args.markdown))
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
          f"{args.epochs} epochs; load average at the end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
