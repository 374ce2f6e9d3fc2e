"""After the search: the final package stands apart from the agent, and an unreadable best
checkpoint fails the run with a message rather than a traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from automl.agent import Agent
from automl.cli import main
from automl.final.models import FinalModels
from automl.reporting.base import RunObserver
from automl.spec import load_spec
from tests.conftest import write_spec


def test_the_final_package_does_not_import_the_agent():
    code = ("import sys, automl.final.finish, automl.final.models, automl.final.export, automl.final.predict, "
            "automl.final.ensemble; print('automl.agent' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


@pytest.fixture
def finished_run(tmp_path):
    spec = write_spec(tmp_path, refit=False, ensemble={"enabled": False})
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    best = json.loads((tmp_path / "run" / "results.json").read_text())["best"]["trial_id"]
    return spec, tmp_path / "run" / "checkpoints" / f"{best}.pt"


def test_no_readable_checkpoint_fails_the_run_with_a_clear_message(finished_run):
    spec, checkpoint = finished_run
    for each in checkpoint.parent.glob("*.pt"):  # truncated, e.g. a full disk (one alone: tests/test_hostile_inputs.py)
        each.write_bytes(each.read_bytes()[:200])
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"])  # every trial done: straight to the end
    assert result.exit_code == 1
    assert "error: no model can be exported: the checkpoint of every scored trial (3) is unreadable" in result.output
    assert "the checkpoint is damaged" in result.output and "Traceback" not in result.output


def test_an_unreadable_ensemble_candidate_is_left_out(finished_run, caplog):
    _, checkpoint = finished_run
    checkpoint.write_bytes(b"not a checkpoint")
    assert FinalModels._validation_predictions(checkpoint) is None
    assert str(checkpoint) in caplog.text and "left out" in caplog.text


class _Steps(RunObserver):
    def __init__(self):
        self.calls = []

    def phase(self, name, seconds):
        self.calls.append((name, seconds))


def test_the_refit_and_the_ensemble_say_when_they_start_and_how_long_they_took(tmp_path, monkeypatch):
    # they run in the driver after the search, for minutes on a large table: not in silence
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the run's torch threads: tiny models, a busy machine
    steps = _Steps()
    spec = write_spec(tmp_path, refit=True, budget={"max_trials": 2, "max_epochs": 2, "patience": None})
    Agent(load_spec(spec), observers=[steps]).run()
    names = [name for name, _ in steps.calls]
    assert names[0].startswith("refit of trial") and "on 120 rows" in names[0]
    assert "ensemble of the best trials" in names
    # each step: started, then done (the refit runs beside the ensemble and the baselines: its end comes later)
    started = [name for name, seconds in steps.calls if seconds is None]
    done = {name: seconds for name, seconds in steps.calls if seconds is not None}
    assert set(started) == set(done) and all(seconds >= 0 for seconds in done.values())
    for name in started:
        assert steps.calls.index((name, None)) < steps.calls.index((name, done[name]))


def test_the_refit_trains_in_an_idle_worker_process_and_its_file_is_removed(tmp_path):
    spec = write_spec(tmp_path, refit=True, ensemble={"enabled": False},
                      budget={"max_trials": 2, "max_epochs": 2, "patience": None},
                      execution={"isolation": "processes", "workers": 1, "device": "cpu"})
    summary = Agent(load_spec(spec)).run()
    assert summary["models"]["refit"]["trained_by"].startswith("process-")  # not the driver: no GIL shared with it
    assert summary["default_model"] == "refit"
    assert not list((tmp_path / "run" / "checkpoints").glob("refit-*"))  # the export holds it


def test_without_a_free_worker_the_refit_trains_in_the_driver():
    from automl.final.background import Background
    from automl.final.finish import _start_refit

    class ShutDown:
        def submit(self, request):
            raise RuntimeError("executor is shut down")

    class Trainer:
        def fit_full(self, trial_id, config, epochs):
            return f"refit of {trial_id} for {epochs} epochs"

    job = _start_refit(ShutDown(), "t3", {}, 2, None, Trainer(), Path("unused"))
    assert isinstance(job, Background) and job.result() == "refit of t3 for 2 epochs"


class _InterruptAtTheEnsemble(RunObserver):
    """Ctrl-C while the refit trains in a worker: the ensemble's start comes right after its submit."""

    def phase(self, name, seconds):
        if name.startswith("ensemble") and seconds is None:
            raise KeyboardInterrupt


def test_ctrl_c_while_the_refit_trains_kills_its_worker_instead_of_waiting_for_it(tmp_path, monkeypatch):
    from automl.execution.processes import ProcessExecutor

    executors = []
    ready = ProcessExecutor.__init__

    def keep(self, *args, **kwargs):
        ready(self, *args, **kwargs)
        executors.append(self)

    monkeypatch.setattr(ProcessExecutor, "__init__", keep)
    spec = write_spec(tmp_path, refit=True, ensemble={"enabled": False},
                      budget={"max_trials": 1, "max_epochs": 60, "patience": None},  # a refit of 60 epochs
                      execution={"isolation": "processes", "workers": 1, "device": "cpu"})
    with pytest.raises(KeyboardInterrupt):
        Agent(load_spec(spec), observers=[_InterruptAtTheEnsemble()]).run()
    [worker] = executors[0].workers()
    assert worker.process.exitcode == -9  # killed mid-refit; a worker let finish would have exited with 0
    assert not list((tmp_path / "run" / "checkpoints").glob("refit-*.pt"))
