"""automl: a PyTorch-native AutoML agent with plugin-based search strategies."""
__version__ = "0.1.0"


def optimize(*args, **kwargs):
    """Run a search over any objective; see automl.optimize.optimize."""
    from automl.optimize import optimize as _optimize

    return _optimize(*args, **kwargs)
