"""Greedy ensemble selection: it must find blends that beat the best single model on the
validation predictions, and never do worse than that model."""
from __future__ import annotations

import numpy as np
import pytest

from automl.final.ensemble import blend, greedy_ensemble


def squared_error(y):
    return lambda pred: (float(np.mean((pred - y) ** 2)), 0.0)


def test_two_models_with_opposite_errors_are_blended_half_and_half():
    y = np.linspace(-1, 1, 50)
    low, high, poor = y - 0.5, y + 0.5, y + 2.0
    ensemble = greedy_ensemble([low, high, poor], squared_error(y), rounds=10)
    assert ensemble.members == [0, 1]
    assert ensemble.weights[0] == pytest.approx(0.5) and ensemble.weights[1] == pytest.approx(0.5)
    assert ensemble.score[0] == pytest.approx(0.0)
    np.testing.assert_allclose(blend([low, high, poor], ensemble.weights), y)


def test_never_worse_than_the_best_single_candidate_and_keeps_the_best_round():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    best = y + rng.normal(scale=0.1, size=200)
    noisy = [y + rng.normal(scale=3.0, size=200) for _ in range(4)]
    ensemble = greedy_ensemble([best, *noisy], squared_error(y), rounds=20)
    single = squared_error(y)(best)[0]
    assert ensemble.score[0] <= single
    assert ensemble.members == [0]  # the noisy ones only hurt: the best prefix is the single model
    assert len(ensemble.history) == 20 and min(ensemble.history) == ensemble.score


def test_ties_on_the_metric_are_broken_by_the_smooth_loss_then_by_rank():
    y = np.array([0, 1, 1, 0])
    sure = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]])
    unsure = np.array([[0.6, 0.4], [0.4, 0.6], [0.4, 0.6], [0.6, 0.4]])

    def score(proba):
        accuracy = float(np.mean(proba.argmax(1) == y))
        log_loss = float(-np.mean(np.log(proba[np.arange(len(y)), y])))
        return -accuracy, log_loss

    assert greedy_ensemble([unsure, sure], score, rounds=3).members == [1]
    assert greedy_ensemble([sure, sure.copy()], score, rounds=3).members == [0]


def test_a_candidate_with_non_finite_predictions_is_never_picked():
    y = np.zeros(5)
    broken = np.full(5, np.nan)
    ensemble = greedy_ensemble([broken, y + 1.0], lambda p: (float(np.mean((p - y) ** 2)), 0.0), rounds=3)
    assert ensemble.members == [1]


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError):
        greedy_ensemble([], squared_error(np.zeros(1)), rounds=1)
