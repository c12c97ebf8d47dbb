"""Training checkpoints and resume: a run that crashes (or is SIGKILLed) and is resumed from its last
checkpoint ends bitwise identical to a run that was never interrupted; the file is safetensors (no pickle)
and is replaced atomically; a checkpoint of another run is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mtlkit
from mtlkit import MultiTaskData
from mtlkit.data import Normalizer, TaskBatchSampler
from mtlkit.errors import MtlkitError
from mtlkit.methods import registry
from mtlkit.train import TaskLoss, fit_sgd
from mtlkit.train import checkpoint as ckpt_io
from mtlkit.train.config import TRAIN_DEFAULTS, merge_hparams

pytestmark = pytest.mark.usefixtures("one_thread")



def _regression_split(T: int = 3, n: int = 60, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=d)
    Xs = [rng.normal(size=(n, d)) for _ in range(T)]
    ys = [X @ (w0 + 0.3 * rng.normal(size=d)) + 0.3 * rng.normal(size=n) for X in Xs]
    return MultiTaskData.from_tasks(Xs, ys, name="synthetic").split(test=0.2, val=0.2, seed=0)


def _shared_binary_split(N: int = 120, T: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 5))
    Y = (X @ rng.normal(size=(5, T)) + 0.5 * rng.normal(size=(N, T)) > 0).astype(float)
    Y[rng.random((N, T)) < 0.25] = np.nan  # missing labels
    return MultiTaskData.from_shared(X, Y, kind="binary").split(test=0.2, val=0.2, seed=0)


REG = _regression_split()
SHARED = _shared_binary_split()


class Crash:
    """A zero penalty that raises at its ``at``-th call: a crash in the middle of step ``at`` (before that
    step's update). Returning an exact zero leaves the objective, and so the run, bitwise unchanged."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls = at, 0

    def __call__(self, model, out, batch) -> torch.Tensor:
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise RuntimeError(f"simulated crash at step {self.at}")
        return torch.zeros((), device=out.pred.device)


class EmaPenalty:
    """Method state outside the model's state_dict: an exponential moving average of each task's mean
    prediction, pulled towards by a small penalty (so the trajectory depends on it)."""

    def __init__(self, T: int) -> None:
        self.ema = torch.zeros(T)

    def __call__(self, model, out, batch) -> torch.Tensor:
        m = out.pred[..., 0].mean(1)
        pen = 0.05 * ((m - self.ema) ** 2).sum()
        self.ema = 0.8 * self.ema + 0.2 * m.detach()
        return pen

    def state(self) -> dict[str, torch.Tensor]:
        return {"ema": self.ema.clone()}

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        self.ema = st["ema"].clone()


def l1_prox_on_heads(lam: float):
    """Soft-thresholding of the task heads' weights by ``lam·lr`` (a proximal step that reads the lr)."""
    def prox(model, lr: float) -> None:
        for name, p in model.named_parameters():
            if name.endswith("weight") and ("heads" in name or "net" in name):
                p.copy_(torch.sign(p) * torch.clamp(p.abs() - lam * lr, min=0.0))
    return prox


def _fit(split, method: str, hp: dict, *, crash: int | None = None, build_seed: int = 0, ema: bool = False,
         hooks: bool = True, prox: float | None = None, seed: int = 0, **kw):
    """Build ``method`` afresh (initial weights from ``build_seed``) and train it with `fit_sgd`."""
    entry = registry.get(method)
    hp = merge_hparams({**TRAIN_DEFAULTS, **entry.defaults}, hp, method)
    info = split.train.info()
    norm = Normalizer.fit(split.train)
    torch.manual_seed(build_seed)
    parts = entry.build(info, hp)
    pens: list = [Crash(crash)]
    if ema:
        e = EmaPenalty(info.n_tasks)
        pens.append(e)
        if hooks:
            parts.state, parts.load_state = e.state, e.load_state
    parts.penalties = pens
    if prox is not None:
        parts.proxes = [l1_prox_on_heads(prox)]
    train = norm.apply(split.train).tensors("cpu")
    val = norm.apply(split.val).tensors("cpu")
    hist = fit_sgd(parts, TaskLoss(info.spec), train, val, hp, seed=seed, task_names=info.spec.names, **kw)
    steps = len(TaskBatchSampler(train, hp["batch_size"]))
    return {k: v.clone() for k, v in parts.model.state_dict().items()}, hist, steps


def _same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _assert_same_history(h1, h2) -> None:
    assert len(h1.train_loss) == len(h2.train_loss)
    for u, v in zip(h1.train_loss, h2.train_loss, strict=True):
        np.testing.assert_array_equal(u, v)
        assert u.dtype == v.dtype
    for u, v in zip(h1.val_loss, h2.val_loss, strict=True):
        np.testing.assert_array_equal(u, v)
    assert (h1.best_epoch, h1.best_val, h1.diverged, h1.stopped_early) == \
        (h2.best_epoch, h2.best_val, h2.diverged, h2.stopped_early)


def _crash_and_resume(split, method, hp, path, every, crash, **kw):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(split, method, hp, crash=crash, checkpoint=path, checkpoint_every=every, **kw)
    assert path.is_file()
    at = ckpt_io.read_meta(path)["position"]
    # a fresh model with other initial weights: everything must come from the checkpoint
    resumed = _fit(split, method, hp, build_seed=99, checkpoint=path, checkpoint_every=every, resume=True, **kw)
    return at, resumed


@pytest.mark.parametrize("split", [REG, SHARED], ids=["heterogeneous", "shared"])
def test_sampler_regenerates_an_epoch_from_its_saved_state(split):
    """The state saved before an epoch + epoch(start=k) yields that epoch's steps k.. exactly, and leaves the
    generator where the uninterrupted epoch did (so the following epochs match too)."""
    dd = split.train.tensors()
    full = TaskBatchSampler(dd, 8, seed=4)
    list(full)  # one epoch in
    saved = full.state()
    epoch = [b.x.clone() for b in full]
    after = [b.x.clone() for b in full]
    for k in (0, 2, len(full) - 1, len(full)):
        other = TaskBatchSampler(dd, 8, seed=123)
        other.set_state(saved)
        assert all(torch.equal(u.x, v) for u, v in zip(other.epoch(k), epoch[k:], strict=True))
        assert all(torch.equal(u, v.x) for u, v in zip(after, other, strict=True))
    with pytest.raises(ValueError):
        next(full.epoch(len(full) + 1))


CASES = {
    # Adam + dropout (the torch RNG matters), checkpoints mid-epoch every 4 steps
    "adam-dropout": (REG, "hard-share", {"epochs": 7, "batch_size": 8, "lr": 1e-2, "dropout": 0.3,
                                         "patience": 0}, 4, {}),
    # SGD with momentum, lr schedule r0·γ^(i/η) and an l1 prox that uses the lr; checkpoints at epoch ends only
    "sgd-schedule-prox": (REG, "hard-share", {"epochs": 7, "batch_size": 8, "optimizer": "sgd", "lr": 0.05,
                                              "momentum": 0.9, "lr_decay": 0.5, "decay_steps": 6,
                                              "patience": 0}, 0, {"prox": 1e-2}),
    # shared input with missing labels, STL with dropout, checkpoint period = one epoch
    "shared-stl": (SHARED, "stl", {"epochs": 6, "batch_size": 16, "lr": 1e-2, "dropout": 0.2, "patience": 0},
                   "epoch", {}),
    # method state outside the state_dict, through MethodParts.state / load_state
    "method-state": (REG, "hard-share", {"epochs": 6, "batch_size": 8, "lr": 1e-2, "patience": 0}, 4,
                     {"ema": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_crash_then_resume_is_bitwise_identical(case, tmp_path):
    split, method, hp, every, kw = CASES[case]
    straight, h_straight, steps = _fit(split, method, hp, **kw)
    if every == "epoch":
        every = steps
    total = len(h_straight.train_loss) * steps
    crash = total // 2 + 2  # mid-run, after at least one checkpoint, usually mid-epoch
    path = tmp_path / "run.ckpt"
    at, (resumed, h_resumed, _) = _crash_and_resume(split, method, hp, path, every, crash, **kw)
    assert at["global_step"] == at["epoch"] * steps + at["step"]
    assert 0 < at["global_step"] <= crash - 1  # resumed from a checkpoint before the crash
    assert _same_params(straight, resumed), case
    _assert_same_history(h_straight, h_resumed)
    assert not _same_params(straight, _fit(split, method, hp, build_seed=99, **kw)[0])  # init matters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary file left behind


def test_resume_without_restoring_rng_or_method_state_would_differ(tmp_path, monkeypatch):
    """Controls: the resume test can fail. Skip the torch RNG restore (dropout) or the method-state hooks
    and the resumed run no longer matches."""
    split, method, hp, every, _ = CASES["adam-dropout"]
    straight, h_straight, steps = _fit(split, method, hp)
    crash = 3 * steps + 2
    with monkeypatch.context() as m:
        m.setattr(torch, "set_rng_state", lambda state: None)
        _, (resumed, h_resumed, _) = _crash_and_resume(split, method, hp, tmp_path / "a.ckpt", every, crash)
    # the kept weights are the best validation epoch's, which may come before the crash: the training losses
    # of the epochs after it show the difference whatever epoch is best
    later = range(3, len(h_straight.train_loss))
    assert not _same_params(straight, resumed) or \
        any(not np.array_equal(h_straight.train_loss[e], h_resumed.train_loss[e]) for e in later)

    hp2 = CASES["method-state"][2]
    straight2, h2, _ = _fit(REG, "hard-share", hp2, ema=True)
    _, (no_hooks, h_no_hooks, _) = _crash_and_resume(REG, "hard-share", hp2, tmp_path / "b.ckpt", 4, 13, ema=True,
                                                     hooks=False)
    assert not _same_params(straight2, no_hooks) or \
        any(not np.array_equal(u, v) for u, v in zip(h2.train_loss, h_no_hooks.train_loss, strict=True))


def test_early_stopping_state_survives_resume(tmp_path):
    hp = {"epochs": 80, "batch_size": 8, "lr": 0.05, "hidden": [64], "patience": 3}
    straight, h, steps = _fit(REG, "hard-share", hp)
    assert h.stopped_early and len(h.train_loss) < 80  # the setting does stop early
    best_to_stop = len(h.train_loss) - 1 - h.best_epoch
    assert best_to_stop == 3
    crash = (h.best_epoch + 2) * steps + 1  # after the best epoch, with the patience counter running
    _, (resumed, h2, _) = _crash_and_resume(REG, "hard-share", hp, tmp_path / "c.ckpt", 0, crash)
    assert _same_params(straight, resumed)  # the best epoch's weights, restored from the checkpoint
    _assert_same_history(h, h2)


def test_resume_of_a_finished_run_and_extending_it(tmp_path):
    hp = {"epochs": 3, "batch_size": 8, "lr": 1e-2, "dropout": 0.2, "patience": 0}
    path = tmp_path / "f.ckpt"
    a, ha, steps = _fit(REG, "hard-share", hp, checkpoint=path, checkpoint_every=7)
    meta = ckpt_io.read_meta(path)
    assert meta["position"] == {"epoch": 3, "step": 0, "global_step": 3 * steps}
    stamp = path.stat().st_mtime_ns
    b, hb, _ = _fit(REG, "hard-share", hp, build_seed=5, checkpoint=path, resume=True)
    assert _same_params(a, b)
    _assert_same_history(ha, hb)
    assert path.stat().st_mtime_ns == stamp  # nothing left to do: not rewritten
    # more epochs continue the same trajectory: equal to a run made with 6 epochs from the start
    longer = {**hp, "epochs": 6}
    c, hc, _ = _fit(REG, "hard-share", longer, checkpoint=path, checkpoint_every=7, resume=True)
    d, hd, _ = _fit(REG, "hard-share", longer)
    assert _same_params(c, d)
    _assert_same_history(hc, hd)
    with pytest.raises(MtlkitError, match="beyond epochs=3"):
        _fit(REG, "hard-share", hp, checkpoint=path, resume=True)  # the checkpoint is at epoch 6 now


def test_checkpoint_file_is_safetensors_without_pickle(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "x.ckpt"
    hp = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "patience": 0}
    _fit(REG, "hard-share", hp, checkpoint=path, checkpoint_every=3)
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # neither a pickle nor torch.save's zip
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])  # safetensors: u64 header length, JSON header, raw tensor bytes
    assert header["__metadata__"]["format"] == ckpt_io.FORMAT
    meta = json.loads(header["__metadata__"]["mtlkit"])
    assert set(meta) >= {"position", "sampler", "optimizer", "scheduler", "history", "fingerprint"}
    assert meta["sampler"]["bit_generator"] == "PCG64"
    assert meta["scheduler"]["last_epoch"] == meta["position"]["global_step"]
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["format"] == ckpt_io.FORMAT
    assert {"acc", "rng.cpu", "history.train_loss", "history.val_loss"} <= keys
    assert any(k.startswith("optim.state.0.exp_avg") for k in keys)
    assert any(k.startswith("model.bottom.") for k in keys) and any(k.startswith("best.") for k in keys)
    assert b"torch._utils" not in raw and b"__reduce__" not in raw


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """os.replace fails on the third checkpoint: the error surfaces, the second checkpoint is intact (and no
    temporary file is left), and resuming from it still gives the uninterrupted result."""
    hp = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "dropout": 0.2, "patience": 0}
    straight, h, _ = _fit(REG, "hard-share", hp)
    path = tmp_path / "w.ckpt"
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_io.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated"):
        _fit(REG, "hard-share", hp, checkpoint=path, checkpoint_every=4)
    monkeypatch.setattr(ckpt_io.os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.ckpt"]
    assert ckpt_io.read_meta(path)["position"]["global_step"] == 8
    resumed, h2, _ = _fit(REG, "hard-share", hp, build_seed=3, checkpoint=path, checkpoint_every=4, resume=True)
    assert _same_params(straight, resumed)
    _assert_same_history(h, h2)


def test_write_atomic_failure_leaves_old_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "a.st"
    ckpt_io.write_atomic(path, {"w": torch.arange(4.0)}, {"n": 1})
    before = path.read_bytes()
    def failing_replace(src, dst):
        raise OSError("boom (simulated)")

    monkeypatch.setattr(ckpt_io.os, "replace", failing_replace)
    with pytest.raises(OSError):
        ckpt_io.write_atomic(path, {"w": torch.zeros(1000)}, {"n": 2})
    assert path.read_bytes() == before
    tensors, meta = ckpt_io.read(path)
    assert meta == {"n": 1} and torch.equal(tensors["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.st"]


def test_tree_encoding_round_trips_optimizer_like_state():
    state = {"state": {0: {"step": torch.tensor(3.0), "buf": torch.ones(2, 2)}, 1: {}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "x": None, "inf": float("inf"),
                               "flag": True}]}
    tensors: dict = {}
    enc = ckpt_io.encode_tree(state, "optim", tensors)
    back = ckpt_io.decode_tree(json.loads(json.dumps(enc, allow_nan=False)), tensors)
    assert set(tensors) == {"optim.state.0.step", "optim.state.0.buf"}
    assert back["param_groups"] == state["param_groups"]
    assert isinstance(back["param_groups"][0]["betas"], tuple)
    assert list(back["state"]) == [0, 1] and torch.equal(back["state"][0]["buf"], torch.ones(2, 2))
    with pytest.raises(MtlkitError):
        ckpt_io.encode_tree({"f": object()}, "x", {})


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    hp = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "patience": 0}
    path = tmp_path / "r.ckpt"
    _fit(REG, "hard-share", hp, checkpoint=path)
    with pytest.raises(MtlkitError, match="different run") as e:
        _fit(REG, "hard-share", {**hp, "lr": 2e-2}, checkpoint=path, resume=True)
    assert "hparams.lr" in str(e.value)
    with pytest.raises(MtlkitError, match="seed"):
        _fit(REG, "hard-share", hp, seed=1, checkpoint=path, resume=True)
    with pytest.raises(MtlkitError, match="different run"):
        _fit(REG, "stl", hp, checkpoint=path, resume=True)  # other model
    with pytest.raises(MtlkitError, match="different run"):
        _fit(_regression_split(n=70), "hard-share", hp, checkpoint=path, resume=True)  # other data shapes
    with pytest.raises(MtlkitError, match="no training checkpoint"):
        _fit(REG, "hard-share", hp, checkpoint=tmp_path / "missing.ckpt", resume=True)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(MtlkitError, match="not a training checkpoint"):
        _fit(REG, "hard-share", hp, checkpoint=tmp_path / "junk.ckpt", resume=True)


def test_train_api_with_grid_checkpoints_each_point_and_resumes(tmp_path):
    """`mtlkit.train` passes the options through; with a grid every point has its own cfg-<i> checkpoint,
    and resuming a completed grid gives the same selected run."""
    hp = {"epochs": 3, "batch_size": 8, "patience": 0}
    grid = {"lr": [1e-3, 1e-2]}
    ck = tmp_path / "ck" / "run.ckpt"
    a = mtlkit.train("hard-share", REG, hparams=hp, grid=grid, seed=0, device="cpu", checkpoint=ck)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.ckpt")) == \
        ["ck/cfg-0/run.ckpt", "ck/cfg-1/run.ckpt"]
    b = mtlkit.train("hard-share", REG, hparams=hp, grid=grid, seed=0, device="cpu", checkpoint=ck, resume=True)
    assert a.hparams == b.hparams and a.selection == b.selection
    assert _same_params(a.model.state_dict(), b.model.state_dict())
    with pytest.raises(MtlkitError, match="nothing to resume"):
        mtlkit.train("hard-share", REG, hparams=hp, grid=grid, device="cpu", checkpoint=tmp_path / "x", resume=True)
    with pytest.raises(MtlkitError, match="not trained by SGD"):
        mtlkit.train("stl-linear", REG, device="cpu", checkpoint=tmp_path / "lin.ckpt")


# ---------------------------------------------------------------------- a real kill
def _write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=4)
    frames = []
    for t in range(3):
        X = rng.normal(size=(100, 4))
        y = X @ (w0 + 0.3 * rng.normal(size=4)) + 0.2 * rng.normal(size=100)
        frames.append(pd.DataFrame({"school": f"s{t}", "score": y, **{f"x{i}": X[:, i] for i in range(4)}}))
    pd.concat(frames).to_csv(path, index=False)


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
    """`mtlkit train` is SIGKILLed once its checkpoint records 20+ steps (of 400), then rerun with --resume:
    its printed test metrics and its saved model are identical to an uninterrupted run's."""
    csv = tmp_path / "scores.csv"
    _write_csv(csv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(tag: str) -> list[str]:
        return [sys.executable, "-m", "mtlkit.cli", "train", "hard-share", "--data", str(csv), "--task", "school",
                "--target", "score", "--set", "epochs=200", "--set", "patience=0", "--set", "dropout=0.1",
                "--seed", "3", "--device", "cpu", "--checkpoint", str(tmp_path / tag / "train.ckpt"),
                "--checkpoint-every", "5", "--save", str(tmp_path / tag / "run")]

    straight = subprocess.Popen(command("straight"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
    victim = subprocess.Popen(command("killed"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpt = tmp_path / "killed" / "train.ckpt"
    killed_at = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and victim.poll() is None:
            if ckpt.exists():
                pos = ckpt_io.read_meta(ckpt)["position"]  # atomic replace: always a whole file
                if pos["global_step"] >= 20:
                    os.kill(victim.pid, signal.SIGKILL)
                    killed_at = pos
                    break
            time.sleep(0.005)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert killed_at is not None, "the checkpoint never reached step 20 before the run ended"
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "run").exists()  # it really died before finishing
    at_resume = ckpt_io.read_meta(ckpt)["position"]
    assert 20 <= at_resume["global_step"] < 400  # the file is whole, and mid-run
    resumed = subprocess.run(command("killed") + ["--resume"], capture_output=True, text=True, env=env, timeout=240)
    out_straight, err_straight = straight.communicate(timeout=240)
    assert straight.returncode == 0, err_straight
    assert resumed.returncode == 0, resumed.stderr
    assert f"{at_resume['global_step']} steps in all" in resumed.stderr  # it resumed, it did not start over
    def printed(out: str) -> list[str]:
        return [line for line in out.splitlines() if not line.startswith("saved:")]

    assert printed(resumed.stdout) == printed(out_straight)  # the per-task test metrics and their mean
    assert "mean test rmse" in out_straight
    a, b = tmp_path / "straight" / "run", tmp_path / "killed" / "run"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    ja, jb = json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())
    assert ja["history"] == jb["history"] and len(ja["history"]["train_loss"]) == 200
    run = mtlkit.load(b)
    data = MultiTaskData.from_table(csv, task="school", target="score")
    split = data.split(test=0.2, val=0.2, seed=0)
    ea, eb = mtlkit.load(a).evaluate(split.test), run.evaluate(split.test)
    for m in ea.per_task:
        np.testing.assert_array_equal(ea.per_task[m], eb.per_task[m])
