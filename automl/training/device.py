"""Pick the accelerator: CUDA, then MPS, then CPU, unless the spec names one.

torch is imported only where it alone can tell (`certain_device` answers the rest), so a run
on the CPU plans and hands out its first trial before the driver imports torch."""
from __future__ import annotations

from automl.errors import SpecError
from automl.execution.slots import certain_device


def resolve_device(requested: str = "auto") -> str:
    certain = certain_device(requested)
    if certain is not None:
        return certain
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError([("execution.device", f"{requested!r} was asked for but CUDA is not available here; "
                                                  "use 'auto' or 'cpu'")])
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise SpecError([("execution.device", f"{requested!r}: only {torch.cuda.device_count()} CUDA device(s) visible")])
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SpecError([("execution.device", "'mps' was asked for but MPS is not available here; use 'auto' or 'cpu'")])
    return requested


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
