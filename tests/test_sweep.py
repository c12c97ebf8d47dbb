"""Sweeps: every grid point evaluated exactly once, failures recorded with their error and never retried,
the best = argmin of the recorded values, budget mode capped; and workers sharing one PostgreSQL study
(MTLKIT_TEST_POSTGRES, started by .ci/run) agree with a serial SQLite run of the same grid and seeds."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import toy_data

import mtlkit
from mtlkit.cli import main
from mtlkit.errors import MtlkitError
from mtlkit.experiments import sweep as sw
from mtlkit.experiments.splits import make_splits
from mtlkit.experiments.store import ResultsStore
from mtlkit.hparams import log_range
from mtlkit.methods import registry

pytestmark = pytest.mark.usefixtures("one_thread")

FIXED = {"epochs": 3, "head_hidden": []}
GRID = {"lr": [1e-3, 1e-2], "hidden": [[8], [16]]}
PG_ENV = "MTLKIT_TEST_POSTGRES"

optuna.logging.set_verbosity(optuna.logging.WARNING)



@pytest.fixture(scope="module")
def digits() -> mtlkit.MultiTaskData:
    return mtlkit.datasets.load("digits")


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.sqlite'}"


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials read back through plain Optuna (not through the code under test)."""
    return optuna.load_study(study_name=study, storage=sw.open_storage(url)).get_trials(deepcopy=False)


def _grid_keys(grid: dict) -> list[str]:
    return sorted(json.dumps(dict(zip(grid, v, strict=True)), sort_keys=True)
                  for v in itertools.product(*grid.values()))


def _params(t: optuna.trial.FrozenTrial) -> dict:
    """A trial's hyper-parameters, list values decoded from the JSON text they are stored as."""
    return {k: json.loads(v) if isinstance(v, str) and v.startswith("[") else v for k, v in t.params.items()}


def _argmin(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(t.value for t in done)
    return min((t for t in done if t.value == best), key=lambda t: t.number)


# ---------------------------------------------------------------------- parsing
def test_param_syntax() -> None:
    assert sw.parse_param("lr=1e-3,1e-2") == ("lr", [0.001, 0.01])
    assert sw.parse_param("hidden=[32],[64, 64]") == ("hidden", [[32], [64, 64]])
    assert sw.parse_param("activation=relu,tanh") == ("activation", ["relu", "tanh"])
    assert sw.parse_param("lr=loguniform:1e-4:1e-1") == ("lr", {"float": [1e-4, 0.1], "log": True})
    assert sw.parse_param("hidden_units=int:16:128") == ("hidden_units", {"int": [16, 128], "log": False})
    assert sw.parse_assignment("head_hidden=[]") == ("head_hidden", [])
    for bad in ("lr", "lr=", "lr=loguniform:0:1", "lr=uniform:2:1", "n=int:1.5:3", "lr=loguniform:1"):
        with pytest.raises(MtlkitError):
            sw.parse_param(bad)


def test_bad_definitions_are_user_errors(digits: mtlkit.MultiTaskData) -> None:
    with pytest.raises(MtlkitError, match="unknown hyper-parameter"):
        sw.make_spec("hard-share", digits, space={"nope": [1, 2]})
    with pytest.raises(MtlkitError, match="both searched"):
        sw.make_spec("hard-share", digits, space={"lr": [1e-3]}, fixed={"lr": 1e-2})
    with pytest.raises(MtlkitError, match="needs a budget"):
        sw.make_spec("hard-share", digits, space={"lr": "loguniform:1e-4:1e-1"})
    with pytest.raises(MtlkitError, match="listed twice"):
        sw.make_spec("hard-share", digits, space={"lr": [1e-3, 1e-3]})
    # Default: the declared tuning space (registry.search_space), searched with a budget; ranges need --trials.
    declared = registry.search_space("hard-share", "binary")  # the one declaration, for binary tasks
    spec = sw.make_spec("hard-share", digits, n_trials=4, fixed={"lr": 1e-2})
    assert not spec.is_grid and spec.space == {k: sw.space_to_dim(v) for k, v in declared.items() if k != "lr"}
    with pytest.raises(MtlkitError, match="declared search space of 'hard-share' has ranges.*--trials"):
        sw.make_spec("hard-share", digits)


def test_ties_go_to_the_lowest_trial_number() -> None:
    recs = [sw.TrialRecord(n, {}, v, s, None, []) for n, v, s in
            [(0, 5.0, "COMPLETE"), (1, None, "FAIL"), (2, 3.0, "COMPLETE"), (3, 3.0, "COMPLETE")]]
    assert sw.best_trial(recs, "minimize").number == 2
    assert sw.best_trial(list(reversed(recs)), "minimize").number == 2
    assert sw.best_trial(recs, "maximize").number == 0
    with pytest.raises(MtlkitError, match="no trial"):
        sw.best_trial([sw.TrialRecord(0, {}, None, "FAIL", "boom", [])], "minimize")


# ---------------------------------------------------------------------- grid mode on SQLite
def test_grid_every_point_once_failures_recorded_best_is_argmin(tmp_path: Path, digits) -> None:
    grid = {**GRID, "activation": ["relu", "nope"]}  # "nope" is refused (by the declaration or the model build)
    res = sw.sweep("hard-share", digits, storage=_sqlite(tmp_path), study="g", n_splits=2, space=grid, fixed=FIXED,
                   out=tmp_path, device="cpu")
    trials = _trials(_sqlite(tmp_path), "g")
    assert sorted(json.dumps(_params(t), sort_keys=True) for t in trials) == _grid_keys(grid)
    states = {t.number: t.state.name for t in trials}
    for t in trials:
        if _params(t)["activation"] == "nope":
            err = t.user_attrs["error"]
            assert states[t.number] == "FAIL" and "activation" in err and "'nope'" in err, err
        else:
            assert states[t.number] == "COMPLETE" and np.isfinite(t.value)
            assert t.value == pytest.approx(np.mean(t.user_attrs["val_error"]))
    best = _argmin(trials)
    assert res.best.number == best.number and res.hparams == _params(best)

    # The recorded value is the mean over splits of the validation error of mtlkit.train with seed + i.
    hp = {**FIXED, **_params(best)}
    direct = [mtlkit.train("hard-share", split, hparams=hp, seed=i, device="cpu").evaluate("val").mean["error"]
              for i, (_, split) in enumerate(make_splits(digits, 2, 0))]
    assert best.value == pytest.approx(float(np.mean(direct)), abs=1e-9)

    # The best configuration was retrained and tested on every split, recorded, and reported.
    rows = ResultsStore(tmp_path / "results.sqlite").rows(experiment="sweep")
    assert [r["split"] for r in rows] == ["seed-0", "seed-1"] and all(r["test_metrics"] for r in rows)
    assert res.val == pytest.approx(direct, abs=1e-9)
    assert res.test_mean == pytest.approx(np.mean([r["test_metrics"]["mean"]["error"] for r in rows]))
    text = res.report.read_text()
    assert res.report == tmp_path / "sweep-hard-share-digits.md"
    assert f"| {best.number} **best** |" in text and "'nope'" in text and "FAIL" in text

    # Failed trials are never retried: another worker finds nothing to do and the study is unchanged.
    again = sw.run_worker(_sqlite(tmp_path), "g", data=digits, device="cpu")
    assert again.ran == 0
    assert {t.number: t.state.name for t in _trials(_sqlite(tmp_path), "g")} == states


def test_crashing_and_diverged_trials_fail_with_their_error_once(tmp_path: Path, digits, monkeypatch) -> None:
    def fake_score(spec, splits, params, device):
        if params["lr"] == 1e-2:
            raise RuntimeError("boom")
        return [float("nan")] if params["lr"] == 3e-3 else [float(params["lr"])]

    monkeypatch.setattr(sw.worker, "_score", fake_score)  # run_trial looks it up there
    url = _sqlite(tmp_path)
    sw.create_sweep("hard-share", digits, storage=url, study="c", n_splits=1, space={"lr": [1e-3, 3e-3, 1e-2]})
    first = sw.run_worker(url, "c", data=digits)
    assert first.completed == [0] and set(first.failed) == {1, 2}
    assert sw.run_worker(url, "c", data=digits).ran == 0  # never retried
    trials = _trials(url, "c")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL"] and trials[0].value == 1e-3
    assert "not finite on seed-0" in trials[1].user_attrs["error"]
    assert trials[2].user_attrs["error"] == "RuntimeError: boom" and "boom" in trials[2].user_attrs["traceback"]


def test_resume_same_definition_and_refuse_a_different_one(tmp_path: Path, digits) -> None:
    url = _sqlite(tmp_path)
    first = sw.create_sweep("hard-share", digits, storage=url, study="r", n_splits=2, space=GRID, fixed=FIXED)
    again = sw.create_sweep("hard-share", digits, storage=url, study="r", n_splits=2, space=GRID, fixed=FIXED)
    assert first.created and not again.created
    assert len(_trials(url, "r")) == 4  # nothing enqueued twice
    with pytest.raises(MtlkitError, match="different definition.*n_splits"):
        sw.create_sweep("hard-share", digits, storage=url, study="r", n_splits=3, space=GRID, fixed=FIXED)
    with pytest.raises(MtlkitError, match="does not exist"):
        sw.run_worker(url, "missing", data=digits, wait=0.2)
    with pytest.raises(MtlkitError, match="have not run yet"):
        sw.finish_sweep(url, "r", data=digits, out=None)


def test_dead_worker_trial_is_failed_with_a_reason_not_lost(tmp_path: Path, digits) -> None:
    url = _sqlite(tmp_path)
    sw.create_sweep("hard-share", digits, storage=url, study="h", n_splits=1, space={"lr": [1e-3, 1e-2]},
                    fixed=FIXED)
    st = sw.open_storage(url, heartbeat_interval=1, grace_period=1)
    study_id = st.get_study_id_from_name("h")
    claimed = sw.claim_trial(st, study_id, url)  # a worker claims trial 0, beats once, then dies
    st.record_heartbeat(claimed)
    time.sleep(2.2)  # > grace period, in the storage clock's whole seconds
    assert sw.fail_stale_trials(st, study_id) == [claimed]
    done = sw.run_worker(url, "h", data=digits, device="cpu")
    assert done.completed == [1]
    trials = _trials(url, "h")
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert "stopped sending heartbeats" in trials[0].user_attrs["error"]


def _claim_race(url: str, n_threads: int) -> list[int]:
    """Several threads, each with its own storage connection, claim until the queue is empty."""
    got: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        st = sw.open_storage(url)
        study_id = st.get_study_id_from_name("race")
        while (tid := sw.claim_trial(st, study_id, url)) is not None:
            with lock:
                got.append(tid)

    threads = [threading.Thread(target=claim) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return got


def test_concurrent_claims_take_each_waiting_trial_once_sqlite(tmp_path: Path, digits) -> None:
    url = _sqlite(tmp_path)
    sw.create_sweep("hard-share", digits, storage=url, study="race", space={"lr": [i / 1000 for i in range(1, 25)]})
    got = _claim_race(url, 4)
    assert sorted(got) == sorted(set(got)) and len(got) == 24
    assert {t.state.name for t in _trials(url, "race")} == {"RUNNING"}


# ---------------------------------------------------------------------- budget mode
def test_budget_tpe_runs_exactly_n_trials_reproducibly(tmp_path: Path, digits) -> None:
    space = {"lr": "loguniform:1e-3:1e-1", "hidden": [[8], [16]]}
    runs = []
    for name in ("b1", "b2"):
        h = sw.create_sweep("hard-share", digits, storage=_sqlite(tmp_path), study=name, n_splits=1, space=space,
                            fixed=FIXED, n_trials=4, sampler="tpe")
        first = sw.run_worker(h.storage, name, data=digits, device="cpu", max_trials=2)
        rest = sw.run_worker(h.storage, name, data=digits, device="cpu")
        assert (first.ran, rest.ran) == (2, 2)  # the budget is shared, not per worker
        runs.append(_trials(h.storage, name))
    for trials in runs:
        assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
        assert all(1e-3 <= t.params["lr"] <= 1e-1 and t.params["hidden"] in ("[8]", "[16]") for t in trials)
    assert [(t.params, t.value) for t in runs[0]] == [(t.params, t.value) for t in runs[1]]  # seeded per trial
    res = sw.finish_sweep(_sqlite(tmp_path), "b1", data=digits, device="cpu", out=tmp_path)
    assert res.best.number == _argmin(runs[0]).number


def test_budget_over_a_space_with_an_off_value_folds_the_switch(tmp_path: Path) -> None:
    data = toy_data("toy-off", 3)
    space = {"alpha": log_range(1.0, 100.0, off=0.0)}
    res = sw.sweep("stl-linear", data, storage=_sqlite(tmp_path), study="off", n_splits=1, space=space, n_trials=8,
                   out=tmp_path, device="cpu")
    assert res.trials[0].params == {"alpha": 1.0}  # trial 0: the defaults
    assert all(set(r.params) == {"alpha"} for r in res.trials)  # the on/off switch is folded into alpha
    assert any(r.params["alpha"] == 0.0 for r in res.trials) and any(r.params["alpha"] >= 1.0 for r in res.trials)
    assert set(res.hparams) == {"alpha"} and "or 0 (off)" in res.report.read_text()
    assert {p for t in _trials(_sqlite(tmp_path), "off") for p in t.params} == {"alpha:off", "alpha"}


# ---------------------------------------------------------------------- the command line
def test_cli_sweep_end_to_end_and_one_line_errors(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "res")
    assert main(["sweep", "--method", "hard-share", "--splits", "1", "--param", "lr=1e-3,1e-2", "--set", "epochs=2",
                 "--set", "head_hidden=[]", "--out", out, "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "grid of 2 trial(s)" in text and "best: trial" in text
    assert (Path(out) / "sweep-hard-share-digits.md").exists() and (Path(out) / "sweeps.sqlite").exists()
    for argv, fragment in [
        (["sweep", "--method", "nope"], "unknown method 'nope'"),
        (["sweep", "--worker"], "--study"),
        (["sweep", "--worker", "--study", "x", "--method", "stl"], "--method"),
        (["sweep", "--method", "stl", "--param", "lr=loguniform:1e-4:1e-1"], "--trials"),
        (["sweep", "--method", "stl", "--sampler", "random"], "--trials"),
        (["sweep", "--method", "hard-share", "--splits", "1", "--param", "lr=1e-3", "--set", "epochs=2"],
         "different definition"),
    ]:
        assert main([*argv, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err


# ---------------------------------------------------------------------- many workers on PostgreSQL
def _postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: CI must run the multi-worker PostgreSQL test (.ci/run starts "
                        "the server)")
        pytest.skip(f"{PG_ENV} is not set (a postgresql:// URL; .ci/run starts a server and sets it)")
    return url


@pytest.fixture
def pg_study():
    """A fresh study name on the PostgreSQL server, dropped afterwards."""
    url = _postgres_url()
    name = f"test-sweep-{uuid.uuid4().hex[:12]}"
    yield url, name
    with contextlib.suppress(KeyError):  # a test that failed before creating it
        optuna.delete_study(study_name=name, storage=sw.open_storage(url))


def test_postgres_claims_take_each_waiting_trial_once(pg_study, digits) -> None:
    url, name = pg_study
    sw.create_sweep("hard-share", digits, storage=url, study=name, space={"lr": [i / 1000 for i in range(1, 31)]})
    st = sw.open_storage(url)
    study_id = st.get_study_id_from_name(name)
    got: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        s = sw.open_storage(url)
        while (tid := sw.claim_trial(s, study_id, url)) is not None:
            with lock:
                got.append(tid)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 30 and len(set(got)) == 30
    assert len(_trials(url, name)) == 30  # nobody created a trial when the queue ran dry


def test_three_workers_on_postgres_equal_a_serial_sqlite_run(pg_study, tmp_path: Path, digits) -> None:
    url, name = pg_study
    grid = {"lr": [1e-3, 3e-3, 1e-2], "hidden": [[8], [16]], "batch_size": [16, 32]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mtlkit.cli", "sweep", "--worker", "--storage", url, "--study", name,
           "--device", "cpu", "--out", str(tmp_path / "w"), "--wait", "120"]
    # Workers start before the study exists: they wait for it.
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(3)]
    try:
        sw.create_sweep("hard-share", digits, storage=url, study=name, n_splits=2, space=grid, fixed=FIXED)
        outs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, e) in zip(workers, outs, strict=True):
        assert w.returncode == 0, e
    ran = [int(o.split("worker: ")[1].split(" trial")[0]) for o, _ in outs]
    assert sum(ran) == 12, ran  # each trial run by exactly one worker

    trials = _trials(url, name)
    assert len(trials) == 12  # no extra trial
    errors = {t.number: t.user_attrs.get("error") for t in trials if t.state.name != "COMPLETE"}
    assert not errors and {t.state.name for t in trials} == {"COMPLETE"}, errors  # none WAITING/RUNNING/FAIL
    assert sorted(json.dumps(_params(t), sort_keys=True) for t in trials) == _grid_keys(grid)  # each point once

    pg = sw.finish_sweep(url, name, data=digits, device="cpu", out=tmp_path / "pg")
    serial = sw.sweep("hard-share", digits, storage=_sqlite(tmp_path), study="serial", n_splits=2, space=grid,
                      fixed=FIXED, out=tmp_path / "serial", device="cpu")
    by_params = {json.dumps(_params(t), sort_keys=True): t.value for t in trials}
    assert by_params == {json.dumps(_params(t), sort_keys=True): t.value for t in _trials(_sqlite(tmp_path), "serial")}
    assert (pg.best.number, pg.hparams) == (serial.best.number, serial.hparams)
    assert pg.test == serial.test
    assert f"`{name}` in `{url}`" in pg.report.read_text()


def test_storage_passwords_are_masked() -> None:
    assert "secret" not in sw.mask_url("postgresql://me:secret@db.example:5432/sweeps")
    assert sw.mask_url("postgresql://me:secret@db.example:5432/sweeps").startswith("postgresql://me:***@")
