"""Metrics are scikit-learn's, computed quietly on what the models output."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from automl.metrics import compute_metrics


def test_log_loss_of_rows_that_miss_one_is_computed_on_normalised_rows_and_silently():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=200).astype(np.float32) * np.float32(1 - 1e-3)
    y = rng.integers(0, 4, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns "y_prob values do not sum to one" at every call
        scores = compute_metrics(("log_loss", "roc_auc"), "classification", y, proba)
    exact = proba.astype(np.float64) / proba.astype(np.float64).sum(axis=1, keepdims=True)
    assert scores["log_loss"] == pytest.approx(log_loss(y, exact, labels=range(4)))
