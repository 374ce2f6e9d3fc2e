"""Every metric the spec may name, in one registry: its direction, its task, and the
scikit-learn function that computes it.

The spec validates names and directions from here without importing scikit-learn; the
trainer and the final models compute values from here. Classification metrics take class
probabilities (`log_loss` and `roc_auc` need them; the others use the arg-max label);
regression metrics take predictions in the target's own units.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import numpy as np

Task = Literal["classification", "regression"]
Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    task: Task
    function: str  # in sklearn.metrics
    uses: Literal["label", "proba", "value"] = "label"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # a computation of its own where the plain sklearn call is not enough (roc_auc, rmse)
    custom: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = None

    def compute(self, y_true: np.ndarray, predictions: np.ndarray) -> float:
        """The metric of predictions: probabilities (n, classes) for classification, values for regression."""
        from sklearn import metrics as skm  # here: `automl.optimize` and the spec need no scikit-learn

        labels = np.arange(predictions.shape[1]) if self.task == "classification" else None
        if self.custom is not None:
            return float(self.custom(y_true, predictions, labels))
        if self.uses == "label":
            predictions = predictions.argmax(axis=1)
        kwargs = dict(self.kwargs)
        if self.uses == "proba":
            # float64 rows that sum to one: float32 softmax rows and an ensemble's weighted means
            # are off by ~1e-7, which scikit-learn's log_loss warns about at every call
            predictions = np.clip(np.asarray(predictions, dtype=np.float64), 1e-15, 1)
            predictions = predictions / predictions.sum(axis=1, keepdims=True)
        if labels is not None and self.name in ("f1_macro", "log_loss"):
            kwargs["labels"] = labels  # classes absent from this split still count
        return float(getattr(skm, self.function)(y_true, predictions, **kwargs))


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float:
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


def _rmse(y_true: np.ndarray, y_pred: np.ndarray, labels: None) -> float:
    from sklearn import metrics as skm

    return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "maximize", "classification", "accuracy_score"),
    Metric("balanced_accuracy", "maximize", "classification", "balanced_accuracy_score"),
    Metric("f1_macro", "maximize", "classification", "f1_score", kwargs={"average": "macro", "zero_division": 0}),
    Metric("log_loss", "minimize", "classification", "log_loss", uses="proba"),
    Metric("roc_auc", "maximize", "classification", "roc_auc_score", uses="proba", custom=_roc_auc),
    Metric("mae", "minimize", "regression", "mean_absolute_error", uses="value"),
    Metric("rmse", "minimize", "regression", "mean_squared_error", uses="value", custom=_rmse),
    Metric("r2", "maximize", "regression", "r2_score", uses="value"),
)}
DEFAULT_METRIC: dict[str, str] = {"classification": "accuracy", "regression": "rmse"}


def metrics_for(task: str) -> list[str]:
    return [name for name, metric in METRICS.items() if metric.task == task]


def compute_metrics(names, task: str, y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Each named metric of `task` on the predictions; a metric of another task is a ValueError."""
    out = {}
    for name in names:
        metric = METRICS.get(name)
        if metric is None or metric.task != task:
            raise ValueError(f"{name!r} is not a {task} metric")
        out[name] = metric.compute(y_true, predictions)
    return out
