"""Data: loaders for each source, splitting, preprocessing and profiling."""
from automl.data.base import PreparedData, Profile

__all__ = ["PreparedData", "Profile", "load_data"]


def load_data(*args, **kwargs):
    from automl.data.loaders import load_data as _load

    return _load(*args, **kwargs)
