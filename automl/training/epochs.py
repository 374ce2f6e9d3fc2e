"""One epoch of training a member (a model with its optimizer, schedule and rows): shuffled
mini-batches, or one full-batch L-BFGS step. Kept free of per-batch work that a small table would
feel: a step there takes about a millisecond."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from automl.training.optim import Member, deterministic_train_mode, recalibrate_batch_norm, row_chunks

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def minibatch_epoch(member: Member, loss_fn: LossFn, autocast: Callable[[], Any], device: torch.device,
                    batch_size: int, grad_clip: float) -> float:
    """One pass over the member's rows in shuffled mini-batches; the mean training loss."""
    model, optimizer, scaler = member.model, member.optimizer, member.scaler
    order = torch.randperm(len(member.rows), generator=member.generator).to(device)
    rows = member.rows[order]
    losses, sizes = [], []
    for start in range(0, len(rows), batch_size):
        index = rows[start:start + batch_size]
        if len(index) < 2 and sizes:  # a batch of one breaks batch norm and adds noise
            continue
        with autocast():
            output = model(member.X[index])
        loss = loss_fn(output, member.y[index])
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.scale(loss).backward()
            if grad_clip > 0:
                scaler.unscale_(optimizer)  # clip the true gradient, not the loss-scaled one
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:  # the scaler's calls cost ~10 us a batch even when disabled: a small table's step is ~1 ms
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        member.after_batch()
        losses.append(loss.detach())  # summed once at the end, on the device: no sync per batch
        sizes.append(len(index))
    if not losses:
        return 0.0
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
    return float(torch.stack(losses).float() @ weights) / sum(sizes)


def lbfgs_epoch(member: Member, loss_fn: LossFn, device: torch.device, batch_size: int) -> float:
    """One full-batch L-BFGS step (up to LBFGS_MAX_ITER iterations), without clipping, in float32
    (a closure optimizer cannot take a GradScaler), without dropout (`deterministic_train_mode`).

    The gradient is summed over chunks of `batch_size` rows: the exact full-batch gradient
    with the memory of one batch, so an out-of-memory retry with a smaller batch helps here too."""
    chunks = row_chunks(len(member.rows), batch_size)
    model = member.model
    deterministic_train_mode(model)

    def closure() -> torch.Tensor:
        member.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for chunk in chunks:
            index = member.rows[chunk]
            loss = loss_fn(model(member.X[index]), member.y[index]) * (len(index) / len(member.rows))
            loss.backward()
            total += loss.detach()
        return total

    loss = member.optimizer.step(closure)  # the loss before the step
    recalibrate_batch_norm(model, lambda: [model(member.X[member.rows[chunk]]) for chunk in chunks])
    return float(loss)
