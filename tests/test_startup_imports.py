"""The quick commands answer without loading torch: `--help`, `plugins`, `validate --no-data`, and
`validate` with the data too (the plan needs no torch: families build their torch modules only in `build`).

Each command runs in a fresh interpreter (the test process has torch loaded already), through
the click entry point, and reports whether torch was imported by the time it returned.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import write_spec

RUN_AND_REPORT = """
import json, sys
from automl.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit_code": code, "torch_loaded": "torch" in sys.modules}))
"""


def run_cli(*args, env: dict | None = None) -> dict:
    """The command's exit code, whether it imported torch, and what it printed."""
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, *map(str, args)], capture_output=True,
                          text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    return {**json.loads(last), "output": "\n".join(printed) + done.stderr}


def quick(result: dict) -> dict:
    return {key: result[key] for key in ("exit_code", "torch_loaded")}


@pytest.mark.parametrize("args", [["--help"], ["plugins"]], ids=["help", "plugins"])
def test_a_quick_command_does_not_import_torch(args):
    assert quick(run_cli(*args)) == {"exit_code": 0, "torch_loaded": False}


def test_validate_without_data_does_not_import_torch(tmp_path):
    spec = write_spec(tmp_path, strategy={"name": "random"})
    result = run_cli("validate", "--no-data", spec)
    assert quick(result) == {"exit_code": 0, "torch_loaded": False}
    assert "the spec is valid" in result["output"]


def test_validate_with_the_data_plans_with_every_builtin_family_without_torch(tmp_path):
    spec = write_spec(tmp_path, strategy={"name": "random"})
    result = run_cli("validate", spec)
    assert quick(result) == {"exit_code": 0, "torch_loaded": False}, result["output"]
    for family in ("mlp", "resmlp", "cnn", "resnet", "cnn1d", "rnn", "transformer", "fcn", "rocket", "embedding_bag"):
        assert f"family {family}: " in result["output"]  # each one's `suits` ran, without torch


def test_plugins_still_loads_and_checks_a_plugin_folder(tmp_path):
    """A broken plugin file is reported as before: built-ins are listed unloaded, third-party code is checked."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text("from automl.strategies.random import RandomStrategy\n"
                                      "class Broken(RandomStrategy):\n    name = 'broken'\n    Options = dict\n")
    result = run_cli("plugins", "--plugins-dir", folder)
    assert result["exit_code"] == 1
    assert "'broken'" in result["output"] and str(folder / "broken.py") in result["output"]


def test_plugins_still_loads_and_checks_another_package_s_entry_points(tmp_path):
    """Only automl's own entry points are listed unloaded; another distribution's are imported and checked."""
    site = tmp_path / "site"
    info = site / "automl_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "automl_broken_plugin.py").write_text("raise ImportError('needs a missing dependency')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: automl-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[automl.families]\nfancy = automl_broken_plugin:Fancy\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = run_cli("plugins", env=env)
    assert result["exit_code"] == 1
    assert "'fancy'" in result["output"] and "needs a missing dependency" in result["output"]


def test_validate_without_data_still_lists_a_builtin_strategy_s_bad_options(tmp_path):
    """The options of a built-in strategy are checked without torch, with the spec's own problems (exit 2)."""
    spec = write_spec(tmp_path, strategy={"name": "asha", "options": {"no_such_option": 1}}, budget={"max_trials": 0})
    result = run_cli("validate", "--no-data", spec)
    assert quick(result) == {"exit_code": 2, "torch_loaded": False}
    assert "budget.max_trials" in result["output"] and "strategy.options.no_such_option" in result["output"]


FIRST_TRIAL_PROBE = """
import json, sys
import automl.execution.pool as pool
at_first_trial = []
submit = pool.WorkerPool.submit
def probe(self, request):
    at_first_trial.append("torch" in sys.modules)
    return submit(self, request)
pool.WorkerPool.submit = probe
from automl.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit_code": code, "torch_at_first_trial": at_first_trial[0], "torch_at_end": "torch" in sys.modules}))
"""


def test_run_hands_out_its_first_trial_before_the_driver_imports_torch(tmp_path):
    """torch is a second of the driver's start-up that only the end of the run (and retention) needs:
    worker processes train, so the first trial starts without it; it is imported by the end."""
    spec = write_spec(tmp_path, execution={"isolation": "processes", "device": "cpu", "workers": 1},
                      budget={"max_trials": 1, "max_epochs": 2, "patience": None})
    done = subprocess.run([sys.executable, "-c", FIRST_TRIAL_PROBE, "run", str(spec), "--quiet"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"exit_code": 0, "torch_at_first_trial": False, "torch_at_end": True}, done.stderr
    assert (tmp_path / "run" / "model").is_dir()
