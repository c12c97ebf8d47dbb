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
    # on the CPU the streamed store reads the mapped feature file itself: no second (standardised) file
    assert spilled == [] and ds.from_source and isinstance(ds._x.base, np.memmap)
    assert torch.equal(ds.x_rows, dm.x_rows) and torch.equal(ds.y_rows, dm.y_rows)
    staged = ns.apply(ss.train).tensors("meta")  # another device: staged through a memory-mapped file
    assert spilled == [tuple(staged.x_rows.shape)]
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
    with pytest.raises(DataError, match=r"categorical column\(s\) \['nope'\] are not feature columns of data"):
        MultiTaskData.from_table(folder, task="shop", target="target", categorical=["nope"], spill_dir=tmp_path)
    with pytest.raises(DataError, match="no column"):
        MultiTaskData.from_table(folder, task="nope", target="target", spill_dir=tmp_path)
    words = tmp_path / "words"
    words.mkdir()
    pq.write_table(pa.table({"shop": ["a", "b"], "w": ["x", "y"], "target": [1.0, 2.0]}), words / "p.parquet")
    with pytest.raises(DataError, match="'w' of words is not numeric .*pass categorical=True"):
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


class _ThreadRanks:
    """``n`` ranks as threads of this process, on the machines ``hosts`` (one per rank), with a barrier-based gather:
    the collective `mtlkit.data.ranks.Ranks` needs, without torchrun."""

    def __init__(self, hosts: list[str]) -> None:
        import threading

        self.hosts = tuple(hosts)
        self.slots: list[object] = [None] * len(hosts)
        self.barrier = threading.Barrier(len(hosts), timeout=60)

    def ranks(self, r: int):
        from mtlkit.data.ranks import Ranks

        def gather(obj: object) -> list[object]:
            self.slots[r] = obj
            self.barrier.wait()
            out = list(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before all have read it
            return out

        return Ranks(rank=r, hosts=self.hosts, gather=gather)

    def run(self, fn):
        """``fn(ranks)`` on every rank at once: each rank's result, or the exception it raised."""
        from concurrent.futures import ThreadPoolExecutor

        def one(r: int):
            try:
                return fn(self.ranks(r))
            except Exception as e:  # noqa: BLE001 - compared by the test
                return e

        with ThreadPoolExecutor(len(self.hosts)) as pool:
            return list(pool.map(one, range(len(self.hosts))))


def _row_groups(folder: Path, rows_per_group: int = 20) -> Path:
    """The same folder rewritten with small row groups (4 per file of 62 rows), so ranks have several each."""
    for f in sorted(folder.iterdir()):
        pq.write_table(pq.read_table(f), f, row_group_size=rows_per_group)
    return folder


def test_ranks_read_their_share_of_row_groups_into_one_file_per_machine(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Four ranks on two machines: every rank reads the task and target columns of all rows but the features only
    of its machine's share of the row groups (the machine's two ranks split them, about half the rows each), and
    ends with the data of a single process's read; the shared files leave no name behind."""
    import threading

    folder = _row_groups(_folder(tmp_path))
    spill = tmp_path / "spill"
    spill.mkdir()
    reads: list[tuple[str, int, bool]] = []
    real = streaming._read_row_group

    def spy(group, columns, o, *a):
        reads.append((threading.current_thread().name, o, len(columns) > 2))
        return real(group, columns, o, *a)

    monkeypatch.setattr(streaming, "_read_row_group", spy)
    single = MultiTaskData.from_table(folder, task="shop", target="target", spill_dir=spill)
    sizes = {o: n for o, n in zip(sorted(o for _, o, _ in reads), [20, 20, 20, 2] * 3, strict=True)}
    assert len(reads) == 12 and all(f for _, _, f in reads)
    reads.clear()
    group = _ThreadRanks(["a", "a", "b", "b"])
    names: dict[str, int] = {}

    def read(ranks):
        names[threading.current_thread().name] = ranks.rank
        return MultiTaskData.from_table(folder, task="shop", target="target", spill_dir=spill, distributed=ranks)

    got = group.run(read)
    assert all(isinstance(d, MultiTaskData) for d in got), got
    for d in got:
        assert d.spec == single.spec and d.checksum() == single.checksum()
        for t in range(d.n_tasks):
            assert np.array_equal(d.task_arrays(t)[0], single.task_arrays(t)[0])
    files = [d.feature_rows()[0].base.filename for d in got]  # each rank has all rows, having written its half
    assert files[0] == files[1] != files[2] == files[3]  # of one file per machine
    by_rank: dict[int, list[tuple[int, bool]]] = {}
    for thread, o, feats in reads:
        by_rank.setdefault(names[thread], []).append((o, feats))
    assert all(sorted(o for o, _ in v) == sorted(sizes) for v in by_rank.values())  # task + target: every group
    own = {r: {o for o, f in v if f} for r, v in by_rank.items()}
    for a, b in ((0, 1), (2, 3)):  # a machine's two ranks split the row groups
        assert own[a] and own[b] and not own[a] & own[b] and own[a] | own[b] == set(sizes)
    assert own[0] == own[2] and own[1] == own[3]  # the same split on each machine
    rows = {r: sum(sizes[o] for o in own[r]) for r in own}
    assert all(abs(n - 93) <= 20 for n in rows.values()), rows  # about half the 186 rows each
    assert list(spill.iterdir()) == []  # the shared files' names were unlinked once every rank had mapped them


def test_a_failure_on_one_rank_is_raised_on_every_rank(tmp_path: Path) -> None:
    """An infinite feature in a row group only rank 1 reads the features of: all ranks raise the error one
    process raises (no rank is left waiting), and a spill folder the ranks cannot share is named."""
    folder = _row_groups(_folder(tmp_path, files=1))
    f = folder / "part-0.parquet"
    t = pq.read_table(f)
    f0 = t.column("f0").to_numpy().copy()
    f0[150] = -np.inf  # row group 7 of 10: rank 1's half
    pq.write_table(t.set_column(t.schema.get_field_index("f0"), "f0", pa.array(f0)), f, row_group_size=20)
    with pytest.raises(DataError) as single:
        MultiTaskData.from_table(folder, task="shop", target="target", spill_dir=tmp_path)
    got = _ThreadRanks(["a", "a"]).run(lambda ranks: MultiTaskData.from_table(
        folder, task="shop", target="target", spill_dir=tmp_path, distributed=ranks))
    assert all(isinstance(e, DataError) and str(e) == str(single.value) for e in got), got
    assert "data row 151" in str(single.value)
    # the folder missing on one machine only (rank 1 is given another path): an error there, not a wait elsewhere
    got = _ThreadRanks(["a", "b"]).run(lambda ranks: MultiTaskData.from_table(
        folder if ranks.rank == 0 else tmp_path / "absent", task="shop", target="target", spill_dir=tmp_path,
        distributed=ranks))
    assert all(isinstance(e, DataError) and str(e).endswith("absent (on rank 1)") for e in got), got


def test_a_spill_folder_the_ranks_do_not_share_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a rank cannot open the file its machine's first rank made (e.g. a spill folder local to each
    container), every rank raises one error naming the folder setting, and no file is left behind."""
    import threading

    from mtlkit.data import ranks as ranks_mod

    real = np.memmap
    rank_of: dict[int, int] = {}

    def memmap(*a, **kw):
        if rank_of[threading.get_ident()] == 1:
            raise FileNotFoundError(2, "No such file or directory")
        return real(*a, **kw)

    def make(r):
        rank_of[threading.get_ident()] = r.rank
        return ranks_mod.shared_spill_array((10, 3), np.float64, str(spill), r)

    monkeypatch.setattr(ranks_mod.np, "memmap", memmap)
    spill = tmp_path / "spill"
    spill.mkdir()
    got = _ThreadRanks(["a", "a"]).run(make)
    assert all(isinstance(e, DataError) for e in got), got
    assert len({str(e) for e in got}) == 1 and "MTLKIT_SPILL_DIR" in str(got[0]) and "rank 1" in str(got[0])
    assert list(spill.iterdir()) == []


def _with_categories(tmp_path: Path, blank: bool = False) -> Path:
    """The five-task folder plus a text column ``city`` (values in no sorted order, one only in the last file) and
    an integer ``grade`` to encode as well; ``blank``: two empty ``city`` cells."""
    folder = _row_groups(_folder(tmp_path))
    rng = np.random.default_rng(3)
    for i, f in enumerate(sorted(folder.iterdir())):
        t = pq.read_table(f)
        city = rng.choice(["Zug", "Bern", "aarau", "Genève"] + (["Chur"] if i == 2 else []), t.num_rows).astype(object)
        if blank and i == 1:
            city[[4, 9]] = ["", None]
        grade = rng.integers(1, 4, t.num_rows)
        t = t.append_column("city", pa.array(list(city), pa.string())).append_column("grade", pa.array(grade))
        pq.write_table(t, f, row_group_size=20)
    return folder


@pytest.mark.parametrize("categorical", [True, ["grade", "city"]])
def test_streamed_categorical_columns_are_one_hot_as_in_memory(tmp_path: Path, categorical) -> None:
    """Categorical columns stream: one pass collects each column's categories, the next writes the one-hot columns;
    the features (names, order, values) are those of pandas' ``get_dummies`` on the table read into memory, alone
    and with two ranks reading together."""
    pytest.importorskip("pandas")
    folder = _with_categories(tmp_path)
    s, m = _both(folder, tmp_path, categorical=categorical)
    assert s.feature_names == m.feature_names and s.checksum() == m.checksum()
    assert "city_Chur" in s.feature_names and s.feature_names.index("city_Bern") < s.feature_names.index("city_aarau")
    assert ("grade_1" in s.feature_names) == (categorical is not True)
    for t in range(s.n_tasks):
        assert np.array_equal(s.task_arrays(t)[0], m.task_arrays(t)[0])
    got = _ThreadRanks(["a", "a"]).run(lambda ranks: MultiTaskData.from_table(
        folder, task="shop", target="target", spill_dir=tmp_path, categorical=categorical, distributed=ranks))
    assert all(isinstance(d, MultiTaskData) and d.checksum() == m.checksum() for d in got), got


def test_a_blank_categorical_cell_is_named(tmp_path: Path) -> None:
    folder = _with_categories(tmp_path, blank=True)
    first = pq.read_metadata(folder / "part-0.parquet").num_rows
    with pytest.raises(DataError, match=f"categorical column 'city' of data has 2 blank cell\\(s\\); the first is in "
                                        f"data row {first + 5}$"):
        MultiTaskData.from_table(folder, task="shop", target="target", categorical=True, spill_dir=tmp_path)
    nan = tmp_path / "nan"
    nan.mkdir()
    pq.write_table(pa.table({"shop": ["a", "b", "a"], "f": [1.0, 2.0, 3.0], "score": [0.5, np.nan, 0.5],
                             "target": [1.0, 2.0, 3.0]}), nan / "p.parquet")
    with pytest.raises(DataError, match="categorical column 'score' of nan has 1 blank cell\\(s\\); the first is in "
                                        "data row 2"):  # NaN is no category (pandas: isna)
        MultiTaskData.from_table(nan, task="shop", target="target", categorical=["score"], spill_dir=tmp_path)
