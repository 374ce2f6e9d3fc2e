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
    # the same value in plain numpy, for the common case (1-D, finite): scikit-learn's input checks cost
    # 0.3-1 ms a call, as long as a small table's whole epoch, and every epoch of every trial is scored
    fast: Callable[[np.ndarray, np.ndarray], float] | None = None

    def compute(self, y_true: np.ndarray, predictions: np.ndarray) -> float:
        """The metric of predictions: probabilities (n, classes) for classification, values for regression."""
        if self.fast is not None and _plain(y_true, predictions, self.task):
            return self.fast(y_true, predictions)
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


def _plain(y_true: np.ndarray, predictions: np.ndarray, task: str) -> bool:
    """Inputs the numpy forms compute exactly as scikit-learn does: otherwise scikit-learn checks them."""
    if not (isinstance(y_true, np.ndarray) and isinstance(predictions, np.ndarray)) or y_true.ndim != 1 \
            or len(y_true) == 0 or len(y_true) != len(predictions):
        return False
    if task == "classification":
        return predictions.ndim == 2 and y_true.dtype.kind in "iu"
    return predictions.ndim == 1 and y_true.dtype.kind == "f" and predictions.dtype.kind == "f" \
        and bool(np.isfinite(y_true).all() and np.isfinite(predictions).all())


def _accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y_true))


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_pred - y_true)))


def _fast_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    residual = float(((y_true - y_pred) ** 2).sum())
    total = float(((y_true - y_true.mean()) ** 2).sum())
    if total == 0:  # scikit-learn's force_finite: a constant target scores 1 when matched exactly, else 0
        return 1.0 if residual == 0 else 0.0
    return 1 - residual / total


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
    Metric("accuracy", "maximize", "classification", "accuracy_score", fast=_accuracy),
    Metric("balanced_accuracy", "maximize", "classification", "balanced_accuracy_score"),
    Metric("f1_macro", "maximize", "classification", "f1_score", kwargs={"average": "macro", "zero_division": 0}),
    Metric("log_loss", "minimize", "classification", "log_loss", uses="proba"),
    Metric("roc_auc", "maximize", "classification", "roc_auc_score", uses="proba", custom=_roc_auc),
    Metric("mae", "minimize", "regression", "mean_absolute_error", uses="value", fast=_mae),
    Metric("rmse", "minimize", "regression", "mean_squared_error", uses="value", custom=_rmse, fast=_fast_rmse),
    Metric("r2", "maximize", "regression", "r2_score", uses="value", fast=_r2),
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
