"""Trial checkpoints: what one holds, when one is written, written atomically and read without unpickling.

The only module that knows the file's layout. A run directory is data, not code, so a
checkpoint holds nothing but tensors and plain values (numbers, strings, lists, dicts) and
is read with `torch.load(..., weights_only=True)`: validation predictions are stored as a
tensor, never as a numpy array. Checkpoints of the released version were full pickles; they
are refused with a `CheckpointError` rather than unpickled.

On disk, one dict:
    format (FORMAT), epoch, bad_epochs, config, torch_rng,
    members: one entry per model (one for holdout, k for CV), each with
        model, optimizer, scheduler, schedule_steps, scaler, generator;
        none in a finished trial's checkpoint once `drop_training_state` ran (automl/retention.py)
    best: None, or {loss, metrics, epoch, states: [model state per member], val_pred}
"""
from __future__ import annotations

import logging
import os
import pickle
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from automl.errors import CheckpointError, DiskFullError
from automl.files import disk_full
from automl.training.settings import CHECKPOINT_INTERVAL_S, INTERVAL_ENV, checkpoint_interval  # noqa: F401

log = logging.getLogger(__name__)

FORMAT = 2  # 1 (no key): the released version's pickles, which are not loaded
# A trial writes its checkpoint once at least this many seconds of training passed since its last one
# (or since it started), and always when it ends. An epoch of a small table takes a few ms and a checkpoint
# of a 2x256 MLP 3-10 ms, so one per epoch added a third to a half to its training; this way a crash or a
# kill loses at most this much of a trial's training, which a resume runs (and records) again.
MEMBER_KEYS = ("model", "optimizer", "scheduler", "schedule_steps", "scaler", "generator")
BEST_KEYS = ("loss", "metrics", "epoch", "states", "val_pred")
TOP_KEYS = ("epoch", "bad_epochs", "config", "torch_rng", "members", "best")

StateDict = Mapping[str, Any]


@dataclass(frozen=True)
class MemberState:
    """What resuming one model needs: the trial's model, or one fold's."""

    model: StateDict
    optimizer: StateDict
    scheduler: StateDict | None  # None for a constant learning rate
    schedule_steps: int  # scheduler steps over the whole run it was made for
    scaler: StateDict  # GradScaler (empty when AMP is off)
    generator: torch.Tensor  # the data order's generator state


@dataclass(frozen=True)
class BestEpoch:
    """The best epoch so far: its score, its models and its validation predictions."""

    loss: float  # the selection metric as a loss (minimised)
    metrics: Mapping[str, float]
    epoch: int
    states: tuple[StateDict, ...]  # one model state per member
    # in `Trainer.predict` form: holdout on X_val, CV out-of-fold for every row of X_train
    val_pred: torch.Tensor

    def predictions(self) -> np.ndarray:
        return self.val_pred.cpu().numpy()


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs done
    bad_epochs: int  # epochs since the best one (patience)
    config: Mapping[str, Any]  # the config the trial ran with, retry overrides included
    torch_rng: torch.Tensor  # global RNG state (dropout draws)
    members: tuple[MemberState, ...]
    best: BestEpoch | None


def plain(value: Any) -> Any:
    """`value` with numpy scalars and tuples turned into Python values and lists (loadable safely)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def as_tensor(predictions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Predictions as a CPU tensor, the form a checkpoint stores them in."""
    if isinstance(predictions, torch.Tensor):
        return predictions.detach().cpu()
    return torch.from_numpy(np.ascontiguousarray(predictions))


class CheckpointClock:
    """When a trial's next checkpoint is due: `interval` seconds after its last one (or its start)."""

    def __init__(self, interval: float = CHECKPOINT_INTERVAL_S, now: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._now = now
        self._last = now()

    def due(self) -> bool:
        return self._now() - self._last >= self.interval

    def written(self) -> None:
        self._last = self._now()


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write then rename, so a crash never leaves half a checkpoint; a full disk raises `DiskFullError`
    naming the checkpoint, with the previous one intact and no temporary left."""
    best = ckpt.best
    layout = {
        "format": FORMAT, "epoch": int(ckpt.epoch), "bad_epochs": int(ckpt.bad_epochs), "config": plain(ckpt.config),
        "torch_rng": ckpt.torch_rng,
        "members": [{key: getattr(member, key) for key in MEMBER_KEYS} for member in ckpt.members],
        "best": None if best is None else {
            "loss": float(best.loss), "metrics": plain(best.metrics), "epoch": int(best.epoch),
            "states": list(best.states), "val_pred": as_tensor(best.val_pred)},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # through a Python file: a full disk raises OSError ENOSPC there, where torch's own writer
        # raises a RuntimeError ("unexpected pos") that says nothing of the cause
        with open(tmp, "wb") as file:
            torch.save(layout, file)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)  # the previous checkpoint stays whole; no half-written one beside it
        if disk_full(error):
            raise DiskFullError(path) from error
        raise


def drop_training_state(path: Path) -> bool:
    """Rewrite a finished trial's checkpoint with its best epoch alone (True when it held more).

    The refit and the ensemble read only the best epoch's weights, predictions and the config;
    the members' state (the last epoch's weights, the optimizer's: an L-BFGS history can be 100 MB)
    serves only a resumption. A trial resumed from such a file would start again from scratch."""
    saved = load_checkpoint(path)
    if not saved.members:
        return False
    save_checkpoint(path, replace(saved, members=()))
    return True


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Checkpoint:
    """The checkpoint at `path`; a `CheckpointError` naming the file when it cannot be read safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one lacks its index
        raise CheckpointError(path, "the checkpoint is damaged or truncated (not a complete torch archive)")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" not in str(error):  # not a refused class: the pickle itself is broken
            raise CheckpointError(path, f"the checkpoint is damaged ({_unpickler_problem(error)})") from None
        raise CheckpointError(path, "the checkpoint holds Python objects that only unpickling could load, as those "
                                    "written by an older version of automl do; a run directory is never "
                                    "unpickled. Start the run afresh (automl run --overwrite, or a new output "
                                    "folder)") from None
    except Exception as error:
        raise CheckpointError(path, f"the checkpoint is damaged ({type(error).__name__}: "
                                    f"{_first_line(str(error))})") from None
    try:
        return _from_layout(saved)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f"not a checkpoint this version of automl writes ({type(error).__name__}: "
                                    f"{error}); start the run afresh (automl run --overwrite)") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail")


def _unpickler_problem(error: pickle.UnpicklingError) -> str:
    """What torch's restricted unpickler met, without the rest of its message: that advises loading with
    weights_only=False, which must never be done with a file of a run directory."""
    text = str(error)
    return _first_line(text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text)


def _from_layout(saved: Any) -> Checkpoint:
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        found = saved.get("format", "none") if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"format {found}, expected {FORMAT}")
    _require(saved, TOP_KEYS, "checkpoint")
    members = []
    for entry in saved["members"]:
        _require(entry, MEMBER_KEYS, "member")
        members.append(MemberState(**{key: entry[key] for key in MEMBER_KEYS}))
    best = saved["best"]
    if best is not None:
        _require(best, BEST_KEYS, "best")
        best = BestEpoch(float(best["loss"]), dict(best["metrics"]), int(best["epoch"]), tuple(best["states"]),
                         best["val_pred"])
    return Checkpoint(int(saved["epoch"]), int(saved["bad_epochs"]), dict(saved["config"]), saved["torch_rng"],
                      tuple(members), best)


def _require(entry: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(entry, dict):
        raise TypeError(f"{what} is a {type(entry).__name__}, not a dict")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise KeyError(f"{what} lacks {', '.join(missing)}")
