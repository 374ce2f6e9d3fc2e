"""Train one trial: build the model from its config, fit it epoch by epoch, report.

The data lives on the device as tensors and batches are taken by indexing, so an
epoch costs what torch needs and little more. After every epoch the trainer
validates and calls `report(epoch, metrics)`; a True answer stops the trial (pruned by
the strategy or stopped by the driver). It writes a checkpoint (atomic) when one is due
(`CHECKPOINT_INTERVAL_S` after the last) and whenever the trial ends, once the report's
`sync` (a worker's: execution/worker.py) says the driver has committed those epochs. A promoted
trial starts from another trial's checkpoint; an interrupted trial resumes from its
own. The trainer knows nothing of strategies.

With k-fold cross-validation (`data.cv`) a trial trains k models in lockstep, one per
fold: every epoch trains and validates each, and the epoch's metrics are the means
over the folds (plus `<metric>_std`), so pruning and early stopping see the mean.

A trial's checkpoint (`automl.training.checkpoints`) holds every member's training state
and the best epoch's models and validation predictions, which the ensemble selects on.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from automl.data.base import PreparedData
from automl.errors import CheckpointError
from automl.families.base import Family
from automl.records import Reason, Status, TrialOutcome
from automl.training.checkpoints import (BestEpoch, Checkpoint, CheckpointClock, as_tensor,
                                         load_checkpoint, plain, save_checkpoint)
from automl.training.epochs import lbfgs_epoch, minibatch_epoch
from automl.training.metrics import classification_metrics, regression_metrics, summarize_folds, to_loss
from automl.training.optim import (
    Member,
    Validation,
    batches_per_epoch,
    make_optimizer,
    make_scheduler,
)
from automl.training.settings import TrainSettings  # noqa: F401  (re-exported: its old home)

log = logging.getLogger(__name__)

TRAINING_PARAMS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "lr_schedule",
                   "grad_clip")
EVAL_BATCH = 4096

# regression losses on standardised targets, so huber's delta of 1 is one standard deviation
REGRESSION_LOSSES = {
    "auto": nn.functional.mse_loss,
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
    "huber": partial(nn.functional.huber_loss, delta=1.0),
}

ReportFn = Callable[[int, Mapping[str, float]], bool]


def family_params(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The family name and its own parameters with the `family.` prefix removed."""
    family = config["family"]
    prefix = f"{family}."
    return family, {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def trial_seed(seed: int, trial_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(trial_id.encode())) % (2 ** 31)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class Progress:
    """Where a trial stands: epochs done, its best epoch, epochs since that one."""

    epoch: int = 0
    best: BestEpoch | None = None
    bad_epochs: int = 0


class Trainer:
    """Holds one dataset on one device and trains trials on it, one at a time."""

    def __init__(self, data: PreparedData, settings: TrainSettings, families: Mapping[str, Family]):
        if settings.loss not in REGRESSION_LOSSES:
            raise ValueError(f"unknown loss {settings.loss!r}; known: {', '.join(REGRESSION_LOSSES)}")
        self.data = data
        self.settings = settings
        self.families = families
        self.device = torch.device(settings.device)
        self.classification = data.profile.task == "classification"
        self.X_train = torch.as_tensor(data.X_train, device=self.device)  # dtype kept: text inputs are token ids
        self.X_val = torch.as_tensor(data.X_val, device=self.device)
        self.y_train = self._targets(data.y_train)
        self.y_val = self._targets(data.y_val)
        self.use_amp = self.device.type == "cuda"
        self._init_lock = threading.Lock()
        self._splits = self._make_splits()

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.classification:
            return torch.as_tensor(y, dtype=torch.long, device=self.device)
        # standardised with train statistics: one learning-rate range fits every target scale
        scaled = (y.astype(np.float32) - self.data.y_mean) / self.data.y_std
        return torch.as_tensor(scaled, dtype=torch.float32, device=self.device).reshape(-1, 1)

    def _make_splits(self) -> list[tuple[torch.Tensor, Validation]]:
        """(training rows of X_train, validation) per model: the holdout split, or one per fold."""
        if not self.data.cv:
            rows = torch.arange(len(self.X_train), device=self.device)
            return [(rows, Validation(self.X_val, self.y_val, self.data.y_val))]
        splits = []
        for train_idx, val_idx in self.data.folds:
            val = torch.as_tensor(val_idx, device=self.device)
            splits.append((torch.as_tensor(train_idx, device=self.device),
                           Validation(self.X_train[val], self.y_train[val], self.data.y_train[val_idx],
                                      np.asarray(val_idx))))
        return splits

    def validation_targets(self) -> np.ndarray:
        """The targets matching a checkpoint's best `val_pred`: y_val, or y_train with CV (out of fold)."""
        return self.data.y_train if self.data.cv else self.data.y_val

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        family_name, params = family_params(config)
        return self.families[family_name].build(params, self.data.profile).to(self.device)

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return nn.functional.cross_entropy(output.float(), target)
        return REGRESSION_LOSSES[self.settings.loss](output.float(), target)

    def _autocast(self):
        """Mixed precision on CUDA; elsewhere no context at all (entering a disabled one costs ~10 us)."""
        return torch.autocast(self.device.type) if self.use_amp else contextlib.nullcontext()

    @torch.no_grad()
    def _outputs(self, model: nn.Module, X: torch.Tensor) -> torch.Tensor:
        model.eval()
        outputs = []
        for start in range(0, len(X), EVAL_BATCH):
            with self._autocast():
                outputs.append(model(X[start:start + EVAL_BATCH]).float())
        return torch.cat(outputs)

    def _to_predictions(self, out: torch.Tensor) -> np.ndarray:
        if self.classification:
            return torch.softmax(out, dim=1).cpu().numpy()
        return out.cpu().numpy().reshape(-1) * self.data.y_std + self.data.y_mean

    def predict(self, model: nn.Module, X: torch.Tensor) -> np.ndarray:
        """Class probabilities, or regression predictions in the target's units."""
        return self._to_predictions(self._outputs(model, X))

    def _score(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        names = self.settings.metric_names
        if self.classification:
            return classification_metrics(names, y, pred)
        return regression_metrics(names, y, pred)

    def evaluate(self, model: nn.Module, X: torch.Tensor, y: np.ndarray) -> dict[str, float]:
        return self._score(y, self.predict(model, X))

    # --- building and training models ----------------------------------------------------------------

    def _member(self, seed: int, config: Mapping[str, Any], epochs: int, X: torch.Tensor, y: torch.Tensor,
                rows: torch.Tensor, validation: Validation | None) -> Member:
        with self._init_lock:  # seeding is global in torch: keep each model's init from interleaving
            torch.manual_seed(seed)
            model = self.build_model(config)
        optimizer = make_optimizer(model, config)
        lbfgs = isinstance(optimizer, torch.optim.LBFGS)
        batches = 1 if lbfgs else batches_per_epoch(len(rows), int(config["batch_size"]))
        # the line search sets L-BFGS's every step (lr is only its first trial): a schedule would at best
        # cost evaluations, and cosine's last epoch (lr 0) would not move at all
        scheduler = None if lbfgs else make_scheduler(optimizer, config, epochs, batches)
        if scheduler is None:
            per_epoch = 0
        else:  # one-cycle steps after every batch, cosine once an epoch
            per_epoch = batches if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else 1
        # L-BFGS runs in float32 without a scaler: GradScaler cannot step a closure optimizer
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not lbfgs)
        return Member(model, optimizer, scheduler, scaler, torch.Generator().manual_seed(seed), X, y, rows,
                      validation, per_epoch, epochs * per_epoch)

    def _members(self, trial_id: str, config: Mapping[str, Any], epochs: int) -> list[Member]:
        seed = self.settings.seed
        if not self.data.cv:
            rows, validation = self._splits[0]
            return [self._member(trial_seed(seed, trial_id), config, epochs, self.X_train, self.y_train, rows,
                                 validation)]
        return [self._member(trial_seed(seed, f"{trial_id}/fold{k}"), config, epochs, self.X_train, self.y_train,
                             rows, validation) for k, (rows, validation) in enumerate(self._splits)]

    def _train_epoch(self, member: Member, config: Mapping[str, Any]) -> float:
        member.model.train()
        batch_size = int(config["batch_size"])
        if member.lbfgs:
            loss = lbfgs_epoch(member, self.loss_fn, self.device, batch_size)
        else:
            loss = minibatch_epoch(member, self.loss_fn, self._autocast, self.device, batch_size,
                                   float(config.get("grad_clip", 0.0)))
        member.after_epoch()
        return loss

    def _validate(self, members: list[Member], train_losses: list[float]) -> tuple[dict[str, float], np.ndarray]:
        """The epoch's metrics (fold means and stds with CV) and the validation predictions."""
        per_model, predictions = [], []
        for member, train_loss in zip(members, train_losses):
            val = member.validation
            out = self._outputs(member.model, val.X)
            pred = self._to_predictions(out)
            per_model.append({"train_loss": train_loss, "val_loss": self.loss_fn(out, val.y).item(),
                              **self._score(val.y_true, pred)})
            predictions.append(pred)
        if not self.data.cv:
            return per_model[0], predictions[0]
        return summarize_folds(per_model, self.settings.metric_names), self._out_of_fold(members, predictions)

    def _out_of_fold(self, members: list[Member], predictions: list[np.ndarray]) -> np.ndarray:
        """Every X_train row predicted by the fold model that did not train on it, in X_train order."""
        oof = np.empty((len(self.X_train), *predictions[0].shape[1:]), dtype=predictions[0].dtype)
        for member, pred in zip(members, predictions):
            oof[member.validation.rows] = pred
        return oof

    # --- one trial ------------------------------------------------------------------------------------

    def run(self, trial_id: str, config: Mapping[str, Any], budget: float, checkpoint: Path,
            report: ReportFn, resume_from: Path | None = None) -> TrialOutcome:
        epochs = max(1, int(round(budget)))
        config = plain(config)  # numpy numbers would reach the optimizer state, which a checkpoint loads safely
        members = self._members(trial_id, config, epochs)
        progress = Progress()
        source = checkpoint if checkpoint.exists() else resume_from
        if source is not None and source.exists():
            try:
                progress = self._restore(members, source, own=source == checkpoint)
            except CheckpointError as error:
                # damaged (a full disk, a crash mid-copy) or never to be unpickled: the trial loses its
                # epochs so far, not its place in the search; fresh members, as a load may have begun
                log.warning("trial %s starts again from scratch: %s", trial_id, error)
                members, progress = self._members(trial_id, config, epochs), Progress()
            else:
                log.info("trial %s resumes from %s at epoch %d", trial_id, source, progress.epoch)

        stop_reason: Reason | None = None
        sync = getattr(report, "sync", None)  # a worker's report: waits for the driver's answers (worker.py)
        clock = CheckpointClock(self.settings.checkpoint_interval)
        for epoch in range(progress.epoch + 1, epochs + 1):
            train_losses = [self._train_epoch(member, config) for member in members]
            diverged = next((loss for loss in train_losses if not math.isfinite(loss)), None)
            if diverged is not None:
                return TrialOutcome.failed(Reason.DIVERGED, f"training loss became {diverged} at epoch {epoch}",
                                           epochs=epoch)
            metrics, val_pred = self._validate(members, train_losses)
            self._update_best(progress, members, metrics, val_pred, epoch)
            progress.epoch = epoch
            # report (the driver commits the epoch) before the checkpoint: a crash in between re-runs
            # the epochs since the last checkpoint and records them again, where the other order would lose rows
            stop_reason = self._stop_reason(report(epoch, metrics), progress, epochs)
            # at its end always: a promotion, the refit, the ensemble and a resume read it
            if stop_reason is not None or epoch == epochs or clock.due():
                if sync is not None:  # the driver has committed every epoch the checkpoint holds
                    sync()
                save_checkpoint(checkpoint, Checkpoint(epoch, progress.bad_epochs, config, torch.get_rng_state(),
                                                       tuple(member.state() for member in members), progress.best))
                clock.written()
            if stop_reason is not None:
                break
        return self._outcome(progress, stop_reason)

    def _stop_reason(self, stop: bool, progress: Progress, epochs: int) -> Reason | None:
        """STOPPED when the report said so, EARLY_STOPPED when patience ran out before the last epoch."""
        if stop:
            return Reason.STOPPED
        patience = self.settings.patience
        if patience is not None and progress.bad_epochs >= patience and progress.epoch < epochs:
            return Reason.EARLY_STOPPED
        return None

    def _restore(self, members: list[Member], source: Path, own: bool) -> Progress:
        saved = load_checkpoint(source, map_location=self.device)
        if len(saved.members) != len(members):
            raise CheckpointError(source, f"holds {len(saved.members)} models, this trial trains {len(members)}")
        for member, entry in zip(members, saved.members):
            member.load(entry, saved.epoch, own)
        if own:  # dropout draws continue as if never interrupted
            torch.set_rng_state(saved.torch_rng.cpu())
        return Progress(saved.epoch, saved.best, saved.bad_epochs)

    def _update_best(self, progress: Progress, members: list[Member], metrics: dict[str, float],
                     val_pred: np.ndarray, epoch: int) -> None:
        score, direction = metrics[self.settings.metric], self.settings.direction
        loss_value = to_loss(score, direction) if math.isfinite(score) else math.inf
        best = progress.best
        # a tie in the metric (common for accuracy on small validation sets) goes to the lower val loss
        if best is None or (loss_value, metrics["val_loss"]) < (best.loss, best.metrics["val_loss"]):
            progress.best = BestEpoch(loss_value, metrics, epoch, tuple(_cpu_state(member.model) for member in members),
                                      as_tensor(val_pred))
            progress.bad_epochs = 0
        else:
            progress.bad_epochs += 1

    def _outcome(self, progress: Progress, stop_reason: Reason | None) -> TrialOutcome:
        best = progress.best
        if best is None or not math.isfinite(best.loss):
            return TrialOutcome.failed(Reason.NO_SCORE, f"validation {self.settings.metric} was never finite",
                                       epochs=progress.epoch)
        status = Status.PRUNED if stop_reason is Reason.STOPPED else Status.COMPLETE
        metrics = {**best.metrics, "best_epoch": best.epoch}
        return TrialOutcome(status, best.loss, metrics, epochs=progress.epoch, reason=stop_reason)

    # --- after the search -----------------------------------------------------------------------------

    def fit_full(self, trial_id: str, config: Mapping[str, Any], epochs: int) -> nn.Module:
        """Refit `config` on every non-test row for exactly `epochs` epochs, without validation.

        Same optimizer, schedule (for this length) and clipping as a trial, seeded like the trial.
        Returns the eval-mode model; raises RuntimeError when training diverges."""
        X, y = self._all_rows()
        epochs = max(1, int(epochs))
        member = self._member(trial_seed(self.settings.seed, trial_id), config, epochs, X, y,
                              torch.arange(len(X), device=self.device), None)
        for epoch in range(1, epochs + 1):
            loss = self._train_epoch(member, config)
            if not math.isfinite(loss):
                raise RuntimeError(f"refit of trial {trial_id} diverged: training loss {loss} at epoch {epoch}")
        return member.model.eval()

    def _all_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data.cv or len(self.X_val) == 0:  # with CV, X_train already holds every non-test row
            return self.X_train, self.y_train
        return torch.cat([self.X_train, self.X_val]), torch.cat([self.y_train, self.y_val])

