"""Worker slots: where each parallel trial runs (device, CPU threads, environment).

A slot is planned in the driver and applied inside the worker process before the
runner is built, so per-slot settings such as CUDA_VISIBLE_DEVICES take effect before
CUDA is initialised there.

CPU threads: each slot gets the usable cores (affinity mask, cgroup quota) divided by the
slots, or a user's OMP_NUM_THREADS. And OpenMP threads wait passively (they sleep between
parallel regions instead of spinning): a spinning team on a machine with other work keeps
waiting for a thread the scheduler has parked, which made one trial 30x slower (an MLP
epoch of 70 s instead of 2.3 s with 2 threads on 2 busy cores; 2.1 s with one thread).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, MutableMapping

# set where the user has not: read by OpenMP when torch loads, so before that in each process
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


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
    cpu_count = cpu_count or usable_cores()
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
        threads = threads_per_worker(len(order), cpu_count, environ)[0]
        return [Slot(i, "cuda", threads, {"CUDA_VISIBLE_DEVICES": name}) for i, name in enumerate(order)]
    if device == "mps":  # one GPU shared by the whole machine, no way to pin: one trial at a time
        return [Slot(0, "mps", threads_per_worker(1, cpu_count, environ)[0])]
    count = workers or 1
    threads = threads_per_worker(count, cpu_count, environ)[0]
    return [Slot(i, device, threads) for i in range(count)]


# what a GPU torch could use leaves one of these behind: NVIDIA's driver, or ROCm's kernel driver
GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")


def certain_device(requested: str, platform: str = sys.platform,
                   gpu_files: tuple[str, ...] = GPU_DEVICE_FILES) -> str | None:
    """The device `resolve_device(requested)` will pick, where it is certain without importing
    torch (2 s of the command's start-up): "cpu" when asked for, or for "auto" on Linux with no GPU
    driver present; None where only torch can tell."""
    if requested == "cpu":
        return "cpu"
    if requested == "auto" and platform.startswith("linux") and not any(os.path.exists(f) for f in gpu_files):
        return "cpu"
    return None


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its affinity mask (taskset, a batch scheduler), capped by a
    cgroup CPU quota (a container's --cpus), which os.cpu_count() sees neither of."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))  # 1.5 CPUs: one thread, not two fighting over it
    return max(1, cores)


def _cgroup_quota(root: Path) -> float | None:
    """CPUs the cgroup may use (cgroup v2 cpu.max, else v1 cfs quota), None when unlimited or unknown."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def threads_per_worker(workers: int, cores: int | None = None,
                       environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(torch threads for each of `workers` parallel trials, why): a user's OMP_NUM_THREADS, else
    the usable cores split evenly (at least one each)."""
    environ = os.environ if environ is None else environ
    asked = environ.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return int(asked), f"OMP_NUM_THREADS={asked}"
    cores = cores or usable_cores()
    threads = max(1, cores // max(1, workers))
    return threads, f"{cores} usable core{'s' if cores != 1 else ''} / {workers} worker{'s' if workers != 1 else ''}"


def set_thread_env(environ: MutableMapping[str, str] | None = None) -> None:
    """THREAD_ENV where the user has not set it; takes effect in a process that loads torch later."""
    environ = os.environ if environ is None else environ
    for name, value in THREAD_ENV.items():
        environ.setdefault(name, value)
