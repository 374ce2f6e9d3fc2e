"""k-fold cross-validation inside a trial: fold models in lockstep, mean metrics, out-of-fold predictions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold

from automl.data.base import PreparedData
from automl.training.checkpoints import load_checkpoint
from automl.training.trained_models import WeightedAverage, load_best_model
from automl.training.trainer import Trainer, TrainSettings
from tests.training.test_trainer import (
    CONFIG,
    FAMILIES,
    Recorder,
    classification_data,
    regression,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3


def as_cv(holdout: PreparedData) -> PreparedData:
    """Every non-test row in X_train, empty X_val, and K folds over X_train."""
    X = np.concatenate([holdout.X_train, holdout.X_val])
    y = np.concatenate([holdout.y_train, holdout.y_val])
    strata = y if holdout.profile.task == "classification" else np.zeros(len(y))
    folds = tuple(StratifiedKFold(K, shuffle=True, random_state=0).split(X, strata))
    return PreparedData(X, y, X[:0], y[:0], holdout.X_test, holdout.y_test, holdout.profile,
                        y_mean=holdout.y_mean, y_std=holdout.y_std, folds=folds)


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return as_cv(classification_data())


def cv_trainer(data: PreparedData) -> Trainer:
    settings = TrainSettings("accuracy", "maximize", ("accuracy", "log_loss"))
    return Trainer(data, settings, FAMILIES)


def fold_models(trainer: Trainer, checkpoint) -> list[torch.nn.Module]:
    ensemble = load_best_model(trainer, CONFIG, checkpoint)
    assert isinstance(ensemble, WeightedAverage)
    return list(ensemble.members)


def test_metrics_are_means_over_the_folds_with_their_std(data, tmp_path):
    trainer = cv_trainer(data)
    report = Recorder()
    outcome = trainer.run("0000", CONFIG, 4, tmp_path / "c.pt", report)
    assert outcome.status == "COMPLETE" and report.epochs == [1, 2, 3, 4]  # one report per epoch, not per fold
    for _, metrics in report.calls:
        assert {"train_loss", "val_loss", "accuracy", "accuracy_std", "log_loss", "log_loss_std"} <= set(metrics)

    per_fold = [trainer.evaluate(model, trainer.X_train[val], data.y_train[val])
                for model, (_, val) in zip(fold_models(trainer, tmp_path / "c.pt"), data.folds)]
    accuracies = [fold["accuracy"] for fold in per_fold]
    assert outcome.metrics["accuracy"] == pytest.approx(np.mean(accuracies))
    assert outcome.metrics["accuracy_std"] == pytest.approx(np.std(accuracies))
    assert outcome.metrics["accuracy"] > 0.6  # chance is 1/3
    assert outcome.loss == -outcome.metrics["accuracy"]  # the best epoch is chosen on the mean


def test_out_of_fold_predictions_cover_every_row_once(data, tmp_path):
    trainer = cv_trainer(data)
    trainer.run("0000", CONFIG, 3, tmp_path / "c.pt", Recorder())
    val_pred = load_checkpoint(tmp_path / "c.pt").best.predictions()
    assert val_pred.shape == (len(data.X_train), 3)
    np.testing.assert_allclose(val_pred.sum(axis=1), 1.0, rtol=1e-5)
    covered = np.sort(np.concatenate([val for _, val in data.folds]))
    np.testing.assert_array_equal(covered, np.arange(len(data.X_train)))
    # each row comes from the one fold model that did not train on it
    for model, (train, val) in zip(fold_models(trainer, tmp_path / "c.pt"), data.folds):
        assert not set(train) & set(val)
        np.testing.assert_allclose(val_pred[val], trainer.predict(model, trainer.X_train[val]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(trainer.validation_targets(), data.y_train)


def test_fold_models_start_from_different_deterministic_seeds(data, tmp_path):
    trainer = cv_trainer(data)
    first = trainer.run("0000", CONFIG, 2, tmp_path / "a.pt", Recorder())
    second = trainer.run("0000", CONFIG, 2, tmp_path / "b.pt", Recorder())
    assert first.metrics == second.metrics
    states = load_checkpoint(tmp_path / "a.pt").best.states
    assert len(states) == K
    first_weights = [next(iter(state.values())) for state in states]
    assert not torch.equal(first_weights[0], first_weights[1])


def test_a_cv_trial_resumes_from_its_checkpoint_mid_trial(data, tmp_path):
    trainer = cv_trainer(data)
    config = {**CONFIG, "lr_schedule": "one_cycle", "mlp.dropout": 0.2}
    trainer.run("0001", config, 5, tmp_path / "a.pt", Recorder(stop_at=2))
    saved = load_checkpoint(tmp_path / "a.pt")
    assert saved.epoch == 2 and len(saved.members) == K
    resumed = Recorder()
    outcome = trainer.run("0001", config, 5, tmp_path / "a.pt", resumed)
    assert resumed.epochs == [3, 4, 5]
    straight = Recorder()
    uninterrupted = trainer.run("0001", config, 5, tmp_path / "b.pt", straight)
    assert [m for _, m in resumed.calls] == [m for _, m in straight.calls[2:]]
    assert outcome.metrics == uninterrupted.metrics


def test_the_cv_model_averages_the_fold_models_and_traces(data, tmp_path):
    trainer = cv_trainer(data)
    trainer.run("0000", CONFIG, 3, tmp_path / "c.pt", Recorder())
    ensemble = load_best_model(trainer, CONFIG, tmp_path / "c.pt")
    assert not ensemble.training
    X = torch.as_tensor(data.X_test)
    mean = np.mean([trainer.predict(model, X) for model in fold_models(trainer, tmp_path / "c.pt")], axis=0)
    np.testing.assert_allclose(trainer.predict(ensemble, X), mean, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        traced = torch.jit.trace(ensemble, X[:2])
        np.testing.assert_allclose(traced(X).numpy(), ensemble(X).numpy(), rtol=1e-6)


def test_cv_regression_averages_outputs_and_predicts_out_of_fold(tmp_path):
    data = as_cv(regression())
    trainer = Trainer(data, TrainSettings("rmse", "minimize", ("rmse", "r2"), loss="huber"), FAMILIES)
    outcome = trainer.run("0000", CONFIG, 4, tmp_path / "c.pt", Recorder())
    assert outcome.metrics["r2"] > 0.5 and "rmse_std" in outcome.metrics
    best = load_checkpoint(tmp_path / "c.pt").best
    assert best.predictions().shape == (len(data.X_train),)
    ensemble = load_best_model(trainer, CONFIG, tmp_path / "c.pt")
    X = torch.as_tensor(data.X_test)
    mean = np.mean([trainer.predict(model, X) for model in ensemble.members], axis=0)
    np.testing.assert_allclose(trainer.predict(ensemble, X), mean, rtol=1e-4, atol=1e-4)


def test_fit_full_with_cv_trains_on_every_non_test_row(data):
    trainer = cv_trainer(data)
    model = trainer.fit_full("0000", CONFIG, 3)
    assert not model.training and not isinstance(model, WeightedAverage)
    assert trainer.evaluate(model, torch.as_tensor(data.X_test), data.y_test)["accuracy"] > 0.6
