"""Concrete scikit-learn estimators for the linear multi-task methods: one regressor and one binary classifier
per method, each with explicit ``__init__`` parameters (scikit-learn's ``get_params`` reads them). Which of them
are the method's hyper-parameters is read off the method's declaration (`MultiTaskEstimator._hparam_names`)."""

from __future__ import annotations

from mtlkit.estimators._base import MultiTaskClassifier, MultiTaskRegressor

__all__ = [
    "AMTL", "L21", "RMTL", "AMTLClassifier", "GoMTL", "GoMTLClassifier", "L21Classifier", "Lasso",
    "LassoClassifier", "RMTLClassifier", "STLLinear", "STLLinearClassifier",
]


class STLLinear(MultiTaskRegressor):
    """Method ``stl-linear``: ridge regression per task, ``alpha``·‖w_t‖² with an unpenalised intercept."""

    _method = "stl-linear"

    def __init__(self, alpha: float = 1.0, standardize: bool = True, device: str | None = "cpu",
                 random_state: int = 0) -> None:
        self.alpha, self.standardize, self.device, self.random_state = alpha, standardize, device, random_state


class STLLinearClassifier(MultiTaskClassifier):
    """Method ``stl-linear`` on binary tasks: L2-regularised logistic regression per task (inverse strength C)."""

    _method = "stl-linear"

    def __init__(self, C: float = 1.0, standardize: bool = True, device: str | None = "cpu",
                 random_state: int = 0) -> None:
        self.C, self.standardize, self.device, self.random_state = C, standardize, device, random_state


class _SparseParams:
    """``lam``, ``max_iter``, ``tol`` of the APG-solved ``lasso`` / ``l21``."""

    def __init__(self, lam: float = 1e-2, max_iter: int = 2000, tol: float = 1e-6, standardize: bool = True,
                 device: str | None = "cpu", random_state: int = 0) -> None:
        self.lam, self.max_iter, self.tol = lam, max_iter, tol
        self.standardize, self.device, self.random_state = standardize, device, random_state


class Lasso(_SparseParams, MultiTaskRegressor):
    """Method ``lasso``: per-task mean squared error + ``lam``·‖W‖₁, solved by FISTA (see methods.shallow)."""

    _method = "lasso"


class LassoClassifier(_SparseParams, MultiTaskClassifier):
    """Method ``lasso`` on binary tasks: per-task mean logistic loss + ``lam``·‖W‖₁."""

    _method = "lasso"


class L21(_SparseParams, MultiTaskRegressor):
    """Method ``l21``: joint feature selection, ``lam``·Σ_j ‖W[:, j]‖₂ over features shared by the tasks."""

    _method = "l21"


class L21Classifier(_SparseParams, MultiTaskClassifier):
    """Method ``l21`` on binary tasks (logistic loss)."""

    _method = "l21"


class _RMTLParams:
    """``lam_l`` (trace norm on L), ``lam_s`` (task-wise group norm on S), ``max_iter``, ``tol`` of ``rmtl``."""

    def __init__(self, lam_l: float = 1e-1, lam_s: float = 1e-1, max_iter: int = 2000, tol: float = 1e-6,
                 standardize: bool = True, device: str | None = "cpu", random_state: int = 0) -> None:
        self.lam_l, self.lam_s, self.max_iter, self.tol = lam_l, lam_s, max_iter, tol
        self.standardize, self.device, self.random_state = standardize, device, random_state


class RMTL(_RMTLParams, MultiTaskRegressor):
    """Method ``rmtl``: robust MTL, W = L + S with a trace norm on L and a task-wise group norm on S."""

    _method = "rmtl"


class RMTLClassifier(_RMTLParams, MultiTaskClassifier):
    """Method ``rmtl`` on binary tasks (logistic loss)."""

    _method = "rmtl"


class _GoMTLParams:
    """``k`` latent basis tasks, ``mu`` (l1 on the task codes S), ``lam`` (Frobenius on the basis L), ``iters``
    (alternations) and ``inner`` (solver steps per alternation) of ``go-mtl``; ``None`` keeps the method's
    registered default."""

    def __init__(self, k: int | None = None, mu: float | None = None, lam: float | None = None,
                 iters: int | None = None, inner: int | None = None, standardize: bool = True,
                 device: str | None = "cpu", random_state: int = 0) -> None:
        self.k, self.mu, self.lam, self.iters, self.inner = k, mu, lam, iters, inner
        self.standardize, self.device, self.random_state = standardize, device, random_state


class GoMTL(_GoMTLParams, MultiTaskRegressor):
    """Method ``go-mtl`` (Kumar & Daumé 2012): W = L·S, a shared basis of k latent tasks, sparse codes."""

    _method = "go-mtl"


class GoMTLClassifier(_GoMTLParams, MultiTaskClassifier):
    """Method ``go-mtl`` on binary tasks."""

    _method = "go-mtl"


class _AMTLParams:
    """``mu``, ``lam`` and ``nonneg`` of ``amtl``, and its SGD training's ``epochs`` and ``lr``; ``None`` keeps
    the method's registered default (the Trainer's for ``epochs`` / ``lr``)."""

    def __init__(self, mu: float | None = None, lam: float | None = None, nonneg: bool | None = None,
                 epochs: int | None = None, lr: float | None = None, standardize: bool = True,
                 device: str | None = "cpu", random_state: int = 0) -> None:
        self.mu, self.lam, self.nonneg, self.epochs, self.lr = mu, lam, nonneg, epochs, lr
        self.standardize, self.device, self.random_state = standardize, device, random_state


class AMTL(_AMTLParams, MultiTaskRegressor):
    """Method ``amtl`` (Lee, Yang & Hwang 2016): asymmetric transfer, each task's weights built from the
    others' through a sparse, loss-weighted transfer matrix."""

    _method = "amtl"


class AMTLClassifier(_AMTLParams, MultiTaskClassifier):
    """Method ``amtl`` on binary tasks."""

    _method = "amtl"
