"""What a worker needs to train trials, and the runner it builds from it.

`TrialContext` is plain data (it pickles), so the same runner is built in the driver
(thread workers) or inside each worker process: the data travel once per worker, and
each family is imported there from its `FamilyRef` alone (no plugin discovery, so no
other plugin file and no strategy is imported in a worker).

Importing this module imports no torch: the driver builds the context and pickles the runner
before it needs torch, so its first trial starts sooner; the trainer is imported where a runner
is built.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.data.base import PreparedData
from automl.execution.base import Runner, TrialRequest
from automl.families.loading import FamilyRef
from automl.records import REFIT, Status, TrialOutcome
from automl.training.settings import TrainSettings

if TYPE_CHECKING:
    from automl.training.trainer import Trainer


@dataclass(frozen=True)
class TrialContext:
    data: PreparedData
    settings: TrainSettings
    families: tuple[FamilyRef, ...]
    checkpoint_dir: Path


def worker_data(data: PreparedData) -> PreparedData:
    """The data a worker trains with: no test rows (no trial ever sees them) and no preprocessor
    (raw rows never reach a worker; unpickling it imported pandas, 0.2 s of each worker's start)."""
    return replace(data, X_test=data.X_test[:0], y_test=data.y_test[:0], preprocessor=None)


def build_trainer(context: TrialContext, device: str | None = None) -> Trainer:
    from automl.training.trainer import Trainer

    families = {ref.name: ref.load() for ref in context.families}
    settings = context.settings if device is None else replace(context.settings, device=device)
    return Trainer(context.data, settings, families)


def warm_up() -> None:
    """What the first trial of a worker would otherwise pay for: building its first optimizer imports
    torch._dynamo (torch.optim does, lazily), about a second, which would count in that trial's time.
    Done while the worker starts instead, before it says it is ready."""
    import torch._dynamo  # noqa: F401


def refit_path(checkpoint_dir: Path, trial_id: str) -> Path:
    """Where a worker leaves the refit of `trial_id` for the driver."""
    return checkpoint_dir / f"refit-{trial_id}.pt"


def run_refit(trainer: Trainer, trial_id: str, config: dict[str, Any], epochs: int, threads: int | None,
              path: Path) -> TrialOutcome:
    """The refit of a finished trial (`Trainer.fit_full`), trained by a worker the search no longer
    needs, on `threads` torch threads: saved at `path` as a checkpoint whose best epoch holds the
    refit model, which the driver reads back like any trial's (`load_best_model`, weights only).
    A diverged refit raises, and its worker sends that as a failed outcome."""
    import torch

    from automl.training.checkpoints import BestEpoch, Checkpoint, plain, save_checkpoint

    start = time.monotonic()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = trainer.fit_full(trial_id, config, epochs)
    finally:
        torch.set_num_threads(before)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    best = BestEpoch(0.0, {}, epochs, (state,), torch.zeros(0))
    save_checkpoint(path, Checkpoint(epochs, 0, plain(config), torch.get_rng_state(), (), best))
    # its own time: the driver reads the outcome only once its ensemble and baselines are done
    return TrialOutcome(Status.COMPLETE, 0.0, {"seconds": time.monotonic() - start}, epochs=epochs)


def build_runner(context: TrialContext, slot: Any = None) -> Runner:
    """The runner for one worker; `slot` (a device slot of a process executor) picks its device."""
    if slot is not None:
        import torch

        torch.set_num_threads(max(1, slot.torch_threads))
    trainer = build_trainer(context, slot.device if slot is not None else None)
    warm_up()

    def run(request: TrialRequest, report) -> Any:
        config = {**request.config, **request.overrides}  # e.g. a smaller batch size after out of memory
        if request.kind == REFIT:
            return run_refit(trainer, request.trial_id, config, int(request.budget), request.threads,
                             refit_path(context.checkpoint_dir, request.trial_id))
        resume_from = context.checkpoint_dir / f"{request.resume_from}.pt" if request.resume_from else None
        return trainer.run(request.trial_id, config, request.budget, context.checkpoint_dir / f"{request.trial_id}.pt",
                           report, resume_from=resume_from)

    return run
