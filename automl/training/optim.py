"""Optimizers, learning-rate schedules, and `Member`: one model in training with its optimizer state.

A trial trains one member (holdout) or k in lockstep (one per fold under cross-validation);
a member saves to and resumes from its `MemberState` in the trial's checkpoint.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from automl.training.checkpoints import MemberState

LBFGS_MAX_ITER = 20  # L-BFGS iterations per epoch (one full-batch step)
# The line search's first trial of every step: 1 is the quasi-Newton step itself. A first-order
# learning rate (1e-4..3e-2) there costs the search several extra passes per iteration to grow it
# (on a 900-row table: 130 evaluations in 5 epochs instead of 36, for a worse loss).
LBFGS_FIRST_STEP = 1.0
# stochastic in train mode; batch norm is not (its statistics come from the same fixed chunks each time)
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


def make_optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = config["optimizer"], config["lr"], config.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.get("momentum", 0.9),
                               nesterov=bool(config.get("nesterov", True)), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "lbfgs":  # full batch; the searched lr does not apply: see LBFGS_FIRST_STEP
        return torch.optim.LBFGS(model.parameters(), lr=LBFGS_FIRST_STEP, max_iter=LBFGS_MAX_ITER,
                                 line_search_fn="strong_wolfe")
    raise ValueError(f"unknown optimizer {name!r}")


def deterministic_train_mode(model: nn.Module) -> None:
    """Train mode for an L-BFGS step: dropout off, batch norm on its chunk statistics.

    The line search compares the loss at several points along one direction and L-BFGS
    builds its curvature from gradient differences: both need the same function at every
    evaluation. A fresh dropout mask per evaluation makes them compare noise, so the
    search fails and the loss stays flat. Everything but batch norm therefore runs in
    eval mode (dropout, and any other layer that is random only while training)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, _BATCH_NORMS):
            module.train()


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, forward_chunks) -> None:
    """Running statistics of every batch-norm layer as the mean over `forward_chunks()`, the
    training rows in chunks, with the weights as they are now.

    The line search moved the weights many times within the step, each evaluation nudging
    the running statistics; the model that is validated and exported needs those of its
    final weights."""
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative mean over the chunks
    deterministic_train_mode(model)
    forward_chunks()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: a trailing batch of one row is skipped (see `epochs.minibatch_epoch`)."""
    full, last = divmod(n_rows, batch_size)
    return max(1, full + (1 if last >= 2 or (last == 1 and full == 0) else 0))


def row_chunks(n_rows: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` rows (one more for the last but one rather than leave a
    single row alone: batch norm cannot train on one)."""
    starts = list(range(0, n_rows, size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return [slice(start, end) for start, end in zip(starts, starts[1:] + [n_rows])]


def make_scheduler(optimizer: torch.optim.Optimizer, config: Mapping[str, Any], epochs: int, batches: int):
    """The LR schedule, or None for a constant rate; one-cycle steps per batch, cosine per epoch."""
    name = config.get("lr_schedule", "constant")
    if name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "one_cycle":
        # cycle_momentum off: the searched momentum / betas stay as the config chose them
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=epochs * batches,
                                                   cycle_momentum=False)
    raise ValueError(f"unknown lr_schedule {name!r}")


@dataclass(frozen=True)
class Validation:
    """The rows one model is validated on."""

    X: torch.Tensor
    y: torch.Tensor  # as the loss takes it
    y_true: np.ndarray  # in the target's units, for the metrics
    rows: np.ndarray | None = None  # CV: positions in X_train, where its out-of-fold predictions go


@dataclass
class Member:
    """One model in training with everything its resumption needs: the trial's model, or one fold's."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # the data order
    X: torch.Tensor  # the pool its training rows index into
    y: torch.Tensor
    rows: torch.Tensor
    validation: Validation | None
    steps_per_epoch: int  # scheduler steps per epoch
    schedule_steps: int  # scheduler steps over the whole run

    @property
    def lbfgs(self) -> bool:
        return isinstance(self.optimizer, torch.optim.LBFGS)

    @property
    def per_batch(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)

    def after_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.scheduler is not None and not self.per_batch:
            self.scheduler.step()

    def state(self) -> MemberState:
        return MemberState(self.model.state_dict(), self.optimizer.state_dict(),
                           self.scheduler.state_dict() if self.scheduler is not None else None,
                           self.schedule_steps, self.scaler.state_dict(), self.generator.get_state())

    def load(self, saved: MemberState, done_epochs: int, own: bool) -> None:
        """Continue from a checkpoint entry after `done_epochs` epochs.

        The trial's own checkpoint with the same schedule length restores the scheduler exactly.
        A promotion (another trial's checkpoint, a larger budget) or a changed batch size gets a
        fresh schedule for this run's length, advanced to the epoch reached, so e.g. cosine
        continues along the longer curve instead of restarting at the full rate."""
        fresh = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.generator.set_state(saved.generator.cpu())
        if saved.scaler:
            self.scaler.load_state_dict(saved.scaler)
        if own and saved.schedule_steps == self.schedule_steps:
            if self.scheduler is not None:
                self.scheduler.load_state_dict(saved.scheduler)
            return
        for group, hyper in zip(self.optimizer.param_groups, fresh):
            group.update(hyper)  # the learning rate as the fresh schedule set it, not the source's
        self._advance_schedule(done_epochs * self.steps_per_epoch)

    def _advance_schedule(self, steps: int) -> None:
        if self.scheduler is None:
            return
        with warnings.catch_warnings():  # stepping without optimizer steps is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(min(steps, self.schedule_steps)):
                self.scheduler.step()
