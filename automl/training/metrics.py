"""Task metrics, computed with scikit-learn on numpy predictions.

Classification metrics take class probabilities (log_loss and roc_auc need them);
regression metrics take predictions in the target's own units.
"""
from __future__ import annotations

import numpy as np


def classification_metrics(names, y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm  # imported here: `automl.optimize` needs only to_loss

    n_classes = proba.shape[1]
    labels = np.arange(n_classes)
    y_pred = proba.argmax(axis=1)
    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = skm.accuracy_score(y_true, y_pred)
        elif name == "balanced_accuracy":
            out[name] = skm.balanced_accuracy_score(y_true, y_pred)
        elif name == "f1_macro":
            out[name] = skm.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
        elif name == "log_loss":
            out[name] = skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels)
        elif name == "roc_auc":
            out[name] = _roc_auc(y_true, proba, labels)
        else:
            raise ValueError(f"{name!r} is not a classification metric")
    return {k: float(v) for k, v in out.items()}


def _roc_auc(y_true, proba, labels) -> float:
    from sklearn import metrics as skm

    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")  # undefined with one class in the split; reported as missing
    if len(labels) == 2:
        return skm.roc_auc_score(y_true, proba[:, 1])
    # one-vs-rest over the classes present; renormalise so rows still sum to one
    sub = proba[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    return skm.roc_auc_score(y_true, sub, multi_class="ovr", labels=present)


def regression_metrics(names, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    out: dict[str, float] = {}
    for name in names:
        if name == "mae":
            out[name] = skm.mean_absolute_error(y_true, y_pred)
        elif name == "rmse":
            out[name] = float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        elif name == "r2":
            out[name] = skm.r2_score(y_true, y_pred)
        else:
            raise ValueError(f"{name!r} is not a regression metric")
    return {k: float(v) for k, v in out.items()}


def to_loss(value: float, direction: str) -> float:
    """Strategies minimise: flip metrics that are maximised."""
    return -value if direction == "maximize" else value


def summarize_folds(per_fold: list[dict[str, float]], metric_names) -> dict[str, float]:
    """Cross-validation: the mean over folds of every value, plus `<metric>_std` for each metric."""
    summary = {key: float(np.mean([fold[key] for fold in per_fold])) for key in per_fold[0]}
    for name in metric_names:
        summary[f"{name}_std"] = float(np.std([fold[name] for fold in per_fold]))
    return summary
