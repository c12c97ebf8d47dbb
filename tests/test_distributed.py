"""Data-parallel training under torchrun (gloo, 2 CPU processes) matches one process with the same
global batch, for heterogeneous and shared-input (missing-label) data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtlkit.data.sampler import TaskBatchSampler
from mtlkit.data.tensors import DeviceData

WORKER = Path(__file__).with_name("ddp_worker.py")
# Stated tolerance: the two runs differ only in floating-point summation order (per-rank partial sums,
# then gloo's all-reduce), amplified a little by six epochs of Adam.
ATOL = 1e-4


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]


@pytest.mark.parametrize("layout", ["heterogeneous", "shared"])
def test_torchrun_two_processes_match_one(layout: str, tmp_path: Path) -> None:
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    _run([sys.executable, str(WORKER), layout, one])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
          layout, two])
    a, b = load_file(one + ".safetensors"), load_file(two + ".safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL, rtol=0), (k, (a[k] - b[k]).abs().max())
    ma, mb = json.loads(Path(one + ".json").read_text()), json.loads(Path(two + ".json").read_text())
    np.testing.assert_allclose(ma["rmse"], mb["rmse"], atol=1e-3)
    np.testing.assert_allclose(ma["train_loss"], mb["train_loss"], rtol=1e-4, atol=1e-5)  # global-batch losses


def _toy(shared: bool) -> DeviceData:
    if shared:
        mask = torch.rand(3, 20, generator=torch.Generator().manual_seed(0)) > 0.3
        return DeviceData(x=torch.arange(20.0)[:, None], y=torch.zeros(3, 20), mask=mask, shared=True,
                          counts=mask.sum(1).numpy())
    counts = np.array([7, 12, 5])
    x = torch.zeros(3, 12, 1)
    mask = torch.zeros(3, 12, dtype=torch.bool)
    for t, n in enumerate(counts):
        x[t, :n, 0] = torch.arange(n) + 100 * t
        mask[t, :n] = True
    return DeviceData(x=x, y=torch.zeros(3, 12), mask=mask, shared=False, counts=counts)


@pytest.mark.parametrize("shared", [False, True])
def test_ranks_rows_together_are_the_single_process_batch(shared: bool) -> None:
    data = _toy(shared)
    single = list(TaskBatchSampler(data, 8, seed=3).epoch())
    ranks = [list(TaskBatchSampler(data, 8, seed=3, rank=r, world_size=2).epoch()) for r in range(2)]
    assert all(len(r) == len(single) for r in ranks)
    for s, whole in enumerate(single):
        axis = 0 if shared else 1
        parts = torch.cat([ranks[0][s].x, ranks[1][s].x], dim=axis)
        key = (lambda v: torch.sort(v.flatten()).values) if shared else (lambda v: torch.sort(v[..., 0], dim=1).values)
        assert torch.equal(key(parts), key(whole.x))


def test_batch_smaller_than_world_is_an_error() -> None:
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        TaskBatchSampler(_toy(False), 2, rank=0, world_size=4)


def test_torchrun_ranks_read_a_parquet_folder_in_shares_and_train_as_one(tmp_path: Path) -> None:
    """`mtlkit train --distributed --data FOLDER` under torchrun: each rank reads the features of half the row
    groups (the two ranks of this machine share one file), and the trained model is the single process's (the
    global-batch equivalence holds unchanged)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    sizes = [60, 25, 40, 15]
    task = np.repeat([f"t{i}" for i in range(4)], sizes)
    X = rng.standard_normal((len(task), 5))
    y = X @ rng.standard_normal(5) + np.repeat(rng.standard_normal(4), sizes) + 0.1 * rng.standard_normal(len(task))
    perm = rng.permutation(len(task))
    folder = tmp_path / "table"
    folder.mkdir()
    table = pa.table({"task": task[perm], **{f"x{j}": X[perm, j] for j in range(5)}, "y": y[perm]})
    for i, (a, b) in enumerate(((0, 70), (70, 140))):
        pq.write_table(table.slice(a, b - a), folder / f"part-{i}.parquet", row_group_size=20)
    worker = str(Path(__file__).with_name("ddp_stream_worker.py"))
    args = ["train", "hard-share", "--data", str(folder), "--task", "task", "--target", "y", "--device", "cpu",
            "--set", "epochs=4", "--set", "batch_size=16", "--set", "patience=0", "--quiet"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    _run([sys.executable, worker, one, *args, "--save", one])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker, two, *args,
          "--save", two, "--distributed"])
    alone = json.loads(Path(one + "-alone.json").read_text())
    ranks = [json.loads(Path(f"{two}-{r}.json").read_text()) for r in range(2)]
    assert alone["code"] == 0 and all(r["code"] == 0 for r in ranks)
    groups = sorted(o for o, _ in alone["read"])
    assert len(groups) == 8 and all(f for _, f in alone["read"])
    own = [{o for o, f in r["read"] if f} for r in ranks]
    assert all(sorted(o for o, _ in r["read"]) == groups for r in ranks)  # task + target of every row group
    assert own[0] and own[1] and not own[0] & own[1] and own[0] | own[1] == set(groups)
    a, b = load_file(one + "/model.safetensors"), load_file(two + "/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL, rtol=0), (k, (a[k] - b[k]).abs().max())
