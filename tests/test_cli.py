"""The command line through click's CliRunner: exit codes and what a person reads."""
from __future__ import annotations

import json

from click.testing import CliRunner

from automl.cli import main
from tests.conftest import write_spec


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_then_report_then_resume(tiny_spec):
    result = invoke("run", tiny_spec, "--quiet")
    assert result.exit_code == 0, result.output
    assert "automl predict uses" in result.output and "test accuracy" in result.output
    assert f"report: {tiny_spec.parent / 'run' / 'report.html'}" in result.output
    run_dir = tiny_spec.parent / "run"
    (run_dir / "report.html").unlink()
    result = invoke("report", run_dir)
    assert result.exit_code == 0 and (run_dir / "report.html").exists()
    again = invoke("run", tiny_spec, "--quiet", "--max-trials", 4)
    assert again.exit_code == 0, again.output
    assert json.loads((run_dir / "results.json").read_text())["trials"]["total"] == 4


def test_out_overrides_the_spec_output(tiny_spec, tmp_path):
    result = invoke("run", tiny_spec, "--quiet", "--out", tmp_path / "elsewhere", "--max-trials", 1)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "results.json").exists()
    assert not (tiny_spec.parent / "run").exists()


def test_bad_spec_exits_2_lists_every_problem_and_creates_nothing(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "bad", "data": {"source": "csv"}, "budget": {"max_trials": 0},
                                "execution": {"device": "tpu"}, "colour": "blue", "output": "run"}))
    for command in ("run", "validate"):
        result = invoke(command, spec)
        assert result.exit_code == 2
        for where in ("data.path", "data.target", "budget.max_trials", "execution.device", "colour"):
            assert where in result.output, (command, where, result.output)
    assert not (tmp_path / "run").exists()


def test_metric_that_does_not_fit_the_inferred_task(tmp_path):
    spec = write_spec(tmp_path, metric="rmse")  # iris is classification
    result = invoke("validate", spec)
    assert result.exit_code == 2
    assert "metric" in result.output and "does not apply to classification" in result.output


def test_unknown_strategy_is_a_spec_error_listing_known_ones(tmp_path):
    result = invoke("validate", write_spec(tmp_path, strategy={"name": "bayesian-ish"}))
    assert result.exit_code == 2
    assert "strategy.name" in result.output and "random" in result.output


def test_validate_shows_the_plan(tiny_spec):
    result = invoke("validate", tiny_spec)
    assert result.exit_code == 0, result.output
    assert "family mlp: chosen" in result.output and "family cnn: not used" in result.output


def test_data_error_exits_1_naming_the_file(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    spec = write_spec(tmp_path, data={"source": "csv", "path": "data.csv", "target": "label"})
    result = invoke("run", spec, "--quiet")
    assert result.exit_code == 1
    assert "data.csv" in result.output and "label" in result.output
    assert not (tmp_path / "run").exists()


def test_plugins_lists_built_ins_and_folder_plugins_with_their_source(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "mine.py").write_text(
        "from automl.strategies.random import RandomStrategy\n"
        "class Mine(RandomStrategy):\n    name = 'mine'\n")
    result = invoke("plugins", "--plugins-dir", folder)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(l.startswith("strategy") and " random " in l and "entry point" in l for l in lines)
    assert any(" mlp " in l for l in lines) and any(" cnn " in l for l in lines)
    assert any(" mine " in l and str(folder / "mine.py") in l for l in lines)


def test_schema_is_the_spec_json_schema():
    result = invoke("schema")
    schema = json.loads(result.output)
    assert schema["title"] == "TaskSpec"
    assert {"data", "budget", "strategy", "execution"} <= set(schema["properties"])


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 1 and "trials.db" in result.output


def test_second_run_on_a_locked_directory_is_refused(tiny_spec):
    from automl.rundir import RunLock

    with RunLock(tiny_spec.parent / "run"):
        result = invoke("run", tiny_spec, "--quiet")
    assert result.exit_code == 1
    assert "in use by process" in result.output and "host" in result.output


def test_tensorboard_on_a_folder_without_logs(tmp_path):
    result = invoke("tensorboard", tmp_path)
    assert result.exit_code == 1 and "tensorboard" in result.output
