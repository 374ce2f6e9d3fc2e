"""When a trial writes its checkpoint: once `checkpoint_interval` seconds of training passed since
its last one, and always when it ends; a trial cut off in between resumes from the last one,
running and reporting again, identically, the epochs after it."""
from __future__ import annotations

import functools

import pytest

import automl.training.trainer as trainer_module
from automl.training.checkpoints import CHECKPOINT_INTERVAL_S, INTERVAL_ENV, CheckpointClock, load_checkpoint
from automl.training.trainer import TrainSettings
from tests.training.test_trainer import CONFIG, Recorder, accuracy_trainer, classification_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return classification_data()


@pytest.fixture
def written(monkeypatch) -> list[int]:
    """The epoch of every checkpoint the trainer writes, in order."""
    epochs: list[int] = []
    real = trainer_module.save_checkpoint

    def save(path, ckpt):
        epochs.append(ckpt.epoch)
        real(path, ckpt)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    return epochs


class FakeClock:
    """The trainer's checkpoint clock reads this time, which the report sets to the epoch: an epoch lasts 1 s."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(trainer_module, "CheckpointClock", functools.partial(CheckpointClock, now=lambda: self.now))


class Killed(Exception):
    """Stands for a worker killed right after the driver recorded an epoch."""


def test_short_epochs_write_one_checkpoint_at_the_end(data, tmp_path, written):
    outcome = accuracy_trainer(data, checkpoint_interval=3600).run("0000", CONFIG, 6, tmp_path / "c.pt", Recorder())
    assert outcome.status == "COMPLETE"
    assert written == [6]
    assert load_checkpoint(tmp_path / "c.pt").epoch == 6  # what the refit, the ensemble and a promotion read


@pytest.mark.parametrize("stop", ["pruned", "early_stopped"])
def test_a_trial_stopped_before_its_budget_writes_its_last_epoch(data, tmp_path, written, stop):
    if stop == "pruned":
        trainer, report = accuracy_trainer(data, checkpoint_interval=3600), Recorder(stop_at=3)
    else:  # patience 0: the first epoch that is not better stops it
        trainer, report = accuracy_trainer(data, patience=0, checkpoint_interval=3600), Recorder()
    outcome = trainer.run("0000", CONFIG, 40, tmp_path / "c.pt", report)
    assert outcome.epochs < 40
    assert written == [outcome.epochs] == [report.epochs[-1]]


def test_no_interval_writes_every_epoch(data, tmp_path, written):
    accuracy_trainer(data, checkpoint_interval=0.0).run("0000", CONFIG, 4, tmp_path / "c.pt", Recorder())
    assert written == [1, 2, 3, 4]


def test_a_checkpoint_is_written_once_the_interval_has_passed(data, tmp_path, written, monkeypatch):
    clock = FakeClock(monkeypatch)

    def report(epoch, metrics):
        clock.now = float(epoch)
        return False

    accuracy_trainer(data, checkpoint_interval=2.5).run("0000", CONFIG, 8, tmp_path / "c.pt", report)
    assert written == [3, 6, 8]  # 3 s after the start, 3 s after that one, and the end


def test_a_trial_killed_between_checkpoints_resumes_from_the_last_one_and_repeats_its_epochs(
        data, tmp_path, written, monkeypatch):
    clock = FakeClock(monkeypatch)
    trainer = accuracy_trainer(data, checkpoint_interval=2.5)
    first = Recorder()

    def killed_at_epoch_5(epoch, metrics):
        clock.now = float(epoch)
        first(epoch, metrics)
        if epoch == 5:
            raise Killed
        return False

    with pytest.raises(Killed):
        trainer.run("0000", CONFIG, 8, tmp_path / "c.pt", killed_at_epoch_5)
    assert load_checkpoint(tmp_path / "c.pt").epoch == 3  # epochs 4 and 5 are lost: less than the interval

    clock.now = 0.0
    resumed = Recorder()
    outcome = trainer.run("0000", CONFIG, 8, tmp_path / "c.pt", resumed)
    straight = Recorder()
    uninterrupted = trainer.run("0000", CONFIG, 8, tmp_path / "straight.pt", straight)
    assert resumed.epochs == [4, 5, 6, 7, 8]
    assert resumed.calls[:2] == first.calls[3:5]  # the lost epochs run again to the same metrics
    assert resumed.calls == straight.calls[3:]
    assert outcome.metrics == uninterrupted.metrics and outcome.epochs == 8


@pytest.mark.parametrize("value, interval", [("0", 0.0), ("30", 30.0), ("", CHECKPOINT_INTERVAL_S),
                                             ("soon", CHECKPOINT_INTERVAL_S), ("-1", CHECKPOINT_INTERVAL_S)])
def test_the_environment_sets_the_interval_of_a_run(monkeypatch, caplog, value, interval):
    """AUTOML_CHECKPOINT_INTERVAL_S (0: every epoch, e.g. on machines that are taken away at any moment)."""
    monkeypatch.setenv(INTERVAL_ENV, value)
    assert TrainSettings("accuracy", "maximize", ("accuracy",)).checkpoint_interval == interval
    assert (INTERVAL_ENV in caplog.text) == (value in ("soon", "-1"))


def test_a_checkpoint_waits_for_the_driver_to_have_committed_its_epochs(data, tmp_path, written):
    """A worker's report goes on without the driver's answer where no strategy prunes; its `sync`
    waits for it. The trainer syncs before every checkpoint, so no checkpoint holds an epoch the
    driver has not recorded (a crash would lose that epoch's row)."""
    calls: list[tuple[str, int]] = []

    class NoWaitReport(Recorder):
        def __call__(self, epoch, metrics):
            calls.append(("report", epoch))
            return super().__call__(epoch, metrics)

        def sync(self):
            calls.append(("sync", written[-1] if written else 0))  # the last checkpoint written so far
            return False

    accuracy_trainer(data, checkpoint_interval=0.0).run("0000", CONFIG, 3, tmp_path / "c.pt", NoWaitReport())
    assert calls == [("report", 1), ("sync", 0), ("report", 2), ("sync", 1), ("report", 3), ("sync", 2)]
    assert written == [1, 2, 3]
