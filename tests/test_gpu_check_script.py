"""scripts/gpu_check.py: its CPU path (every CUDA check skipped, exit 0, nothing trained) and the
pieces of its CUDA path that need no GPU: the probe plugin, the overlap and nvidia-smi parsing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from automl.plugins import discover

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


def test_without_cuda_every_check_is_skipped_and_the_script_exits_0(tmp_path):
    out = tmp_path / "bench" / "gpu_check.md"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "torch"}  # no GPU, even on a GPU machine
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == list(gpu_check.CHECKS)
    assert all("| skipped: no CUDA device |" in row for row in rows)
    assert "No CUDA device here: every check was skipped" in result.stdout
    document = out.read_text()
    assert document.startswith("# GPU readiness")
    assert all(row in document for row in rows)
    assert not list(tmp_path.glob("**/trials.db"))  # nothing was trained


def test_the_probe_plugin_is_discovered_and_notes_how_a_training_forward_ran(tmp_path):
    (tmp_path / "gpu_probe.py").write_text(gpu_check.PLUGIN)
    registry = discover([tmp_path])
    assert {"mlp_probe", "mlp_oom"} <= set(registry.names("families"))
    spec = importlib.util.spec_from_file_location("gpu_probe_test", tmp_path / "gpu_probe.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    probe = plugin.Probe(nn.Linear(4, 2)).train()
    probe(torch.zeros(8, 4))
    probe(torch.zeros(8, 4))  # noted once per model, that is once per trial
    with torch.no_grad():
        probe.eval()(torch.zeros(8, 4))  # validation and the export's trace note nothing
    notes = gpu_check.probe_notes(tmp_path)
    assert notes == [{"pid": os.getpid(), "batch": 8, "dtype": "torch.float32", "autocast": False, "device": "cpu",
                      "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}]


def test_overlap_of_trial_intervals():
    assert gpu_check.peak_concurrency([(0, 4), (2, 6), (5, 7)]) == (2, 3.0)  # [2, 4] and [5, 6]
    assert gpu_check.peak_concurrency([(0, 1), (1, 2)]) == (1, 0.0)  # touching is not overlapping
    assert gpu_check.peak_concurrency([(0, 3), (0, 3), (1, 2)]) == (3, 3.0)


def test_worker_names_and_nvidia_smi_lines_are_parsed():
    assert gpu_check.worker_slot_pid("process-1:4242") == (1, 4242)
    assert gpu_check.worker_slot_pid("driver") is None
    assert gpu_check.worker_slot_pid(None) is None
    assert gpu_check.parse_smi("37, 1024\n[N/A], [N/A]\n\n0, 5\n") == [(37.0, 1024.0), (0.0, 5.0)]


def test_the_sampler_reads_what_nvidia_smi_wrote_while_it_ran(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"  # prints a sample a second until Ctrl-C, as `-l 1` does
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ntrap 'exit 0' INT\nwhile true; do echo '37, 1024'; sleep 1; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with gpu_check.GpuSampler(tmp_path / "smi.csv") as sampler:
        deadline = time.monotonic() + 60
        while not (tmp_path / "smi.csv").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sampler.process.returncode is not None  # stopped, not left behind
    row = sampler.row()
    assert row.result == "ok", row
    assert "utilisation mean 37 %, max 37 %; memory used max 1024 MiB" in row.detail
