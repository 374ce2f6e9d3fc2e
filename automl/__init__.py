"""automl: a PyTorch-native AutoML agent with plugin-based search strategies."""
__version__ = "0.1.0"
