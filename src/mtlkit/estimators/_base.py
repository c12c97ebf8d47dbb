"""The scikit-learn face of mtlkit's methods: an estimator stores its hyper-parameters in ``__init__``, turns
``fit(X, y, task=ids)`` (heterogeneous tasks) or ``fit(X, Y)`` (shared input, ``Y`` [n, T], NaN = missing)
into a `MultiTaskData`, trains the registered method on all rows with `train_one`, and keeps what it learned
in attributes ending in ``_``. ``X`` may be a scipy.sparse matrix: it is densified to float32 (fit and predict)
when it fits under `mtlkit.data.multitask.dense_cap` (2 GiB by default), else a `DataError` says how big it
would be."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from mtlkit.data.multitask import MultiTaskData, densify
from mtlkit.data.splits import Split
from mtlkit.methods.base import as_output

__all__ = ["MultiTaskClassifier", "MultiTaskEstimator", "MultiTaskRegressor"]


class MultiTaskEstimator(BaseEstimator):
    """Base class: subclasses name the registered ``_method`` and whether the model is linear (``coef_`` /
    ``intercept_``); the ``__init__`` parameters that the method declares (`mtlkit.methods.params.method_params`)
    are passed to it as hyper-parameters (`_hparam_names`), so no estimator keeps its own list of the method's keys.

    Every subclass also takes ``standardize`` (standardise features, and regression targets, on the training
    rows, as `mtlkit.train` does; ``coef_`` is reported on the original scale either way), ``device``
    (``None``: CUDA when present) and ``random_state`` (the training seed, an int).

    Learned attributes: ``tasks_`` (the task ids, in the order of ``coef_`` rows and ``predict`` columns),
    ``n_features_in_``, ``run_`` (the trained `mtlkit.Run`), ``shared_input_`` and, for linear models,
    ``coef_`` [T, d] and ``intercept_`` [T] (link scale: logits for classifiers).
    """

    _method: ClassVar[str]
    _kind: ClassVar[str]
    _linear: ClassVar[bool] = True

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, task: Any = None) -> MultiTaskEstimator:
        """Train on rows ``X`` [n, d]: with ``task`` [n] (any hashable ids), ``y`` [n] are heterogeneous tasks'
        labels; without it ``y`` is [n] (one task) or [n, T] (T tasks on the same rows, NaN = missing)."""
        from mtlkit.train.run import train_one

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_2d=True, ensure_all_finite=True)
        self._check_params()
        data = self._to_data(X, y, task)
        split = Split(train=data, val=None, test=None, indices={}, description="all rows (scikit-learn fit)",
                      source=data)
        hp = {k: getattr(self, k) for k in self._hparam_names() if getattr(self, k) is not None}  # None: default
        self.run_ = train_one(self._method, split, hp, seed=int(self.random_state), device=self.device,
                              progress=False, standardize=bool(self.standardize))
        self.n_features_in_ = X.shape[1]
        if self._linear:
            self.coef_, self.intercept_ = self._linear_coefficients()
        solver = getattr(self.run_.model, "solver_info", None)
        if isinstance(solver, dict) and "n_iter" in solver:
            self.n_iter_ = int(solver["n_iter"])
        return self

    @classmethod
    def _hparam_names(cls) -> tuple[str, ...]:
        """The ``__init__`` parameters that are hyper-parameters of ``_method``, read off its declaration (the
        others, ``standardize``, ``device``, ``random_state``, are the estimator's own)."""
        from mtlkit.methods import registry
        from mtlkit.methods.params import method_params

        declared = method_params(registry.get(cls._method))
        return tuple(k for k in cls._get_param_names() if k in declared)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified under a memory cap (see the module docstring)
        return tags

    def _check_params(self) -> None:
        if not isinstance(self.random_state, int | np.integer):
            raise ValueError(f"random_state must be an int seed, got {self.random_state!r}")

    def _encode_labels(self, y: np.ndarray) -> np.ndarray:
        return y

    def _to_data(self, X: np.ndarray, y: Any, task: Any) -> MultiTaskData:
        kind = self._kind
        if task is not None:
            y = np.asarray(y, dtype=np.float64) if kind == "regression" else np.asarray(y)
            task = np.asarray(task)
            if y.ndim != 1 or task.ndim != 1 or len(y) != X.shape[0] or len(task) != X.shape[0]:
                raise ValueError(f"with task ids, X [n, d], y [n] and task [n] need the same n rows; got X "
                                 f"{X.shape}, y {y.shape}, task {task.shape}")
            self._check_y_finite(y)
            y = self._encode_labels(y)
            ids = _task_ids(task)
            self.tasks_ = ids
            self.shared_input_ = False
            self._single_ = False
            rows = [np.flatnonzero(_equal(task, t)) for t in ids]
            return MultiTaskData.from_tasks([X[r] for r in rows], [y[r] for r in rows], kind=kind,
                                            names=_unique_names(ids))
        y = np.asarray(y) if kind != "regression" else np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2) or len(y) != X.shape[0]:
            raise ValueError(f"y must be [n] or [n, T] with the n={X.shape[0]} rows of X, got shape {y.shape}")
        self._single_ = y.ndim == 1
        if y.ndim == 1:
            self._check_y_finite(y)
        else:
            yf = np.asarray(y, dtype=np.float64) if kind == "regression" else y
            if kind == "regression" and np.isinf(yf).any():
                raise ValueError("Y contains inf (NaN marks a missing label; inf is not allowed)")
        Y = self._encode_labels(y.reshape(len(y), -1))
        self.tasks_ = np.arange(Y.shape[1])
        self.shared_input_ = True
        return MultiTaskData.from_shared(X, Y, kind=kind)

    @staticmethod
    def _check_y_finite(y: np.ndarray) -> None:
        if np.issubdtype(y.dtype, np.number) and not np.isfinite(y.astype(np.float64)).all():
            raise ValueError("y contains NaN or inf (missing labels are only allowed in a 2-D Y without task ids)")

    def _linear_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """coef_ [T, d] and intercept_ [T] on the original feature (and target) scale, read off the trained
        model by evaluating it, in float64, at x = 0 and at the unit vectors (valid for a linear model)."""
        run = self.run_
        d = self.n_features_in_
        probes = np.vstack([np.zeros((1, d)), np.eye(d)])
        model = copy.deepcopy(run.model).double().cpu().eval()
        x = torch.as_tensor(run.normalizer.x(probes), dtype=torch.float64)
        if not run.info.shared:
            x = x.expand(run.info.n_tasks, *x.shape)
        with torch.no_grad():
            out = as_output(model(x)).pred[..., 0].numpy()  # [T, d + 1], link scale
        if run.info.spec.kind == "regression":
            out = run.normalizer.y_inverse(out)
        return out[:, 1:] - out[:, :1], out[:, 0].copy()

    # ------------------------------------------------------------------ predict
    def _task_rows(self, task: Any, n: int) -> np.ndarray:
        task = np.asarray(task)
        if task.ndim != 1 or len(task) != n:
            raise ValueError(f"task must be [n] with the n={n} rows of X, got shape {task.shape}")
        idx = np.full(n, -1, dtype=np.int64)
        for i, t in enumerate(self.tasks_):
            idx[_equal(task, t)] = i
        if (idx < 0).any():
            bad = task[np.argmax(idx < 0)]
            raise ValueError(f"unknown task id {bad!r}; the estimator was fitted on tasks {list(self.tasks_)}")
        return idx

    def _link(self, X: Any, task: Any) -> np.ndarray:
        """Link-scale outputs (values or P(class 1)): [n] with task ids or for one task, else [n, T]."""
        check_is_fitted(self, "run_")
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_2d=True, ensure_all_finite=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        X = densify(X, "X")
        out = self.run_.predict_proba(X)  # [T, n]
        if task is not None:
            return out[self._task_rows(task, len(X)), np.arange(len(X))]
        return out[0] if self._single_ else out.T


class MultiTaskRegressor(RegressorMixin, MultiTaskEstimator):
    """Regression tasks (squared loss); ``score`` is R² (averaged uniformly over tasks for [n, T] targets)."""

    _kind = "regression"

    def predict(self, X: Any, task: Any = None) -> np.ndarray:
        """Predicted values: [n] with ``task`` ids (or a single-task fit), else [n, T]."""
        return self._link(X, task)

    def score(self, X: Any, y: Any, task: Any = None, sample_weight: Any = None) -> float:
        """R² of ``predict(X, task)`` against ``y`` (NaN entries of a 2-D ``y`` are skipped, per task)."""
        from sklearn.metrics import r2_score

        pred = self.predict(X, task)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2:
            scores = [r2_score(y[~np.isnan(y[:, t]), t], pred[~np.isnan(y[:, t]), t]) for t in range(y.shape[1])]
            return float(np.mean(scores))
        return float(r2_score(y, pred, sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MultiTaskClassifier(ClassifierMixin, MultiTaskEstimator):
    """Binary tasks (logistic loss). Labels may be any two values shared by all tasks (``classes_``);
    ``predict_proba`` gives P(classes_[1]); ``score`` is accuracy (averaged over tasks for [n, T] targets)."""

    _kind = "binary"

    def _encode_labels(self, y: np.ndarray) -> np.ndarray:
        from sklearn.utils.multiclass import type_of_target

        missing = _missing(y)
        known = y[~missing]
        if type_of_target(known) == "continuous":
            raise ValueError("Unknown label type: continuous. A classifier needs class labels (two values)")
        classes = np.unique(known)
        if len(classes) > 2:
            raise ValueError(f"Only binary classification is supported. {type(self).__name__} got {len(classes)} "
                             f"classes over all tasks: {classes[:10].tolist()}")
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs 2 classes but the labels hold only one class: "
                             f"{classes.tolist()}")
        self.classes_ = classes
        out = np.full(y.shape, np.nan)
        out[~missing] = np.searchsorted(classes, y[~missing]).astype(np.float64)
        return out

    def predict_proba(self, X: Any, task: Any = None) -> np.ndarray:
        """[n, 2] class probabilities with ``task`` ids (or a single-task fit); else P(classes_[1]) [n, T]."""
        p = self._link(X, task)
        return np.stack([1.0 - p, p], axis=-1) if p.ndim == 1 else p

    def predict(self, X: Any, task: Any = None) -> np.ndarray:
        """Predicted labels (from ``classes_``): [n] with ``task`` ids (or a single-task fit), else [n, T]."""
        p = self._link(X, task)
        return self.classes_[(p >= 0.5).astype(np.int64)]

    def score(self, X: Any, y: Any, task: Any = None, sample_weight: Any = None) -> float:
        """Accuracy of ``predict(X, task)`` (missing entries of a 2-D ``y`` are skipped, per task)."""
        pred = self.predict(X, task)
        y = np.asarray(y)
        if y.ndim == 2:
            miss = _missing(y)
            return float(np.mean([np.mean(pred[~miss[:, t], t] == y[~miss[:, t], t]) for t in range(y.shape[1])]))
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        return float(np.average(pred == y, weights=w))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_class = False  # binary tasks only
        return tags


# ---------------------------------------------------------------------- helpers
def _missing(y: np.ndarray) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return np.isnan(y)
    if y.dtype == object:
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in y.ravel()]).reshape(y.shape)
    return np.zeros(y.shape, dtype=bool)


def _task_ids(task: np.ndarray) -> np.ndarray:
    """The distinct task ids: sorted when they can be, else in order of first appearance."""
    try:
        return np.unique(task)
    except TypeError:
        seen = list(dict.fromkeys(task.tolist()))
        out = np.empty(len(seen), dtype=object)
        out[:] = seen
        return out


def _equal(task: np.ndarray, t: Any) -> np.ndarray:
    return np.array([v == t for v in task.tolist()], dtype=bool) if task.dtype == object else task == t


def _unique_names(ids: np.ndarray) -> list[str]:
    names = [str(t) for t in ids.tolist()]
    if len(set(names)) != len(names):
        raise ValueError(f"task ids must stay distinct as strings (they name the tasks), got {ids.tolist()}")
    return names
