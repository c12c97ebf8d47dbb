"""scikit-learn estimators (`mtlkit.estimators`): clone / get_params / set_params, fit-predict on the
heterogeneous (``task=ids``) and shared-input (``Y`` [n, T], NaN = missing) forms, scores against
scikit-learn's metrics, coefficients against an independent fit, scikit-learn's estimator checks on every
estimator (``parametrize_with_checks``, expected failures named per check with their reason), and clear errors on
bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from mtlkit.estimators import (
    AMTL,
    L21,
    RMTL,
    GoMTL,
    L21Classifier,
    Lasso,
    LassoClassifier,
    RMTLClassifier,
    STLLinear,
    STLLinearClassifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")
D = 4
REGRESSORS = [STLLinear, Lasso, L21, RMTL]
CLASSIFIERS = [STLLinearClassifier, LassoClassifier, L21Classifier, RMTLClassifier]


def _hetero(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rows of three tasks named by strings, y = x·w_task + 2 + noise 0.1."""
    rng = np.random.default_rng(seed)
    W = {k: rng.normal(size=D) for k in ("alpha", "beta", "gamma")}
    X = rng.normal(size=(n, D))
    task = rng.choice(list(W), size=n)
    y = np.einsum("nd,nd->n", X, np.stack([W[t] for t in task])) + 2.0 + 0.1 * rng.normal(size=n)
    return X, y, task, W


@pytest.mark.parametrize("cls", REGRESSORS + CLASSIFIERS)
def test_clone_get_params_set_params_round_trip(cls):
    est = cls()
    params = est.get_params()
    assert "random_state" in params and "standardize" in params
    key = next(k for k in ("lam", "lam_l", "alpha", "C") if k in params)
    est.set_params(**{key: 0.5})
    c = clone(est)
    assert c is not est and c.get_params() == est.get_params() and c.get_params()[key] == 0.5
    assert is_regressor(est) != is_classifier(est)
    with pytest.raises(ValueError):
        est.set_params(no_such_param=1)


@pytest.mark.parametrize("cls", REGRESSORS)
def test_regressors_fit_predict_heterogeneous(cls):
    X, y, task, W = _hetero()
    est = cls().fit(X, y, task=task)
    assert list(est.tasks_) == ["alpha", "beta", "gamma"] and est.n_features_in_ == D
    assert est.coef_.shape == (3, D) and est.intercept_.shape == (3,)
    pred = est.predict(X, task=task)
    assert pred.shape == (len(X),)
    # predictions are the linear model the coefficients describe, on the original scale
    rows = np.searchsorted(est.tasks_, task)
    np.testing.assert_allclose(pred, np.einsum("nd,nd->n", X, est.coef_[rows]) + est.intercept_[rows], atol=1e-4)
    assert est.score(X, y, task=task) == pytest.approx(r2_score(y, pred))
    assert est.score(X, y, task=task) > 0.95
    np.testing.assert_allclose(est.coef_, np.stack([W[k] for k in est.tasks_]), atol=0.3)
    assert est.predict(X).shape == (len(X), 3)  # all tasks when no ids are given


def test_ridge_coefficients_match_scikit_learn_without_standardisation():
    """STLLinear(standardize=False) is per-task Ridge(alpha): the coefficients must be scikit-learn's."""
    from sklearn.linear_model import Ridge

    X, y, task, _ = _hetero(seed=1)
    est = STLLinear(alpha=3.0, standardize=False).fit(X, y, task=task)
    for i, k in enumerate(est.tasks_):
        ref = Ridge(alpha=3.0).fit(X[task == k], y[task == k])
        np.testing.assert_allclose(est.coef_[i], ref.coef_, atol=1e-4)
        assert est.intercept_[i] == pytest.approx(ref.intercept_, abs=1e-4)


@pytest.mark.parametrize("cls", [Lasso, RMTL])
def test_shared_input_with_missing_labels(cls):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, D))
    W = rng.normal(size=(D, 3))
    Y = X @ W + 0.1 * rng.normal(size=(120, 3))
    Y[:30, 1] = np.nan
    est = cls().fit(X, Y)
    assert est.shared_input_ and list(est.tasks_) == [0, 1, 2]
    P = est.predict(X)
    assert P.shape == (120, 3)
    known = ~np.isnan(Y[:, 1])
    assert est.score(X, Y) == pytest.approx(np.mean([r2_score(Y[:, 0], P[:, 0]), r2_score(Y[known, 1], P[known, 1]),
                                                     r2_score(Y[:, 2], P[:, 2])]))
    np.testing.assert_allclose(est.predict(X, task=np.full(120, 2)), P[:, 2])
    # a single 1-D target is one task and predicts [n]
    one = cls().fit(X, Y[:, 0])
    assert one.predict(X).shape == (120,) and one.coef_.shape == (1, D)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_classifiers_with_arbitrary_labels(cls):
    X, y, task, _ = _hetero(seed=3)
    labels = np.where(y > 2.0, "up", "down")
    est = cls().fit(X, labels, task=task)
    assert list(est.classes_) == ["down", "up"]
    pred = est.predict(X, task=task)
    assert set(pred) <= {"down", "up"}
    assert est.score(X, labels, task=task) == pytest.approx(accuracy_score(labels, pred))
    assert est.score(X, labels, task=task) > 0.85
    proba = est.predict_proba(X, task=task)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(pred, est.classes_[(proba[:, 1] >= 0.5).astype(int)])


def test_bad_input_raises_clear_errors():
    X, y, task, _ = _hetero()
    est = Lasso()
    with pytest.raises(ValueError, match="same n rows"):
        est.fit(X, y[:-1], task=task)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y, task=task)
    yn = y.copy()
    yn[0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        est.fit(X, yn, task=task)
    with pytest.raises(ValueError, match="lam .*must be ≥ 0"):
        Lasso(lam=-1.0).fit(X, y, task=task)
    est.fit(X, y, task=task)
    with pytest.raises(ValueError, match="unknown task id"):
        est.predict(X, task=np.full(len(X), "delta"))
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2], task=task)
    with pytest.raises(ValueError, match="Only binary classification"):
        LassoClassifier().fit(X, np.arange(len(X)) % 3, task=task)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        L21().predict(X)


# ---------------------------------------------------------------------- scikit-learn's own checks, every estimator
def _concrete_estimators() -> list[type]:
    """Every estimator class `mtlkit.estimators` exports (the abstract bases excluded)."""
    import mtlkit.estimators as mod

    return [c for c in (getattr(mod, n) for n in mod.__all__)
            if isinstance(c, type) and issubclass(c, mod.MultiTaskEstimator) and "_method" in vars(c)]


def _fast(cls: type):
    """``cls`` with small solver budgets, so ~55 checks x 12 estimators stay quick; go-mtl with k = 1 latent task,
    because scikit-learn's checks fit data with 1 to 4 features and go-mtl refuses k above the feature count."""
    params = cls().get_params()
    fast = {"max_iter": 300, "iters": 5, "inner": 30, "k": 1, "epochs": 15, "lr": 0.03}
    return cls(**{k: v for k, v in fast.items() if k in params})


_FLOAT32 = ("predictions come from the float32 torch model, and a float32 matrix product of a reordered (or "
            "sub-) batch differs in the last bit (~3e-8), above this check's rtol of 1e-7")
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "AMTL": {"check_methods_sample_order_invariance": _FLOAT32},
    "AMTLClassifier": {"check_methods_sample_order_invariance": _FLOAT32},
}
"""Checks an estimator legitimately cannot pass, by class name, each with its reason (an estimator is otherwise
held to every check). Seen on this machine: AMTL's network is float32 and its predictions move by one ulp when the
rows are reordered; the other estimators' predictions are row-order exact."""


def test_estimator_checks_cover_every_estimator():
    names = {c.__name__ for c in _concrete_estimators()}
    assert len(names) == 12 and set(EXPECTED_FAILED_CHECKS) <= names


@parametrize_with_checks([_fast(c) for c in _concrete_estimators()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}))
def test_scikit_learn_estimator_checks(estimator, check):
    """The whole of scikit-learn's ``check_estimator`` for every estimator (single-task use: ``fit(X, y)`` with a
    1-D y; the multi-task forms are tested above)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


_HAS_AMTFL_BASELINES = importlib.util.find_spec("mtlkit.methods.amtfl_baselines") is not None


@pytest.mark.skipif(not _HAS_AMTFL_BASELINES, reason="methods go-mtl / amtl (mtlkit.methods.amtfl_baselines) are "
                    "written by another session and are not in this checkout yet")
@pytest.mark.parametrize(("cls", "params"), [(GoMTL, {"k": 3}), (AMTL, {"epochs": 60, "lr": 1e-2})])
def test_go_mtl_and_amtl_wrappers(cls, params):
    X, y, task, _ = _hetero(seed=4)
    est = cls(**params).fit(X, y, task=task)
    rows = np.searchsorted(est.tasks_, task)
    np.testing.assert_allclose(est.predict(X, task=task),
                               np.einsum("nd,nd->n", X, est.coef_[rows]) + est.intercept_[rows], atol=1e-4)
    assert est.coef_.shape == (3, D)
    assert est.score(X, y, task=task) > 0.8
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "coef_")
