"""How the trials of a run train, as plain data: the driver builds it before it imports torch
(the first trial starts sooner) and every worker receives it with its setup."""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 5.0
INTERVAL_ENV = "AUTOML_CHECKPOINT_INTERVAL_S"  # overrides it for a run (0: a checkpoint every epoch)


def checkpoint_interval() -> float:
    """The seconds between two checkpoints of a trial: $AUTOML_CHECKPOINT_INTERVAL_S, else CHECKPOINT_INTERVAL_S."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(text) if text else CHECKPOINT_INTERVAL_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        log.warning("%s=%r is not a number of seconds >= 0; checkpoints every %g s", INTERVAL_ENV, text,
                    CHECKPOINT_INTERVAL_S)
        return CHECKPOINT_INTERVAL_S
    return value


@dataclass(frozen=True)
class TrainSettings:
    metric: str
    direction: str
    metric_names: tuple[str, ...]  # every metric computed on validation, the selection metric first
    device: str = "cpu"
    patience: int | None = None
    seed: int = 0
    loss: str = "auto"  # regression training loss (auto: mse); classification always uses cross-entropy
    # seconds of training between two checkpoints of a trial (training/checkpoints.py)
    checkpoint_interval: float = field(default_factory=checkpoint_interval)
