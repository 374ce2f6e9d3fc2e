"""What the driver needs only once trials end, imported while it waits for its workers.

torch (retention and the end of the run), the end's steps, scikit-learn's ensembles for the
baselines, and the report's matplotlib and jinja2: about a second of start-up and 0.3-0.5 s of
the end of every run on 2 cores. They are imported on a thread once the first trial started
(`ImportAfterFirstTrial`). An import that fails here is left for the code that needs it, which
says why.
"""
from __future__ import annotations

import importlib
import logging
import sys
import threading
from typing import Any, Mapping

from automl.reporting.base import RunObserver

log = logging.getLogger(__name__)

REPORT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_agg", "automl.reporting.report")


def import_quietly(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the code that needs it imports it again and reports the error where it matters
            log.debug("importing %s ahead of time failed", name, exc_info=True)


# what the driver needs once a trial has ended (retention rewrites checkpoints with torch) and at
# the end of the run (its steps, the baselines' models, the report), but not to plan and hand out
# its first trial: torch is a second of start-up, the rest 0.3-0.5 s of the end of every run
DRIVER_MODULES = ("torch", "automl.final.finish", "sklearn.ensemble", "sklearn.dummy", *REPORT_MODULES)


class ImportAfterFirstTrial(RunObserver):
    """Imports `modules` on a daemon thread once the first trial was handed to a worker. Before it,
    the import would share the interpreter lock with the driver's last steps to the first trial
    (an import holds it for tenths of a second inside torch's C code); after it, the driver mostly
    waits, and a worker does not wait for it (it waits for epoch answers only where the strategy
    prunes). Retention and the end of the run, which need torch, find it imported."""

    def __init__(self, modules: tuple[str, ...] = DRIVER_MODULES):
        self.modules = modules
        self.thread: threading.Thread | None = None

    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        if self.thread is None and not all(name in sys.modules for name in self.modules):
            self.thread = threading.Thread(target=import_quietly, args=(self.modules,), name="automl-imports",
                                           daemon=True)
            self.thread.start()
