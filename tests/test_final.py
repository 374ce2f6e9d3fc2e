"""After the search: the final package stands apart from the agent, and an unreadable best
checkpoint fails the run with a message rather than a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.final.models import FinalModels
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


def test_an_unreadable_best_checkpoint_fails_the_run_with_a_clear_message(finished_run):
    spec, checkpoint = finished_run
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])  # truncated, e.g. a full disk
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"])  # every trial done: straight to the end
    assert result.exit_code == 1
    assert f"error: {checkpoint}: the checkpoint is damaged" in result.output
    assert "the best one" in result.output and "Traceback" not in result.output


def test_an_unreadable_ensemble_candidate_is_left_out(finished_run, caplog):
    _, checkpoint = finished_run
    checkpoint.write_bytes(b"not a checkpoint")
    assert FinalModels._validation_predictions(checkpoint) is None
    assert str(checkpoint) in caplog.text and "left out" in caplog.text
