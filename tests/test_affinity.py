"""Task affinity and grouping (issue 14): the lookahead against an explicit copy-step-re-evaluate loop, the gradient
affinity against per-task autograd, the exact grouping against brute-force enumeration of all partitions, the
planted mixture's families recovered, and the `mtlkit affinity` command."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlkit import datasets
from mtlkit.analysis.affinity import Affinity, AffinityRecorder, gradient_matrix, step_affinity
from mtlkit.analysis.grouping import _approximate, _clean, group_tasks, read_groups, task_gains
from mtlkit.data.sampler import TaskBatchSampler
from mtlkit.methods import registry
from mtlkit.methods.base import as_output
from mtlkit.methods.params import method_defaults
from mtlkit.nn.losses import TaskLoss
from mtlkit.optim.combiners import task_tape


def _tiny(kind: str = "regression", seed: int = 0):
    """A tiny hard-share model (float64) on 6 SRDML tasks (regression) or 5 digits tasks (binary), and one batch."""
    data = datasets.load("srdml-synthetic", n_tasks=6, magnitudes=(1.0, 2.0, 3.0), n_bases=1) if kind == "regression" \
        else datasets.load("digits")
    if kind != "regression":
        from mtlkit.experiments.affinity import select_tasks

        data = select_tasks(data, range(5))
    split = data.split(seed=seed)
    info = split.train.info()
    hp = {**method_defaults(registry.get("hard-share")), "hidden": [8], "head_hidden": [4]}
    torch.manual_seed(seed)
    parts = registry.get("hard-share").build(info, hp)
    parts.model.double()
    dd = split.train.tensors("cpu", dtype=torch.float64)
    batch = next(iter(TaskBatchSampler(dd, 16, seed=seed).epoch(0)))
    return parts, TaskLoss(info.spec), batch


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_lookahead_equals_an_explicit_per_task_loop(kind: str) -> None:
    parts, loss, batch = _tiny(kind)
    model, lr = parts.model, 0.05
    shared = parts.shared_parameters(model)
    got = step_affinity(model, shared, batch.x, lambda p: loss(p, batch), lr).lookahead
    before = {k: v.clone() for k, v in model.state_dict().items()}
    T = batch.mask.shape[0]
    base = loss(as_output(model(batch.x)).pred, batch).detach()
    ref = np.zeros((T, T))
    for i in range(T):  # copy the model, step on task i's loss alone, re-evaluate every task j
        m2 = copy.deepcopy(model)
        sh = parts.shared_parameters(m2)
        g = torch.autograd.grad(loss(as_output(m2(batch.x)).pred, batch)[i], sh)
        with torch.no_grad():
            for p, gi in zip(sh, g, strict=True):
                p -= lr * gi
            ref[i] = 1.0 - (loss(as_output(m2(batch.x)).pred, batch) / base).numpy()
    assert got is not None
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    assert np.abs(ref).max() > 1e-3  # a real effect, not zeros compared with zeros
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # parameters untouched
    # the one-backward-pass gradients of a row-separable model on per-task input give the same numbers
    tape = task_tape(model, shared, T)
    got2 = step_affinity(model, shared, batch.x, lambda p: loss(p, batch), lr, tape=tape).lookahead
    assert got2 is not None
    np.testing.assert_allclose(got2.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_gradient_affinity_equals_the_gram_of_explicit_per_task_gradients() -> None:
    parts, loss, batch = _tiny()
    model = parts.model
    shared = parts.shared_parameters(model)
    st = step_affinity(model, shared, batch.x, lambda p: loss(p, batch), 0.1, lookahead=False)
    L = loss(as_output(model(batch.x)).pred, batch)
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(L[t], shared, retain_graph=True)])
                     for t in range(len(L))]).numpy()
    gram = G @ G.T
    np.testing.assert_allclose(st.gram.numpy(), gram, rtol=1e-10)
    norms = np.linalg.norm(G, axis=1)
    np.testing.assert_allclose(gradient_matrix(st.gram, "cosine"), gram / np.outer(norms, norms), rtol=1e-10)
    Ln = L.detach().numpy()
    np.testing.assert_allclose(gradient_matrix(st.gram, "first-order", st.losses, 0.1), 0.1 * gram / Ln[None, :],
                               rtol=1e-10)
    # the first-order form is the lookahead's Taylor expansion: close for a small step
    small = step_affinity(model, shared, batch.x, lambda p: loss(p, batch), 1e-5).lookahead
    assert small is not None
    np.testing.assert_allclose(small.numpy(), 1e-5 * gram / Ln[None, :], rtol=1e-3, atol=1e-12)


def test_recorder_averages_steps_and_skips_unknown_entries() -> None:
    rec = AffinityRecorder()
    from mtlkit.analysis.affinity import StepAffinity

    g = torch.eye(2, dtype=torch.float64)
    rec.add(StepAffinity(g, torch.ones(2), torch.tensor([[0.0, 1.0], [np.nan, 0.0]])), 0.1)
    rec.add(StepAffinity(g, torch.ones(2), torch.tensor([[0.0, 3.0], [2.0, 0.0]])), 0.1)
    np.testing.assert_allclose(rec.mean("lookahead"), [[0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_allclose(rec.mean("gradient", "cosine"), np.eye(2))


def test_joint_run_probes_without_changing_the_training() -> None:
    from mtlkit.experiments.affinity import joint_affinity
    from mtlkit.train.run import train_one

    data = datasets.load("srdml-synthetic", n_tasks=4, magnitudes=(1.0, 2.0), n_bases=1, m=40)
    split = data.split(seed=0)
    hp = {"epochs": 3, "hidden": [8], "head_hidden": [], "batch_size": 8}
    joint = joint_affinity(split, "hard-share", hp, every=2, progress=False)
    plain = train_one("hard-share", split, hp, progress=False)
    assert joint.run.history is not None and plain.history is not None
    np.testing.assert_array_equal(np.array(joint.run.history.train_loss), np.array(plain.history.train_loss))
    steps = 3 * -(-int(split.train.task_sizes[0]) // 8)
    assert joint.recorder.steps == -(-steps // 2)
    aff = joint.affinity("lookahead")
    assert aff.matrix.shape == (4, 4) and np.isfinite(aff.matrix).all() and joint.cost >= 1.0


# ---------------------------------------------------------------------------------------------- grouping
def _partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in _partitions(rest):
        for i in range(len(p)):
            yield p[:i] + [[first, *p[i]]] + p[i + 1:]
        yield [[first], *p]


@pytest.mark.parametrize("objective", ["sum", "mean"])
def test_exact_grouping_equals_brute_force(objective: str) -> None:
    rng = np.random.default_rng(0)
    for T in (1, 2, 4, 6, 7):
        M = rng.normal(size=(T, T))
        every = [(task_gains(M, p, objective).sum(), len(p)) for p in _partitions(list(range(T)))]
        g = group_tasks(M, objective=objective)
        assert g.total == pytest.approx(max(v for v, _ in every), abs=1e-9)
        assert sorted(t for grp in g.groups for t in grp) == list(range(T))
        for k in range(1, T + 1):
            gk = group_tasks(M, k=k, objective=objective)
            assert len(gk.groups) == k
            assert gk.total == pytest.approx(max(v for v, n in every if n == k), abs=1e-9)
            gb = group_tasks(M, budget=k, objective=objective)
            assert gb.total == pytest.approx(max(v for v, n in every if n <= k), abs=1e-9)
        # the clustering used beyond the exact limit never beats the optimum, and each of its moves is exact
        approx = _approximate(_clean(M), objective, None, None)
        assert task_gains(M, approx, objective).sum() <= g.total + 1e-9


def test_approximate_grouping_recovers_planted_blocks() -> None:
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(1)
    T = 60
    truth = rng.integers(0, 4, T)
    M = np.where(truth[:, None] == truth[None, :], 0.5, -0.3) + rng.normal(0, 0.3, (T, T))
    g = group_tasks(M)
    assert g.search == "agglomerative"
    assert adjusted_rand_score(truth, g.labels()) == 1.0
    assert group_tasks(M, k=4).total == pytest.approx(g.total)
    small = M[:12, :12]
    assert group_tasks(small, exact_max=4).total <= group_tasks(small).total + 1e-9


def test_grouping_advice_nan_and_files(tmp_path: Path) -> None:
    M = np.array([[0, 1, 1, -1], [1, 0, 1, -1], [1, 1, 0, -1], [-1, -1, -1, 0]], dtype=float)
    M[0, 1] = np.nan  # unknown counts as 0
    g = group_tasks(Affinity(M, ("a", "b", "c", "d"), "pairs"))
    assert g.named_groups() == [["a", "b", "c"], ["d"]]
    assert g.advice().startswith("train {a, b, c} together, keep d alone: predicted gain")
    assert read_groups(g.write_json(tmp_path / "g.json"), ("a", "b", "c", "d")) == [(0, 1, 2), (3,)]
    (tmp_path / "g.txt").write_text("# groups\nb, d\n")
    assert read_groups(tmp_path / "g.txt", ("a", "b", "c", "d")) == [(0,), (1, 3), (2,)]
    from mtlkit.errors import MtlkitError

    with pytest.raises(MtlkitError, match="unknown task 'd'"):
        read_groups(tmp_path / "g.txt", ("a", "b", "c"))
    aff = Affinity(M, ("a", "b", "c", "d"), "pairs")
    back = Affinity.read_csv(aff.write_csv(tmp_path / "m.csv"))
    np.testing.assert_allclose(back.matrix, M, equal_nan=True)
    assert list(aff.summary()["best_partner"]) == ["b", "c", "a", "a"]  # ties: the first source
    assert json.loads((tmp_path / "g.json").read_text())["groups"] == [["a", "b", "c"], ["d"]]


# ---------------------------------------------------------------------------------------------- the command
def test_affinity_command_writes_its_files_and_refuses_too_many_pairs(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mtlkit.cli import main

    out = tmp_path / "aff"
    assert main(["affinity", "--dataset", "srdml-synthetic", "--set", "epochs=2", "--set", "hidden=[8]",
                 "--groups", "2", "--out", str(out), "--quiet"]) == 0
    stem = out / "affinity-srdml-synthetic-lookahead"
    for suffix in (".csv", ".png", ".svg", "-groups.json", "-tasks.csv"):
        assert Path(f"{stem}{suffix}").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "× one training run" in printed and "advice: train {" in printed
    back = Affinity.read_csv(f"{stem}.csv")
    assert back.matrix.shape == (12, 12)
    groups = json.loads(Path(f"{stem}-groups.json").read_text())["groups"]
    assert len(groups) == 2 and sorted(sum(groups, [])) == sorted(back.task_names)
    # 12 tasks > the pairs limit: one line on stderr, exit 2, nothing trained
    assert main(["affinity", "--dataset", "srdml-synthetic", "--how", "pairs", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-pairs" in err[0] and err[0].startswith("mtlkit: error:")
    assert main(["affinity", "--dataset", "srdml-synthetic", "--groups", "13", "--out", str(out)]) == 2


def test_bench_groups_trains_one_model_per_group(tmp_path: Path) -> None:
    from mtlkit.experiments.affinity import split_tasks
    from mtlkit.experiments.bench import run_bench
    from mtlkit.experiments.splits import make_splits
    from mtlkit.train.run import train_one

    data = datasets.load("srdml-synthetic", n_tasks=4, magnitudes=(1.0, 2.0), n_bases=1, m=30)
    hp = {"epochs": 2, "hidden": [4], "head_hidden": []}
    (tmp_path / "groups.txt").write_text(f"{data.task_names[0]}, {data.task_names[3]}\n")
    res = run_bench(data, ["stl", "hard-share"], n_splits=1, select=False, hparams=hp, progress=False,
                    groups=str(tmp_path / "groups.txt"))
    assert set(res.scores) == {"stl", "hard-share", "hard-share@groups"}
    split = make_splits(data, 1)[0][1]
    expected = np.zeros(4)
    for g in [(0, 3), (1,), (2,)]:  # the file's group, the rest alone
        expected[list(g)] = train_one("hard-share", split_tasks(split, g), hp, progress=False).evaluate(
            "test").per_task["rmse"]
    np.testing.assert_allclose(res.scores["hard-share@groups"][0], expected, rtol=1e-6)
    assert any("groups on seed-0: " in n for n in res.notes)


def test_planted_mixture_families_are_separated() -> None:
    from sklearn.metrics import adjusted_rand_score

    from mtlkit.experiments.affinity import first_split, joint_affinity
    from mtlkit.experiments.reproduce.affinity import planted_mixture

    data, fam = planted_mixture(n_a=4, n_b=4, n=100, seed=0)  # (seeds 0-3 all pass: seed 0 is not a lucky one)
    joint = joint_affinity(first_split(data, 0), "hard-share", {"epochs": 20}, every=1, progress=False)
    for how in ("lookahead", "gradient"):
        aff = joint.affinity(how)
        assert adjusted_rand_score(fam, group_tasks(aff, k=2).labels()) == 1.0
        assert adjusted_rand_score(fam, group_tasks(aff).labels()) == 1.0
        same = fam[:, None] == fam[None, :]
        off = ~np.eye(8, dtype=bool)
        within, across = aff.matrix[same & off], aff.matrix[~same]
        assert within.min() > across.max()  # margin: every within-family pair above every cross-family one


def test_reproduction_scores_against_known_answers() -> None:
    from mtlkit.experiments.reproduce.affinity import scores

    fam = np.array([0, 0, 0, 1, 1, 1])
    block = np.where(fam[:, None] == fam[None, :], 1.0, -1.0) + np.arange(36).reshape(6, 6) * 1e-3
    rec = {"name": "toy", "tasks": [f"t{i}" for i in range(6)], "relation": "ω", "transfer_test": block.tolist(),
           "matrices": {"lookahead": block.tolist(), "gradient": (-block).tolist(), "pairs": block.tolist(),
                        "learned": (block + 5.0).tolist()}}
    rows = {r["how"]: r for r in scores({"truth": fam}, rec)}
    assert rows["lookahead"]["ari_k"] == rows["lookahead"]["ari_auto"] == 1.0
    assert rows["lookahead"]["rho_transfer"] == pytest.approx(1.0)
    assert rows["gradient"]["rho_transfer"] == pytest.approx(-1.0)
    assert rows["learned"]["ari_auto"] == 1.0  # a learned relation is centred before grouping: +5 everywhere is moot


def test_reproduce_affinity_quick_writes_its_results(tmp_path: Path) -> None:
    from mtlkit.cli import main

    out = tmp_path / "q"
    assert main(["reproduce", "affinity", "--quick", "--bench-splits", "1", "--no-school", "--out", str(out),
                 "--quiet"]) == 0
    md = (out / "affinity.md").read_text()
    for part in ("Protocol:", "## Recovered groups", "## Cost of the joint run", "## Grouped vs all-in-one vs STL",
                 "## Reading"):
        assert part in md
    import pandas as pd

    table = pd.read_csv(out / "affinity.csv")
    assert list(table["how"]) == ["lookahead", "gradient", "pairs", "learned"]
    assert table["ari_k"].between(-1, 1).all()


def test_group_notes_name_small_groups_and_size_large_ones() -> None:
    """A bench note names every task of a small group; a group of more than 12 tasks is its size and its ends."""
    from mtlkit.experiments.affinity import _groups_text

    names = [f"s{i}" for i in range(20)]
    assert _groups_text([[0, 3], [1, 2]], names) == "s0+s3 | s1+s2"
    assert _groups_text([list(range(1, 20)), [0]], names) == "19 tasks (s1+s2+s3+…+s19) | s0"
