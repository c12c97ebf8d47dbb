"""Training end to end: learning, determinism, closed forms against scikit-learn, mask-aware losses,
early stopping, grid selection, checkpoints and user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data import PCA, Normalizer
from mtlkit.errors import MtlkitError, UnknownNameError
from mtlkit.train import TaskLoss
from mtlkit.train.trainer import mean_task_loss

pytestmark = pytest.mark.usefixtures("one_thread")

T, N, D = 6, 100, 8
FAST = {"epochs": 40, "lr": 1e-2, "batch_size": 32}


def _regression_data(seed: int = 0) -> tuple[MultiTaskData, list[np.ndarray], list[np.ndarray]]:
    """y_t = x · w_t + noise 0.1, with w_t = w0 + a small per-task deviation."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=D)
    Xs = [rng.normal(size=(N, D)) for _ in range(T)]
    ws = [w0 + 0.1 * rng.normal(size=D) for _ in range(T)]
    ys = [X @ w + 0.1 * rng.normal(size=N) for X, w in zip(Xs, ws, strict=True)]
    return MultiTaskData.from_tasks(Xs, ys, name="synthetic"), Xs, ys



@pytest.fixture(scope="module")
def reg_split():
    data, _, _ = _regression_data()
    return data.split(test=0.2, val=0.2, seed=0)


@pytest.fixture(scope="module")
def hard_share_run(reg_split):
    return mtlkit.train("hard-share", reg_split, hparams=FAST, seed=0, device="cpu")


def _classification_data(kind: str, n_classes=None, seed: int = 0, T_: int = 3, n: int = 90, d: int = 5):
    rng = np.random.default_rng(seed)
    Xs, ys = [], []
    counts = n_classes or ([2] * T_)
    for t in range(T_):
        X = rng.normal(size=(n, d))
        W = rng.normal(size=(d, counts[t])) * 2
        y = (X @ W + 0.5 * rng.gumbel(size=(n, counts[t]))).argmax(1).astype(float)
        Xs.append(X + t)  # task-specific offsets: the pooled standardisation is not per-task
        ys.append(y)
    return MultiTaskData.from_tasks(Xs, ys, kind=kind, n_classes=n_classes)


# ---------------------------------------------------------------------- (a) learning
def test_hard_share_learns_multitask_regression(reg_split, hard_share_run):
    ev = hard_share_run.evaluate("test")
    y_test = np.concatenate(reg_split.test.ys)
    assert ev.primary == "rmse"
    assert ev.per_task["rmse"].shape == (T,)
    assert ev.mean["rmse"] < 0.5 * y_test.std(), (ev.mean, y_test.std())
    # and per task: better than predicting the task's training mean
    for t in range(T):
        trivial = np.sqrt(np.mean((reg_split.test.ys[t] - reg_split.train.ys[t].mean()) ** 2))
        assert ev.per_task["rmse"][t] < 0.5 * trivial
    # the run records what produced it
    assert hard_share_run.method == "hard-share"
    assert hard_share_run.hparams["lr"] == FAST["lr"]
    assert hard_share_run.dataset == "synthetic"
    assert hard_share_run.checksum == reg_split.source.checksum()


# ---------------------------------------------------------------------- (b) determinism
def test_same_seed_same_numbers_other_seed_differs(reg_split):
    hp = {"epochs": 5, "lr": 1e-2}
    a = mtlkit.train("hard-share", reg_split, hparams=hp, seed=3, device="cpu")
    b = mtlkit.train("hard-share", reg_split, hparams=hp, seed=3, device="cpu")
    c = mtlkit.train("hard-share", reg_split, hparams=hp, seed=4, device="cpu")
    ea, eb, ec = a.evaluate("test"), b.evaluate("test"), c.evaluate("test")
    for m in ea.per_task:
        np.testing.assert_array_equal(ea.per_task[m], eb.per_task[m])
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not np.array_equal(ea.per_task["rmse"], ec.per_task["rmse"])
    for u, v in zip(a.history.val_loss, b.history.val_loss, strict=True):
        np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------------- (c) closed forms vs scikit-learn
def _pooled_x_stats(train: MultiTaskData) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([train.task_arrays(t)[0] for t in range(train.n_tasks)])
    return rows.mean(0), rows.std(0)


@pytest.mark.parametrize("alpha", [0.1, 5.0])
def test_stl_linear_ridge_matches_sklearn(reg_split, alpha):
    run = mtlkit.train("stl-linear", reg_split, hparams={"alpha": alpha}, device="cpu")
    train = reg_split.train
    mu, sd = _pooled_x_stats(train)
    y_all = np.concatenate(train.ys)
    ym, ys = y_all.mean(), y_all.std()
    X_new = np.random.default_rng(1).normal(size=(25, D)) * 1.5
    for t in range(T):
        ridge = Ridge(alpha=alpha).fit((train.xs[t] - mu) / sd, (train.ys[t] - ym) / ys)
        ref = ridge.predict((X_new - mu) / sd) * ys + ym
        np.testing.assert_allclose(run.predict(X_new, task=t), ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(run.predict(X_new, task=train.task_names[t]), ref, rtol=1e-6, atol=1e-6)
    assert run.predict(X_new).shape == (T, 25)


@pytest.mark.parametrize("kind,n_classes", [("binary", None), ("multiclass", (3, 3, 3))])
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_stl_linear_logistic_matches_sklearn(kind, n_classes, C):
    data = _classification_data(kind, n_classes, seed=2)
    split = data.split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("stl-linear", split, hparams={"C": C}, device="cpu")
    train = split.train
    mu, sd = _pooled_x_stats(train)
    X_new = np.random.default_rng(3).normal(size=(30, 5)) + 1.0
    for t in range(data.n_tasks):
        # the model sees float32 standardised features; give scikit-learn the same numbers
        Xt = ((train.xs[t] - mu) / sd).astype(np.float32)
        clf = LogisticRegression(C=C, max_iter=2000).fit(Xt, train.ys[t].astype(np.int64))
        ref = clf.predict_proba((X_new - mu) / sd)
        got = run.predict_proba(X_new, task=t)
        if kind == "binary":
            np.testing.assert_allclose(got, ref[:, 1], rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(run.predict(X_new, task=t), (ref[:, 1] >= 0.5).astype(int))
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- (d) mask-aware losses
def test_task_loss_ignores_missing_labels():
    rng = np.random.default_rng(0)
    Nr = 12
    X = rng.normal(size=(Nr, 3))
    Y = rng.normal(size=(Nr, 3))
    Y[rng.random((Nr, 3)) < 0.35] = np.nan
    Y[0] = 0.5
    data = MultiTaskData.from_shared(X, Y, kind="regression")
    dd = data.tensors(dtype=torch.float64)
    pred = torch.as_tensor(rng.normal(size=(3, Nr, 1)))
    pred[torch.as_tensor(np.isnan(Y).T)] = 1e6  # garbage at missing labels must not matter
    pred.requires_grad_(True)
    loss_fn = TaskLoss(data.spec)
    losses = loss_fn(pred, dd.full())
    p = pred.detach().numpy()[..., 0]
    for t in range(3):
        keep = ~np.isnan(Y[:, t])
        hand = np.mean((p[t, keep] - Y[keep, t]) ** 2)
        assert losses[t].item() == pytest.approx(hand, rel=1e-12)
    losses.sum().backward()
    assert (pred.grad[..., 0][torch.as_tensor(np.isnan(Y).T)] == 0).all()


def test_task_loss_binary_and_multiclass_by_hand():
    rng = np.random.default_rng(1)
    Nr = 10
    Yb = rng.integers(0, 2, size=(Nr, 2)).astype(float)
    Yb[[1, 4, 7], 0] = np.nan
    data = MultiTaskData.from_shared(rng.normal(size=(Nr, 2)), Yb, kind="binary")
    dd = data.tensors(dtype=torch.float64)
    logits = torch.as_tensor(rng.normal(size=(2, Nr, 1)))
    losses = TaskLoss(data.spec)(logits, dd.full())
    z = logits.numpy()[..., 0]
    for t in range(2):
        keep = ~np.isnan(Yb[:, t])
        y, s = Yb[keep, t], z[t, keep]
        hand = np.mean(-(y * np.log(1 / (1 + np.exp(-s))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-s)))))
        assert losses[t].item() == pytest.approx(hand, rel=1e-10)
    # multiclass with different class counts: each task's softmax runs over its own classes only
    ys = [rng.integers(0, c, size=6).astype(float) for c in (2, 4)]
    mdata = MultiTaskData.from_tasks([rng.normal(size=(6, 2))] * 2, ys, kind="multiclass", n_classes=(2, 4))
    mdd = mdata.tensors(dtype=torch.float64)
    logits = torch.as_tensor(rng.normal(size=(2, 6, 4)))
    losses = TaskLoss(mdata.spec)(logits, mdd.full())
    for t, c in enumerate((2, 4)):
        hand = F.cross_entropy(logits[t, :, :c], torch.as_tensor(ys[t]).long())
        assert losses[t].item() == pytest.approx(hand.item(), rel=1e-10)


def test_training_with_missing_labels_stays_finite():
    rng = np.random.default_rng(2)
    Nr = 120
    X = rng.normal(size=(Nr, 4))
    Y = (X[:, :3] + 0.3 * rng.normal(size=(Nr, 3)) > 0).astype(float)
    Y[rng.random((Nr, 3)) < 0.3] = np.nan
    split = MultiTaskData.from_shared(X, Y, kind="binary").split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train("hard-share", split, hparams={"epochs": 15, "lr": 1e-2}, seed=0, device="cpu")
    assert all(np.isfinite(v).all() for v in run.history.train_loss)
    ev = run.evaluate("test")
    assert np.isfinite(ev.per_task["error"]).all()
    assert ev.mean["error"] < 30  # error is in %; chance would be ~50


# ---------------------------------------------------------------------- (e) early stopping
def test_best_epoch_is_argmin_of_weighted_val_loss(reg_split):
    hp = {"epochs": 60, "lr": 0.05, "patience": 4, "batch_size": 16}
    run = mtlkit.train("hard-share", reg_split, hparams=hp, seed=0, device="cpu")
    h = run.history
    weighted = np.array([v.mean() for v in h.val_loss])  # default task weights 1/T
    assert h.best_epoch == int(np.argmin(weighted))
    assert h.best_val == pytest.approx(weighted.min(), rel=1e-6)
    if h.stopped_early:
        assert len(h.val_loss) == h.best_epoch + hp["patience"] + 1
    else:
        assert len(h.val_loss) == hp["epochs"]
    # the model kept is the best epoch's
    norm = Normalizer.fit(reg_split.train)
    val_dd = norm.apply(reg_split.val).tensors("cpu")
    vl = mean_task_loss(run.model, TaskLoss(reg_split.train.spec), val_dd).numpy()
    np.testing.assert_allclose(vl, h.val_loss[h.best_epoch], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------- (f) grid selection
def test_grid_selection_keeps_the_best_val_score(reg_split):
    run = mtlkit.train("hard-share", reg_split, hparams={"epochs": 8}, grid={"lr": [1e-3, 1e-2]}, seed=0,
                       device="cpu")
    assert len(run.selection) == 2
    assert [e["hparams"]["lr"] for e in run.selection] == [1e-3, 1e-2]
    assert all(e["hparams"]["epochs"] == 8 for e in run.selection)
    scores = [e["val_rmse"] for e in run.selection]
    best = int(np.argmin(scores))
    assert run.hparams["lr"] == run.selection[best]["hparams"]["lr"]
    assert run.evaluate("val").mean["rmse"] == pytest.approx(scores[best], rel=1e-9)


def test_grid_needs_validation_part():
    data, _, _ = _regression_data()
    split = data.split(test=0.2, val=0.0, seed=0)
    with pytest.raises(MtlkitError):
        mtlkit.train("hard-share", split, hparams={"epochs": 2}, grid={"lr": [1e-3, 1e-2]}, device="cpu")


# ---------------------------------------------------------------------- (g) checkpoints
def _assert_same_eval(a, b):
    assert a.per_task.keys() == b.per_task.keys()
    for m in a.per_task:
        np.testing.assert_array_equal(a.per_task[m], b.per_task[m])


def _assert_no_pickle(directory):
    files = sorted(p.name for p in directory.iterdir())
    assert files == ["model.safetensors", "run.json"]
    raw = (directory / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    json.loads(raw[8:8 + header_len])  # safetensors: a JSON header, then raw tensor bytes
    assert not raw.startswith(b"\x80")  # not a pickle stream
    json.loads((directory / "run.json").read_text())


def test_checkpoint_round_trip(reg_split, hard_share_run, tmp_path):
    run = hard_share_run
    out = run.save(tmp_path / "ckpt")
    _assert_no_pickle(out)
    loaded = mtlkit.load(out)
    assert loaded.method == "hard-share" and loaded.hparams == run.hparams and loaded.seed == run.seed
    X = np.random.default_rng(0).normal(size=(17, D))
    np.testing.assert_array_equal(loaded.predict(X), run.predict(X))
    for t in range(T):
        np.testing.assert_array_equal(loaded.predict(X, task=t), run.predict(X, task=t))
    _assert_same_eval(loaded.evaluate(reg_split.test), run.evaluate("test"))
    assert loaded.history.best_epoch == run.history.best_epoch
    with pytest.raises(MtlkitError):
        loaded.evaluate("test")  # a loaded run has no split attached


def test_checkpoint_round_trip_with_pca_transform(tmp_path):
    rng = np.random.default_rng(5)
    Z = [rng.normal(size=(70, 3)) for _ in range(3)]
    A = rng.normal(size=(3, 10))
    Xs = [z @ A + 0.05 * rng.normal(size=(70, 10)) for z in Z]
    ys = [(z[:, t] > 0).astype(float) for t, z in enumerate(Z)]
    data = MultiTaskData.from_tasks(Xs, ys, kind="binary", transform=PCA(3))
    split = data.split(test=0.2, val=0.2, seed=0)
    assert split.train.feature_shape == (3,)
    run = mtlkit.train("hard-share", split, hparams={"epochs": 10, "lr": 1e-2}, seed=0, device="cpu")
    out = run.save(tmp_path / "pca")
    _assert_no_pickle(out)
    loaded = mtlkit.load(out)
    np.testing.assert_array_equal(loaded.transform.mean, run.transform.mean)
    np.testing.assert_array_equal(loaded.transform.components, run.transform.components)
    X_raw = rng.normal(size=(20, 10))
    np.testing.assert_array_equal(loaded.predict_proba(X_raw), run.predict_proba(X_raw))
    np.testing.assert_array_equal(loaded.predict(X_raw, task=2), run.predict(X_raw, task=2))
    raw_test = split.source.subset(split.indices["test"])  # raw features: the run applies its PCA
    _assert_same_eval(loaded.evaluate(raw_test), run.evaluate("test"))
    _assert_same_eval(run.evaluate(raw_test), run.evaluate("test"))


def test_checkpoint_round_trip_stl_linear(reg_split, tmp_path):
    run = mtlkit.train("stl-linear", reg_split, hparams={"alpha": 1.0}, device="cpu")
    loaded = mtlkit.load(run.save(tmp_path / "lin"))
    X = np.random.default_rng(2).normal(size=(9, D))
    np.testing.assert_array_equal(loaded.predict(X), run.predict(X))
    _assert_same_eval(loaded.evaluate(reg_split.test), run.evaluate("test"))


def test_load_missing_files(tmp_path):
    with pytest.raises(MtlkitError) as e:
        mtlkit.load(tmp_path)
    assert "run.json" in str(e.value) or "model.safetensors" in str(e.value)


# ---------------------------------------------------------------------- (h) user errors
def test_unknown_hyperparameter_lists_known(reg_split):
    with pytest.raises(MtlkitError) as e:
        mtlkit.train("hard-share", reg_split, hparams={"learning_rate": 0.1}, device="cpu")
    msg = str(e.value)
    assert "learning_rate" in msg and "'hard-share'" in msg
    for known in ("lr", "epochs", "batch_size", "hidden"):
        assert known in msg


def test_unknown_method_lists_known(reg_split):
    with pytest.raises(UnknownNameError) as e:
        mtlkit.train("no-such-method", reg_split, device="cpu")
    msg = str(e.value)
    assert "'no-such-method'" in msg
    for known in mtlkit.methods.names():
        assert known in msg
    assert {"stl", "hard-share", "single", "stl-linear"} <= set(mtlkit.methods.names())
    assert mtlkit.methods.get("shared-bottom").name == "hard-share"


def test_method_not_supporting_kind():
    rng = np.random.default_rng(0)
    P = [rng.dirichlet(np.ones(3), size=30) for _ in range(2)]
    data = MultiTaskData.from_tasks([rng.normal(size=(30, 2)) for _ in range(2)], P, kind="distribution")
    split = data.split(test=0.2, val=0.2, seed=0)
    with pytest.raises(MtlkitError) as e:
        mtlkit.train("stl-linear", split, device="cpu")
    assert "distribution" in str(e.value) and "'stl-linear'" in str(e.value)


def test_bad_hyperparameter_values(reg_split):
    with pytest.raises(MtlkitError):
        mtlkit.train("hard-share", reg_split, hparams={"epochs": 0}, device="cpu")
    with pytest.raises(MtlkitError):
        mtlkit.train("hard-share", reg_split, hparams={"optimizer": "rmsprop"}, device="cpu")


def test_predict_wrong_feature_shape(hard_share_run):
    with pytest.raises(mtlkit.DataError):
        hard_share_run.predict(np.zeros((3, D + 1)))
    with pytest.raises(mtlkit.DataError):
        hard_share_run.predict(np.zeros((3, D)), task="nope")


# ---------------------------------------------------------------------- (i) different class counts
@pytest.mark.parametrize("method,hp", [("hard-share", {"epochs": 15, "lr": 1e-2}), ("stl-linear", {})])
def test_multiclass_different_class_counts(method, hp):
    counts = (2, 3, 4)
    data = _classification_data("multiclass", counts, seed=4, n=120)
    assert data.spec.n_classes == counts
    split = data.split(test=0.2, val=0.2, seed=0)
    run = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    X = np.random.default_rng(9).normal(size=(200, 5)) * 10  # far out, to push the logits around
    proba = run.predict_proba(X)
    assert proba.shape == (3, 200, 4)
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    for t, c in enumerate(counts):
        pred = run.predict(X, task=t)
        assert pred.min() >= 0 and pred.max() < c
        assert (proba[t, :, c:] == 0).all()
    ev = run.evaluate("test")
    assert np.isfinite(ev.per_task["error"]).all()
    assert ev.mean["error"] < 40  # well better than chance for 2-4 classes
