"""Worker processes started before the driver needs them, so that their imports (torch, about
2 s) overlap the driver's own start-up instead of following it.

`automl run` calls `early_workers` before it imports torch, where the device is certain without
torch; the agent takes them when their slots are the ones it plans (`planned_slots`) and otherwise
closes them and starts its own, still before the data load."""
from __future__ import annotations

from typing import TYPE_CHECKING

from automl.execution.processes import ProcessExecutor, PrestartedWorkers
from automl.execution.slots import Slot, certain_device, plan_slots

if TYPE_CHECKING:
    from automl.spec import ExecutionSpec

__all__ = ["PrestartedWorkers", "early_workers", "planned_slots"]


def planned_slots(execution: ExecutionSpec, device: str) -> list[Slot] | None:
    """The worker processes' slots on `device`; None where trials run in Ray actors or threads."""
    if execution.backend == "ray" or execution.isolation == "threads":
        return None
    return plan_slots(device, execution.workers, execution.trials_per_gpu)


def early_workers(execution: ExecutionSpec) -> PrestartedWorkers | None:
    """The slots' workers started now, or None where the device needs torch to be known (a GPU
    driver is present, macOS) or trials do not run in worker processes."""
    device = certain_device(execution.device)
    slots = None if device is None else planned_slots(execution, device)
    return None if slots is None else ProcessExecutor.prestart(slots)
