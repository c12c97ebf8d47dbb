"""Opt-in TensorBoard logging: the scalars read back from the event files are the run's History, one
point per epoch, and a crashed-and-resumed run's log reads the same as an uninterrupted run's."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

import mtlkit  # noqa: E402
from mtlkit import MultiTaskData  # noqa: E402
from mtlkit.data import Normalizer, TaskBatchSampler  # noqa: E402
from mtlkit.methods import registry  # noqa: E402
from mtlkit.train import TaskLoss, fit_sgd  # noqa: E402
from mtlkit.train.config import TRAIN_DEFAULTS, merge_hparams  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("north", "south", "east")
HP = {"epochs": 5, "batch_size": 8, "lr": 2e-2, "lr_decay": 0.5, "decay_steps": 4, "dropout": 0.2, "patience": 0}



@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(7)
    Xs = [rng.normal(size=(50, 3)) for _ in NAMES]
    ys = [X @ rng.normal(size=3) + 0.2 * rng.normal(size=50) for X in Xs]
    return MultiTaskData.from_tasks(Xs, ys, names=list(NAMES)).split(test=0.2, val=0.2, seed=0)


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_log_is_history(sc, hist, steps_per_epoch: int) -> None:
    E = len(hist.train_loss)
    assert set(sc) == {"loss/train", "loss/val", "lr", *(f"train_loss/{n}" for n in NAMES),
                       *(f"val_loss/{n}" for n in NAMES)}
    for tag, points in sc.items():
        assert [s for s, _ in points] == list(range(E)), tag  # one point per epoch, no duplicates
    for t, name in enumerate(NAMES):  # per task: float32 values, stored exactly
        assert [v for _, v in sc[f"train_loss/{name}"]] == [float(h[t]) for h in hist.train_loss]
        assert [v for _, v in sc[f"val_loss/{name}"]] == [float(h[t]) for h in hist.val_loss]
    for e in range(E):  # the mean over tasks (equal task weights), and the schedule r0·γ^(i/η) after the epoch
        assert sc["loss/train"][e][1] == pytest.approx(float(np.mean(hist.train_loss[e], dtype=np.float64)), rel=1e-6)
        assert sc["loss/val"][e][1] == pytest.approx(float(np.mean(hist.val_loss[e], dtype=np.float64)), rel=1e-6)
        lr = HP["lr"] * HP["lr_decay"] ** ((e + 1) * steps_per_epoch / HP["decay_steps"])
        assert sc["lr"][e][1] == pytest.approx(lr, rel=1e-6)
    assert min(v for _, v in sc["loss/val"]) == pytest.approx(hist.best_val, rel=1e-6)


def test_logged_scalars_are_the_history(split, tmp_path):
    run = mtlkit.train("hard-share", split, hparams=HP, seed=0, device="cpu", tensorboard=tmp_path / "tb")
    steps = len(TaskBatchSampler(split.train.tensors(), HP["batch_size"]))
    _assert_log_is_history(_scalars(tmp_path / "tb"), run.history, steps)


def test_no_log_unless_asked(split, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mtlkit.train("hard-share", split, hparams={**HP, "epochs": 1}, seed=0, device="cpu")
    assert list(tmp_path.iterdir()) == []


class _Crash:
    def __init__(self, at: int | None) -> None:
        self.at, self.calls = at, 0

    def __call__(self, model, out, batch) -> torch.Tensor:
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise RuntimeError("simulated crash")
        return torch.zeros(())


def _fit(split, crash: int | None = None, **kw):
    entry = registry.get("hard-share")
    hp = merge_hparams({**TRAIN_DEFAULTS, **entry.defaults}, HP, "hard-share")
    info = split.train.info()
    norm = Normalizer.fit(split.train)
    torch.manual_seed(0)
    parts = entry.build(info, hp)
    parts.penalties = [_Crash(crash)]
    train, val = norm.apply(split.train).tensors("cpu"), norm.apply(split.val).tensors("cpu")
    return fit_sgd(parts, TaskLoss(info.spec), train, val, hp, seed=0, task_names=NAMES, **kw), len(
        TaskBatchSampler(train, hp["batch_size"]))


def test_resumed_run_appends_to_the_same_log(split, tmp_path):
    """The crashed run logged epochs past its last checkpoint; the resumed run logs them again into the same
    directory. Read back, the log has each epoch once, with the uninterrupted run's values."""
    hist, steps = _fit(split)
    tb, ck = tmp_path / "tb", tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError, match="simulated"):
        _fit(split, crash=4 * steps - 1, checkpoint=ck, checkpoint_every=2 * steps, tensorboard=tb)
    before = _scalars(tb)
    assert [s for s, _ in before["loss/val"]] == [0, 1, 2]  # epoch 2 was logged after the checkpoint at 2
    # TensorBoard reads event files in name order (creation second, host, pid, counter). A resumed process
    # starts seconds later; here, in the same process, let the clock pass a second so the order is certain.
    time.sleep(1.01 - time.time() % 1)
    resumed, _ = _fit(split, checkpoint=ck, checkpoint_every=2 * steps, resume=True, tensorboard=tb)
    assert len(list(tb.iterdir())) == 2  # one event file per process, in the same directory
    sc = _scalars(tb)
    _assert_log_is_history(sc, hist, steps)
    _assert_log_is_history(sc, resumed, steps)
