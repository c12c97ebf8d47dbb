"""`stl-linear`: ridge regression or logistic regression fitted independently per task."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mtlkit.data.spec import DataInfo
from mtlkit.data.tensors import DeviceData
from mtlkit.hparams import HParam, log_range
from mtlkit.methods.base import MethodInfo, MethodParts
from mtlkit.methods.registry import register
from mtlkit.nn import TaskLinear


class LinearNet(nn.Module):
    """A linear model per task: ``TaskLinear`` on flattened features."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        self.shared, self.n_tasks, self.kind = info.shared, info.n_tasks, info.spec.kind
        self.linear = TaskLinear(info.n_tasks, info.n_features, info.spec.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1) if self.shared else x.reshape(self.n_tasks, x.shape[1], -1)
        return self.linear(x)


def ridge_per_task(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched closed-form ridge with an unpenalised intercept, one problem per task:
    ``min_w ||y_t - X_t w - b||² + alpha ||w||²`` (scikit-learn's ``Ridge`` objective).

    ``x`` [T, N, d] (or shared [N, d]), ``y`` [T, N], ``mask`` [T, N]; returns W [T, d], b [T] (float64).
    """
    x = x.double()
    if x.dim() == 2:
        x = x.expand(mask.shape[0], *x.shape)
    m = mask.double()
    n = m.sum(1).clamp_min(1.0)
    xm = (x * m[..., None]).sum(1) / n[:, None]  # [T, d]
    ym = (y.double() * m).sum(1) / n
    xc = (x - xm[:, None, :]) * m[..., None]
    yc = (y.double() - ym[:, None]) * m
    d = x.shape[-1]
    A = xc.transpose(1, 2) @ xc + alpha * torch.eye(d, dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(A, (xc.transpose(1, 2) @ yc[..., None]))[..., 0]
    b = ym - (xm * w).sum(1)
    return w, b


def _fit(parts: MethodParts, train: DeviceData, hp: dict[str, Any]) -> None:
    model = parts.model
    assert isinstance(model, LinearNet)
    T = train.n_tasks
    x = train.x.reshape(train.x.shape[0], -1) if train.shared else train.x.reshape(T, train.x.shape[1], -1)
    lin = model.linear
    assert lin.bias is not None  # LinearNet's layer has a bias
    P = lin.out_features
    if model.kind == "regression":
        w, b = ridge_per_task(x, train.y, train.mask, float(hp["alpha"]))
        with torch.no_grad():
            lin.weight.copy_(w[..., None].to(lin.weight))
            lin.bias.copy_(b[:, None].to(lin.bias))
        return
    from sklearn.linear_model import LogisticRegression

    xs, ys, ms = x.cpu().numpy(), train.y.cpu().numpy(), train.mask.cpu().numpy()
    W = np.zeros((T, x.shape[-1], P))
    B = np.full((T, P), -1e4 if P > 1 else 0.0)  # classes a task lacks keep a very low logit
    for t in range(T):  # set-up code: one small convex problem per task
        Xt = xs[ms[t]] if train.shared else xs[t][ms[t]]
        yt = ys[t][ms[t]].astype(np.int64)
        present = np.unique(yt)
        if len(present) < 2:  # one class only: a constant predictor for it
            if P == 1:
                B[t, 0] = 1e4 if present[0] == 1 else -1e4
            else:
                B[t, present[0]] = 0.0
            continue
        clf = LogisticRegression(C=float(hp["C"]), max_iter=2000).fit(Xt, yt)
        if P == 1:
            W[t, :, 0], B[t, 0] = clf.coef_[0], clf.intercept_[0]
        elif len(clf.classes_) == 2:  # sklearn's binary form: one logit for the second class
            W[t, :, clf.classes_[1]], B[t, clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
            B[t, clf.classes_[0]] = 0.0
        else:
            W[t][:, clf.classes_] = clf.coef_.T
            B[t, clf.classes_] = clf.intercept_
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W, dtype=lin.weight.dtype))
        lin.bias.copy_(torch.as_tensor(B, dtype=lin.bias.dtype))


STL_LINEAR_PARAMS: tuple[HParam, ...] = (
    HParam("alpha", "float", 1.0, "ridge penalty alpha·‖w_t‖² (regression tasks). Its space has no off value: "
           "alpha = 0 is a singular least-squares problem whenever a task has fewer rows than features", low=0.0,
           space=log_range(1e-2, 1e3), kinds=("regression",)),
    HParam("C", "float", 1.0, "inverse L2 strength of the logistic regressions (classification tasks); larger C = "
           "weaker penalty, so 'off' would be C = ∞, not a value to try", low=0.0, low_open=True,
           space=log_range(1e-3, 1e2), kinds=("binary", "multiclass")),
)

register(MethodInfo(
    name="stl-linear",
    summary="A linear model per task: ridge regression (alpha) or L2-regularised logistic regression (C).",
    paper="Single-task baseline of AMTFL (Lee et al. 2018) Table 1 'STL' and SRDML's shallow baselines",
    build=lambda info, hp: MethodParts(LinearNet(info)),
    params=STL_LINEAR_PARAMS,
    grid=lambda kind: {"alpha": [0.1, 1.0, 10.0, 100.0]} if kind == "regression" else {"C": [0.01, 0.1, 1.0, 10.0]},
    kinds=("regression", "binary", "multiclass"),
    fit=_fit,
))
