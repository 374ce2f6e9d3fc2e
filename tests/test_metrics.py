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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_numpy_forms_of_the_common_metrics_give_scikit_learns_values(seed):
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(5), size=97).astype(np.float32)
    y = rng.integers(0, 4, 97)  # class 4 never occurs
    assert compute_metrics(("accuracy",), "classification", y, proba)["accuracy"] == \
        skm.accuracy_score(y, proba.argmax(axis=1))
    target = rng.normal(size=97) * 10
    pred = (target + rng.normal(size=97)).astype(np.float32).astype(np.float64)
    scores = compute_metrics(("mae", "rmse", "r2"), "regression", target, pred)
    assert scores["mae"] == pytest.approx(skm.mean_absolute_error(target, pred), rel=1e-12)
    assert scores["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(target, pred)), rel=1e-12)
    assert scores["r2"] == pytest.approx(skm.r2_score(target, pred), rel=1e-12)


def test_r2_of_a_constant_target_follows_scikit_learn():
    from sklearn.metrics import r2_score

    constant = np.full(10, 3.0)
    for pred in (constant.copy(), constant + 0.5):
        assert compute_metrics(("r2",), "regression", constant, pred)["r2"] == r2_score(constant, pred)


def test_a_prediction_that_is_not_finite_is_refused_as_scikit_learn_refuses_it():
    target = np.arange(5, dtype=np.float64)
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(("rmse",), "regression", target, np.array([0, 1, np.nan, 3, 4], dtype=np.float64))
