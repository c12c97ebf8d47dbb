"""Fair-budget tuning (`mtlkit.experiments.tuning`) against known truths: ridge's best alpha found by brute force
with scikit-learn, an ``off`` value chosen exactly when the regulariser only hurts, edge flags and widening past the
edge, seeded reproducibility, defaults as the first trial, equal budgets in `bench`, pruning and shared storage."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

import mtlkit
from mtlkit.cli import main
from mtlkit.experiments.bench import leaderboard_markdown, run_bench
from mtlkit.experiments.tuning import decode_params, encode_params, suggest, train_tuned, tune
from mtlkit.hparams import Space, choice, log_range
from mtlkit.methods import registry
from mtlkit.train.config import method_defaults

pytestmark = pytest.mark.usefixtures("one_thread")
optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL_NET = {"epochs": 8, "hidden": [8], "head_hidden": [], "batch_size": 16}


def _linear_data(seed: int, n: int, d: int, noise: float, n_tasks: int = 3) -> mtlkit.MultiTaskData:
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)) for _ in range(n_tasks)]
    ys = [X @ rng.normal(size=d) + noise * rng.normal(size=n) for X in Xs]
    return mtlkit.MultiTaskData.from_tasks(Xs, ys, kind="regression", names=[f"t{i}" for i in range(n_tasks)],
                                           name=f"linear-{seed}")


def _ridge_val_rmse(split, alpha: float) -> float:
    """Validation RMSE (mean over tasks) of scikit-learn's Ridge per task, on features and targets standardised
    with the pooled training rows' statistics (what mtlkit does before fitting)."""
    tr, va = split.train, split.val
    Xtr = [tr.task_arrays(t)[0] for t in range(tr.n_tasks)]
    ytr = [tr.task_arrays(t)[1] for t in range(tr.n_tasks)]
    allx, ally = np.concatenate(Xtr), np.concatenate(ytr)
    mx, sx, my, sy = allx.mean(0), allx.std(0), ally.mean(), ally.std()
    out = []
    for t in range(tr.n_tasks):
        m = Ridge(alpha=alpha).fit((Xtr[t] - mx) / sx, (ytr[t] - my) / sy)
        Xv, yv = va.task_arrays(t)
        pred = m.predict((Xv - mx) / sx) * sy + my
        out.append(np.sqrt(np.mean((yv - pred) ** 2)))
    return float(np.mean(out))


@pytest.fixture(scope="module")
def noisy() -> mtlkit.MultiTaskData:
    """Few rows, many features, strong noise: ridge's best alpha lies well inside (1e-3, 1e4)."""
    return _linear_data(0, n=60, d=12, noise=3.0)


# ---------------------------------------------------------------------- (a) the known best configuration
def test_tpe_finds_the_brute_force_best_alpha_within_one_percent(noisy) -> None:
    split = noisy.split(test=0.2, val=0.4, seed=0)
    grid = np.logspace(-3, 4, 300)
    brute = np.array([_ridge_val_rmse(split, a) for a in grid])
    best_alpha, best = grid[brute.argmin()], brute.min()
    assert 1e-1 < best_alpha < 1e3 and brute[0] > 1.02 * best  # the optimum is interior, and alpha matters

    res = tune("stl-linear", [split], trials=15, seed=0, space={"alpha": log_range(1e-3, 1e4)})
    assert res.n_trials == 15 and len(res.trials) == 15
    got = res.best_params["alpha"]
    assert res.best_value <= 1.01 * best, (got, res.best_value, best_alpha, best)
    # Every recorded value is scikit-learn's validation RMSE at that alpha: scored on validation rows only.
    for t in res.trials:
        assert t.value == pytest.approx(_ridge_val_rmse(split, t.params["alpha"]), rel=1e-5)
    assert res.hparams == [{"alpha": got}] and res.selection == "first" and res.edges == {}
    assert "15 trials" in res.text() and "first split" in res.text()


# ---------------------------------------------------------------------- (b) the off value is a real candidate
def test_off_is_selected_when_the_regulariser_only_hurts_and_not_when_it_helps(noisy) -> None:
    clean = _linear_data(1, n=80, d=4, noise=0.0)  # noise-free, many rows: any alpha > 0 only adds bias
    space = {"alpha": log_range(1.0, 1e3, off=0.0)}
    hurt = tune("stl-linear", [clean.split(test=0.2, val=0.3, seed=0)], trials=12, seed=0, space=space)
    assert hurt.best_params == {"alpha": 0.0}
    assert hurt.trials[0].params == {"alpha": 1.0}  # the default (on) first, then off found by the search
    assert hurt.edges == {}  # off is a choice of its own, never an edge

    split = _linear_data(2, n=40, d=12, noise=4.0).split(test=0.2, val=0.4, seed=0)  # rows > features: OLS exists
    assert _ridge_val_rmse(split, 0.0) > 1.05 * min(_ridge_val_rmse(split, a) for a in np.logspace(0, 3, 50))
    helps = tune("stl-linear", [split], trials=12, seed=0, space=space)
    offs = [t for t in helps.trials if t.params["alpha"] == 0.0 and t.state == "COMPLETE"]
    assert offs, "the search never tried off"
    assert helps.best_params["alpha"] > 0.0 and all(helps.best_value < t.value for t in offs)


def test_off_switch_round_trips_through_optuna() -> None:
    space = {"lam": log_range(1e-5, 1e-1, off=0.0), "hidden": choice([32], [64]), "K": Space("int", 1, 8)}
    assert encode_params({"lam": 0.0, "hidden": [64], "K": 3}, space) == {"lam:off": "off", "hidden": "[64]", "K": 3}
    assert encode_params({"lam": 1e-3}, space) == {"lam:off": "on", "lam": 1e-3}
    assert decode_params({"lam:off": "off", "hidden": "[64]", "K": 3}, space) == {"lam": 0.0, "hidden": [64], "K": 3}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        t = study.ask()
        p = suggest(t, space)
        seen.add(p["lam"] == 0.0)
        assert p["lam"] == 0.0 or 1e-5 <= p["lam"] <= 1e-1
        assert set(t.params) == ({"lam:off", "hidden", "K"} | ({"lam"} if p["lam"] else set()))
        study.tell(t, 0.0)
    assert seen == {True, False}


# ---------------------------------------------------------------------- (c) edges and widening
def test_edge_flag_and_widening_move_past_the_old_edge(noisy) -> None:
    split = noisy.split(test=0.2, val=0.4, seed=0)
    grid = np.logspace(-3, 4, 200)
    best_alpha = grid[np.argmin([_ridge_val_rmse(split, a) for a in grid])]
    assert best_alpha > 2.0  # beyond the space below (stretched to the default alpha = 1, the first trial)
    space = {"alpha": log_range(1e-3, 1e-1)}
    res = tune("stl-linear", [split], trials=8, seed=0, space=space, fixed={})
    assert res.space["alpha"].high == 1.0 and any("range stretched" in n for n in res.notes)
    assert res.edges == {"alpha": "high"} and res.best_params["alpha"] > 0.5
    assert any(line.startswith("⚠ at edge: alpha=") and "(high edge of log[0.001, 1])" in line
               for line in res.edge_lines())
    assert "⚠ at edge: alpha=" in res.text()

    wide = tune("stl-linear", [split], trials=8, seed=0, space=space, widen=2, widen_trials=4)
    s = wide.tuned[0]
    assert s.widened[0] == ["alpha"] and s.spaces[1]["alpha"].high == pytest.approx(10.0)
    assert wide.best_params["alpha"] > 1.0  # past the old edge
    assert wide.best_value < res.best_value
    extra = sum(t.round > 0 for t in wide.trials)
    assert extra == 4 * len(s.widened) and wide.n_trials == 8 + extra
    assert wide.budget_text().startswith("8 trials + 4 after widening alpha")
    assert [t.number for t in wide.trials] == list(range(len(wide.trials)))


# ---------------------------------------------------------------------- (d) reproducible; (f) defaults first
def test_same_seed_same_trials_and_defaults_first() -> None:
    data = _linear_data(3, n=50, d=4, noise=0.5)
    splits = [data.split(test=0.2, val=0.3, seed=s) for s in range(2)]

    def go(seed: int):
        return tune("hard-share", splits, trials=5, seed=seed, fixed=SMALL_NET, selection="each")

    a, b, c = go(0), go(0), go(1)
    key = [(t.split, t.params, t.value, t.state) for t in a.trials]
    assert key == [(t.split, t.params, t.value, t.state) for t in b.trials]
    assert key != [(t.split, t.params, t.value, t.state) for t in c.trials]
    assert a.hparams == b.hparams and len(a.hparams) == 2 and len(a.tuned) == 2 and a.n_trials == 10

    space = registry.search_space("hard-share")
    assert space, "hard-share declares no tuning space"
    defaults = method_defaults(registry.get("hard-share"))
    for s in a.tuned:  # trial 0 of every tuned split is the defaults (with the fixed values)
        first = s.trials[0]
        assert first.number == 0 and first.params == {k: defaults[k] for k in space if k not in SMALL_NET}
        assert s.best is not None and s.best.value <= first.value  # never worse than the defaults on validation
    assert a.selection == "each" and "each split's own validation" in a.text()
    assert a.to_json()["n_trials"] == 10


def test_first_selection_trains_the_choice_on_every_split_and_reuses_the_tuned_run(noisy) -> None:
    splits = [noisy.split(test=0.2, val=0.4, seed=s) for s in range(3)]
    res = tune("stl-linear", splits, trials=6, seed=0, space={"alpha": log_range(1e-2, 1e3)})
    assert len(res.tuned) == 1 and res.hparams == [res.hparams[0]] * 3 and res.runs[0] is not None
    runs = train_tuned(res, splits)
    assert runs[0] is res.runs[0]
    for i, run in enumerate(runs):
        assert run.hparams["alpha"] == res.best_params["alpha"] and run.seed == i
        assert len(run.selection) == 6
    assert runs[0].evaluate("val").mean["rmse"] == pytest.approx(res.best_value)


# ---------------------------------------------------------------------- pruning, time budget, errors, storage
def test_pruned_trials_count_toward_the_budget() -> None:
    data = _linear_data(4, n=50, d=4, noise=0.5)
    split = data.split(test=0.2, val=0.3, seed=0)
    space = {"lr": log_range(1e-5, 1.0)}
    res = tune("hard-share", [split], trials=12, seed=0, space=space, fixed={**SMALL_NET, "epochs": 12})
    states = [t.state for t in res.trials]
    assert len(states) == 12 and res.n_trials == 12 and "PRUNED" in states
    assert all(t.epochs is not None and t.epochs < 12 for t in res.trials if t.state == "PRUNED")
    assert "pruned" in res.budget_text() and "count toward the budget" in res.text()
    off = tune("hard-share", [split], trials=12, seed=0, space=space, fixed={**SMALL_NET, "epochs": 12}, pruner=None)
    assert {t.state for t in off.trials} == {"COMPLETE"}


def test_time_budget_stops_and_says_so(noisy) -> None:
    splits = [noisy.split(test=0.2, val=0.4, seed=s) for s in range(2)]
    res = tune("hard-share", splits, trials=20, seed=0, fixed=SMALL_NET, time_budget=1e-3, selection="each")
    assert res.stopped and all(s.ran() == 1 for s in res.tuned)  # each split ran its defaults, nothing more
    assert "1 of 20 trials" in res.budget_text() and "stopped by the time budget" in res.budget_text()
    assert res.to_json()["stopped"] is True


def test_bad_arguments_are_user_errors(noisy) -> None:
    split = noisy.split(test=0.2, val=0.4, seed=0)
    for kwargs, fragment in [({"trials": 0}, "--trials"), ({"trials": 2, "selection": "best"}, "selection"),
                             ({"trials": 2, "fixed": {"nope": 1}}, "unknown hyper-parameter"),
                             ({"trials": 2, "space": {"nope": log_range(1, 2)}}, "lacks"),
                             ({"trials": 2, "metric": "accuracy"}, "not computed")]:
        with pytest.raises(mtlkit.MtlkitError, match=fragment):
            tune("stl-linear", [split], **kwargs)


def test_two_processes_share_one_budget_through_the_storage(tmp_path: Path, noisy) -> None:
    split = noisy.split(test=0.2, val=0.4, seed=0)
    url = f"sqlite:///{tmp_path / 'tune.sqlite'}"
    kw = dict(trials=10, seed=0, space={"alpha": log_range(1e-3, 1e4)}, storage=url, study="shared")
    results: list = []

    def worker() -> None:
        results.append(tune("stl-linear", [split], **kw))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2
    for r in results:  # both see the whole study: exactly the budget, every trial run once
        assert r.n_trials == 10 and {t.state for t in r.trials} == {"COMPLETE"}
        assert r.best_params == results[0].best_params
    again = tune("stl-linear", [split], **kw)  # a finished tuning is read back, nothing re-run
    assert [t.value for t in again.trials] == [t.value for t in results[0].trials]
    with pytest.raises(mtlkit.MtlkitError, match="other settings"):
        tune("stl-linear", [split], **{**kw, "trials": 11})


# ---------------------------------------------------------------------- (e) bench: equal budgets, stated
def test_bench_gives_every_method_the_same_trials_and_says_so(tmp_path: Path, noisy) -> None:
    methods = ["stl", "hard-share"]
    res = run_bench(noisy, methods, n_splits=2, seed=0, hparams=SMALL_NET, trials=3, progress=False)
    assert set(res.tuning) == set(methods)
    for m, t in res.tuning.items():
        assert t.n_trials == 3 and t.budget == 3 and len(t.hparams) == 2 and len(t.trials) == 3, m
        assert all(res.hparams[m][i][k] == v for i, h in enumerate(t.hparams) for k, v in h.items())
    md = leaderboard_markdown(res)
    assert "equal budget" in md.lower() and md.count("| 3 trials |") == 2  # the budget table, one row per method
    assert "| trials | at edge |" in md and "search space" in md and "lr log[" in md

    grid = run_bench(noisy, methods, n_splits=1, seed=0, hparams=SMALL_NET, progress=False)
    md = leaderboard_markdown(grid)
    sizes = {m: int(np.prod([len(v) for k, v in registry.get(m).grid_for("regression").items() if k not in SMALL_NET]))
             for m in methods}
    assert "unequal" in md and all(f"{m}: {n}" in md for m, n in sizes.items())  # each method's grid size

    rows = []
    for t in range(3):
        X, y = noisy.task_arrays(t)
        rows += [{"site": f"s{t}", "y": float(v), **{f"f{j}": float(x[j]) for j in range(X.shape[1])}}
                 for x, v in zip(X, y, strict=True)]
    f = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(f, index=False)
    out = tmp_path / "res"
    argv = ["bench", "--data", str(f), "--task", "site", "--target", "y", "--methods", "stl", "--splits", "2",
            "--set", "epochs=4", "--set", "hidden=[8]", "--out", str(out)]
    assert main([*argv, "--trials", "3", "--tune-on", "each", "--widen", "1"]) == 0
    text = (out / "bench-table.md").read_text()
    assert "3 trials on each of 2 splits" in text and "each split's own validation" in text
    assert main([*argv, "--widen", "1"]) == 2  # tuning options need --trials
