"""Data larger than memory (issue 18): a Parquet folder read batch by batch into a memory-mapped feature file gives
the same data, splits, device stores, batches and training runs as the same folder read into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import mtlkit  # noqa: E402
from mtlkit import MultiTaskData  # noqa: E402
from mtlkit.data import Normalizer, TaskBatchSampler, rows, streaming  # noqa: E402
from mtlkit.errors import DataError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(tmp_path: Path, kind: str = "regression", files: int = 3, seed: int = 0) -> Path:
    """Five tasks of unequal sizes, rows shuffled across ``files`` Parquet files; an int, a bool and float32
    features besides float64 ones."""
    rng = np.random.default_rng(seed)
    sizes = [90, 14, 45, 7, 30]
    task = np.repeat([f"shop{i}" for i in range(len(sizes))], sizes)
    n = len(task)
    f = rng.standard_normal((n, 3)) * [1.0, 50.0, 1e-3] + [0.0, 1e3, 0.0]
    ints = rng.integers(0, 9, n)
    flag = rng.random(n) < 0.3
    y = f @ [1.0, 0.01, 300.0] + ints + rng.standard_normal(n)
    if kind == "binary":
        y = np.where(y > np.median(y), 2, 1)  # labels {1, 2}
    perm = rng.permutation(n)
    table = pa.table({"f0": f[perm, 0], "shop": task[perm], "f1": f[perm, 1].astype(np.float32), "cnt": ints[perm],
                      "flag": flag[perm], "f2": f[perm, 2], "target": y[perm]})
    d = tmp_path / "data"
    d.mkdir()
    cuts = np.linspace(0, n, files + 1).astype(int)
    for i in range(files):
        pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), d / f"part-{i}.parquet")
    return d


def _both(folder: Path, tmp_path: Path, **kw) -> tuple[MultiTaskData, MultiTaskData]:
    spill = tmp_path / "spill"
    spill.mkdir(exist_ok=True)
    streamed = MultiTaskData.from_table(folder, task="shop", target="target", spill_dir=spill, **kw)
    memory = MultiTaskData.from_table(folder, task="shop", target="target", stream=False, **kw)
    return streamed, memory


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_streamed_folder_equals_the_in_memory_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    kind: str) -> None:
    monkeypatch.setattr(streaming, "BATCH_ROWS", 16)  # many record batches per file
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 40)  # many blocks per task
    s, m = _both(_folder(tmp_path, kind), tmp_path)
    assert s.spill_dir is not None and m.spill_dir is None
    assert isinstance(s.feature_rows()[0].base, np.memmap)
    assert s.spec == m.spec and s.feature_names == m.feature_names and s.name == m.name == "data"
    assert s.notes == m.notes and s.checksum() == m.checksum()
    for t in range(s.n_tasks):
        xs, ys = s.task_arrays(t)
        xm, ym = m.task_arrays(t)
        assert np.array_equal(xs, xm) and np.array_equal(ys, ym)
    ss, sm = s.split(seed=4), m.split(seed=4)
    for part in ("train", "val", "test"):
        for a, b in zip(ss.indices[part], sm.indices[part], strict=True):
            assert np.array_equal(a, b)
    ns, nm = Normalizer.fit(ss.train), Normalizer.fit(sm.train)
    assert np.array_equal(ns.x_mean, nm.x_mean) and np.array_equal(ns.x_std, nm.x_std)
    assert (ns.y_mean, ns.y_std) == (nm.y_mean, nm.y_std)
    spilled: list[tuple[int, ...]] = []
    real = streaming.spill_array
    monkeypatch.setattr(streaming, "spill_array", lambda shape, *a: spilled.append(shape) or real(shape, *a))
    ds, dm = ns.apply(ss.train).tensors(), nm.apply(sm.train).tensors()
    assert spilled == [tuple(ds.x_rows.shape)]  # the streamed store is a memory-mapped file
    assert torch.equal(ds.x_rows, dm.x_rows) and torch.equal(ds.y_rows, dm.y_rows)
    for a, b in zip(TaskBatchSampler(ds, 8, seed=2), TaskBatchSampler(dm, 8, seed=2), strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    ra = mtlkit.train("hard-share", ss, hparams={"epochs": 3}, seed=0, progress=False)
    rb = mtlkit.train("hard-share", sm, hparams={"epochs": 3}, seed=0, progress=False)
    assert ra.history is not None and rb.history is not None
    assert np.array_equal(np.asarray(ra.history.train_loss), np.asarray(rb.history.train_loss))
    assert np.array_equal(np.asarray(ra.history.val_loss), np.asarray(rb.history.val_loss))
    ea, eb = ra.evaluate("test"), rb.evaluate("test")
    for k in ea.per_task:
        assert np.array_equal(ea.per_task[k], eb.per_task[k], equal_nan=True), k
    assert np.array_equal(ra.predict(xm[:5], task=0), rb.predict(xm[:5], task=0))


def test_a_single_parquet_file_streams_too(tmp_path: Path) -> None:
    folder = _folder(tmp_path, files=1)
    f = folder / "part-0.parquet"
    s = MultiTaskData.from_table(f, task="shop", target="target", stream=True, spill_dir=tmp_path)
    m = MultiTaskData.from_table(f, task="shop", target="target")
    assert s.checksum() == m.checksum() and s.task_names == m.task_names


def test_streaming_errors_name_the_column_and_the_row(tmp_path: Path) -> None:
    folder = _folder(tmp_path, files=2)
    t = pq.read_table(folder / "part-1.parquet")
    f0 = t.column("f0").to_numpy().copy()
    f0[3] = np.inf
    pq.write_table(t.set_column(t.schema.get_field_index("f0"), "f0", pa.array(f0)), folder / "part-1.parquet")
    first = pq.read_metadata(folder / "part-0.parquet").num_rows
    with pytest.raises(DataError, match=f"'f0' of data holds inf in data row {first + 4}"):
        MultiTaskData.from_table(folder, task="shop", target="target", spill_dir=tmp_path)
    with pytest.raises(DataError, match="categorical"):
        MultiTaskData.from_table(folder, task="shop", target="target", categorical=True, spill_dir=tmp_path)
    with pytest.raises(DataError, match="no column"):
        MultiTaskData.from_table(folder, task="nope", target="target", spill_dir=tmp_path)
    words = tmp_path / "words"
    words.mkdir()
    pq.write_table(pa.table({"shop": ["a", "b"], "w": ["x", "y"], "target": [1.0, 2.0]}), words / "p.parquet")
    with pytest.raises(DataError, match="'w' of words is not numeric"):
        MultiTaskData.from_table(words, task="shop", target="target", spill_dir=tmp_path)
    nulls = tmp_path / "nulls"
    nulls.mkdir()
    pq.write_table(pa.table({"shop": ["a", "b", "a"], "f": [1.0, None, 2.0], "target": [1.0, 2.0, 3.0]}),
                   nulls / "p.parquet")
    with pytest.raises(DataError, match="'f' of nulls has a blank cell in data row 2"):
        MultiTaskData.from_table(nulls, task="shop", target="target", spill_dir=tmp_path)


def test_bench_trains_a_parquet_folder_end_to_end(tmp_path: Path) -> None:
    from mtlkit.cli import main

    folder = _folder(tmp_path)
    out = tmp_path / "res"
    code = main(["bench", "--data", str(folder), "--task", "shop", "--target", "target", "--methods", "hard-share",
                 "--splits", "1", "--no-select", "--set", "epochs=2", "--out", str(out), "--quiet"])
    assert code == 0
    assert "hard-share" in (out / "bench-data.md").read_text()  # named after the folder
