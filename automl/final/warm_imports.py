"""The imports of the end of a run, done while the search runs.

After the search the driver refits the best model (its first optimizer step imports
torch._dynamo: torch.optim does, lazily, 0.8-1.2 s), fits the baselines (scikit-learn's
ensembles) and draws the report (matplotlib, jinja2): about 2 s of imports on 2 cores that
would otherwise all come after the last trial. During the search the driver mostly waits on
its workers, and it imports nothing else then, so a daemon thread imports them once the first
trial was handed to a worker (not before: the first trial's start would wait on it).
"""
from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from automl.reporting.base import RunObserver

log = logging.getLogger(__name__)

END_OF_RUN_MODULES = (
    "torch._dynamo",  # the refit's first optimizer step
    "sklearn.ensemble", "sklearn.linear_model",  # the baselines
    "matplotlib.figure", "matplotlib.backends.backend_agg", "automl.reporting.report",  # the report
)
SWITCH_INTERVAL_S = 0.0005  # while the imports run


def _import_all(modules: tuple[str, ...]) -> None:
    # the driver answers every epoch of every trial: with the default 5 ms switch interval each answer
    # would wait up to 5 ms for the interpreter lock this thread holds while it imports
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the end of the run imports it again and reports the error where it matters
                log.debug("importing %s ahead of the end of the run failed", name, exc_info=True)
    finally:
        sys.setswitchinterval(interval)


def import_in_background(modules: tuple[str, ...] = END_OF_RUN_MODULES) -> threading.Thread:
    """Start importing `modules` on a daemon thread (an interrupted run does not wait for it)."""
    thread = threading.Thread(target=_import_all, args=(modules,), name="automl-end-imports", daemon=True)
    thread.start()
    return thread


class EndOfRunImports(RunObserver):
    """Starts `import_in_background` when the run's first trial starts."""

    def __init__(self, modules: tuple[str, ...] = END_OF_RUN_MODULES):
        self.modules = modules
        self.thread: threading.Thread | None = None

    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        if self.thread is None:
            self.thread = import_in_background(self.modules)
