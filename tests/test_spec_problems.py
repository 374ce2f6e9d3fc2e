"""A bad spec: every problem in one pass, each naming its field (or the file), exit 2, nothing written."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.errors import SpecError
from automl.spec import MAX_COUNT, parse_spec

IRIS = {"source": "builtin", "name": "sklearn:iris"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)  # a traceback fails the test


def write(folder, document) -> object:
    path = folder / "spec.json"
    path.write_bytes(document if isinstance(document, bytes) else json.dumps(document).encode())
    return path


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def problems(document) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(document)
    return dict(info.value.problems)


def test_validate_lists_field_cross_field_and_strategy_option_problems_in_one_pass(tmp_path):
    spec = write(tmp_path, {
        "name": "bad", "data": {"source": "csv"}, "task": "classification", "metric": "rmse", "output": "run",
        "budget": {"max_trials": None, "max_time": None}, "execution": {"workers": 0, "address": "ray://x:1"},
        "strategy": {"name": "asha", "options": {"reduction_factor": 1, "min_budget": True, "nope": 2}}})
    for args in (["--no-data"], []):
        result = invoke("validate", spec, *args)
        assert result.exit_code == 2, result.output
        for expected in ("data.path: required", "data.target: required", "execution.workers",
                         "metric: 'rmse' does not apply to classification",  # cross-field while data is invalid
                         "budget: set max_trials or max_time",
                         "execution: address only apply to backend 'ray'",  # cross-field while workers is invalid
                         "strategy.options.reduction_factor: 1 is out of range; allowed: more than 1",
                         "strategy.options.min_budget: true is a boolean", "strategy.options.nope"):
            assert expected in result.output, (args, expected, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("data, expected", [
    ({"path": "x.csv", "target": "y"}, "data.source: required; one of builtin, csv, npz, images, sequence_csv, text_csv"),
    ({"source": "parquet", "path": "x"}, 'data.source: unknown source "parquet"; one of builtin, csv, npz, images'),
])
def test_a_missing_or_unknown_source_lists_the_sources(data, expected):
    with pytest.raises(SpecError) as info:
        parse_spec({"name": "x", "data": data})
    assert expected in str(info.value)


@pytest.mark.parametrize("where, value, expected", [
    ("seed", True, "true is a boolean, not a number"),
    ("seed", -1, "allowed: from 0 to 4294967295"),
    ("budget.max_trials", 1e23, f"1e+23 is out of range; allowed: from 1 to {MAX_COUNT}"),
    ("budget.max_trials", False, "false is a boolean, not a number"),
    ("budget.max_trials", 2.5, "fractional part"),
    ("budget.max_time", 1e9, "allowed: more than 0 and at most 2592000"),
    ("budget.max_epochs", "30", "is a string; give a number without quotes"),
    ("execution.workers", 5000, "allowed: from 1 to 1024"),
    ("split.validation", True, "true is a boolean, not a number"),
    ("ensemble.enabled", 1, "1 is not a boolean; give true or false"),
    ("families.overrides.lr.low", True, "true is a boolean, not a number"),
])
def test_booleans_are_no_numbers_and_absurd_values_name_the_allowed_range(where, value, expected):
    document = {"name": "x", "data": IRIS}
    target = document
    *parents, last = where.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    found = problems(document)
    assert expected in found[where], found


def test_an_integral_number_is_a_valid_int():
    assert parse_spec({"name": "x", "data": IRIS, "budget": {"max_trials": 5.0}}).budget.max_trials == 5


def test_every_cross_field_problem_is_reported_not_just_the_first():
    found = problems({"name": "x", "data": IRIS, "task": "classification", "metric": "accuracy",
                      "direction": "minimize", "loss": "mae", "metrics": ["r2"]})
    assert set(found) == {"direction", "loss", "metrics"}


@pytest.mark.parametrize("content, expected", [
    (b'{"name": "caf\xe9"}', "byte 0xe9 at byte offset 13"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (json.dumps({"name": "x", "data": IRIS, "strategy": {"name": "random", "options": {"a": nested(70)}}}).encode(),
     "nested more than 64 levels deep"),
    (b'{"name": "x", "data": {"source": "builtin", "name": "sklearn:iris"}, "budget": {"max_trials": 3, "max_trials": 30}}',
     "budget.max_trials: given more than once"),
    (b'{"name": "x", "data": {"source": "builtin", "name": "sklearn:iris"}, "budget": {"max_time": Infinity}}',
     "budget.max_time: Infinity is not a JSON number"),
    (b'["a list"]', "the spec must be a JSON object"),
], ids=["not-utf8", "too-deep-to-parse", "too-deep", "duplicate-key", "infinity", "not-an-object"])
def test_an_unreadable_spec_file_exits_2_naming_the_file_and_writes_nothing(tmp_path, content, expected):
    spec = write(tmp_path, content)
    for command in ("validate", "run"):
        result = invoke(command, spec, *(["--out", tmp_path / "run"] if command == "run" else []))
        assert result.exit_code == 2, result.output
        assert str(spec) in result.output and expected in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_run_reports_a_builtin_strategys_options_with_the_specs_problems_before_writing(tmp_path):
    spec = write(tmp_path, {"name": "x", "data": IRIS, "seed": True, "output": "run",
                            "strategy": {"name": "asha", "options": {"reduction_factor": 1}}})
    result = invoke("run", spec, "--quiet")
    assert result.exit_code == 2
    assert "seed: true is a boolean" in result.output and "strategy.options.reduction_factor" in result.output
    assert not (tmp_path / "run").exists()


def test_validate_without_data_imports_no_plugin_file(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text("raise RuntimeError('imported')\n")
    spec = write(tmp_path, {"name": "x", "data": IRIS, "plugins_dirs": ["plugins"],
                            "strategy": {"name": "mine", "options": {"anything": 1}}})
    result = invoke("validate", spec, "--no-data")
    assert result.exit_code == 0 and "valid" in result.output, result.output
    unknown = invoke("validate", write(tmp_path, {"name": "x", "data": IRIS, "strategy": {"name": "mine"}}), "--no-data")
    assert unknown.exit_code == 2 and "strategy.name" in unknown.output and "asha" in unknown.output


def test_validate_runs_no_code_from_a_specs_plugin_folder_unless_trusted(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    marker = tmp_path / "ran"
    (plugins / "mine.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from automl.strategies.random import RandomStrategy\n"
        "class Mine(RandomStrategy):\n    name = 'mine'\n")
    uses_it = write(tmp_path, {"name": "x", "data": IRIS, "plugins_dirs": ["plugins"], "strategy": {"name": "mine"}})
    result = invoke("validate", uses_it)
    assert result.exit_code == 0 and not marker.exists(), result.output
    assert "mine come(s) from plugin files" in result.output and "--trust-plugins" in result.output
    assert str(plugins / "mine.py") in result.output
    # trusted: imported and checked
    result = invoke("validate", uses_it, "--trust-plugins")
    assert result.exit_code == 0 and marker.exists() and "strategy mine: named in the spec" in result.output, result.output
    marker.unlink()
    # a spec that does not name them is checked in full, the files listed as left out
    other = write(tmp_path, {"name": "y", "data": IRIS, "plugins_dirs": ["plugins"], "strategy": {"name": "random"}})
    result = invoke("validate", other)
    assert result.exit_code == 0 and "metric: accuracy" in result.output and not marker.exists(), result.output
    assert "1 plugin file(s) of plugins_dirs not imported" in result.output
