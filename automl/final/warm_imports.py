"""The report's imports, done while the driver would otherwise wait idle for a worker's refit.

The report draws with matplotlib and renders with jinja2: 0.3-0.5 s of imports on 2 cores. A
refit trained by a worker (worker_refit.py) leaves the driver waiting; importing them then takes
them off the end of the run. An import that fails here is left for the report, which says why.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

REPORT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_agg", "automl.reporting.report")


def import_quietly(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the report imports it again and reports the error where it matters
            log.debug("importing %s ahead of the report failed", name, exc_info=True)
