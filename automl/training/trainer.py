"""Train one trial: build the model from its config, fit it epoch by epoch, report.

The data lives on the device as tensors and batches are taken by indexing, so an
epoch costs what torch needs and little more. After every epoch the trainer
validates, writes a checkpoint (atomic), and calls `report(epoch, metrics)`; a True
answer stops the trial (pruned by the strategy or stopped by the driver). A promoted
trial starts from another trial's checkpoint; an interrupted trial resumes from its
own. The trainer knows nothing of strategies.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from automl.data.base import PreparedData
from automl.execution.base import TrialOutcome
from automl.families.base import Family
from automl.training.metrics import classification_metrics, regression_metrics, to_loss

log = logging.getLogger(__name__)

TRAINING_PARAMS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "lr_schedule")
EVAL_BATCH = 4096

ReportFn = Callable[[int, Mapping[str, float]], bool]


@dataclass(frozen=True)
class TrainSettings:
    metric: str
    direction: str
    metric_names: tuple[str, ...]  # every metric computed on validation, the selection metric first
    device: str = "cpu"
    patience: int | None = None
    seed: int = 0


def family_params(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The family name and its own parameters with the `family.` prefix removed."""
    family = config["family"]
    prefix = f"{family}."
    return family, {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def trial_seed(seed: int, trial_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(trial_id.encode())) % (2 ** 31)


def make_optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = config["optimizer"], config["lr"], config.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.get("momentum", 0.9),
                               nesterov=True, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def make_scheduler(optimizer, config, epochs: int):
    if config.get("lr_schedule", "constant") == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    return None


def save_atomic(obj: Any, path: Path) -> None:
    """Write then rename, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Holds one dataset on one device and trains trials on it, one at a time."""

    def __init__(self, data: PreparedData, settings: TrainSettings, families: Mapping[str, Family]):
        self.data = data
        self.settings = settings
        self.families = families
        self.device = torch.device(settings.device)
        self.classification = data.profile.task == "classification"
        self.X_train = torch.as_tensor(data.X_train, device=self.device)
        self.X_val = torch.as_tensor(data.X_val, device=self.device)
        self.y_train = self._targets(data.y_train)
        self.y_val = self._targets(data.y_val)
        self.use_amp = self.device.type == "cuda"
        self._init_lock = threading.Lock()

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.classification:
            return torch.as_tensor(y, dtype=torch.long, device=self.device)
        # standardised with train statistics: one learning-rate range fits every target scale
        scaled = (y.astype(np.float32) - self.data.y_mean) / self.data.y_std
        return torch.as_tensor(scaled, dtype=torch.float32, device=self.device).reshape(-1, 1)

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        family_name, params = family_params(config)
        return self.families[family_name].build(params, self.data.profile).to(self.device)

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return nn.functional.cross_entropy(output.float(), target)
        return nn.functional.mse_loss(output.float(), target)

    @torch.no_grad()
    def predict(self, model: nn.Module, X: torch.Tensor) -> np.ndarray:
        """Class probabilities, or regression predictions in the target's units."""
        model.eval()
        outputs = []
        for start in range(0, len(X), EVAL_BATCH):
            with torch.autocast(self.device.type, enabled=self.use_amp):
                outputs.append(model(X[start:start + EVAL_BATCH]).float())
        out = torch.cat(outputs)
        if self.classification:
            return torch.softmax(out, dim=1).cpu().numpy()
        return (out.cpu().numpy().reshape(-1) * self.data.y_std + self.data.y_mean)

    def evaluate(self, model: nn.Module, X: torch.Tensor, y: np.ndarray) -> dict[str, float]:
        pred = self.predict(model, X)
        names = self.settings.metric_names
        if self.classification:
            return classification_metrics(names, y, pred)
        return regression_metrics(names, y, pred)

    def run(self, trial_id: str, config: Mapping[str, Any], budget: float, checkpoint: Path,
            report: ReportFn, resume_from: Path | None = None) -> TrialOutcome:
        settings = self.settings
        with self._init_lock:  # seeding is global in torch: keep each model's init from interleaving
            torch.manual_seed(trial_seed(settings.seed, trial_id))
            model = self.build_model(config)
        epochs = max(1, int(round(budget)))
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, epochs)
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        generator = torch.Generator().manual_seed(trial_seed(settings.seed, trial_id))
        state = {"epoch": 0, "best": None, "bad_epochs": 0}

        source = checkpoint if checkpoint.exists() else resume_from
        if source is not None and source.exists():
            saved = torch.load(source, map_location=self.device, weights_only=False)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scheduler is not None and saved.get("scheduler") is not None and source == checkpoint:
                scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            if source == checkpoint and "torch_rng" in saved:  # dropout draws continue as if never interrupted
                torch.set_rng_state(saved["torch_rng"].cpu())
            state = {"epoch": saved["epoch"], "best": saved["best"], "bad_epochs": saved["bad_epochs"]}
            log.info("trial %s resumes from %s at epoch %d", trial_id, source, state["epoch"])

        batch_size = int(config["batch_size"])
        n_train = len(self.X_train)
        stop_reason = None
        for epoch in range(state["epoch"] + 1, epochs + 1):
            model.train()
            order = torch.randperm(n_train, generator=generator).to(self.device)
            total, seen = 0.0, 0
            for start in range(0, n_train, batch_size):
                index = order[start:start + batch_size]
                if len(index) < 2 and seen:  # a batch of one breaks batch norm and adds noise
                    continue
                with torch.autocast(self.device.type, enabled=self.use_amp):
                    output = model(self.X_train[index])
                loss = self.loss_fn(output, self.y_train[index])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item() * len(index)
                seen += len(index)
            if scheduler is not None:
                scheduler.step()
            train_loss = total / max(seen, 1)
            if not math.isfinite(train_loss):
                return TrialOutcome("FAILED", None, epochs=epoch, reason="diverged",
                                    error=f"training loss became {train_loss} at epoch {epoch}")

            with torch.no_grad():
                model.eval()
                val_out = torch.cat([model(self.X_val[s:s + EVAL_BATCH]).float()
                                     for s in range(0, len(self.X_val), EVAL_BATCH)])
                val_loss = self.loss_fn(val_out, self.y_val).item()
            metrics = {"train_loss": train_loss, "val_loss": val_loss,
                       **self.evaluate(model, self.X_val, self.data.y_val)}
            score = metrics[settings.metric]
            loss_value = to_loss(score, settings.direction) if math.isfinite(score) else math.inf
            best = state["best"]
            # a tie in the metric (common for accuracy on small validation sets) goes to the lower val loss
            if best is None or (loss_value, val_loss) < (best["loss"], best["metrics"]["val_loss"]):
                state["best"] = {"loss": loss_value, "metrics": metrics, "epoch": epoch,
                                 "state": copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            save_atomic({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler else None,
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "best": state["best"],
                         "bad_epochs": state["bad_epochs"], "config": dict(config)}, checkpoint)
            if report(epoch, metrics):
                stop_reason = "stopped early by the strategy or the driver"
                break
            if settings.patience is not None and state["bad_epochs"] >= settings.patience and epoch < epochs:
                stop_reason = "early stopped"
                break

        best = state["best"]
        if best is None or not math.isfinite(best["loss"]):
            return TrialOutcome("FAILED", None, epochs=state["epoch"], reason="no finite validation score",
                                error=f"validation {settings.metric} was never finite")
        status = "PRUNED" if stop_reason and stop_reason.startswith("stopped") else "COMPLETE"
        metrics = {**best["metrics"], "best_epoch": best["epoch"]}
        return TrialOutcome(status, best["loss"], metrics, epochs=state["epoch"], reason=stop_reason)


def load_best_model(trainer: Trainer, config: Mapping[str, Any], checkpoint: Path) -> nn.Module:
    """The model of a finished trial with its best-epoch weights."""
    model = trainer.build_model(config)
    saved = torch.load(checkpoint, map_location=trainer.device, weights_only=False)
    model.load_state_dict(saved["best"]["state"])
    model.eval()
    return model
