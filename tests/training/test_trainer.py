"""The trial trainer: learning, reproducibility, reporting, pruning, early stopping, divergence,
checkpoints (resume and promotion) and metrics in the target's own units."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from automl.data.base import PreparedData, Profile
from automl.families.mlp import MLPFamily
from automl.records import Reason
from automl.training.checkpoints import CHECKPOINT_INTERVAL_S, load_checkpoint
from automl.training.trained_models import load_best_model
from automl.training.trainer import Trainer, TrainSettings, TrialOutcome

FAMILIES = {"mlp": MLPFamily()}

CONFIG = {
    "family": "mlp", "optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-5, "batch_size": 32,
    "lr_schedule": "constant", "mlp.depth": 1, "mlp.width": 32, "mlp.dropout": 0.0, "mlp.norm": "none",
    "mlp.activation": "relu",
}


def tabular_profile(task: str, n_features: int, n_classes: int | None = None) -> Profile:
    return Profile(source="test", modality="tabular", task=task, target="y", n_samples=300, n_train=180,
                   n_val=60, n_test=60, input_shape=(n_features,), n_features=n_features, n_classes=n_classes)


def split(X, y, profile, **extra) -> PreparedData:
    return PreparedData(X[:180], y[:180], X[180:240], y[180:240], X[240:], y[240:], profile, **extra)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classification() -> PreparedData:
    return classification_data()


def classification_data() -> PreparedData:
    """Three separable classes, 10 features, 180/60/60 rows."""
    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3, class_sep=1.5,
                               random_state=0)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    return split(X, y.astype(np.int64), tabular_profile("classification", 10, n_classes=3))


def regression(scale: float = 1.0) -> PreparedData:
    X, y = make_regression(n_samples=300, n_features=5, noise=10.0, random_state=0)
    y = (y * scale).astype(np.float32)
    return split(X.astype(np.float32), y, tabular_profile("regression", 5),
                 y_mean=float(y[:180].mean()), y_std=float(y[:180].std()))


def accuracy_trainer(data: PreparedData, patience: int | None = None, seed: int = 0,
                     checkpoint_interval: float = CHECKPOINT_INTERVAL_S) -> Trainer:
    settings = TrainSettings(metric="accuracy", direction="maximize", metric_names=("accuracy", "log_loss"),
                             device="cpu", patience=patience, seed=seed, checkpoint_interval=checkpoint_interval)
    return Trainer(data, settings, FAMILIES)


class Recorder:
    """A report callback that records what it sees and can stop the trial at a given epoch."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at
        self.calls: list[tuple[int, dict]] = []

    def __call__(self, epoch, metrics) -> bool:
        self.calls.append((epoch, dict(metrics)))
        return epoch == self.stop_at

    @property
    def epochs(self) -> list[int]:
        return [epoch for epoch, _ in self.calls]


def test_training_learns_clearly_better_than_chance(classification, tmp_path):
    report = Recorder()
    outcome = accuracy_trainer(classification).run("0000", CONFIG, 10, tmp_path / "ckpt.pt", report)
    assert isinstance(outcome, TrialOutcome)
    assert outcome.status == "COMPLETE" and outcome.reason is None and outcome.error is None
    assert outcome.epochs == 10
    assert outcome.metrics["accuracy"] >= 0.75  # chance is 1/3
    # the outcome is the best epoch, and its loss is the flipped (maximised) selection metric
    best = max(m["accuracy"] for _, m in report.calls)
    assert outcome.metrics["accuracy"] == best
    assert outcome.loss == -best
    assert report.calls[outcome.metrics["best_epoch"] - 1][1]["accuracy"] == best
    assert (tmp_path / "ckpt.pt").exists()
    assert not list(tmp_path.glob("*.tmp"))  # checkpoints are written atomically


def test_the_best_model_can_be_reloaded_from_the_checkpoint(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    outcome = trainer.run("0000", CONFIG, 6, tmp_path / "ckpt.pt", Recorder())
    model = load_best_model(trainer, CONFIG, tmp_path / "ckpt.pt")
    again = trainer.evaluate(model, trainer.X_val, classification.y_val)
    assert again["accuracy"] == outcome.metrics["accuracy"]
    assert again["log_loss"] == pytest.approx(outcome.metrics["log_loss"], rel=1e-5)


def test_same_seed_and_trial_id_give_identical_metrics(classification, tmp_path):
    config = {**CONFIG, "mlp.dropout": 0.2, "lr_schedule": "cosine"}  # exercise every random source
    first, second = Recorder(), Recorder()
    a = accuracy_trainer(classification).run("0003", config, 4, tmp_path / "a.pt", first)
    b = accuracy_trainer(classification).run("0003", config, 4, tmp_path / "b.pt", second)
    assert a.metrics == b.metrics and a.loss == b.loss
    assert first.calls == second.calls
    other = accuracy_trainer(classification).run("0004", config, 4, tmp_path / "c.pt", Recorder())
    assert other.metrics["train_loss"] != a.metrics["train_loss"]  # the trial id seeds the trial
    reseeded = accuracy_trainer(classification, seed=1).run("0003", config, 4, tmp_path / "d.pt", Recorder())
    assert reseeded.metrics["train_loss"] != a.metrics["train_loss"]  # so does the run's seed


def test_the_report_callback_sees_every_epoch_with_losses_and_metrics(classification, tmp_path):
    report = Recorder()
    accuracy_trainer(classification).run("0000", CONFIG, 5, tmp_path / "ckpt.pt", report)
    assert report.epochs == [1, 2, 3, 4, 5]
    for _, metrics in report.calls:
        assert {"train_loss", "val_loss", "accuracy", "log_loss"} <= set(metrics)
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0.0 <= metrics["accuracy"] <= 1.0


def test_a_fractional_budget_rounds_to_whole_epochs_and_never_below_one(classification, tmp_path):
    report = Recorder()
    outcome = accuracy_trainer(classification).run("0000", CONFIG, 0.2, tmp_path / "ckpt.pt", report)
    assert report.epochs == [1] and outcome.epochs == 1
    report = Recorder()
    accuracy_trainer(classification).run("0001", CONFIG, 2.6, tmp_path / "ckpt2.pt", report)
    assert report.epochs == [1, 2, 3]


def test_returning_true_from_report_prunes_the_trial(classification, tmp_path):
    report = Recorder(stop_at=2)
    outcome = accuracy_trainer(classification).run("0000", CONFIG, 10, tmp_path / "ckpt.pt", report)
    assert report.epochs == [1, 2]
    assert outcome.status == "PRUNED"
    assert outcome.epochs == 2
    assert outcome.reason and "stopped" in outcome.reason
    assert outcome.loss is not None and outcome.metrics["best_epoch"] in (1, 2)


def test_patience_stops_a_trial_early_as_complete(classification, tmp_path):
    report = Recorder()
    patience = 2
    outcome = accuracy_trainer(classification, patience=patience).run("0002", CONFIG, 60, tmp_path / "ckpt.pt",
                                                                        report)
    assert outcome.status == "COMPLETE"
    assert outcome.reason is Reason.EARLY_STOPPED
    assert outcome.epochs < 60
    assert report.epochs == list(range(1, outcome.epochs + 1))
    # it stopped exactly `patience` epochs after the last improvement
    assert outcome.metrics["best_epoch"] == outcome.epochs - patience
    best = outcome.metrics["accuracy"]
    assert all(m["accuracy"] <= best for _, m in report.calls[outcome.metrics["best_epoch"]:])


def test_patience_is_not_reported_as_early_stop_on_the_last_epoch(classification, tmp_path):
    outcome = accuracy_trainer(classification, patience=1).run("0000", CONFIG, 1, tmp_path / "ckpt.pt", Recorder())
    assert outcome.status == "COMPLETE" and outcome.reason is None and outcome.epochs == 1


def test_a_diverging_trial_fails_with_reason_diverged(tmp_path):
    data = regression()
    trainer = Trainer(data, TrainSettings("rmse", "minimize", ("rmse",)), FAMILIES)
    config = {**CONFIG, "optimizer": "sgd", "lr": 1e6, "momentum": 0.9}
    report = Recorder()
    outcome = trainer.run("0000", config, 5, tmp_path / "ckpt.pt", report)
    assert outcome.status == "FAILED"
    assert outcome.reason == "diverged"
    assert outcome.loss is None
    assert outcome.error and "epoch" in outcome.error
    assert 1 <= outcome.epochs <= 5
    assert len(report.calls) < outcome.epochs  # the diverged epoch is not reported as a result


def test_a_trial_resumes_from_its_own_checkpoint_at_the_next_epoch(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    checkpoint = tmp_path / "0005.pt"
    interrupted = Recorder(stop_at=2)  # e.g. the driver stopped the run
    trainer.run("0005", CONFIG, 5, checkpoint, interrupted)
    assert interrupted.epochs == [1, 2]
    assert load_checkpoint(checkpoint).epoch == 2

    resumed = Recorder()
    outcome = trainer.run("0005", CONFIG, 5, checkpoint, resumed)
    assert resumed.epochs == [3, 4, 5]
    assert outcome.status == "COMPLETE" and outcome.epochs == 5

    # and it continues exactly where it stopped: same result as an uninterrupted run
    uninterrupted = trainer.run("0005", CONFIG, 5, tmp_path / "other.pt", Recorder())
    assert outcome.metrics == uninterrupted.metrics
    assert [m for _, m in resumed.calls] == [m for _, m in
                                             _calls(trainer, "0005", CONFIG, 5, tmp_path / "third.pt")[2:]]


def _calls(trainer, trial_id, config, budget, checkpoint) -> list[tuple[int, dict]]:
    report = Recorder()
    trainer.run(trial_id, config, budget, checkpoint, report)
    return report.calls


def test_resuming_a_trial_with_dropout_matches_an_uninterrupted_run(classification, tmp_path):
    """Regression: dropout draws (torch's global RNG) must continue from the checkpoint, not restart."""
    trainer = accuracy_trainer(classification)
    config = {**CONFIG, "mlp.dropout": 0.3}
    trainer.run("0006", config, 4, tmp_path / "a.pt", Recorder(stop_at=2))
    resumed = trainer.run("0006", config, 4, tmp_path / "a.pt", Recorder())
    uninterrupted = trainer.run("0006", config, 4, tmp_path / "b.pt", Recorder())
    assert resumed.metrics == uninterrupted.metrics


def test_a_finished_trial_rerun_on_its_checkpoint_trains_no_more(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    first = trainer.run("0000", CONFIG, 3, tmp_path / "ckpt.pt", Recorder())
    report = Recorder()
    again = trainer.run("0000", CONFIG, 3, tmp_path / "ckpt.pt", report)
    assert report.epochs == []
    assert again.metrics == first.metrics and again.epochs == 3


def test_a_promotion_starts_from_the_other_trial_s_epoch(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    low = tmp_path / "0007.pt"
    trainer.run("0007", CONFIG, 2, low, Recorder())

    promoted = Recorder()
    high = tmp_path / "0008.pt"
    outcome = trainer.run("0008", CONFIG, 5, high, promoted, resume_from=low)
    assert promoted.epochs == [3, 4, 5]
    assert outcome.status == "COMPLETE" and outcome.epochs == 5
    assert load_checkpoint(low).epoch == 2  # the other trial's checkpoint is left as it was
    assert load_checkpoint(high).epoch == 5

    # it really continues the other trial's training (same weights, optimiser and data order)
    continued = _calls(trainer, "0007", CONFIG, 5, tmp_path / "straight.pt")[2:]
    assert [m for _, m in promoted.calls] == [m for _, m in continued]


def test_an_interrupted_promotion_resumes_from_its_own_checkpoint(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    low = tmp_path / "0009.pt"
    trainer.run("0009", CONFIG, 2, low, Recorder())
    high = tmp_path / "0010.pt"
    trainer.run("0010", CONFIG, 5, high, Recorder(stop_at=3), resume_from=low)
    report = Recorder()
    outcome = trainer.run("0010", CONFIG, 5, high, report, resume_from=low)
    assert report.epochs == [4, 5]  # its own checkpoint (epoch 3) wins over the promotion source (epoch 2)
    assert outcome.epochs == 5


def test_a_missing_promotion_source_starts_from_scratch(classification, tmp_path):
    report = Recorder()
    accuracy_trainer(classification).run("0000", CONFIG, 2, tmp_path / "ckpt.pt", report,
                                         resume_from=tmp_path / "gone.pt")
    assert report.epochs == [1, 2]


def test_regression_metrics_are_in_the_target_s_original_units(tmp_path):
    outcomes, stds = {}, {}
    for scale in (1.0, 1000.0):
        data = regression(scale)
        trainer = Trainer(data, TrainSettings("rmse", "minimize", ("rmse", "mae", "r2")), FAMILIES)
        outcomes[scale] = trainer.run("0000", CONFIG, 8, tmp_path / f"{scale}.pt", Recorder())
        stds[scale] = float(np.std(data.y_val))
    small, big = outcomes[1.0], outcomes[1000.0]
    assert small.status == big.status == "COMPLETE"
    # the model learned something: well under the spread of the targets, and r2 close to 1
    assert small.metrics["rmse"] < 0.5 * stds[1.0]
    assert small.metrics["r2"] > 0.8
    # targets 1000x larger: rmse and mae 1000x larger (training itself sees standardised targets)
    assert big.metrics["rmse"] == pytest.approx(1000 * small.metrics["rmse"], rel=1e-3)
    assert big.metrics["mae"] == pytest.approx(1000 * small.metrics["mae"], rel=1e-3)
    assert big.metrics["r2"] == pytest.approx(small.metrics["r2"], abs=1e-4)
    assert big.loss == big.metrics["rmse"] > 1000  # minimised metric is the loss as is, in original units


def test_a_refit_trained_by_a_worker_is_read_back_as_the_model_the_driver_would_train(classification, tmp_path):
    """After the search the refit trains in an idle worker (automl/final/worker_refit.py): what it
    saves must be the very model `fit_full` returns, read back with weights only."""
    import torch

    from automl.training.runner import refit_path, run_refit

    trainer = accuracy_trainer(classification)
    path = refit_path(tmp_path, "t7")
    outcome = run_refit(trainer, "t7", dict(CONFIG), 4, 1, path)
    assert outcome.status == "COMPLETE" and outcome.epochs == 4
    from_worker = load_best_model(trainer, CONFIG, path)
    in_driver = trainer.fit_full("t7", dict(CONFIG), 4)  # seeded by the trial id, as in the worker
    X = torch.as_tensor(classification.X_test)
    with torch.no_grad():
        assert torch.equal(from_worker(X), in_driver(X))
