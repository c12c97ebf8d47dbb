"""Ragged storage (issue 18): `DeviceData` holds the rows without padding, and every batch, validation loss and
evaluation is bitwise what the padded `[T, max_n, ...]` implementation gave.

The padded reference lives here: `_padded` lays a `MultiTaskData` out as the old `to_device_data` did,
`PaddedSampler` is the old sampler (the same RNG draws, gathering from the padded arrays), `_padded_loss` the
old `mean_task_loss`. Every registered SGD-trained method takes a few training steps on both paths from the
same initial weights; losses and parameters must be equal bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data import TaskBatchSampler
from mtlkit.data.tensors import EVAL_ELEMENTS, Batch, DeviceData, to_device_data
from mtlkit.methods import registry
from mtlkit.methods.base import as_output
from mtlkit.train import TaskLoss
from mtlkit.train.config import merge_hparams, method_defaults, method_params
from mtlkit.train.metrics import compute_metrics
from mtlkit.train.trainer import make_optimizer, mean_task_loss, training_step

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- the padded reference (the old code)
def _padded(data: MultiTaskData, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """``x`` [T, max_n, ...], ``y``, ``mask``, ``counts`` exactly as the padded `to_device_data` built them."""
    host = np.float64 if dtype == torch.float64 else np.float32
    T = data.n_tasks
    tail = (data.spec.n_outputs,) if data.kind == "distribution" else ()
    if data.xs is not None:
        counts = np.array([len(X) for X in data.xs])
        N = int(counts.max())
        x = np.zeros((T, N, *data.feature_shape), dtype=host)
        y = np.zeros((T, N, *tail), dtype=host)
        mask = np.zeros((T, N), dtype=bool)
        for t, (X, yt) in enumerate(zip(data.xs, data.ys, strict=True)):
            x[t, :len(X)], y[t, :len(X)], mask[t, :len(X)] = X, yt, True
    else:
        x = data.x.astype(host)
        yy = np.moveaxis(data.y, 1, 0)
        mask = ~np.isnan(yy) if yy.ndim == 2 else ~np.isnan(yy).any(-1)
        y = np.nan_to_num(yy, nan=0.0).astype(host)
        counts = mask.sum(1)
    return torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype), torch.as_tensor(mask), counts


class PaddedSampler:
    """The sampler before ragged storage: the same draws, batches indexed out of the padded arrays."""

    def __init__(self, data: MultiTaskData, batch_size: int, seed: int = 0) -> None:
        self.x, self.y, self.mask, self.counts = _padded(data)
        self.shared = data.xs is None
        self.rng = np.random.default_rng(seed)
        n = self.x.shape[0] if self.shared else int(self.counts.max())
        self.batch_size = min(batch_size, n)
        self.steps = -(-n // self.batch_size)

    def __iter__(self):
        B, S = self.batch_size, self.steps
        if self.shared:
            perm = torch.as_tensor(self.rng.permutation(self.x.shape[0]))
            for s in range(S):
                rows = perm[s * B:(s + 1) * B]
                yield Batch(x=self.x[rows], y=self.y[:, rows], mask=self.mask[:, rows], shared=True)
            return
        out = np.empty((len(self.counts), B * S), dtype=np.int64)
        for t, n in enumerate(self.counts):
            reps = -(-B * S // int(n))
            out[t] = np.concatenate([self.rng.permutation(int(n)) for _ in range(reps)])[:B * S]
        idx = torch.as_tensor(out.reshape(len(self.counts), S, B).transpose(1, 0, 2))
        t_ix = torch.arange(len(self.counts))[:, None]
        for s in range(S):
            yield Batch(x=self.x[t_ix, idx[s]], y=self.y[t_ix, idx[s]], mask=self.mask[t_ix, idx[s]], shared=False)


@torch.no_grad()
def _padded_loss(model, loss: TaskLoss, data: MultiTaskData, chunk: int = 65536) -> torch.Tensor:
    x, y, mask, _ = _padded(data)
    total = torch.zeros(data.n_tasks)
    for s in range(0, mask.shape[1], chunk):
        sl = slice(s, s + chunk)
        pred = as_output(model(x[sl] if data.xs is None else x[:, sl])).pred
        total += loss.per_row(pred, y[:, sl], mask[:, sl]).sum(1)
    return total / mask.sum(1).clamp_min(1)


# ---------------------------------------------------------------------- data
def _hetero(sizes, kind="regression", d=5, seed=0) -> MultiTaskData:
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)) for n in sizes]
    if kind == "regression":
        ys = [X @ rng.normal(size=d) + 0.1 * rng.normal(size=len(X)) for X in Xs]
    elif kind == "binary":
        ys = [(X[:, 0] + 0.3 * rng.normal(size=len(X)) > 0).astype(float) for X in Xs]
    elif kind == "multiclass":
        ys = [np.arange(len(X)) % 3 for X in Xs]
    else:
        ys = [rng.dirichlet(np.ones(3), size=len(X)) for X in Xs]
    return MultiTaskData.from_tasks(Xs, ys, kind=kind)


def _shared(N=50, T=4, kind="binary", missing=0.4, d=5, seed=1) -> MultiTaskData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, d))
    if kind == "distribution":
        Y = rng.dirichlet(np.ones(3), size=(N, T))
        Y[rng.random((N, T)) < missing] = np.nan
    else:
        Y = (X @ rng.normal(size=(d, T)) > 0).astype(float)
        Y[rng.random((N, T)) < missing] = np.nan
    Y[:2] = 1.0 / 3 if kind == "distribution" else 1.0  # every task keeps labels
    return MultiTaskData.from_shared(X, Y, kind=kind)


UNBALANCED = (3, 41, 7, 18)
BALANCED = (16, 16, 16)


def _sgd_methods() -> list[str]:
    return [n for n in mtlkit.methods.names() if registry.get(n).fit is None]


def _build(name: str, data: MultiTaskData, hp_over: dict | None = None):
    entry = registry.get(name)
    hp = merge_hparams(method_defaults(entry), {"batch_size": 8, **(hp_over or {})}, name, method_params(entry))
    info = data.info()
    torch.manual_seed(0)
    parts = entry.build(info, hp)
    if entry.pretrain is not None and parts.warm_start is not None:  # an untrained network is enough here
        pre = registry.get(entry.pretrain)
        torch.manual_seed(1)
        parts.warm_start(pre.build(info, merge_hparams(method_defaults(pre), {}, entry.pretrain)).model)
    return parts, hp, TaskLoss(info.spec)


def _steps(parts, hp, loss, batches, n_steps: int) -> list[torch.Tensor]:
    model = parts.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, hp)
    shared = parts.shared_parameters(model) if parts.shared_parameters is not None else params
    out = []
    model.train()
    for i, b in enumerate(batches):
        if i == n_steps:
            break
        T = b.mask.shape[0]
        out.append(training_step(parts, model, loss, b, torch.full((T,), 1.0 / T), opt, shared))
    return out


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _compare(name: str, data: MultiTaskData, n_steps: int = 4, hp: dict | None = None) -> None:
    """A few steps on the ragged store and on the padded reference from the same weights: bitwise equal."""
    ref_parts, hp_, loss = _build(name, data, hp)
    new_parts, _, _ = _build(name, data, hp)
    torch.manual_seed(5)
    ref = _steps(ref_parts, hp_, loss, PaddedSampler(data, hp_["batch_size"], seed=3), n_steps)
    torch.manual_seed(5)
    new = _steps(new_parts, hp_, loss, TaskBatchSampler(data.tensors(), hp_["batch_size"], seed=3), n_steps)
    assert len(ref) == len(new) > 0
    for u, v in zip(ref, new, strict=True):
        assert torch.equal(u, v), (name, u, v)
    _same_state(ref_parts.model, new_parts.model)
    new_parts.model.eval()
    assert torch.equal(mean_task_loss(new_parts.model, loss, data.tensors()),
                       _padded_loss(new_parts.model, loss, data))


# ---------------------------------------------------------------------- every method, both layouts of sizes
@pytest.mark.parametrize("name", _sgd_methods())
@pytest.mark.parametrize("sizes", [UNBALANCED, BALANCED], ids=["unbalanced", "balanced"])
def test_training_steps_are_bitwise_the_padded_ones(name: str, sizes) -> None:
    kind = "regression" if "regression" in registry.get(name).kinds else registry.get(name).kinds[0]
    _compare(name, _hetero(sizes, kind))


@pytest.mark.parametrize("kind", ["binary", "multiclass", "distribution"])
@pytest.mark.parametrize("name", ["hard-share", "cross-stitch", "tomato-el", "pcgrad"])
def test_other_kinds_bitwise(name: str, kind: str) -> None:
    _compare(name, _hetero(UNBALANCED, kind, seed=2))


@pytest.mark.parametrize("name", ["hard-share", "mmoe", "srdml", "mgda-ub"])
def test_shared_input_bitwise(name: str) -> None:
    kind = "regression" if name == "srdml" else "binary"
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    Y = X @ rng.normal(size=(5, 3)) if kind == "regression" else (X @ rng.normal(size=(5, 3)) > 0).astype(float)
    Y[rng.random(Y.shape) < 0.3] = np.nan
    Y[0] = 1.0
    _compare(name, MultiTaskData.from_shared(X, Y, kind=kind))


def test_dropout_uses_the_same_torch_rng() -> None:
    _compare("hard-share", _hetero(UNBALANCED), hp={"dropout": 0.3})


def test_evaluation_is_bitwise_the_padded_one() -> None:
    """`Run.evaluate` (chunked forward, metrics in task blocks) against one padded forward + `compute_metrics`."""
    sizes = (12, 61, 20, 35)
    for data in (_hetero(sizes, "binary", seed=4), _hetero(sizes, "multiclass", seed=5),
                 _hetero(sizes, "regression", seed=6), _hetero(sizes, "distribution", seed=6),
                 _shared(kind="binary")):
        split = data.split(test=0.3, val=0.2, seed=0)
        run = mtlkit.train("hard-share", split, hparams={"epochs": 2, "batch_size": 8}, seed=0, progress=False)
        test = split.test
        x, _, mask, _ = _padded(run.normalizer.apply(test))
        with torch.no_grad():
            run.model.eval()
            pred = run.loss.link(as_output(run.model(x)).pred).float().numpy().astype(np.float64)
        if test.kind == "regression":
            pred = run.normalizer.y_inverse(pred)
        _, y64, m64, _ = _padded(test, dtype=torch.float64)
        ref = compute_metrics(test.kind, y64.numpy(), pred, m64.numpy(), n_classes=run.info.spec.n_classes)
        got = run.evaluate("test").per_task
        assert ref.keys() == got.keys()
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
        # metrics walked one task at a time give the same numbers
        from mtlkit.train import run as run_mod

        small = run_mod.blocked_metrics(test.kind, test, run._cell_predictions(test), run.info.spec.n_classes,
                                        max_cells=1)
        for k in ref:
            np.testing.assert_array_equal(small[k], ref[k], err_msg=k)


def test_small_chunks_give_the_padded_small_chunks() -> None:
    """An explicit chunk width means what it meant: the padded layout's columns ``s:s+chunk``."""
    data = _hetero(UNBALANCED, "binary", seed=7)
    parts, _, loss = _build("cross-stitch", data)  # mixes tasks at each position: padding rows must be zeros
    parts.model.eval()
    dd = data.tensors()
    for chunk in (1, 3, 8, 100):
        assert torch.equal(mean_task_loss(parts.model, loss, dd, chunk), _padded_loss(parts.model, loss, data, chunk))


# ---------------------------------------------------------------------- the store itself
def test_store_is_the_rows_and_views_are_the_padded_layout() -> None:
    data = _hetero(UNBALANCED, "distribution", seed=8)
    dd = data.tensors()
    x, y, mask, counts = _padded(data)
    assert dd.x_rows.shape == (sum(UNBALANCED) + 1, 5) and dd.y_rows.shape == (sum(UNBALANCED) + 1, 3)
    assert not dd.x_rows[-1].any() and not dd.y_rows[-1].any()
    assert torch.equal(dd.x, x) and torch.equal(dd.y, y) and torch.equal(dd.mask, mask)
    assert dd.x_shape == list(x.shape) and dd.y_shape == list(y.shape)
    np.testing.assert_array_equal(dd.counts, counts)
    for t, n in enumerate(UNBALANCED):
        o = dd.offsets[t]
        np.testing.assert_array_equal(dd.x_rows[o:o + n].numpy(), data.xs[t].astype(np.float32))
    cat = [torch.cat(parts, 1) for parts in zip(*[(b.x, b.y, b.mask) for b in dd.chunks(4)], strict=True)]
    assert torch.equal(cat[0], x) and torch.equal(cat[1], y) and torch.equal(cat[2], mask)
    # the padded constructor (hand-made data) gives the same store
    again = DeviceData(x=x, y=y, mask=mask, shared=False, counts=counts)
    assert torch.equal(again.x_rows, dd.x_rows) and torch.equal(again.y_rows, dd.y_rows)


def test_float64_store_keeps_values() -> None:
    data = _hetero((4, 9), seed=9)
    dd = data.tensors(dtype=torch.float64)
    x, y, _, _ = _padded(data, dtype=torch.float64)
    assert dd.x_rows.dtype == torch.float64 and torch.equal(dd.x, x) and torch.equal(dd.y, y)


def test_issue_example_holds_the_rows_not_the_padding() -> None:
    """The issue's 20,000-row example: 200 tasks of 40 rows + one of 20,000, d = 100. The store holds
    O(total rows) elements (28,001 rows), not T x max_n (4,020,000 padded rows); batches and evaluation chunks
    are bounded too."""
    rng = np.random.default_rng(0)
    sizes = [40] * 200 + [20_000]
    Xs = [rng.standard_normal((n, 100), dtype=np.float32) for n in sizes]
    data = MultiTaskData.from_tasks(Xs, [rng.standard_normal(n) for n in sizes], kind="regression")
    dd = data.tensors()
    total, T, N = sum(sizes), len(sizes), max(sizes)
    held = sum(t.numel() for t in dd.storage().values())
    assert held <= (total + 1) * (100 + 1) + 2 * T
    assert held < T * N * 100 / 100  # the padded x alone would be 100x more
    assert dd.nbytes < 12 * 2**20
    assert (dd.n_total, dd.n_rows, dd.n_tasks) == (total, N, T)
    width = dd.chunk_width()
    assert 1 <= width < N and T * width * 100 <= EVAL_ELEMENTS
    b = dd.positions(N - width, N)
    assert b.x.shape == (T, width, 100) and int(b.mask.sum()) == width  # only the large task reaches the end
    s = TaskBatchSampler(dd, 32, seed=0)
    batch = next(iter(s))
    assert batch.x.shape == (T, 32, 100) and len(s) == N // 32 + (N % 32 > 0)


@pytest.mark.parametrize("block_steps", [1, 3])
@pytest.mark.parametrize("perm_elements", [None, 7])
def test_epoch_indices_replayed_in_blocks_are_the_same_draws(monkeypatch, block_steps: int,
                                                             perm_elements: int | None) -> None:
    """The sampler replays each task's permutations block by block (O(rows) memory, not T x B·steps), drawing a
    task's permutations with one ``permuted`` call per block (``perm_elements``: a few rows per call): the
    batches, a resumed epoch (`epoch(start)`) and the generator's state afterwards are those of one draw of
    successive ``permutation(n)`` calls."""
    from mtlkit.data import sampler as sampler_mod

    data = _hetero(UNBALANCED, seed=11)
    dd = data.tensors()
    B = 4
    monkeypatch.setattr(sampler_mod, "BLOCK_INDICES", len(UNBALANCED) * B * block_steps)
    monkeypatch.setattr(sampler_mod, "BLOCK_MIN_STEPS", 1)
    if perm_elements is not None:
        monkeypatch.setattr(sampler_mod, "PERMUTATION_ELEMENTS", perm_elements)
    ref = PaddedSampler(data, B, seed=7)
    new = TaskBatchSampler(dd, B, seed=7)
    for _ in range(2):  # two epochs: the generator ends each epoch where the single draw did
        saved = new.state()
        got = list(new)
        want = list(ref)
        assert len(got) == len(want) == len(new)
        for a, b in zip(want, got, strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        assert new.state() == ref.rng.bit_generator.state
        for k in (1, 4, len(new)):
            other = TaskBatchSampler(dd, B, seed=99)
            other.set_state(saved)
            assert all(torch.equal(u.x, v.x) for u, v in zip(other.epoch(k), got[k:], strict=True))
            assert other.state() == new.state()
        for rank in (0, 1):  # data-parallel: each rank's rows are its share of the same global batch
            part = TaskBatchSampler(dd, B, seed=99, rank=rank, world_size=2)
            part.set_state(saved)
            for u, v in zip(part.epoch(), got, strict=True):
                assert torch.equal(u.x, v.x[:, rank::2])


def test_chunk_width_keeps_the_single_chunk_for_balanced_data() -> None:
    """Balanced tasks (padding at most doubles the rows) keep the padded implementation's one chunk even when it
    is large, so their validation numbers are the old bits; unbalanced ones are bounded by EVAL_ELEMENTS."""
    rng = np.random.default_rng(0)
    wide = EVAL_ELEMENTS // (3 * 600) + 1  # 3 tasks x 600 rows x wide > EVAL_ELEMENTS
    balanced = MultiTaskData.from_tasks([rng.normal(size=(n, wide)) for n in (600, 500, 450)],
                                        [rng.normal(size=n) for n in (600, 500, 450)]).tensors()
    assert balanced.chunk_width() == 600
    unbalanced = MultiTaskData.from_tasks([rng.normal(size=(n, wide)) for n in (600, 5, 5)],
                                          [rng.normal(size=n) for n in (600, 5, 5)]).tensors()
    assert 3 * unbalanced.chunk_width() * wide <= EVAL_ELEMENTS
    assert _hetero(UNBALANCED).tensors().chunk_width() == max(UNBALANCED)  # small: one chunk
    # no smaller than a training batch (the memory a step takes anyway), never wider than the data
    width = unbalanced.chunk_width()
    assert unbalanced.chunk_width(at_least=width + 1) == width + 1 and unbalanced.chunk_width(at_least=2) == width
    assert unbalanced.chunk_width(at_least=10**6) == 600 and balanced.chunk_width(at_least=2) == 600


def test_chunk_width_bounds_very_large_balanced_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_SINGLE_CHUNK elements even balanced tasks are chunked (evaluation memory stays bounded)."""
    from mtlkit.data import tensors

    rng = np.random.default_rng(0)
    wide = EVAL_ELEMENTS // (3 * 600) + 1
    balanced = MultiTaskData.from_tasks([rng.normal(size=(n, wide)) for n in (600, 500, 450)],
                                        [rng.normal(size=n) for n in (600, 500, 450)]).tensors()
    monkeypatch.setattr(tensors, "MAX_SINGLE_CHUNK", 3 * 600 * wide - 1)
    assert 3 * balanced.chunk_width() * wide <= EVAL_ELEMENTS


# ---------------------------------------------------------------------- shared input: sparse labels
def _shared_batches(dd, B, seed, rank=0, world=1):
    return list(TaskBatchSampler(dd, B, seed=seed, rank=rank, world_size=world).epoch())


@pytest.mark.parametrize("kind", ["binary", "distribution"])
def test_sparse_labels_give_the_same_batches(kind: str) -> None:
    data = _shared(N=60, T=5, kind=kind, missing=0.8)
    dense = to_device_data(data, labels="dense")
    sparse = to_device_data(data, labels="sparse")
    assert not dense.labels.sparse and sparse.labels.sparse
    assert sparse.labels.nnz == int(dense.mask.sum())
    np.testing.assert_array_equal(dense.counts, sparse.counts)
    assert torch.equal(dense.y, sparse.y) and torch.equal(dense.mask, sparse.mask)
    for world in (1, 2):
        for rank in range(world):
            for a, b in zip(_shared_batches(dense, 8, 3, rank, world), _shared_batches(sparse, 8, 3, rank, world),
                            strict=True):
                assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
                assert a.y.stride() == b.y.stride() and a.mask.stride() == b.mask.stride()
    for a, b in zip(dense.chunks(7), sparse.chunks(7), strict=True):
        assert torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
        assert a.y.stride() == b.y.stride() and a.mask.stride() == b.mask.stride()  # reductions run alike
    x, y, mask, _ = _padded(data)
    assert torch.equal(sparse.y, y) and torch.equal(sparse.mask, mask)
    # the dense store is laid out as the padded implementation's was ([N, T] in memory): same reduction order
    assert dense.y.stride() == y.stride() and dense.mask.stride() == mask.stride()


def test_sparse_labels_train_the_same() -> None:
    data = _shared(N=60, T=5, kind="binary", missing=0.8)
    results = []
    for how in ("dense", "sparse"):
        parts, hp, loss = _build("hard-share", data)
        torch.manual_seed(5)
        dd = to_device_data(data, labels=how)
        losses = _steps(parts, hp, loss, TaskBatchSampler(dd, 8, seed=3), 6)
        parts.model.eval()
        results.append((losses, parts.model.state_dict(), mean_task_loss(parts.model, loss, dd, 9)))
    (la, sa, va), (lb, sb, vb) = results
    assert all(torch.equal(u, v) for u, v in zip(la, lb, strict=True))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(va, vb)


def test_large_mostly_missing_labels_are_stored_sparse() -> None:
    """1,000 tasks x 5,000 rows with 1% labelled: "auto" keeps the 50,000 labelled cells, not 5M."""
    rng = np.random.default_rng(0)
    N, T = 5_000, 1_000
    X = rng.normal(size=(N, 3))
    Y = np.full((N, T), np.nan)
    r, t = rng.integers(0, N, 50_000), rng.integers(0, T, 50_000)
    Y[r, t] = rng.integers(0, 2, 50_000)
    Y[0] = 1.0
    data = MultiTaskData.from_shared(X, Y, kind="binary")
    dd = data.tensors()
    assert dd.labels.sparse
    nnz = int((~np.isnan(Y)).sum())
    assert dd.labels.nnz == nnz
    assert dd.nbytes < N * 3 * 4 + nnz * 8 + (N + 1) * 8 + 16 * T + 1024  # vs 5M cells x 5 bytes dense
    rows = torch.tensor([0, 17, 4_999, 2_500])
    y, mask = dd.labels.gather(rows)
    np.testing.assert_array_equal(mask.numpy(), ~np.isnan(Y[rows.numpy()]).T)
    np.testing.assert_array_equal(y.numpy(), np.nan_to_num(Y[rows.numpy()]).T.astype(np.float32))


@pytest.mark.parametrize(("n", "m"), [(1, 4), (10, 5), (37, 100), (1000, 3)])
def test_permutations_are_successive_shuffles(n: int, m: int) -> None:
    """`_permutations` (numpy's ``permuted`` by row) draws exactly what ``m`` successive ``shuffle(arange(n))``
    calls draw, and leaves the generator where they leave it: the sampler's batches rest on it."""
    from mtlkit.data.sampler import _permutations

    ref, new = np.random.default_rng(3), np.random.default_rng(3)
    want = np.stack([ref.permutation(n) for _ in range(m)])
    assert np.array_equal(_permutations(new, n, m), want)
    assert new.bit_generator.state == ref.bit_generator.state
    advanced = np.random.default_rng(3)
    _permutations(advanced, n, m, keep=False)
    assert advanced.bit_generator.state == ref.bit_generator.state
