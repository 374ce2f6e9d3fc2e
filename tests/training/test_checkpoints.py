"""Checkpoints hold only tensors and plain values, load without unpickling, and refuse damaged
files and the released version's pickles with an error that names the file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automl.errors import CheckpointError
from automl.training.checkpoints import FORMAT, load_checkpoint
from tests.training.test_cross_validation import as_cv
from tests.training.test_trainer import (
    CONFIG,
    Recorder,
    accuracy_trainer,
    classification_data,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def holdout():
    return classification_data()


@pytest.fixture(scope="module")
def folds(holdout):
    return as_cv(holdout)


TRAINING = {
    "adam": {},
    "sgd_cosine": {"optimizer": "sgd", "momentum": 0.9, "lr": 3e-2, "lr_schedule": "cosine"},
    "adamw_one_cycle": {"optimizer": "adamw", "lr_schedule": "one_cycle", "grad_clip": 1.0},
    "lbfgs": {"optimizer": "lbfgs", "lr": 1e-2},
    "lbfgs_cosine": {"optimizer": "lbfgs", "lr": 1e-2, "lr_schedule": "cosine"},
}


@pytest.mark.parametrize("cv", [False, True], ids=["holdout", "cv"])
@pytest.mark.parametrize("name", list(TRAINING))
def test_every_part_loads_with_weights_only(holdout, folds, tmp_path, name, cv):
    data = folds if cv else holdout
    config = {**CONFIG, **TRAINING[name], "batch_size": np.int64(32), "lr": np.float64(TRAINING[name].get("lr", 1e-2))}
    path = tmp_path / "c.pt"
    accuracy_trainer(data).run("0000", config, 2, path, Recorder())
    raw = torch.load(path, weights_only=True)  # raises if anything needs unpickling
    assert raw["format"] == FORMAT and isinstance(raw["best"]["val_pred"], torch.Tensor)
    saved = load_checkpoint(path)
    assert saved.epoch == 2 and len(saved.members) == (len(data.folds) if cv else 1) == len(saved.best.states)
    assert saved.config["batch_size"] == 32 and type(saved.config["batch_size"]) is int  # numpy made plain
    rows = len(data.y_train) if cv else len(data.y_val)
    assert saved.best.predictions().shape == (rows, 3)
    member = saved.members[0]
    assert isinstance(member.generator, torch.Tensor) and member.optimizer["param_groups"]
    # L-BFGS has no schedule: its line search sets every step
    assert (member.scheduler is None) == ("lr_schedule" not in TRAINING[name] or name.startswith("lbfgs"))


def test_a_resumed_trial_continues_from_a_weights_only_checkpoint(holdout, tmp_path):
    trainer = accuracy_trainer(holdout)
    config = {**CONFIG, "optimizer": "lbfgs", "lr_schedule": "cosine"}
    trainer.run("0001", config, 4, tmp_path / "a.pt", Recorder(stop_at=2))
    resumed = Recorder()
    outcome = trainer.run("0001", config, 4, tmp_path / "a.pt", resumed)
    straight = trainer.run("0001", config, 4, tmp_path / "b.pt", Recorder())
    assert resumed.epochs == [3, 4] and outcome.metrics == straight.metrics


def _written(holdout, tmp_path):
    path = tmp_path / "0000.pt"
    accuracy_trainer(holdout).run("0000", CONFIG, 2, path, Recorder())
    return path


@pytest.mark.parametrize("cut", [lambda n: 0, lambda n: 10, lambda n: n // 2, lambda n: n - 20],
                         ids=["empty", "header", "half", "tail_cut"])
def test_a_truncated_checkpoint_is_a_clear_error_naming_the_file(holdout, tmp_path, cut):
    path = _written(holdout, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:cut(len(data))])
    with pytest.raises(CheckpointError, match="damaged") as raised:
        load_checkpoint(path)
    assert str(path) in str(raised.value) and "Errno" not in str(raised.value)


def test_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "gone.pt")


class _Tripwire:
    """Unpickling one touches a file: proof that a loader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_of_the_released_version_is_refused_unread(tmp_path):
    # the released version's layout: a full pickle, numpy validation predictions
    marker = tmp_path / "unpickled"
    old = {"epoch": 2, "bad_epochs": 0, "config": dict(CONFIG), "torch_rng": torch.get_rng_state(), "members": [],
           "best": {"loss": -0.9, "metrics": {"accuracy": 0.9}, "epoch": 2, "states": [],
                    "val_pred": np.zeros((4, 3), dtype=np.float32)}, "tripwire": _Tripwire(marker)}
    path = tmp_path / "0000.pt"
    torch.save(old, path)
    with pytest.raises(CheckpointError, match="older version") as raised:
        load_checkpoint(path)
    assert str(path) in str(raised.value) and "never unpickled" in str(raised.value)
    assert not marker.exists()


def test_a_weights_only_file_without_the_format_is_refused(tmp_path):
    path = tmp_path / "0000.pt"
    torch.save({"epoch": 1}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint this version"):
        load_checkpoint(path)


def test_an_unreadable_own_checkpoint_restarts_the_trial_with_a_warning_naming_it(holdout, tmp_path, caplog):
    path = _written(holdout, tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    report = Recorder()
    outcome = accuracy_trainer(holdout).run("0000", CONFIG, 4, path, report)
    straight = accuracy_trainer(holdout).run("0000", CONFIG, 4, tmp_path / "straight.pt", Recorder())
    assert outcome.status == "COMPLETE" and outcome.metrics == straight.metrics
    assert report.epochs == [1, 2, 3, 4]  # nothing trained on top of a checkpoint it could not read
    assert f"trial 0000 starts again from scratch: {path}: the checkpoint is damaged" in caplog.text
    assert load_checkpoint(path).epoch == 4  # the damaged file replaced by the new one
