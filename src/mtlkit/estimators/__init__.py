"""scikit-learn estimators over mtlkit's linear multi-task methods.

``fit(X, y, task=ids)`` for heterogeneous tasks (each row belongs to one task) or ``fit(X, Y)`` for tasks on
shared rows (``Y`` [n, T], NaN = missing label); ``predict`` / ``score`` (R² or accuracy) / ``predict_proba``;
``get_params`` / ``set_params`` / ``sklearn.base.clone`` work; learned attributes end in ``_``
(``coef_`` [T, d], ``intercept_``, ``tasks_``, ``n_features_in_``, ``run_``).
"""

from mtlkit.estimators._base import MultiTaskClassifier, MultiTaskEstimator, MultiTaskRegressor
from mtlkit.estimators._models import (
    AMTL,
    L21,
    RMTL,
    AMTLClassifier,
    GoMTL,
    GoMTLClassifier,
    L21Classifier,
    Lasso,
    LassoClassifier,
    RMTLClassifier,
    STLLinear,
    STLLinearClassifier,
)

__all__ = [
    "AMTL", "L21", "RMTL", "AMTLClassifier", "GoMTL", "GoMTLClassifier", "L21Classifier", "Lasso",
    "LassoClassifier", "MultiTaskClassifier", "MultiTaskEstimator", "MultiTaskRegressor", "RMTLClassifier",
    "STLLinear", "STLLinearClassifier",
]
