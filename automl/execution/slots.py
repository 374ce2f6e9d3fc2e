"""Worker slots: where each parallel trial runs (device, CPU threads, environment).

A slot is planned in the driver and applied inside the worker process before the
runner is built, so per-slot settings such as CUDA_VISIBLE_DEVICES take effect before
CUDA is initialised there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Slot:
    index: int
    device: str  # as the worker sees it: "cuda" is the one GPU its CUDA_VISIBLE_DEVICES shows
    torch_threads: int
    env: Mapping[str, str] = field(default_factory=dict)


def plan_slots(device: str, workers: int | None, trials_per_gpu: int = 1, cpu_count: int | None = None,
               gpu_count: int | None = None, environ: Mapping[str, str] | None = None) -> list[Slot]:
    """One slot per visible GPU x trials_per_gpu on CUDA (at most `workers` when given),
    `workers` CPU slots (default 1) on the CPU, one slot on MPS. CPU cores are split
    evenly between the slots so parallel trials do not fight over them.

    cpu_count, gpu_count and environ default to this machine; tests pass them in.
    """
    cpu_count = cpu_count or os.cpu_count() or 1
    environ = os.environ if environ is None else environ
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if device.startswith("cuda"):
        if trials_per_gpu < 1:
            raise ValueError(f"trials_per_gpu must be at least 1, not {trials_per_gpu}")
        if gpu_count is None:
            import torch  # only here: planning CPU slots must not need torch

            gpu_count = torch.cuda.device_count()
        if ":" in device:
            index = int(device.split(":", 1)[1])
            if index >= gpu_count:
                raise ValueError(f"{device!r}: only {gpu_count} CUDA device(s) visible")
            gpus = [index]
        else:
            gpus = list(range(gpu_count))
        if not gpus:
            raise ValueError("device 'cuda' was asked for but no CUDA device is visible")
        # indices are relative to what this process sees: map them through our own
        # CUDA_VISIBLE_DEVICES, or a child would pick physical GPU 0 instead of ours
        visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        names = [visible[g] if g < len(visible) else str(g) for g in gpus]
        # round robin over the GPUs, so a cap by `workers` still spreads the trials out
        order = [names[i % len(names)] for i in range(len(names) * trials_per_gpu)]
        if workers is not None:
            order = order[:workers]
        threads = max(1, cpu_count // len(order))
        return [Slot(i, "cuda", threads, {"CUDA_VISIBLE_DEVICES": name}) for i, name in enumerate(order)]
    if device == "mps":  # one GPU shared by the whole machine, no way to pin: one trial at a time
        return [Slot(0, "mps", cpu_count)]
    count = workers or 1
    threads = max(1, cpu_count // count)
    return [Slot(i, device, threads) for i in range(count)]
