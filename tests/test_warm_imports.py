"""The end's imports, done on a thread of the driver while its workers train."""
from __future__ import annotations

import sys

from automl.final.warm_imports import REPORT_MODULES, import_quietly


def test_a_module_that_fails_to_import_is_skipped_and_the_next_one_is_imported():
    sys.modules.pop("wave", None)
    import_quietly(("no_such_module_for_automl", "wave"))  # the report raises it later, where it matters
    assert "wave" in sys.modules


def test_the_report_s_drawing_and_rendering_modules_are_covered():
    assert {"matplotlib.figure", "automl.reporting.report"} <= set(REPORT_MODULES)
