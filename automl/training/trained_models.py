"""Models out of training: a finished trial's best model, rebuilt from its checkpoint, and
`WeightedAverage`, several models as one (the fold models of a CV trial, an ensemble's members)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import nn

from automl.training.checkpoints import Checkpoint, load_checkpoint

if TYPE_CHECKING:
    from automl.training.trainer import Trainer


class WeightedAverage(nn.Module):
    """Several models as one, averaged with fixed weights (equal by default): the k fold
    models of a cross-validated trial, or the members of an ensemble. Traceable.

    Classification returns the log of the averaged probabilities, so a softmax after it (as in
    `Trainer.predict` and the export) yields the averaged probabilities; regression the average output."""

    def __init__(self, models: Sequence[nn.Module], classification: bool, weights: Sequence[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(models)
        weights = [1.0 / len(models)] * len(models) if weights is None else [float(w) for w in weights]
        self.register_buffer("weights", torch.tensor(weights))
        self.classification = classification

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(1, device=x.device)
        for i, member in enumerate(self.members):
            out = member(x).float()
            if self.classification:
                out = torch.softmax(out, dim=1)
            total = total + self.weights[i] * out
        return torch.log(total.clamp_min(1e-12)) if self.classification else total


def best_model(trainer: Trainer, config: Mapping[str, Any], checkpoint: Checkpoint) -> nn.Module:
    """The eval-mode model of a finished trial at its best epoch: with CV, the fold models averaged."""
    if checkpoint.best is None:
        raise ValueError("the checkpoint holds no best epoch: the trial never finished one")
    models = []
    for state in checkpoint.best.states:
        model = trainer.build_model(config)
        model.load_state_dict(state)
        models.append(model)
    model = models[0] if len(models) == 1 else WeightedAverage(models, trainer.classification)
    return model.eval()


def load_best_model(trainer: Trainer, config: Mapping[str, Any], path: Path) -> nn.Module:
    """`best_model` of the checkpoint at `path` (a `CheckpointError` when it cannot be read)."""
    return best_model(trainer, config, load_checkpoint(path, map_location=trainer.device))
