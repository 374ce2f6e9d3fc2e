"""The end of a run's imports happen while the trials run, after the first trial started."""
from __future__ import annotations

import sys

from automl.final.warm_imports import END_OF_RUN_MODULES, EndOfRunImports

DEADLINE = 120.0


def test_the_modules_are_imported_once_the_first_trial_starts_and_a_broken_one_is_skipped():
    sys.modules.pop("wave", None)
    sys.modules.pop("tabnanny", None)
    observer = EndOfRunImports(("wave", "no_such_module_for_automl", "tabnanny"))
    observer.run_started({})
    assert observer.thread is None and "wave" not in sys.modules  # the first trial's start must not wait on it
    observer.trial_started("t1", {}, None)
    thread = observer.thread
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert "wave" in sys.modules and "tabnanny" in sys.modules  # past the module that failed
    observer.trial_started("t2", {}, None)
    assert observer.thread is thread  # once per run


def test_the_refit_the_baselines_and_the_report_are_covered():
    assert {"torch._dynamo", "sklearn.ensemble", "matplotlib.figure", "automl.reporting.report"} <= set(END_OF_RUN_MODULES)
