"""Metrics of a trial's predictions (definitions in automl.metrics), losses and fold summaries."""
from __future__ import annotations

import numpy as np

from automl.metrics import compute_metrics


def classification_metrics(names, y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Classification metrics (automl.metrics) of class probabilities."""
    return compute_metrics(names, "classification", y_true, proba)


def regression_metrics(names, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Regression metrics (automl.metrics) of predictions in the target's units."""
    return compute_metrics(names, "regression", y_true, y_pred)


def to_loss(value: float, direction: str) -> float:
    """Strategies minimise: flip metrics that are maximised."""
    return -value if direction == "maximize" else value


def summarize_folds(per_fold: list[dict[str, float]], metric_names) -> dict[str, float]:
    """Cross-validation: the mean over folds of every value, plus `<metric>_std` for each metric."""
    summary = {key: float(np.mean([fold[key] for fold in per_fold])) for key in per_fold[0]}
    for name in metric_names:
        summary[f"{name}_std"] = float(np.std([fold[name] for fold in per_fold]))
    return summary
