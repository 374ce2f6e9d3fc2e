"""Search strategies: the protocol in base.py, one module per built-in."""
from automl.strategies.base import Observation, Status, Strategy, Suggestion, TrialIds

__all__ = ["Observation", "Status", "Strategy", "Suggestion", "TrialIds"]
