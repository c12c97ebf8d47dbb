"""The transfer reproduction's solvers: the batched linear / ReLU shared-module fits of the synthetic figures, the
SVD task weights (Algorithm 2), the equal-budget TPE search of protocol steps that are no registry method, and
covariance alignment on the embedding (Algorithm 1) with the embeddings it compares."""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mtlkit.errors import MtlkitError
from mtlkit.experiments.reproduce.transfer.base import _fmtv
from mtlkit.hparams import Space


def linear_mtl_als(G: torch.Tensor, b: torch.Tensor, iters: int = 200, init: torch.Tensor | None = None) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Eq. 3 with capacity r = 1 for P independent problems of K linear tasks, from Gram statistics:
    ``min Σ_k ‖X_k B a_k − y_k‖²`` with ``G [P, K, d, d] = X_kᵀX_k``, ``b [P, K, d] = X_kᵀy_k``.

    Alternating exact minimisation: ``a_k = Bᵀb_k / BᵀG_kB``, ``B = (Σ a_k² G_k)⁺ Σ a_k b_k`` (a tiny ridge keeps
    the solve defined when the pooled rows span less than d). Returns ``B [P, d]``, ``a [P, K]``.
    """
    P, K, d, _ = G.shape
    B = b.sum(1) if init is None else init.clone()
    B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-30)
    eye = torch.eye(d, dtype=G.dtype, device=G.device)
    ridge = 1e-10 * torch.diagonal(G.sum(1), dim1=-2, dim2=-1).sum(-1) / d  # [P]
    a = torch.zeros(P, K, dtype=G.dtype, device=G.device)
    for _ in range(iters):
        GB = torch.einsum("pkij,pj->pki", G, B)
        den = torch.einsum("pki,pi->pk", GB, B).clamp_min(1e-30)
        a = torch.einsum("pki,pi->pk", b, B) / den
        H = torch.einsum("pk,pkij->pij", a * a, G) + ridge[:, None, None] * eye
        rhs = torch.einsum("pk,pki->pi", a, b)
        B = torch.linalg.solve(H, rhs)
        B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-30)
    GB = torch.einsum("pkij,pj->pki", G, B)
    a = torch.einsum("pki,pi->pk", b, B) / torch.einsum("pki,pi->pk", GB, B).clamp_min(1e-30)
    return B, a


def fit_shared_gd(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, act: str, task: str, steps: int = 600,
                  lr: float = 0.02) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1 with r = 1 by full-batch Adam for P problems of K tasks: ``f_k(x) = a_k·g(xᵀB) (+ c_k)``.

    ``X [P, K, m, d]``, ``y``/``mask [P, K, m]``; ``act`` linear | relu; ``task`` regression (squared loss) |
    classification (logistic loss, bias c_k). Every labelled row counts once (Eq. 1's sum). B starts at the moment
    estimate ``Σ_k X_kᵀ(y_k − ȳ_k)`` (normalised), a_k at 1, c_k at 0. Returns B [P, d], a [P, K], c [P, K].
    """
    if act not in ("linear", "relu") or task not in ("regression", "classification"):
        raise ValueError(f"act must be linear|relu and task regression|classification, got {act!r}, {task!r}")
    m = mask.to(X.dtype)
    n = m.sum((1, 2)).clamp_min(1.0)
    ybar = (y * m).sum(2, keepdim=True) / m.sum(2, keepdim=True).clamp_min(1.0)
    B0 = torch.einsum("pkmd,pkm->pd", X, (y - ybar) * m)
    B = (B0 / B0.norm(dim=1, keepdim=True).clamp_min(1e-30)).clone().requires_grad_(True)
    a = torch.ones(y.shape[:2], dtype=X.dtype).requires_grad_(True)
    c = torch.zeros(y.shape[:2], dtype=X.dtype).requires_grad_(task == "classification")
    opt = torch.optim.Adam([B, a, c] if task == "classification" else [B, a], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        z = torch.einsum("pkmd,pd->pkm", X, B)
        f = (torch.relu(z) if act == "relu" else z) * a[..., None] + c[..., None]
        if task == "regression":
            per = (f - y) ** 2
        else:
            per = torch.nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none")
        ((per * m).sum((1, 2)) / n).sum().backward()
        opt.step()
    return B.detach(), a.detach(), c.detach()


def predict_shared(X: torch.Tensor, B: torch.Tensor, a: torch.Tensor, c: torch.Tensor, act: str) -> torch.Tensor:
    """``a_k·g(XB) + c_k`` for ``X [P, K, m, d]``: ``[P, K, m]``."""
    z = torch.einsum("pkmd,pd->pkm", X, B)
    return (torch.relu(z) if act == "relu" else z) * a[..., None] + c[..., None]


def _tpe_sampler(seed: int, rnd: int, number: int, trials: int) -> Any:
    import optuna

    s = int(np.random.SeedSequence([seed, 0, rnd, number]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=s, multivariate=True, group=True,
                                          n_startup_trials=max(2, min(10, trials // 3)))


def tpe_search(objective: Callable[[dict[str, Any]], float], space: Mapping[str, Space], trials: int, seed: int,
               first: Mapping[str, Any], widen: int = 1,
               bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, Any]:
    """Equal-budget tuning of a protocol step that is not a registry method (Algorithm 1's second phase, the
    transfer fine-tuning): ``trials`` trials of Optuna's TPE (seeded, multivariate; the first trial ``first``, the
    step's defaults) maximising ``objective(params)``, a validation score. Spaces as in `tune` (an ``off`` value
    and choices, e.g. the alignment switch, are candidates like any other). A selected value on the edge of a
    range widens it and runs ``trials // 2`` more trials, up to ``widen`` times (counted in the budget text).
    Returns a record with the keys of `TuningResult.to_json` that `budget_lines` reads, plus every trial."""
    import optuna
    from optuna.trial import TrialState

    from mtlkit.experiments.tuning import distributions, encode_params, params_text, space_text, suggest

    if trials < 1:
        raise MtlkitError(f"--trials must be at least 1, got {trials}")
    sp = dict(space)
    records: list[dict[str, Any]] = []
    prior: list[Any] = []
    widened: list[list[str]] = []
    edges: dict[str, str] = {}
    best: dict[str, Any] | None = None
    t0 = time.perf_counter()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for rnd in range(widen + 1):
            n = trials if rnd == 0 else max(1, trials // 2)
            study = optuna.create_study(direction="maximize")
            dists = distributions(sp)
            for t in prior:
                params = {k: v for k, v in t.params.items() if k in dists}
                with_dist = {k: dists[k] for k in params}
                with contextlib.suppress(ValueError):
                    study.add_trial(optuna.trial.create_trial(params=params, distributions=with_dist, value=t.value))
            if rnd == 0:
                study.enqueue_trial(encode_params(dict(first), sp))
            for _ in range(n):
                study.sampler = _tpe_sampler(seed, rnd, len(records), trials)
                trial = study.ask()
                params = suggest(trial, sp)
                t1 = time.perf_counter()
                value = float(objective(params))
                if math.isfinite(value):
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                records.append({"number": len(records), "round": rnd, "params": params, "value": value,
                                "seconds": time.perf_counter() - t1})
            prior = [t for t in study.trials if t.state == TrialState.COMPLETE]
            ok = [r for r in records if math.isfinite(r["value"])]
            if not ok:
                raise MtlkitError("no trial ended with a finite validation score")
            best = max(ok, key=lambda r: (r["value"], -r["number"]))
            edges = {k: e for k, s in sp.items() if k in best["params"] and (e := s.edge(best["params"][k]))}
            if not edges or rnd == widen:
                break
            names = []
            for k, side in edges.items():
                new = sp[k].widened(side, bounds=(bounds or {}).get(k, (None, None)))
                if new != sp[k]:
                    sp[k] = new
                    names.append(k)
            if not names:
                break
            widened.append(names)
    finally:
        optuna.logging.set_verbosity(verbosity)
    assert best is not None
    text = f"{sum(r['round'] == 0 for r in records)} trials" + "".join(
        f" + {sum(r['round'] == i + 1 for r in records)} after widening {', '.join(nm)}"
        for i, nm in enumerate(widened))
    edge_lines = [f"⚠ at edge: {k}={_fmtv(best['params'][k])} ({side} edge of {sp[k].text()})"
                  for k, side in edges.items()]
    return {"budget": trials, "budget_text": text, "space_text": space_text(sp), "best_params": best["params"],
            "best_value": best["value"], "best_text": params_text(best["params"]), "edges": edges,
            "edge_lines": edge_lines, "trials": records, "seconds": time.perf_counter() - t0}


def best_where(record: Mapping[str, Any], **match: Any) -> dict[str, Any] | None:
    """The best trial of a `tpe_search` record among those whose parameters equal ``match`` (e.g. the best trial
    with the alignment switched on); None when there is none."""
    ok = [t for t in record["trials"] if math.isfinite(t["value"])
          and all(t["params"].get(k) == v for k, v in match.items())]
    return max(ok, key=lambda t: (t["value"], -t["number"])) if ok else None


NOISE_VARIANTS = ("unweighted", "svd (centred labels)", "svd (0/1 labels)")


def noise_weights(variant: str, X: np.ndarray, Y: np.ndarray, rank: int = 1) -> np.ndarray | None:
    """Algorithm 2's weights for ``variant`` (None: unweighted): θ_i = Xᵀy_i with labels centred per task (our
    reading) or as 0/1 (the literal one)."""
    from mtlkit.optim.weighting import svd_task_weights

    if variant == "unweighted":
        return None
    if variant not in NOISE_VARIANTS:
        raise ValueError(f"unknown weighting {variant!r}; known: {', '.join(NOISE_VARIANTS)}")
    Yc = Y - Y.mean(0) if "centred" in variant else Y
    return np.asarray(svd_task_weights(X, Yc, rank), dtype=np.float64)


ALIGN_HP: dict[str, Any] = {"epochs": 10, "patience": 3, "batch_size": 64, "lr": 1e-3}
TRANSFER_HP: dict[str, Any] = {"epochs": 10, "patience": 3, "batch_size": 64, "lr": 1e-3}
SIM_ROWS = 1500


def _attach_embedding_alignment(model: torch.nn.Module, n_tasks: int) -> Any:
    """`Alignment` (R_t = I) on the input of the shared layer ``bottom[2]``: Z_t = E_t R_t."""
    from mtlkit.methods.alignment import Alignment

    bottom = getattr(model, "bottom", None)
    if bottom is None or len(bottom) < 3 or not isinstance(bottom[2], torch.nn.Linear):
        raise ValueError("embedding alignment needs a hard-share model with hidden=[E, r] (an embedding layer first)")
    al = Alignment(n_tasks, bottom[2].in_features).to(next(model.parameters()).device)
    model.add_module("alignment", al)
    bottom[2].register_forward_pre_hook(al.pre_hook)
    return al


def embedding_alignment(run: Any, align: bool = True, hparams: dict[str, Any] | None = None, seed: int = 0,
                        split: Any = None) -> Any:
    """Algorithm 1 on a trained sentiment hard-share run (bottom ``[Linear(V→E), ReLU, Linear(E→r), ReLU]``):
    insert ``R_t = I`` (`Alignment`) on the embedding-bag output E_t, just before the shared layer, fix the shared
    module (embedding and layer) and train R with the task heads (``align=False``: heads only, R frozen at I — the
    same fine-tuning without alignment). Returns a new `Run`; the input run is untouched."""
    from mtlkit.methods.base import MethodParts
    from mtlkit.train.losses import TaskLoss
    from mtlkit.train.run import Run
    from mtlkit.train.trainer import fit_sgd

    split = split if split is not None else run.split
    model = copy.deepcopy(run.model)
    dev = next(model.parameters()).device
    torch.manual_seed(seed)
    al = _attach_embedding_alignment(model, run.info.n_tasks)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.heads.parameters():
        p.requires_grad_(True)
    al.R.requires_grad_(bool(align))
    hp = {**run.hparams, **ALIGN_HP, **(hparams or {})}
    loss = TaskLoss(run.info.spec, dev)
    train_dd = run.normalizer.apply(split.train).tensors(dev)
    val_dd = run.normalizer.apply(split.val).tensors(dev)
    t0 = time.perf_counter()
    hist = fit_sgd(MethodParts(model), loss, train_dd, val_dd, hp, seed=seed, progress=False,
                   task_names=run.info.spec.names)
    name = "hard-share+align-embedding" if align else "hard-share+heads-refit"
    return Run(name, hp, run.info, model, run.normalizer, split.transform, hist, split, seed, dev,
               time.perf_counter() - t0, dataset=run.dataset, checksum=run.checksum)


def embedding_transfer(source: Any, target: Any, align: bool = True, hparams: dict[str, Any] | None = None,
                       seed: int = 0) -> Any:
    """Transfer (§3.2, Fig. 5b): the source run's shared module (embedding + shared layer) with new heads for the
    ``target`` split's tasks, fine-tuned on the target (everything trains); ``align`` adds R_t = I on the embedding
    output during the fine-tuning (Algorithm 1 in transfer), ``align=False`` is the same fine-tuning without it.
    Inputs are standardised with the source's statistics (what the shared module was trained on)."""
    from mtlkit.methods import registry
    from mtlkit.methods.base import MethodParts
    from mtlkit.train.losses import TaskLoss
    from mtlkit.train.run import Run, build_method
    from mtlkit.train.trainer import fit_sgd

    bottom = getattr(source.model, "bottom", None)
    if bottom is None or len(bottom) < 3:
        raise ValueError("embedding_transfer needs a hard-share source run with hidden=[E, r]")
    info = target.train.info()
    if info.n_features != source.info.n_features:
        raise MtlkitError(f"the target has {info.n_features} features, the source model {source.info.n_features}")
    hp = {**source.hparams, **TRANSFER_HP, **(hparams or {})}
    dev = next(source.model.parameters()).device
    torch.manual_seed(seed)
    model = build_method(registry.get("hard-share"), info, hp).model.to(dev)
    model.get_submodule("bottom").load_state_dict(source.model.get_submodule("bottom").state_dict())
    al = _attach_embedding_alignment(model, info.n_tasks)
    for p in model.parameters():
        p.requires_grad_(True)
    al.R.requires_grad_(bool(align))
    loss = TaskLoss(info.spec, dev)
    t0 = time.perf_counter()
    hist = fit_sgd(MethodParts(model), loss, source.normalizer.apply(target.train).tensors(dev),
                   source.normalizer.apply(target.val).tensors(dev), hp, seed=seed, progress=False,
                   task_names=info.spec.names)
    src = target.source or target.train
    return Run("hard-share+transfer" + ("-align" if align else ""), hp, info, model, source.normalizer,
               target.transform, hist, target, seed, dev, time.perf_counter() - t0, dataset=src.name,
               checksum=src.checksum())


@torch.no_grad()
def shared_inputs(run: Any, part: Any, max_rows: int = SIM_ROWS) -> list[np.ndarray]:
    """Per task, the rows entering the shared layer ``bottom[2]`` (after alignment when the model has it):
    ``[n_t, E]`` each, at most ``max_rows`` (the first ones) per task."""
    model = run.model
    model.eval()
    seen: list[torch.Tensor] = []
    h = model.bottom[2].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        dd = run.normalizer.apply(part).tensors(run.device)
        model(dd.x)
    finally:
        h.remove()
    z, mask = seen[0].cpu().double().numpy(), dd.mask.cpu().numpy()
    return [z[t][mask[t]][:max_rows] for t in range(z.shape[0])]


@torch.no_grad()
def stl_embeddings(run: Any, part: Any, max_rows: int = SIM_ROWS) -> list[np.ndarray]:
    """Per task, the first-layer output ReLU(x W_t + b_t) of an `stl` run (each task's own embedding bag)."""
    first = run.model.net.linear_layers()[0]
    dd = run.normalizer.apply(part).tensors(run.device)
    z = torch.relu(first(dd.x)).cpu().double().numpy()
    mask = dd.mask.cpu().numpy()
    return [z[t][mask[t]][:max_rows] for t in range(z.shape[0])]


def pair_similarities(Xs: Sequence[np.ndarray], normalization: str = "paper") -> np.ndarray:
    """Eq. 5 for every task pair: ``[T, T]`` (diagonal: each task with itself); ``normalization`` "self" divides
    by the two self-scores' geometric mean instead (1 on the diagonal), removing the effect of a spectrum that
    merely concentrates."""
    from mtlkit.analysis.similarity import similarity_matrix

    return similarity_matrix(list(Xs), normalization=normalization)
