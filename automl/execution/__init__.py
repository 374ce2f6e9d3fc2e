"""Executors run trials and stream their events back to the driver; they hold no search state."""
from automl.execution.base import TrialEvent, TrialRequest

__all__ = ["TrialEvent", "TrialRequest"]
