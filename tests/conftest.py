"""Shared fixtures: small specs that run in seconds on the CPU."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# idle OpenMP threads sleep instead of spinning, as the automl command sets it (before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402


def write_spec(folder: Path, **overrides) -> Path:
    """A tiny iris run (4 features, 150 rows): a trial takes well under a second."""
    spec = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "builtin", "name": "sklearn:iris"},
        "budget": {"max_trials": 3, "max_epochs": 3, "patience": None},
        "families": {"overrides": {"batch_size": {"choices": [32]}, "mlp.width": {"low": 16, "high": 32}}},
        "output": "run",
        # threads start in milliseconds; the loop is the same for both executors, and the
        # tests that are about processes (faults, kills, the CLI) ask for them
        "execution": {"isolation": "threads"},
    }
    for key, value in overrides.items():
        spec[key] = value
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    return write_spec(tmp_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; one thread keeps the tests fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
