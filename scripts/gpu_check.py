"""GPU readiness: the CUDA path of `automl run`, end to end, in one table.

    python scripts/gpu_check.py --out docs/bench/gpu_check.md

1. CUDA visible: torch sees the GPUs (count, names, memory); resolve_device("auto") gives cuda.
2. AMP on: 3 short trials on sklearn digits (the mlp family, 3 epochs, device cuda) COMPLETE, and
   their training forward ran under autocast with float16 outputs (noted by a probe around the MLP).
3. Several trials per GPU: execution.trials_per_gpu = 2 (workers = 2 x GPUs); the trials'
   [started_at, finished_at] intervals in trials.db overlap, and every worker ran with the
   CUDA_VISIBLE_DEVICES that plan_slots gave its slot.
4. Out of memory retried at half batch: a plugin family asks for twice the free GPU memory when a
   training batch is larger than 32 rows (a real torch.cuda.OutOfMemoryError); trials.db must show
   the oom attempt, the trial COMPLETE, and its checkpoint the halved batch (64 -> 32).
5. GPU utilisation: nvidia-smi sampled every second during check 3 (mean/max utilisation, max memory).

Without a CUDA device every check says "skipped: no CUDA device" and the script exits 0 without
training. Exit status 1 when a check fails. The runs use the public API, as bench_execution.py does.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from automl.execution.slots import plan_slots
from automl.training.checkpoints import load_checkpoint
from automl.training.device import resolve_device

NO_CUDA = "skipped: no CUDA device"
CHECKS = ("1. CUDA visible", "2. AMP on", "3. several trials per GPU", "4. OOM retried at half batch",
          "5. GPU utilisation")
TRIALS_PER_GPU = 2
OOM_BATCH = 64  # the OOM family fails above 32 rows, so the retry at 64 // 2 trains

# Two families over the built-in MLP, in a plugin file the workers import. Each notes one JSON line per
# trial (its worker's pid, how its first training forward ran) in probe.jsonl beside the file.
PLUGIN = textwrap.dedent("""\
    import json, os
    from pathlib import Path

    import torch
    from torch import nn

    from automl.families.mlp import MLPFamily

    LOG = Path(__file__).with_name("probe.jsonl")


    def note(**fields):
        with LOG.open("a") as log:  # one short line per write: the workers' appends stay whole
            log.write(json.dumps({"pid": os.getpid(), **fields}) + "\\n")


    def autocast_on(device_type):
        try:
            return torch.is_autocast_enabled(device_type)
        except TypeError:  # torch before 2.4 takes no device type and answers for CUDA
            return torch.is_autocast_enabled()


    class Probe(nn.Module):
        def __init__(self, inner, oom_above=None):
            super().__init__()
            self.inner, self.oom_above, self.noted = inner, oom_above, False

        def forward(self, x):
            training = self.training and torch.is_grad_enabled()  # not validation, not the export's trace
            if training and self.oom_above is not None and x.shape[0] > self.oom_above:
                free, _ = torch.cuda.mem_get_info(x.device)
                note(oom_batch=x.shape[0], free=free)
                torch.empty(2 * free, dtype=torch.uint8, device=x.device)  # more than there is: a real CUDA OOM
            out = self.inner(x)
            if training and not self.noted:
                self.noted = True
                note(batch=x.shape[0], dtype=str(out.dtype), autocast=autocast_on(x.device.type),
                     device=str(x.device), visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
            return out


    class MLPProbe(MLPFamily):
        name = "mlp_probe"

        def build(self, config, profile):
            return Probe(super().build(config, profile))


    class MLPOom(MLPFamily):
        name = "mlp_oom"

        def build(self, config, profile):
            return Probe(super().build(config, profile), oom_above=32)
    """)


@dataclass
class Row:
    check: str
    result: str  # ok | FAIL | skipped: why
    detail: str = ""


@dataclass
class Run:
    trials: list
    attempts: list
    meta: dict
    folder: Path


def run(folder: Path, plugins: Path, family: str, batch: int, **spec) -> Run:
    """One `automl run` on sklearn digits with `family` (adam, one batch size, no refit or ensemble)."""
    # imported here: each spawned worker imports this script again (as __mp_main__) before its setup
    from automl.agent import Agent
    from automl.spec import parse_spec
    from automl.store import TrialStore

    raw = {"name": "gpu_check", "seed": 0, "data": {"source": "builtin", "name": "sklearn:digits"},
           "output": str(folder), "plugins_dirs": [str(plugins)], "strategy": {"name": "random"},
           "refit": False, "ensemble": {"enabled": False},
           "families": {"include": [family], "overrides": {"batch_size": {"choices": [batch]},
                                                          "optimizer": {"choices": ["adam"]},
                                                          "lr": {"low": 1e-3, "high": 3e-3}}}}
    raw.update(spec)
    (plugins / "probe.jsonl").unlink(missing_ok=True)  # each check reads the notes of its own run
    Agent(parse_spec(raw, base_dir=folder)).run()
    store = TrialStore(folder / "trials.db", readonly=True)
    try:
        return Run(store.trials(), store.attempts(), store.get_meta("run") or {}, folder)
    finally:
        store.close()


def probe_notes(plugins: Path) -> list[dict]:
    log = plugins / "probe.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def worker_slot_pid(worker: str | None) -> tuple[int, int] | None:
    """(slot index, pid) from a process worker's name, 'process-<slot>:<pid>'."""
    match = re.fullmatch(r"process-(\d+):(\d+)", worker or "")
    return (int(match[1]), int(match[2])) if match else None


def peak_concurrency(intervals: list[tuple[float, float]]) -> tuple[int, float]:
    """(most intervals open at once, seconds during which two or more were open)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    shared, since = 0.0, None
    for at, step in edges:  # at equal times an end sorts first: touching intervals do not overlap
        open_now += step
        peak = max(peak, open_now)
        if open_now >= 2 and since is None:
            since = at
        elif open_now < 2 and since is not None:
            shared, since = shared + at - since, None
    return peak, shared


def statuses(trials: list) -> str:
    done = sum(1 for t in trials if t.status == "COMPLETE")
    return f"{done}/{len(trials)} COMPLETE"


# -- the checks ------------------------------------------------------------------------------------

def check_cuda_visible() -> Row:
    count = torch.cuda.device_count()
    gpus = []
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        free, _ = torch.cuda.mem_get_info(index)
        gpus.append(f"{index}: {props.name}, {props.total_memory / 2**30:.0f} GiB ({free / 2**30:.0f} free)")
    resolved = resolve_device("auto")
    ok = count > 0 and resolved == "cuda"
    return Row(CHECKS[0], "ok" if ok else "FAIL",
               f"{count} GPU(s): {'; '.join(gpus)}; resolve_device('auto') = {resolved!r}; torch {torch.__version__}, "
               f"CUDA {torch.version.cuda}")


def check_amp(tmp: Path, plugins: Path) -> Row:
    result = run(tmp / "amp", plugins, "mlp_probe", 32, budget={"max_trials": 3, "max_epochs": 3, "patience": None},
                 execution={"device": "cuda"})
    pids = {pid for _, pid in filter(None, (worker_slot_pid(t.worker) for t in result.trials))}
    notes = [n for n in probe_notes(plugins) if n["pid"] in pids and "dtype" in n]  # the driver's own are not trials
    amp = [n for n in notes if n["autocast"] and n["dtype"] in ("torch.float16", "torch.bfloat16")]
    complete = all(t.status == "COMPLETE" for t in result.trials) and len(result.trials) == 3
    ok = complete and str(result.meta.get("device", "")).startswith("cuda") and bool(notes) and len(amp) == len(notes)
    dtypes = sorted({n["dtype"] for n in notes})
    return Row(CHECKS[1], "ok" if ok else "FAIL",
               f"{statuses(result.trials)} on {result.meta.get('device')}; training forward under autocast in "
               f"{len(amp)}/{len(notes)} trials, outputs {', '.join(dtypes) or 'none noted'}")


def check_trials_per_gpu(tmp: Path, plugins: Path) -> Row:
    gpus = torch.cuda.device_count()
    workers = TRIALS_PER_GPU * gpus
    slots = plan_slots("cuda", workers, TRIALS_PER_GPU)
    planned = {slot.index: slot.env.get("CUDA_VISIBLE_DEVICES") for slot in slots}
    spread = sorted(planned.values()) == sorted([str(v) for v in visible_gpus(gpus)] * TRIALS_PER_GPU)
    result = run(tmp / "per_gpu", plugins, "mlp_probe", 16, budget={"max_trials": 2 * workers, "max_epochs": 20,
                                                                     "patience": None},
                 execution={"device": "cuda", "workers": workers, "trials_per_gpu": TRIALS_PER_GPU})
    intervals = [(t.started_at, t.finished_at) for t in result.trials if t.started_at and t.finished_at]
    peak, shared = peak_concurrency(intervals)
    slot_of_pid = {pid: slot for slot, pid in filter(None, (worker_slot_pid(t.worker) for t in result.trials))}
    notes = [n for n in probe_notes(plugins) if n["pid"] in slot_of_pid and "visible" in n]
    pinned = [n for n in notes if n["visible"] == planned.get(slot_of_pid[n["pid"]])]
    complete = all(t.status == "COMPLETE" for t in result.trials)
    ok = complete and spread and peak >= 2 and bool(notes) and len(pinned) == len(notes) and \
        result.meta.get("workers") == workers
    return Row(CHECKS[2], "ok" if ok else "FAIL",
               f"{workers} slots, CUDA_VISIBLE_DEVICES {[planned[i] for i in sorted(planned)]}; "
               f"{statuses(result.trials)} on {len(set(slot_of_pid.values()))} slots; up to {peak} at once, "
               f"{shared:.1f} s with 2+ running; {len(pinned)}/{len(notes)} trials saw their slot's GPU")


def visible_gpus(count: int) -> list[str]:
    """The GPU names children get, as plan_slots maps indices through our own CUDA_VISIBLE_DEVICES."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return [visible[i] if i < len(visible) else str(i) for i in range(count)]


def check_oom_retry(tmp: Path, plugins: Path) -> Row:
    result = run(tmp / "oom", plugins, "mlp_oom", OOM_BATCH, budget={"max_trials": 1, "max_epochs": 2, "patience": None},
                 execution={"device": "cuda", "workers": 1, "keep_checkpoints": "all"})
    trial = result.trials[0]
    ooms = [a for a in result.attempts if a["trial_id"] == trial.trial_id and a["reason"] == "oom"]
    real = [a for a in ooms if "OutOfMemoryError" in (a["error"] or "")]
    trained = load_checkpoint(result.folder / "checkpoints" / f"{trial.trial_id}.pt").config.get("batch_size")
    asked = [f"{2 * n['free'] / 2**30:.0f} GiB" for n in probe_notes(plugins) if "free" in n]
    ok = trial.status == "COMPLETE" and len(real) == 1 and trained == OOM_BATCH // 2
    return Row(CHECKS[3], "ok" if ok else "FAIL",
               f"trial {trial.trial_id}: {len(ooms)} oom attempt(s) ({len(real)} torch OutOfMemoryError, asked for "
               f"{', '.join(asked) or '?'}) at batch {trial.config.get('batch_size')}, then {trial.status} with "
               f"batch {trained} (its checkpoint's config)")


class GpuSampler:
    """nvidia-smi every second, in the background, into a file (read after it stops)."""

    QUERY = ("--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-l", "1")

    def __init__(self, log: Path):
        self.log, self.process, self.started, self.seconds = log, None, 0.0, 0.0

    def __enter__(self) -> "GpuSampler":
        smi = shutil.which("nvidia-smi")
        if smi is not None:
            with self.log.open("w") as out:
                self.process = subprocess.Popen([smi, *self.QUERY], stdout=out, stderr=subprocess.DEVNULL)
            self.started = time.time()
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # ends its loop as Ctrl-C does, its output flushed
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.seconds = time.time() - self.started

    def row(self) -> Row:
        if self.process is None:
            return Row(CHECKS[4], "skipped: nvidia-smi not found", "")
        text = self.log.read_text()
        samples = parse_smi(text)
        if text.strip() and not samples:
            return Row(CHECKS[4], "skipped: nvidia-smi reports no utilisation", text.splitlines()[0])  # [N/A]: MIG
        if not samples:
            return Row(CHECKS[4], "FAIL", f"nvidia-smi -l 1 wrote nothing in {self.seconds:.0f} s "
                                          "(its output buffered?)")
        utils, memory = [u for u, _ in samples], [m for _, m in samples]
        return Row(CHECKS[4], "ok", f"during check 3: utilisation mean {sum(utils) / len(utils):.0f} %, max "
                                    f"{max(utils):.0f} %; memory used max {max(memory):.0f} MiB ({len(samples)} samples)")


def parse_smi(text: str) -> list[tuple[float, float]]:
    """(utilisation %, memory MiB) per line of `nvidia-smi --format=csv,noheader,nounits`; '[N/A]' lines left out."""
    samples = []
    for line in text.splitlines():
        try:
            util, memory = (float(field) for field in line.split(","))
        except ValueError:
            continue
        samples.append((util, memory))
    return samples


def guarded(check: str, fn, *args) -> Row:
    """A check that raises is a FAIL with its last line (traceback on stderr); the others still run."""
    try:
        return fn(*args)
    except Exception as error:
        traceback.print_exc()
        last = (str(error).strip().splitlines() or [""])[-1]
        return Row(check, "FAIL", f"{type(error).__name__}: {last}")


def all_checks() -> list[Row]:
    if not torch.cuda.is_available():
        return [Row(check, NO_CUDA, "") for check in CHECKS]
    rows = [guarded(CHECKS[0], check_cuda_visible)]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "gpu_probe.py").write_text(PLUGIN)
        rows.append(guarded(CHECKS[1], check_amp, tmp, plugins))
        with GpuSampler(tmp / "smi.csv") as sampler:
            rows.append(guarded(CHECKS[2], check_trials_per_gpu, tmp, plugins))
        rows.append(guarded(CHECKS[3], check_oom_retry, tmp, plugins))
        rows.append(guarded(CHECKS[4], sampler.row))
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| check | result | figure / detail |", "|---|---|---|"]
    lines += [f"| {r.check} | {r.result} | {r.detail.replace('|', '/')} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args()
    started = time.time()
    rows = all_checks()
    failed = [r for r in rows if r.result == "FAIL"]
    skipped = [r for r in rows if r.result.startswith("skipped")]
    if failed:
        verdict = f"FAIL: {len(failed)} of {len(rows)} checks failed ({', '.join(r.check for r in failed)})"
    elif len(skipped) == len(rows):
        verdict = "No CUDA device here: every check was skipped; run this on a machine with an NVIDIA GPU."
    else:
        verdict = f"GPU ready: {len(rows) - len(skipped)} checks passed, {len(skipped)} skipped"
    text = f"{table(rows)}\n\n{verdict} ({time.time() - started:.0f} s)\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        host = os.uname().nodename if hasattr(os, "uname") else ""
        args.out.write_text(f"# GPU readiness ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {host})\n\n"
                            f"Command: `python scripts/gpu_check.py --out {args.out}`\n\n{text}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
