"""Optimizers, LR schedules, gradient clipping, regression losses, validation predictions and the refit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automl.training import trainer as trainer_module
from automl.training.checkpoints import load_checkpoint
from automl.training.trained_models import load_best_model
from automl.training.trainer import Trainer, TrainSettings
from tests.training.test_trainer import (
    CONFIG,
    FAMILIES,
    Recorder,
    accuracy_trainer,
    classification_data,
    regression,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classification():
    return classification_data()


class LRRecorder(Recorder):
    """Also records the learning rate after each reported epoch, read from that epoch's checkpoint
    (written just after the report: read at the next report, and at the end through `lrs`), so the
    trainer must write one every epoch (`every_epoch`)."""

    def __init__(self, checkpoint, stop_at=None):
        super().__init__(stop_at)
        self.checkpoint = checkpoint
        self._by_epoch: dict[int, float] = {}

    def _read(self) -> None:
        if self.checkpoint.exists():
            saved = load_checkpoint(self.checkpoint)
            self._by_epoch[saved.epoch] = saved.members[0].optimizer["param_groups"][0]["lr"]

    def __call__(self, epoch, metrics) -> bool:
        self._read()
        return super().__call__(epoch, metrics)

    @property
    def lrs(self) -> list[float]:
        self._read()
        return [self._by_epoch[e] for e in self.epochs]


# --- optimizers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", [
    {"optimizer": "adam"},
    {"optimizer": "adamw"},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 3e-2},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": False, "lr": 3e-2},
    {"optimizer": "lbfgs", "lr": 1e-2},
])
def test_each_optimizer_lowers_the_training_loss(classification, tmp_path, optimizer):
    report = Recorder()
    outcome = accuracy_trainer(classification).run("0000", {**CONFIG, **optimizer}, 5, tmp_path / "c.pt", report)
    assert outcome.status == "COMPLETE"
    losses = [m["train_loss"] for _, m in report.calls]
    assert losses[-1] < 0.8 * losses[0]
    assert outcome.metrics["accuracy"] > 0.6  # chance is 1/3


def test_lbfgs_takes_one_full_batch_step_per_epoch(classification, tmp_path, monkeypatch):
    calls = []
    original = torch.optim.LBFGS.step
    monkeypatch.setattr(torch.optim.LBFGS, "step", lambda self, closure: calls.append(1) or original(self, closure))
    config = {**CONFIG, "optimizer": "lbfgs"}
    small, large = Recorder(), Recorder()
    accuracy_trainer(classification).run("0000", {**config, "batch_size": 8}, 3, tmp_path / "a.pt", small)
    assert len(calls) == 3
    accuracy_trainer(classification).run("0000", {**config, "batch_size": 256}, 3, tmp_path / "b.pt", large)
    # the batch size only splits the full-batch loss into chunks (memory): the same loss either way (the
    # later epochs drift apart by rounding, which twenty line-searched iterations amplify)
    assert small.calls[0][1]["train_loss"] == pytest.approx(large.calls[0][1]["train_loss"], rel=1e-6)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_lbfgs_trains_an_mlp_with_dropout_to_a_low_training_loss(classification, tmp_path, norm):
    # dropout drawn anew at every evaluation made the line search compare noise: the loss stayed flat
    config = {**CONFIG, "optimizer": "lbfgs", "lr": 1e-4, "lr_schedule": "cosine", "mlp.depth": 2,
              "mlp.dropout": 0.4, "mlp.norm": norm}
    report = Recorder()
    outcome = accuracy_trainer(classification).run("0000", config, 3, tmp_path / "c.pt", report)
    losses = [m["train_loss"] for _, m in report.calls]
    assert losses[0] > 0.5 and losses[-1] < 0.1  # the loss at the start of each epoch
    assert outcome.metrics["accuracy"] > 0.75


def test_lbfgs_leaves_batch_norm_statistics_of_its_final_weights(classification):
    # one chunk: the eval-mode model must compute the very function the line search minimised
    config = {**CONFIG, "optimizer": "lbfgs", "batch_size": 256, "mlp.depth": 2, "mlp.norm": "batch"}
    trainer = accuracy_trainer(classification)
    model = trainer.fit_full("0000", config, 2)
    X, y = trainer._all_rows()
    assert trainer.loss_fn(trainer._outputs(model, X), y).item() < 0.01


# --- LR schedules ---------------------------------------------------------------------------------------

def every_epoch(data):
    """A trainer that writes its checkpoint after every epoch, where `LRRecorder` reads the learning rate."""
    return accuracy_trainer(data, checkpoint_interval=0.0)


def test_cosine_anneals_to_zero_by_the_last_epoch(classification, tmp_path):
    report = LRRecorder(tmp_path / "c.pt")
    every_epoch(classification).run("0000", {**CONFIG, "lr_schedule": "cosine"}, 6, tmp_path / "c.pt", report)
    assert all(a > b for a, b in zip(report.lrs, report.lrs[1:]))
    assert report.lrs[0] < CONFIG["lr"]
    assert report.lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_one_cycle_warms_up_then_anneals_peaking_at_lr(classification, tmp_path):
    report = LRRecorder(tmp_path / "c.pt")
    every_epoch(classification).run("0000", {**CONFIG, "lr_schedule": "one_cycle"}, 10, tmp_path / "c.pt", report)
    peak = int(np.argmax(report.lrs))
    assert 0 < peak < len(report.lrs) - 1  # stepped per batch: the peak is inside the run, not at an end
    assert max(report.lrs) == pytest.approx(CONFIG["lr"], rel=0.1)
    assert report.lrs[-1] < 1e-2 * CONFIG["lr"]


def test_constant_keeps_the_learning_rate(classification, tmp_path):
    report = LRRecorder(tmp_path / "c.pt")
    every_epoch(classification).run("0000", CONFIG, 3, tmp_path / "c.pt", report)
    assert report.lrs == [CONFIG["lr"]] * 3


@pytest.mark.parametrize("schedule", ["cosine", "one_cycle"])
def test_a_schedule_survives_resuming_from_the_checkpoint(classification, tmp_path, schedule):
    trainer = every_epoch(classification)
    config = {**CONFIG, "lr_schedule": schedule}
    trainer.run("0001", config, 5, tmp_path / "a.pt", Recorder(stop_at=2))
    resumed = LRRecorder(tmp_path / "a.pt")
    outcome = trainer.run("0001", config, 5, tmp_path / "a.pt", resumed)
    straight = LRRecorder(tmp_path / "b.pt")
    uninterrupted = trainer.run("0001", config, 5, tmp_path / "b.pt", straight)
    assert resumed.epochs == [3, 4, 5]
    assert resumed.lrs == straight.lrs[2:]
    assert outcome.metrics == uninterrupted.metrics


def test_a_promotion_continues_a_fresh_schedule_for_its_longer_budget(classification, tmp_path):
    trainer = every_epoch(classification)
    config = {**CONFIG, "lr_schedule": "cosine"}
    trainer.run("0002", config, 2, tmp_path / "low.pt", Recorder())
    promoted = LRRecorder(tmp_path / "high.pt")
    trainer.run("0003", config, 6, tmp_path / "high.pt", promoted, resume_from=tmp_path / "low.pt")
    straight = LRRecorder(tmp_path / "straight.pt")
    trainer.run("0002", config, 6, tmp_path / "straight.pt", straight)
    assert promoted.lrs == pytest.approx(straight.lrs[2:])  # as if scheduled for 6 epochs from the start


# --- gradient clipping ----------------------------------------------------------------------------------

def _grad_norms_seen_by_the_optimizer(trainer, config, checkpoint, monkeypatch) -> list[float]:
    norms: list[float] = []
    make = trainer_module.make_optimizer

    def spying(model, cfg):
        optimizer = make(model, cfg)
        step = optimizer.step

        def recording_step(*args, **kwargs):
            grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
            norms.append(float(torch.norm(torch.stack(grads))))
            return step(*args, **kwargs)

        optimizer.step = recording_step
        return optimizer

    monkeypatch.setattr(trainer_module, "make_optimizer", spying)
    trainer.run("0000", config, 2, checkpoint, Recorder())
    return norms


def test_grad_clip_bounds_the_gradient_norm(classification, tmp_path, monkeypatch):
    trainer = accuracy_trainer(classification)
    free = _grad_norms_seen_by_the_optimizer(trainer, {**CONFIG, "grad_clip": 0.0}, tmp_path / "a.pt", monkeypatch)
    assert max(free) > 0.2  # without clipping the bound below would bite
    clipped = _grad_norms_seen_by_the_optimizer(trainer, {**CONFIG, "grad_clip": 0.2}, tmp_path / "b.pt",
                                                monkeypatch)
    assert max(clipped) <= 0.2 + 1e-5


# --- regression losses ----------------------------------------------------------------------------------

def _regression_run(loss, tmp_path):
    data = regression()
    trainer = Trainer(data, TrainSettings("mae", "minimize", ("mae", "rmse"), loss=loss), FAMILIES)
    outcome = trainer.run("0000", CONFIG, 4, tmp_path / f"{loss}.pt", Recorder())
    best = load_checkpoint(tmp_path / f"{loss}.pt").best
    scaled = lambda v: torch.as_tensor((v - data.y_mean) / data.y_std, dtype=torch.float32)  # noqa: E731
    return outcome, scaled(best.predictions()), scaled(data.y_val), data


def test_mae_loss_trains_and_validates_with_l1(tmp_path):
    outcome, pred, target, data = _regression_run("mae", tmp_path)
    assert outcome.status == "COMPLETE"
    # val_loss is the l1 loss on standardised targets: the mae metric over the target's std
    assert outcome.metrics["val_loss"] == pytest.approx(outcome.metrics["mae"] / data.y_std, rel=1e-4)


def test_huber_loss_is_used_for_regression(tmp_path):
    outcome, pred, target, _ = _regression_run("huber", tmp_path)
    expected = torch.nn.functional.huber_loss(pred, target, delta=1.0).item()
    assert outcome.metrics["val_loss"] == pytest.approx(expected, rel=1e-4)
    assert outcome.metrics["val_loss"] != pytest.approx(torch.nn.functional.mse_loss(pred, target).item(), rel=1e-3)


def test_an_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss"):
        Trainer(regression(), TrainSettings("mae", "minimize", ("mae",), loss="hinge"), FAMILIES)


# --- validation predictions and the refit ---------------------------------------------------------------

def test_the_best_epoch_keeps_its_validation_predictions(classification, tmp_path):
    trainer = accuracy_trainer(classification)
    trainer.run("0000", CONFIG, 4, tmp_path / "c.pt", Recorder())
    val_pred = load_checkpoint(tmp_path / "c.pt").best.predictions()
    model = load_best_model(trainer, CONFIG, tmp_path / "c.pt")
    np.testing.assert_allclose(val_pred, trainer.predict(model, trainer.X_val), rtol=1e-5, atol=1e-7)
    assert val_pred.shape == (len(classification.y_val), 3)
    np.testing.assert_array_equal(trainer.validation_targets(), classification.y_val)


def _count_training_rows(trainer, monkeypatch) -> list[int]:
    """Rows each training forward pass sees."""
    rows: list[int] = []
    build = Trainer.build_model

    def counting(self, config):
        model = build(self, config)
        model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])) if m.training else None)
        return model

    monkeypatch.setattr(Trainer, "build_model", counting)
    return rows


def test_fit_full_trains_on_train_and_validation_rows(classification, tmp_path, monkeypatch):
    trainer = accuracy_trainer(classification)
    rows = _count_training_rows(trainer, monkeypatch)
    model = trainer.fit_full("0000", CONFIG, 3)
    assert not model.training
    n_all = len(classification.X_train) + len(classification.X_val)
    assert sum(rows) == 3 * n_all  # three epochs over every non-test row, no validation passes

    rows.clear()
    trainer.run("0000", CONFIG, 3, tmp_path / "c.pt", Recorder())
    assert sum(rows) == 3 * len(classification.X_train)
    searched = load_best_model(trainer, CONFIG, tmp_path / "c.pt")
    assert not np.allclose(trainer.predict(model, trainer.X_val), trainer.predict(searched, trainer.X_val))
    again = trainer.fit_full("0000", CONFIG, 3)  # deterministic
    np.testing.assert_array_equal(trainer.predict(model, trainer.X_val), trainer.predict(again, trainer.X_val))


@pytest.mark.parametrize("extra", [{"optimizer": "lbfgs"}, {"lr_schedule": "one_cycle", "grad_clip": 1.0}])
def test_fit_full_uses_the_trial_s_optimizer_and_schedule(classification, extra):
    trainer = accuracy_trainer(classification)
    model = trainer.fit_full("0000", {**CONFIG, **extra}, 3)
    accuracy = trainer.evaluate(model, trainer.X_val, classification.y_val)["accuracy"]
    assert accuracy > 0.6  # trained (and here it saw the validation rows)
