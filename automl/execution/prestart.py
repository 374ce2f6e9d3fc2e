"""Worker processes started before the driver needs them, so that their imports (torch, about
2 s) overlap the driver's own start-up instead of following it.

`automl run` calls `early_workers_for_file` as soon as it has read the spec file, before it
validates it (pydantic and the spec's models are 0.2 s) and before it imports torch, where the
device is certain without torch; the agent takes them when their slots are the ones it plans
(`planned_slots`) and otherwise closes them and starts its own, still before the data load."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from automl.execution.processes import ProcessExecutor, PrestartedWorkers
from automl.execution.slots import Slot, certain_device, plan_slots

if TYPE_CHECKING:
    from automl.spec import ExecutionSpec

__all__ = ["PrestartedWorkers", "early_workers_for_file", "planned_slots"]

# ExecutionSpec's defaults, for a spec file read before it is validated (tests compare the two)
RAW_DEFAULTS = {"backend": "local", "isolation": "processes", "device": "auto", "workers": None, "trials_per_gpu": 1}


def planned_slots(execution: ExecutionSpec, device: str) -> list[Slot] | None:
    """The worker processes' slots on `device`; None where trials run in Ray actors or threads."""
    if execution.backend == "ray" or execution.isolation == "threads":
        return None
    return plan_slots(device, execution.workers, execution.trials_per_gpu)


def early_workers_for_file(spec_path: str | Path, overrides: Mapping[str, Any]) -> PrestartedWorkers | None:
    """The slots' workers started now, from the spec file's `execution` as written (with the
    command line's `execution.*` overrides), before the spec is validated; None where the file
    or a value it needs is not plain and valid (the spec's validation then says why). A guess the validated
    spec disagrees with only costs a process: the agent closes it and starts its own."""
    try:
        raw = json.loads(Path(spec_path).read_bytes())
    except (OSError, ValueError, RecursionError):  # the spec's own reading says what is wrong
        return None
    execution = raw.get("execution", {}) if isinstance(raw, dict) else None
    if not isinstance(execution, dict):
        return None
    values = {**RAW_DEFAULTS, **execution}
    values.update({key.split(".", 1)[1]: value for key, value in overrides.items() if key.startswith("execution.")})
    workers, per_gpu = values["workers"], values["trials_per_gpu"]
    if values["backend"] != "local" or values["isolation"] != "processes" or not isinstance(values["device"], str) \
            or not (workers is None or (type(workers) is int and 1 <= workers <= 1024)) \
            or not (type(per_gpu) is int and 1 <= per_gpu <= 1024):
        return None
    device = certain_device(values["device"])
    return None if device is None else ProcessExecutor.prestart(plan_slots(device, workers, per_gpu))
