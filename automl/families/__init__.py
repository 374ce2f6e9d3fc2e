"""Model families: each declares a search space for a data profile and builds a torch module."""
from automl.families.base import Family

__all__ = ["Family"]
